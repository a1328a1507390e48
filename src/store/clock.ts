/**
 * Hands out meta.lastUpdated instants: ISO 8601 UTC with milliseconds, strictly increasing within a process
 * (two writes in the same millisecond get consecutive milliseconds), so that history order and _since are
 * unambiguous.
 */
export class InstantClock {
  private last = 0;

  /** Makes later instants follow `iso` (used at start-up with the newest stored instant). */
  observe(iso: string): void {
    const t = Date.parse(iso);
    if (Number.isFinite(t) && t > this.last) this.last = t;
  }

  next(): string {
    const now = Date.now();
    this.last = now > this.last ? now : this.last + 1;
    return new Date(this.last).toISOString();
  }
}

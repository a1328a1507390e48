/**
 * The group-commit window of the audit trail: every entry recorded before the window fires goes into one
 * write. A window opened for an answer that waits for its entry fires at the end of the current event-loop
 * turn; one opened only for entries whose answers do not wait (shared, non-patient data) fires after
 * `LAZY_MS`, so that many of them share one commit, unless an entry whose answer waits arrives first, which
 * fires it at the end of that turn.
 */
const LAZY_MS = 10;

export class GroupWindow {
  private readonly write: () => Promise<void>;
  private open: { promise: Promise<void>; fire: () => void; timer?: NodeJS.Timeout } | undefined;

  /** `write` takes everything recorded so far and writes it. */
  constructor(write: () => Promise<void>) {
    this.write = write;
  }

  get pending(): boolean {
    return this.open !== undefined;
  }

  /** The write that will take what was recorded so far. */
  schedule(lazy: boolean): Promise<void> {
    let w = this.open;
    if (!w) {
      let fire!: () => void;
      const gate = new Promise<void>((resolve) => {
        fire = resolve;
      });
      const opened: NonNullable<typeof this.open> = {
        fire,
        promise: gate.then(() => {
          if (this.open === opened) this.open = undefined;
          if (opened.timer) clearTimeout(opened.timer);
          return this.write();
        }),
      };
      w = this.open = opened;
      if (lazy) opened.timer = setTimeout(fire, LAZY_MS);
      else setImmediate(fire);
    } else if (!lazy && w.timer) {
      clearTimeout(w.timer);
      w.timer = undefined;
      setImmediate(w.fire);
    }
    return w.promise;
  }
}

/**
 * Display language selection. A request names languages (displayLanguage, or Accept-Language with q values);
 * each is tried as given (fr-LU), then by its primary language (fr, then any fr-XX), then English (en, en-GB,
 * en-US...), then the concept's own display.
 */
import type { Designation } from './codesystem-index.ts';

/** Parses `fr-LU,fr;q=0.9,en;q=0.5` (or a single tag) into tags, best first; `*` is dropped. */
export function parseLanguages(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(',')
    .map((part, i) => {
      const [tag, ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([\d.]+)/.exec(p)?.[1]).find((x) => x !== undefined);
      return { tag: (tag ?? '').trim(), q: q === undefined ? 1 : Number(q), i };
    })
    .filter((x) => x.tag && x.tag !== '*' && x.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i)
    .map((x) => x.tag);
}

const primary = (tag: string) => tag.toLowerCase().split('-')[0]!;

/**
 * The best display for the requested languages. `display` is the concept's own display, in `displayLanguage`
 * (the code system's language; unknown = treated as English). Returns the text and its language.
 */
export function chooseDisplay(
  display: string | undefined,
  displayLanguage: string | undefined,
  designations: Designation[],
  requested: string[],
): { value?: string; language?: string; fallback: boolean } {
  const candidates: Designation[] = [...designations];
  if (display) candidates.unshift({ language: displayLanguage ?? 'en', value: display });
  // Designations with a "use" other than display/preferred come after plain ones.
  const plain = (d: Designation) => !d.use || /display|preferred|900000000000548007/i.test(`${d.use.code ?? ''}`);
  const find = (pred: (lang: string) => boolean) =>
    candidates.find((d) => d.language && pred(d.language) && plain(d)) ?? candidates.find((d) => d.language && pred(d.language));
  for (const tag of requested) {
    const t = tag.toLowerCase();
    const exact = find((l) => l.toLowerCase() === t);
    if (exact) return { value: exact.value, language: exact.language, fallback: false };
    const p = primary(t);
    const base = find((l) => l.toLowerCase() === p) ?? find((l) => primary(l) === p);
    if (base) return { value: base.value, language: base.language, fallback: false };
  }
  if (requested.length) {
    const en = find((l) => l.toLowerCase() === 'en') ?? find((l) => primary(l) === 'en');
    if (en) return { value: en.value, language: en.language, fallback: true };
  }
  return { value: display ?? candidates[0]?.value, language: display ? displayLanguage : candidates[0]?.language, fallback: requested.length > 0 };
}

/**
 * Text search (`_text`, `_content`, R4 search.html#text) and positions (`near`, R4 location.html#positional):
 * the index values, extracted at write time, and the search values.
 *
 * Words: the text is folded like string values (lower case, accents dropped) and cut into maximal runs of
 * letters and digits (Unicode `\p{L}\p{N}`); a resource keeps each distinct word once. A search value is cut the
 * same way, and every one of its words must start a word of the resource (word-prefix, implicit AND); comma
 * separated values are ORed. No boolean operators, phrases or stemming.
 *
 * - `_text`: the narrative, `text.div` with its XHTML tags removed and character references decoded.
 * - `_content`: the words of `_text` plus every string value of the resource (contained resources included),
 *   except the values of `id`, `reference`, `system`, `url`, `data` (base64) and `meta`, which are identifiers,
 *   not text. DocumentReference attachment titles (`content.attachment.title`) are string values, so included.
 */
import type { Location, Resource } from 'fhir/r4';
import type { IndexValue, NearPoint } from './types.ts';
import { badRequest } from '../fhir/outcome.ts';

/** Keys whose string values are identifiers or binary data, not text (and `div`, read as narrative). */
const NOT_TEXT = new Set(['id', 'reference', 'system', 'url', 'data', 'meta', 'div', 'resourceType']);
const BREAK = /[^\p{L}\p{N}]+/u;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** The text content of an XHTML fragment: tags removed (each a word break), character references decoded. */
export function xhtmlText(div: string): string {
  return div
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (m, e: string) => {
      if (e[0] === '#') {
        const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return n > 0 && n <= 0x10ffff ? String.fromCodePoint(n) : ' ';
      }
      return ENTITIES[e] ?? m;
    });
}

/** The distinct folded words of a text, in order of first appearance (added to `into`). */
export function wordsOf(text: string, into: Set<string> = new Set()): Set<string> {
  // ASCII text (most of it) needs no decomposition, and its words are runs of [A-Za-z0-9]: same words,
  // found with a scan of the characters.
  let start = -1;
  let lower = false;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 32;
    if (c > 127) return wordsOfUnicode(text, into);
    const alnum = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (c >= 65 && c <= 90);
    if (alnum) {
      if (start < 0) start = i;
      if (c <= 90 && c >= 65) lower = true;
    } else if (start >= 0) {
      const w = text.slice(start, i);
      into.add(lower ? w.toLowerCase() : w);
      start = -1;
      lower = false;
    }
  }
  return into;
}

function wordsOfUnicode(text: string, into: Set<string>): Set<string> {
  for (const w of text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase().split(BREAK)) if (w) into.add(w);
  return into;
}

function narrative(resource: Resource): string | undefined {
  const div = (resource as { text?: { div?: unknown } }).text?.div;
  return typeof div === 'string' ? div : undefined;
}

/**
 * Adds the words of every string value under `value` (keys in NOT_TEXT skipped, `div` read as narrative).
 * `words` adds the words of one string (wordsOf; src/audit/index-values.ts passes a memoised one).
 */
export function collectWords(value: unknown, into: Set<string>, words: (text: string, into: Set<string>) => unknown = wordsOf): void {
  if (typeof value === 'string') words(value, into);
  else if (Array.isArray(value)) for (const v of value) collectWords(v, into, words);
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    for (const k in o) {
      const v = o[k];
      if (k === 'div' && typeof v === 'string') wordsOf(xhtmlText(v), into);
      else if (!NOT_TEXT.has(k)) collectWords(v, into, words);
    }
  }
}

/** `_text` and `_content` index values of a resource (none when it has no words). */
export function textIndexValues(resource: Resource): IndexValue[] {
  const out: IndexValue[] = [];
  const div = narrative(resource);
  const narrativeWords = div ? wordsOf(xhtmlText(div)) : undefined;
  if (narrativeWords?.size) out.push({ param: '_text', type: 'text', words: [...narrativeWords] });
  const content = new Set<string>();
  collectWords(resource, content);
  if (content.size) out.push({ param: '_content', type: 'text', words: [...content] });
  return out;
}

/** `near` index value of a Location (its position, when both coordinates are numbers in range). */
export function positionIndexValues(resource: Resource): IndexValue[] {
  if (resource.resourceType !== 'Location') return [];
  const p = (resource as Location).position;
  if (!p || typeof p.latitude !== 'number' || typeof p.longitude !== 'number') return [];
  if (!(Math.abs(p.latitude) <= 90) || !(Math.abs(p.longitude) <= 180)) return [];
  return [{ param: 'near', type: 'position', latitude: p.latitude, longitude: p.longitude }];
}

/** Index values that the parameter expressions do not give: `_text`, `_content`, `near`. */
export function specialIndexValues(resource: Resource): IndexValue[] {
  const out = textIndexValues(resource);
  out.push(...positionIndexValues(resource));
  return out;
}

/** The words of one `_text` / `_content` search value (400 when it has none). */
export function searchWords(value: string, key: string): string[] {
  const words = [...wordsOf(value)];
  if (!words.length) throw badRequest(`Search parameter ${key}: ${JSON.stringify(value)} has no words to search`);
  return words;
}

// near ----------------------------------------------------------------------------------------------------------

export const EARTH_RADIUS_KM = 6371.0088;
/** Distance when the search gives none (R4 leaves it to the server). */
export const DEFAULT_NEAR_KM = 10;
const LENGTH_UNITS: Record<string, number> = {
  km: 1,
  m: 0.001,
  // UCUM international and US survey mile, and the plain names clients send.
  '[mi_i]': 1.609344,
  '[mi_us]': 1.6093472186944373,
  mi: 1.609344,
};

/** Great-circle distance in km between two WGS84 points given in degrees (haversine). */
export function haversineKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * rad) / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** Latitude band that contains every point within `km` of `lat` (a pre-filter an index can serve). */
export function latitudeBand(lat: number, km: number): [number, number] {
  const deg = (km / EARTH_RADIUS_KM) * (180 / Math.PI);
  return [Math.max(-90, lat - deg), Math.min(90, lat + deg)];
}

/** Parses `latitude|longitude[|distance[|units]]` (units: km default, m, [mi_i], [mi_us], mi). */
export function parseNear(value: string, key: string): NearPoint {
  const parts = value.split('|');
  const num = (s: string | undefined) => (s !== undefined && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s.trim()) ? Number(s) : NaN);
  if (parts.length < 2 || parts.length > 4) throw badRequest(`Search parameter ${key} needs latitude|longitude[|distance[|units]]: ${value}`);
  const latitude = num(parts[0]);
  const longitude = num(parts[1]);
  if (!(Math.abs(latitude) <= 90)) throw badRequest(`Search parameter ${key}: latitude ${parts[0]} is not a number from -90 to 90`);
  if (!(Math.abs(longitude) <= 180)) throw badRequest(`Search parameter ${key}: longitude ${parts[1]} is not a number from -180 to 180`);
  let distanceKm = DEFAULT_NEAR_KM;
  if (parts[2] !== undefined && parts[2] !== '') {
    const d = num(parts[2]);
    if (!(d >= 0)) throw badRequest(`Search parameter ${key}: distance ${parts[2]} is not a non-negative number`);
    const unit = parts[3] === undefined || parts[3] === '' ? 'km' : parts[3];
    const factor = LENGTH_UNITS[unit];
    if (factor === undefined) throw badRequest(`Search parameter ${key}: unknown distance unit ${unit} (use km, m, [mi_i] or [mi_us])`);
    distanceKm = d * factor;
  } else if (parts[3]) throw badRequest(`Search parameter ${key}: units without a distance`);
  return { latitude, longitude, distanceKm };
}

/**
 * Value normalisation shared by the indexer (resource values) and the parser (search values), so both sides
 * of a comparison are folded the same way. The rules are the ones fixed in src/search/types.ts.
 */
import { createRequire } from 'node:module';
import { ID_PATTERN } from '../fhir/model.ts';

/** Lower case, accents stripped (NFD, combining marks dropped), whitespace collapsed and trimmed. */
export function fold(text: string): string {
  return text
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim();
}

export const MIN_DATE = '0001-01-01T00:00:00.000Z';
export const MAX_DATE = '9999-12-31T23:59:59.999Z';

const DATE_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function iso(ms: number): string {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  if (y < 1) return MIN_DATE;
  if (y > 9999) return MAX_DATE;
  return `${pad(y, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}

/**
 * The range of UTC instants a FHIR date / dateTime / instant value covers, from its precision:
 * `2020` -> the whole year, `2020-05` -> the month, `2020-05-03` -> the day, `2020-05-03T10:00` -> the
 * minute, seconds -> the second, fractional seconds -> the stated digits.
 *
 * Time zones: a value with a time and an offset is converted to UTC. A value without a time zone (dates,
 * and dateTimes with a time but no offset) is taken as UTC. This is a documented simplification: FHIR
 * leaves such values to the server's local time; this server's local time for search is UTC.
 *
 * Returns undefined when the text is not a valid date.
 */
export function dateRange(text: string): { low: string; high: string } | undefined {
  const m = DATE_RE.exec(text.trim());
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, frac, tz] = m;
  const y = Number(ys);
  const mo = mos ? Number(mos) : undefined;
  const d = ds ? Number(ds) : undefined;
  if (mo !== undefined && (mo < 1 || mo > 12)) return undefined;
  if (d !== undefined && (d < 1 || d > 31)) return undefined;
  const base = (yy: number, mm: number, dd: number, h = 0, mi = 0, s = 0, ms = 0) => {
    const t = Date.UTC(2000, mm, dd, h, mi, s, ms);
    // Date.UTC maps years 0..99 to 1900+; set the year explicitly.
    const dt = new Date(t);
    dt.setUTCFullYear(yy);
    return dt.getTime();
  };
  let low: number;
  let high: number;
  if (mo === undefined) {
    low = base(y, 0, 1);
    high = base(y + 1, 0, 1) - 1;
  } else if (d === undefined) {
    low = base(y, mo - 1, 1);
    high = base(y, mo, 1) - 1;
    if (mo === 12) high = base(y + 1, 0, 1) - 1;
  } else if (hs === undefined) {
    low = base(y, mo - 1, d);
    if (new Date(low).getUTCDate() !== d) return undefined;
    high = low + 86_400_000 - 1;
  } else {
    // An impossible calendar day (2024-02-30T10:00:00Z) is no date, with a time as without one.
    if (new Date(base(y, mo - 1, d)).getUTCDate() !== d) return undefined;
    const h = Number(hs);
    const mi = Number(mis);
    if (h > 24 || mi > 59) return undefined;
    let offset = 0;
    if (tz && tz !== 'Z') {
      const sign = tz[0] === '-' ? -1 : 1;
      offset = sign * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60_000;
    }
    if (ss === undefined) {
      low = base(y, mo - 1, d, h, mi) - offset;
      high = low + 60_000 - 1;
    } else {
      const s = Number(ss);
      if (s > 60) return undefined;
      if (frac === undefined) {
        low = base(y, mo - 1, d, h, mi, s) - offset;
        high = low + 1000 - 1;
      } else {
        const digits = Math.min(frac.length, 3);
        const ms = Number(frac.slice(0, 3).padEnd(3, '0'));
        low = base(y, mo - 1, d, h, mi, s, ms) - offset;
        high = low + 10 ** (3 - digits) - 1;
      }
    }
  }
  if (Number.isNaN(low) || Number.isNaN(high)) return undefined;
  return { low: iso(low), high: iso(high) };
}

/**
 * The implicit range of a decimal written as `text`: half a unit of its last significant digit either side.
 * `1.5` -> [1.45, 1.55], `100` -> [99.5, 100.5], `1e2` -> [50, 150]. The high bound is exclusive in
 * comparisons.
 */
export function numberRange(text: string): { value: number; low: number; high: number } | undefined {
  const t = text.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t)) return undefined;
  const value = Number(t);
  if (!Number.isFinite(value)) return undefined;
  const [mant, expPart] = t.toLowerCase().split('e');
  const exp = expPart ? Number(expPart) : 0;
  const dot = mant!.indexOf('.');
  const decimals = dot < 0 ? 0 : mant!.length - dot - 1;
  const half = 0.5 * 10 ** (exp - decimals);
  return { value, low: value - half, high: value + half };
}

/** The range of a JSON number from a resource (its shortest text form carries the precision). */
export function numberRangeOf(n: number): { value: number; low: number; high: number } {
  return numberRange(String(n)) ?? { value: n, low: n, high: n };
}

/**
 * Normalises a reference: relative `Type/id` (a `_history/n` tail dropped), an absolute URL whose tail is
 * `Type/id` becomes `Type/id` (the base is dropped, so references to this server written absolutely match
 * their relative form), contained `#x` stays as written, anything else (urn:uuid:, canonical URLs) is kept
 * whole.
 */
export function normalizeReference(
  ref: string,
  isResourceType: (t: string) => boolean,
): { reference: string; targetType?: string; targetId?: string } {
  const r = ref.trim();
  if (r.startsWith('#') || r.startsWith('urn:')) return { reference: r };
  const parts = r.split('/');
  let end = parts.length;
  if (end >= 4 && parts[end - 2] === '_history') end -= 2;
  if (end >= 2) {
    const type = parts[end - 2]!;
    const id = parts[end - 1]!;
    if (isResourceType(type) && ID_PATTERN.test(id)) {
      // Relative (`Type/id`) or absolute http(s) URL.
      if (end === 2 || /^https?:\/\//.test(r)) return { reference: `${type}/${id}`, targetType: type, targetId: id };
    }
  }
  return { reference: r };
}

// UCUM canonical form -----------------------------------------------------------------------------------

interface UcumUtils {
  convertToBaseUnits(unit: string, value: number): {
    status: string;
    magnitude?: number;
    unitToExp?: Record<string, number>;
  };
  convertUnitTo(from: string, value: number, to: string): { status: string };
}
let ucum: UcumUtils | undefined;
function ucumUtils(): UcumUtils {
  if (!ucum) {
    const require = createRequire(import.meta.url);
    const mod = require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumUtils } };
    ucum = mod.UcumLhcUtils.getInstance();
  }
  return ucum;
}
const canonicalCache = new Map<string, { factor?: number; code: string } | null>();

export const UCUM = 'http://unitsofmeasure.org';

/**
 * Canonical form of a UCUM quantity: the value expressed in UCUM base units (g, m, s, K, mol is not a base
 * unit in UCUM: it is a count, so mol -> 6.02e23 `1`), and the canonical code is the base units with their
 * exponents, sorted by unit name and joined with `.` (e.g. `mg` -> `g`, `mm[Hg]` -> `g.m-1.s-2`,
 * `Cel` -> `K`, a dimensionless unit -> `1`; units with an amount of substance are prefixed `mol.`, e.g.
 * `mmol/L` -> `mol.m-3`, so they never compare with counts such as `10*6/uL` -> `m-3`). Returns undefined for units that do not convert (arbitrary
 * units, invalid codes).
 */
export function ucumCanonical(code: string, value: number): { value: number; code: string } | undefined {
  let cached = canonicalCache.get(code);
  if (cached === undefined) {
    cached = null;
    try {
      const r = ucumUtils().convertToBaseUnits(code, 1);
      if (r.status === 'succeeded' && r.magnitude !== undefined && r.unitToExp) {
        const keys = Object.keys(r.unitToExp).sort();
        let canon = keys.length ? keys.map((k) => (r.unitToExp![k] === 1 ? k : `${k}${r.unitToExp![k]}`)).join('.') : '1';
        // UCUM makes the mole a plain number (6.022e23), so mmol/L and 10*6/uL would share base units
        // (m-3); ucum-lhc itself refuses to convert between them. A unit that does not convert to its own
        // base units carries an amount of substance: keep it in a dimension of its own.
        if (ucumUtils().convertUnitTo(code, 1, canon).status !== 'succeeded') canon = canon === '1' ? 'mol' : `mol.${canon}`;
        // Special units (Cel, [degF], pH...) are not linear: no factor, convert each value.
        const lin = ucumUtils().convertToBaseUnits(code, 2);
        const linear = lin.magnitude !== undefined && Math.abs(lin.magnitude - 2 * r.magnitude) <= 1e-12 * Math.abs(lin.magnitude);
        cached = { factor: linear ? r.magnitude : undefined, code: canon };
      }
    } catch {
      cached = null;
    }
    canonicalCache.set(code, cached);
  }
  if (!cached) return undefined;
  if (cached.factor !== undefined) return { value: value * cached.factor, code: cached.code };
  const r = ucumUtils().convertToBaseUnits(code, value);
  return r.magnitude === undefined ? undefined : { value: r.magnitude, code: cached.code };
}

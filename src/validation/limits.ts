/**
 * ElementDefinition.minValue[x] / maxValue[x] and maxLength, for the types they apply to:
 * integer, positiveInt, unsignedInt, decimal (numeric order); date, dateTime, instant (the earliest instant of
 * each value's precision, a missing time zone read as UTC); time; Quantity (same unit, or converted with
 * UCUM); and minValueDuration / maxValueDuration on date types (a window around the current time, as in the
 * R5 definition HL7's validator also applies to R4 profiles). Also used by the QuestionnaireResponse rules.
 */
import { dateRange } from '../search/normalize.ts';
import { ucumConvert } from '../terminology/ucum.ts';
import { primitiveRule } from './primitives.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

const DATE_TYPES = new Set(['date', 'dateTime', 'instant']);
const NUMBER_TYPES = new Set(['integer', 'positiveInt', 'unsignedInt', 'decimal', 'integer64']);

/**
 * Milliseconds since the epoch of the earliest instant a date/dateTime/instant denotes (its precision's start,
 * no time zone read as UTC), or undefined when it is not a valid value of `type`. The search's date parser
 * (`dateRange`) reads the value, so both agree on what a date means; the validator's own lexical rule for the
 * type (R4 expression and calendar check: no 2024-02-30) is applied first, so an impossible date is never
 * compared (the walker reports it at the element's path).
 */
function earliestInstant(type: string, s: string): number | undefined {
  if (primitiveRule(type)?.format(s) !== undefined) return undefined;
  const r = dateRange(s);
  return r ? Date.parse(r.low) : undefined;
}

const secondsOfTime = (s: string) => {
  const m = /^(\d{2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$/.exec(s);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + (m[3] ? Number(m[3]) : 0) : undefined;
};

/** UCUM time units to milliseconds (calendar units as UCUM defines them). */
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000, wk: 604_800_000, mo: 2_629_746_000, a: 31_556_952_000 };

export interface LimitProblem {
  severity: 'error' | 'warning';
  message: string;
}

const showQ = (q: Json) => `${String(q.value)}${q.code ?? q.unit ? ' ' + String(q.code ?? q.unit) : ''}`;

/** Compares two Quantities: negative/0/positive, or a reason they cannot be compared. */
export function compareQuantities(a: Json, b: Json): number | string {
  if (typeof a.value !== 'number' || typeof b.value !== 'number') return 'a value is missing';
  const ua = (a.code ?? a.unit) as string | undefined;
  const ub = (b.code ?? b.unit) as string | undefined;
  if ((ua ?? '') === (ub ?? '') && (a.system ?? '') === (b.system ?? '')) return a.value - b.value;
  if (a.system === 'http://unitsofmeasure.org' && b.system === 'http://unitsofmeasure.org' && typeof a.code === 'string' && typeof b.code === 'string') {
    const conv = ucumConvert(a.value, a.code, b.code);
    if (conv !== undefined) return conv - b.value;
    return `the units ${a.code} and ${b.code} cannot be converted into each other`;
  }
  return `no common formal (UCUM) units`;
}

/**
 * Checks `value` (of FHIR type `type`) against a minValue/maxValue (`limit`, whose JSON key suffix is
 * `limitType`). Returns a problem, or undefined when the value is within the limit (or the pair is not comparable).
 */
export function checkLimit(kind: 'min' | 'max', type: string, value: unknown, limitType: string, limit: unknown, now = Date.now()): LimitProblem | undefined {
  const lt = limitType.charAt(0).toLowerCase() + limitType.slice(1);
  const word = kind === 'min' ? 'less than the minimum' : 'greater than the maximum';
  const bad = (d: number) => (kind === 'min' ? d < 0 : d > 0);
  if (NUMBER_TYPES.has(type) && typeof value === 'number' && typeof limit === 'number') {
    return bad(value - limit) ? { severity: 'error', message: `the value ${value} is ${word} value ${limit} allowed by the profile` } : undefined;
  }
  if (DATE_TYPES.has(type) && typeof value === 'string') {
    const v = earliestInstant(type, value);
    if (v === undefined) return undefined;
    if (lt === 'duration' && isObject(limit)) {
      const ms = typeof limit.value === 'number' ? DURATION_MS[String(limit.code ?? limit.unit)] : undefined;
      if (ms === undefined) return undefined;
      const bound = kind === 'min' ? now - (limit.value as number) * ms : now + (limit.value as number) * ms;
      return bad(v - bound)
        ? { severity: 'error', message: `the date/time ${value} is ${kind === 'min' ? 'earlier' : 'later'} than ${limit.value} ${String(limit.code ?? limit.unit)} ${kind === 'min' ? 'before' : 'after'} now (${kind}Value${limitType})` }
        : undefined;
    }
    if (!DATE_TYPES.has(lt) || typeof limit !== 'string') return undefined;
    const l = earliestInstant(lt, limit);
    if (l === undefined) return undefined;
    return bad(v - l) ? { severity: 'error', message: `the date/time ${value} is ${word} value ${limit} allowed by the profile` } : undefined;
  }
  if (type === 'time' && lt === 'time' && typeof value === 'string' && typeof limit === 'string') {
    const v = secondsOfTime(value);
    const l = secondsOfTime(limit);
    if (v === undefined || l === undefined) return undefined;
    return bad(v - l) ? { severity: 'error', message: `the time ${value} is ${word} value ${limit} allowed by the profile` } : undefined;
  }
  if ((type === 'Quantity' || type === 'Age' || type === 'Duration' || type === 'SimpleQuantity' || type === 'Distance' || type === 'Count') && isObject(value) && isObject(limit)) {
    if (typeof value.value !== 'number') return undefined;
    const d = compareQuantities(value, limit);
    if (typeof d === 'string') return { severity: 'error', message: `the quantity ${showQ(value)} cannot be compared with the ${kind}imum ${showQ(limit)} allowed by the profile: ${d}` };
    return bad(d) ? { severity: 'error', message: `the quantity ${showQ(value)} is ${word} ${showQ(limit)} allowed by the profile` } : undefined;
  }
  return undefined;
}

/** maxLength: the length in characters of a primitive's string form. */
export function checkMaxLength(value: unknown, maxLength: number): LimitProblem | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const s = String(value);
  const n = [...s].length;
  return n > maxLength ? { severity: 'error', message: `the value is ${n} characters long, longer than the maximum length ${maxLength} allowed by the profile` } : undefined;
}

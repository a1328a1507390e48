/**
 * Checks of primitive values in their JSON form: the JSON kind (string / number / boolean) and the lexical
 * rules of the R4 primitive types (datatypes.html regular expressions, integer ranges, valid calendar dates).
 *
 * Each checker returns undefined when the value is fine, otherwise a short reason used in the issue message.
 */
import { ID_PATTERN, PRIMITIVE_JSON_KIND } from '../fhir/model.ts';

export type PrimitiveChecker = (value: unknown) => string | undefined;

// R4 regular expressions (datatypes.html), anchored.
const YEAR = '([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)';
const MONTH = '(0[1-9]|1[0-2])';
const DAY = '(0[1-9]|[1-2][0-9]|3[0-1])';
const TIME = '([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?';
const ZONE = '(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))';
const DATE_RE = new RegExp(`^${YEAR}(-${MONTH}(-${DAY})?)?$`);
const DATETIME_RE = new RegExp(`^${YEAR}(-${MONTH}(-${DAY}(T${TIME}${ZONE})?)?)?$`);
const INSTANT_RE = new RegExp(`^${YEAR}-${MONTH}-${DAY}T${TIME}${ZONE}$`);
const TIME_RE = new RegExp(`^${TIME}$`);
const ID_RE = ID_PATTERN;
const CODE_RE = /^[^\s]+(\s[^\s]+)*$/;
const OID_RE = /^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$/;
const UUID_RE = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const WHITESPACE_RE = /\s/;
/** C0 control characters other than tab, line feed and carriage return: not representable in XML. */
const CONTROL_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** Rejects dates such as 2023-02-30 that the regular expressions let through ("Dates SHALL be valid dates"). */
function calendarOk(s: string): boolean {
  if (s.length < 10) return true;
  const day = (s.charCodeAt(8) - 48) * 10 + (s.charCodeAt(9) - 48);
  if (day <= 28) return true;
  const year = Number(s.slice(0, 4));
  const month = (s.charCodeAt(5) - 48) * 10 + (s.charCodeAt(6) - 48);
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  return day <= days;
}

/**
 * base64Binary: groups of four characters of the base64 alphabet, `=` padding only at the end, whitespace
 * ignored. A loop rather than a regular expression: Binary.data can be megabytes long.
 */
function base64(v: unknown): string | undefined {
  const s = v as string;
  if (s.length === 0) return 'empty string';
  let count = 0;
  let padding = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) continue;
    if (c === 61) {
      padding++;
    } else if (padding > 0) {
      return 'not a valid base64Binary (data after = padding)';
    } else if (!((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47)) {
      return 'not a valid base64Binary (character outside the base64 alphabet)';
    }
    count++;
  }
  if (count % 4 !== 0 || padding > 2) return 'not a valid base64Binary (length is not a multiple of 4)';
  return undefined;
}

function stringOk(s: string): string | undefined {
  if (s.length === 0) return 'empty string';
  if (CONTROL_RE.test(s)) return 'contains a control character';
  return undefined;
}

function noWhitespace(what: string): PrimitiveChecker {
  return (v) => {
    const s = v as string;
    if (s.length === 0) return 'empty string';
    if (WHITESPACE_RE.test(s)) return `not a valid ${what}`;
    return undefined;
  };
}

function regex(re: RegExp, what: string, extra?: (s: string) => boolean): PrimitiveChecker {
  return (v) => {
    const s = v as string;
    if (s.length === 0) return 'empty string';
    if (!re.test(s)) return `not a valid ${what}`;
    if (extra && !extra(s)) return `not a valid ${what}`;
    return undefined;
  };
}

function integer(min: number, what: string): PrimitiveChecker {
  return (v) => {
    const n = v as number;
    if (!Number.isInteger(n)) return `not a valid ${what} (not a whole number)`;
    if (n < min || n > INT32_MAX) return `not a valid ${what} (out of range ${min}..${INT32_MAX})`;
    return undefined;
  };
}

const FORMAT: Record<string, PrimitiveChecker> = {
  boolean: () => undefined,
  decimal: (v) => (Number.isFinite(v as number) ? undefined : 'not a finite decimal'),
  integer: integer(INT32_MIN, 'integer'),
  positiveInt: integer(1, 'positiveInt'),
  unsignedInt: integer(0, 'unsignedInt'),
  string: (v) => stringOk(v as string),
  markdown: (v) => stringOk(v as string),
  id: regex(ID_RE, 'id (1 to 64 of A-Z a-z 0-9 - .)'),
  code: regex(CODE_RE, 'code (no leading, trailing or repeated whitespace)'),
  uri: noWhitespace('uri (whitespace is not allowed)'),
  url: noWhitespace('url (whitespace is not allowed)'),
  canonical: noWhitespace('canonical (whitespace is not allowed)'),
  oid: regex(OID_RE, 'oid (urn:oid:...)'),
  uuid: regex(UUID_RE, 'uuid (urn:uuid: and lower-case hex)'),
  date: regex(DATE_RE, 'date (YYYY, YYYY-MM or YYYY-MM-DD)', calendarOk),
  dateTime: regex(DATETIME_RE, 'dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with time zone)', calendarOk),
  instant: regex(INSTANT_RE, 'instant (YYYY-MM-DDThh:mm:ss with time zone)', calendarOk),
  time: regex(TIME_RE, 'time (hh:mm:ss)'),
  base64Binary: base64,
  integer64: regex(/^-?([0]|([1-9][0-9]*))$/, 'integer64'),
  xhtml: (v) => {
    const s = v as string;
    if (s.length === 0) return 'empty string';
    if (!s.trimStart().startsWith('<div')) return 'narrative must be an xhtml <div> element';
    return undefined;
  },
};

const KIND_CHECK: Record<'string' | 'number' | 'boolean', (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
};

export interface PrimitiveRule {
  readonly type: string;
  readonly jsonKind: 'string' | 'number' | 'boolean';
  readonly kindOk: (v: unknown) => boolean;
  readonly format: PrimitiveChecker;
}

const rules = new Map<string, PrimitiveRule>();

/** The rule for a FHIR primitive type; undefined when `type` is not primitive. */
export function primitiveRule(type: string): PrimitiveRule | undefined {
  let rule = rules.get(type);
  if (!rule) {
    const jsonKind = PRIMITIVE_JSON_KIND[type];
    if (!jsonKind) return undefined;
    rule = { type, jsonKind, kindOk: KIND_CHECK[jsonKind], format: FORMAT[type] ?? (jsonKind === 'string' ? FORMAT.string! : () => undefined) };
    rules.set(type, rule);
  }
  return rule;
}

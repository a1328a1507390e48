/**
 * The sort walk (SQLite, sortWalk in src/store/sqlite/search-sql.ts): a sorted search whose filters are all
 * common is answered by walking the sort key's index in the page's order and testing the filters on each
 * index row. Checked here on a store where it applies (3,000 Observations; filters above the probe bound):
 * every page, followed forwards by `next` links and then backwards by `previous` links, equals the page the
 * general plan gives (the plans without the walk: top-k on a first page, else the general one), cursors
 * included; and the plan taken: the walk for the pages it can serve, the other plans when the walk gives up
 * (an ascending first page, probed matches clustered beyond the walk's extent, fewer keyed matches than a page).
 *
 * The data has what the walk must get right: ties (a few distinct days, the same instant many times), missing
 * keys (no effective[x]), multi-valued keys (a Period: the highest end descending, the lowest start
 * ascending), deleted and updated resources, and a code whose matches all lie at the old end of the order.
 *
 * Also `_has` whose source filter is common but under 4 × the probe bound: each target's references are looked
 * up in the source filter's set of rids (its `IN` form inside the per-target probe), compared with the `IN`
 * plan over the same data.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { Observation, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { compileSearch, paramIds, type ParamIds } from '../src/store/sqlite/search-sql.ts';
import type { SearchRequest } from '../src/search/types.ts';
import { rng } from '../bench/lib/stats.ts';

/** The plan shapes are those of the scaled probe bound (a fixed DSP_SEARCH_PROBE_BOUND changes them). */
const SCALED = !process.env.DSP_SEARCH_PROBE_BOUND;
const dir = mkdtempSync(join(tmpdir(), 'dsp-sort-walk-'));
const path = join(dir, 'walk.db');
let store: SqliteStore;
let db: DatabaseSync;

const N = 3000;

/**
 * Observation i: code B (1,500: above 4 × the probe bound of a page of 20, ~250, so probed per candidate) only
 * in 1990-1992, the old end of the order; E (375: between the bound and 4 × the bound, so tested by its set of
 * rids) only in 1993-1995; C (rare: 30); A (the other 1,095, above 4 × the bound) spread over 2000-2020. Status
 * final or amended; effective a day (12 distinct days a year: many ties), a Period (two values of the key) or
 * nothing.
 */
function observation(i: number, rand: () => number): Observation {
  const code = i % 2 === 0 ? 'B' : i % 8 === 1 ? 'E' : i % 100 === 3 ? 'C' : 'A';
  const year = code === 'B' ? 1990 + (i % 3) : code === 'E' ? 1993 + (i % 3) : 2000 + Math.floor(rand() * 21);
  const day = `${year}-${String(1 + Math.floor(rand() * 12)).padStart(2, '0')}-15`;
  const o: Observation = {
    resourceType: 'Observation',
    id: `o${String(i).padStart(5, '0')}`,
    status: rand() < 0.7 ? 'final' : 'amended',
    code: { coding: [{ system: 'http://example.org/codes', code }] },
    subject: { reference: `Patient/p${i % 40}` },
  };
  const r = rand();
  if (r < 0.08) return o; // no effective[x]: no sort key
  if (r < 0.2) o.effectivePeriod = { start: day, end: `${year + 1 + Math.floor(rand() * 3)}-06-30` };
  else if (r < 0.3) o.effectiveDateTime = `${day}T10:00:00Z`;
  else o.effectiveDateTime = day;
  return o;
}

beforeAll(async () => {
  store = new SqliteStore({ path });
  await store.init();
  const rand = rng(20261122);
  const all: Observation[] = [];
  for (let i = 0; i < N; i++) all.push(observation(i, rand));
  await store.transaction(async (session) => {
    for (const o of all) await session.put(o as Resource, { method: 'PUT', index: extractIndex(o as Resource) });
    for (let p = 0; p < 40; p++) {
      const patient = { resourceType: 'Patient', id: `p${p}`, name: [{ family: `F${p % 3}` }] } as Resource;
      await session.put(patient, { method: 'PUT', index: extractIndex(patient) });
    }
  });
  // Deleted ones, and updates that move a key (the new value is the one sorted on).
  for (let i = 3; i < N; i += 97) await store.delete('Observation', all[i]!.id!, { method: 'DELETE' });
  for (let i = 5; i < N; i += 89) {
    const o = { ...all[i]!, effectiveDateTime: '2021-01-01', effectivePeriod: undefined };
    await store.put(o as Resource, { method: 'PUT', index: extractIndex(o as Resource) });
  }
  db = new DatabaseSync(path, { readOnly: true });
}, 120_000);

afterAll(async () => {
  db?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Page {
  ids: string[];
  next?: string;
  previous?: string;
}

/** The page of the plans without the walk: a ParamIds that cannot run the walk's queries (no `rows`). */
function generalPage(request: SearchRequest): Page {
  const ids = paramIds(db);
  const noWalk: ParamIds = Object.assign((t: string, c: string) => ids(t, c), { countUpTo: ids.countUpTo, typeRows: ids.typeRows });
  const c = compileSearch(request, { paramIds: noWalk });
  expect(c.sql.startsWith('WITH w AS')).toBe(false);
  const rows = db.prepare(c.sql).all(...(c.params as SQLInputValue[])) as { id: string }[];
  const { page, next, previous } = c.paginate(rows);
  return { ids: page.map((r) => r.id), next, previous };
}

/** The page the store gives (the walk where it applies). */
async function storePage(request: SearchRequest): Promise<Page> {
  const res = await store.search(request);
  return { ids: res.resources.map((r) => r.id!), next: res.next, previous: res.previous };
}

/** Whether the store's plan for the request is the walk. */
function walked(request: SearchRequest): boolean {
  return compileSearch(request, { paramIds: paramIds(db) }).sql.startsWith('WITH w AS');
}

/**
 * Follows `next` links to the end, then `previous` links back to the first page, on both sides; every page
 * must be the same. Returns which pages the store walked (forwards, then backwards) and every id seen.
 */
async function compare(query: string): Promise<{ forward: boolean[]; backward: boolean[]; ids: string[] }> {
  const request = (cursor?: string) => {
    const r = parseSearch('Observation', [...new URLSearchParams(query)], { strict: true }).request;
    if (cursor) r.cursor = cursor;
    return r;
  };
  const forward: boolean[] = [];
  const backward: boolean[] = [];
  const ids: string[] = [];
  let cursor: string | undefined;
  let last: Page | undefined;
  for (let n = 0; n < 3000; n++) {
    const want = generalPage(request(cursor));
    forward.push(walked(request(cursor)));
    const got = await storePage(request(cursor));
    expect({ query, page: n, ...got }).toEqual({ query, page: n, ...want });
    ids.push(...got.ids);
    last = got;
    if (!got.next) break;
    cursor = got.next;
  }
  cursor = last?.previous;
  for (let n = 0; cursor && n < 3000; n++) {
    const want = generalPage(request(cursor));
    backward.push(walked(request(cursor)));
    const got = await storePage(request(cursor));
    expect({ query, back: n, ...got }).toEqual({ query, back: n, ...want });
    cursor = got.previous;
  }
  return { forward, backward, ids };
}

describe('sort walk', () => {
  it('pages a common code sorted by -date as the general plan does, walking every page that holds keys', async () => {
    for (const count of [11, 60, 300]) {
      const r = await compare(`code=A&_sort=-date&_count=${count}`);
      expect(new Set(r.ids).size).toBe(r.ids.length);
      if (!SCALED) continue;
      // Walked: the first page and the following ones while keyed matches remain; the general plan for the
      // pages in and next to the resources without the key (the end of a descending order).
      expect(r.forward[0]).toBe(true);
      expect(r.forward.filter(Boolean).length).toBeGreaterThan(r.forward.length / 2);
      expect(r.forward.at(-1)).toBe(false);
      // Backwards, each page is before a keyed row: walked up (the first page too: fewer rows than a page
      // and the end of the index reached).
      expect(r.backward.filter(Boolean).length).toBeGreaterThan(0);
      expect(r.backward.at(-1)).toBe(true);
    }
  });

  it('pages an ascending sort (the first page from the top-k, later pages walked up from the cursor)', async () => {
    const r = await compare('code=A&_sort=date&_count=20');
    if (!SCALED) return;
    expect(r.forward[0]).toBe(false);
    expect(r.forward.slice(1).some(Boolean)).toBe(true);
    // Up to the end of the index: the last page too.
    expect(r.forward.at(-1)).toBe(true);
  });

  it('pages two common filters, and no filter at all', async () => {
    const two = await compare('code=A&status=final&_sort=-date&_count=25');
    const none = await compare('_sort=-date&_count=50');
    if (!SCALED) return;
    expect(two.forward[0]).toBe(true);
    expect(none.forward[0]).toBe(true);
  });

  it('reads the index window in order and stops with the walk (no sort of the window)', () => {
    const ids = paramIds(db);
    const plans: string[] = [];
    const spy: ParamIds = Object.assign((t: string, c: string) => ids(t, c), {
      countUpTo: ids.countUpTo,
      typeRows: ids.typeRows,
      rows: (sql: string, params: (string | number | null)[]) => {
        // The walk's window (the ties query, ordered by id, is not one).
        if (sql.includes(' ORDER BY e.')) plans.push((db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...(params as SQLInputValue[])) as { detail: string }[]).map((p) => p.detail).join(' | '));
        return ids.rows!(sql, params);
      },
    });
    // A probed filter (A) and a set (E), both with the window of the walk.
    for (const q of ['code=A&_sort=-date', 'code=E&_sort=-date']) {
      plans.length = 0;
      const sql = compileSearch(parseSearch('Observation', [...new URLSearchParams(q)], { strict: true }).request, { paramIds: spy }).sql;
      if (!SCALED) continue;
      expect({ q, walk: sql.startsWith('WITH w AS') }).toEqual({ q, walk: true });
      expect(plans).toHaveLength(1);
      expect(plans[0]).toMatch(/CO-ROUTINE d \| SEARCH e USING COVERING INDEX idx_date_high/);
      expect(plans[0]).not.toMatch(/TEMP B-TREE/);
    }
  });

  it('pages a token sort key with large ties (every match of a code has the same key)', async () => {
    for (const sort of ['-code', 'code']) {
      const r = await compare(`status=amended&_sort=${sort}&_count=30`);
      if (SCALED && sort === '-code') expect(r.forward[0]).toBe(true);
    }
  });

  it('reads only the ties that can reach the page (a key of few values: thousands of ties)', async () => {
    // status: two values over 3,000 rows (~2,100 final); code: four. Same pages as the general plan, every page.
    await compare('_sort=-status&_count=40');
    await compare('_sort=status&_count=40');
    await compare('code=A&_sort=-status&_count=20');
    const ids = paramIds(db);
    let returned = 0;
    const spy: ParamIds = Object.assign((t: string, c: string) => ids(t, c), {
      countUpTo: ids.countUpTo,
      typeRows: ids.typeRows,
      rows: (sql: string, params: (string | number | null)[]) => {
        const rows = ids.rows!(sql, params);
        returned += rows.length;
        return rows;
      },
    });
    for (const q of ['_sort=-status&_count=40', 'status=amended&_sort=-code&_count=30', 'code=A&_sort=-status&_count=20']) {
      const request = parseSearch('Observation', [...new URLSearchParams(q)], { strict: true }).request;
      for (let page = 0; page < 3; page++) {
        returned = 0;
        const c = compileSearch(request, { paramIds: spy });
        if (SCALED) expect({ q, page, walk: c.sql.startsWith('WITH w AS') }).toEqual({ q, page, walk: true });
        // The walk's count + 1 rows, then at most count + 1 ties (every tie before).
        expect({ q, page, returned }).toEqual({ q, page, returned: Math.min(returned, 2 * (request.count + 1)) });
        const rows = db.prepare(c.sql).all(...(c.params as SQLInputValue[])) as { id: string }[];
        const next = c.paginate(rows).next;
        if (!next) break;
        request.cursor = next;
      }
    }
  });

  it('counts no filter twice in one compile (the walk, the probes and the date span share their counts)', async () => {
    const ids = paramIds(db);
    const seen: { key: string; limit: number; n: number }[] = [];
    const spy: ParamIds = Object.assign((t: string, c: string) => ids(t, c), {
      typeRows: ids.typeRows,
      rows: ids.rows,
      countUpTo: (sql: string, params: (string | number | null)[]) => {
        const n = ids.countUpTo!(sql, params);
        const m = /^(.*) LIMIT (\d+)\)$/s.exec(sql)!;
        seen.push({ key: `${m[1]} ${JSON.stringify(params)}`, limit: Number(m[2]), n });
        return n;
      },
    });
    const queries = [
      // A patient's Observations of a common code: the walk ends at the patient's count, the probes reuse both.
      'code=A&subject=Patient/p1&_sort=-date',
      'code=A&subject=Patient/p1&_sort=date',
      'code=A&status=final&_sort=-date',
      'code=E&status=amended&_sort=-date',
      'code=A&date=ge2000-01-01&date=lt2003-01-01&_sort=-date',
      'code=A&date=ge2000-01-01&date=lt2003-01-01',
      'code=E&status=final',
      'code=C&_sort=-date',
    ];
    for (const q of queries) {
      const request = parseSearch('Observation', [...new URLSearchParams(q), ['_count', '20']], { strict: true }).request;
      for (let page = 0; page < 2; page++) {
        seen.length = 0;
        const c = compileSearch(request, { paramIds: spy });
        const byKey = new Map<string, { limit: number; n: number }[]>();
        for (const s of seen) byKey.set(s.key, [...(byKey.get(s.key) ?? []), s]);
        for (const [key, list] of byKey) {
          // A count again only when the earlier one reached its (lower) limit: it could not answer.
          for (let i = 1; i < list.length; i++) expect({ q, page, key, again: list[i] }).toEqual({ q, page, key, again: { ...list[i]!, limit: Math.max(list[i]!.limit, list[i - 1]!.limit + 1) } });
          for (let i = 1; i < list.length; i++) expect({ q, page, key, earlier: list[i - 1]!.n }).toEqual({ q, page, key, earlier: list[i - 1]!.limit });
          if (q.includes('subject=')) expect({ q, page, key, counts: list.length }).toEqual({ q, page, key, counts: 1 });
        }
        if (q.includes('subject=') && SCALED) expect({ q, page, filters: byKey.size }).toEqual({ q, page, filters: 2 });
        const next = c.paginate(db.prepare(c.sql).all(...(c.params as SQLInputValue[])) as { id: string }[]).next;
        if (!next) break;
        request.cursor = next;
      }
    }
  });

  it('leaves the page to the other plans when probed matches lie beyond the extent, or are rare', async () => {
    // B: all in 1990-1992, the last keyed rows of a descending walk: beyond the extent of a probed walk (as many
    // index rows as B counts, up to 4 × the bound). E, in 1993-1995 and tested by its set, is within its
    // extent (16 times its count).
    const clustered = await compare('code=B&_sort=-date&_count=20');
    const set = await compare('code=E&_sort=-date&_count=20');
    // C: rare (below the probe bound): never walked.
    const rare = await compare('code=C&_sort=-date&_count=5');
    // A type without the sort key's values: nothing to walk.
    const none = await compare('code=A&_sort=-value-quantity&_count=20');
    if (!SCALED) return;
    expect(clustered.forward[0]).toBe(false);
    expect(set.forward[0]).toBe(true);
    expect(rare.forward.some(Boolean)).toBe(false);
    expect(none.forward.some(Boolean)).toBe(false);
  });
});

describe('common filters in the set form', () => {
  /** Every page of a search, with the store's plan or with no estimates at all (every filter `IN`). */
  function pages(query: string, estimates: boolean, type = 'Patient'): { ids: string[]; sql: string } {
    const ids = paramIds(db);
    const plain: ParamIds = Object.assign((t: string, c: string) => ids(t, c), {});
    const request = parseSearch(type, [...new URLSearchParams(query)], { strict: true }).request;
    const out: string[] = [];
    let sql = '';
    for (let n = 0; n < 100; n++) {
      const c = compileSearch(request, { paramIds: estimates ? ids : plain });
      if (n === 0) sql = c.sql;
      const { page, next } = c.paginate(db.prepare(c.sql).all(...(c.params as SQLInputValue[])) as { id: string }[]);
      out.push(...page.map((r) => r.id));
      if (!next) break;
      request.cursor = next;
    }
    return { ids: out, sql };
  }

  it('finds the same targets as the IN plan, deleted and updated sources included', () => {
    // E: 375 Observations (between the bound and 4 × the bound) of 5 patients; A: 1,095 (above 4 × the bound:
    // probed per reference); C: 30 (selective: IN).
    const forms: Record<string, string> = {};
    for (const q of ['_has:Observation:patient:code=E', '_has:Observation:patient:code=A', '_has:Observation:patient:code=C', '_has:Observation:patient:code=E&family=F1', '_has:Observation:patient:code=E,C']) {
      for (const count of [2, 20]) {
        const got = pages(`${q}&_count=${count}`, true);
        const want = pages(`${q}&_count=${count}`, false);
        expect(want.sql.includes('EXISTS')).toBe(false);
        expect({ q, count, ids: got.ids }).toEqual({ q, count, ids: want.ids });
        expect(got.ids.length).toBeGreaterThan(0);
        forms[q] = got.sql.includes('+i1.rid IN (') ? 'set' : got.sql.includes('EXISTS') ? 'probe' : 'in';
      }
    }
    if (SCALED)
      expect(forms).toEqual({
        '_has:Observation:patient:code=E': 'set',
        '_has:Observation:patient:code=A': 'probe',
        '_has:Observation:patient:code=C': 'in',
        // family selective: the query is driven by it, the `_has` probed on its rows (its source as a set).
        '_has:Observation:patient:code=E&family=F1': 'set',
        '_has:Observation:patient:code=E,C': 'set',
      });
  });

  it('pages an unsorted search as the IN plan does, the type walked and a filter under 2 × the bound tested by its set', () => {
    // E: 375 (between the bound and 2 × the bound: a set); A: 1,095 (probed); C: 30 (IN, driving); two filters.
    const forms: Record<string, string> = {};
    for (const q of ['code=E', 'code=A', 'code=C', 'code=E&status=final', 'code=A&status=amended', 'code=E,C']) {
      for (const count of [2, 20]) {
        const got = pages(`${q}&_count=${count}`, true, 'Observation');
        const want = pages(`${q}&_count=${count}`, false, 'Observation');
        expect(want.sql.includes('EXISTS') || want.sql.includes('+r.rowid IN (')).toBe(false);
        expect({ q, count, ids: got.ids }).toEqual({ q, count, ids: want.ids });
        expect(got.ids.length).toBeGreaterThan(0);
        forms[`${q}&_count=${count}`] = got.sql.includes('+r.rowid IN (') ? (got.sql.includes('EXISTS') ? 'set+probe' : 'set') : got.sql.includes('EXISTS') ? 'probe' : 'in';
      }
    }
    if (SCALED)
      expect(forms).toEqual({
        'code=E&_count=2': 'set',
        'code=E&_count=20': 'set',
        'code=A&_count=2': 'probe',
        'code=A&_count=20': 'probe',
        'code=C&_count=2': 'in',
        'code=C&_count=20': 'in',
        // status=final (~2,100) is probed, E tested by its set first.
        'code=E&status=final&_count=2': 'set+probe',
        'code=E&status=final&_count=20': 'set+probe',
        // status=amended (~900): above 2 × the bound at both page sizes (2 × 200, 2 × 251): probed, as A is.
        'code=A&status=amended&_count=2': 'probe',
        'code=A&status=amended&_count=20': 'probe',
        // E or C: at least 400 index rows: 2 × the bound of a page of 2 (200), under that of a page of 20 (251).
        'code=E,C&_count=2': 'probe',
        'code=E,C&_count=20': 'set',
      });
  });
});

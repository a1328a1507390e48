/**
 * The row count per resource type behind the probe bound (paramIds(db).typeRows, search-sql.ts): each type is
 * counted once (`SELECT count(*) ... WHERE resource_type = ?`), then kept current by the store's own writes
 * (typeRowsChanged in the session write), with no recount on a timer. Rows written behind the store's back (a
 * raw connection) show whether a recount happened: only resetSearchCaches brings them in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, StatementSync } from 'node:sqlite';
import type { Observation, Resource } from 'fhir/r4';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { paramIds, resetSearchCaches } from '../src/store/sqlite/search-sql.ts';

const dir = mkdtempSync(join(tmpdir(), 'dsp-type-rows-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** probeBound reads the count only when DSP_SEARCH_PROBE_BOUND does not fix the bound. */
const SCALED = process.env.DSP_SEARCH_PROBE_BOUND === undefined || process.env.DSP_SEARCH_PROBE_BOUND === '';

function observation(i: number): Observation {
  return {
    resourceType: 'Observation',
    id: `o${i}`,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: i % 2 ? '8867-4' : '8310-5' }] },
    subject: { reference: 'Patient/p1' },
  };
}

async function put(store: SqliteStore, r: Resource): Promise<void> {
  await store.put(r, { method: 'PUT', index: extractIndex(r) });
}

/** Counts the runs of the per-type row count on any connection, by resource type. */
function spyTypeCounts(): Map<string, number> {
  const runs = new Map<string, number>();
  const get = StatementSync.prototype.get;
  vi.spyOn(StatementSync.prototype, 'get').mockImplementation(function (this: StatementSync, ...args: unknown[]) {
    if (/count\(\*\) AS n FROM resources WHERE resource_type = \?/.test(this.sourceSQL)) {
      runs.set(String(args[0]), (runs.get(String(args[0])) ?? 0) + 1);
    }
    return get.apply(this, args as Parameters<typeof get>);
  });
  return runs;
}

/** A search whose token filter goes through probeBound (a bounded count of its index rows). */
async function searchCode(store: SqliteStore): Promise<number> {
  const { request } = parseSearch('Observation', [['code', 'http://loinc.org|8867-4'], ['_count', '5']], { strict: true });
  return (await store.search(request)).resources.length;
}

/** A resources row written behind the store's back (no index rows: no search finds it). */
function rawRow(path: string, id: string): void {
  const raw = new DatabaseSync(path);
  try {
    raw.prepare("INSERT INTO resources (resource_type, id, version, last_updated, deleted, content) VALUES ('Observation', ?, 1, '2020-01-01T00:00:00.000Z', 0, '{}')").run(id);
  } finally {
    raw.close();
  }
}

describe.skipIf(!SCALED)('row counts per type (probe bound)', () => {
  it('a file database counts a type once, then follows the store\'s creates; deletes keep their rows; no timed recount', async () => {
    const path = join(dir, 'file.db');
    const store = new SqliteStore({ path });
    await store.init();
    try {
      for (let i = 0; i < 30; i++) await put(store, observation(i));
      rawRow(path, 'raw1');
      const runs = spyTypeCounts();
      expect(await searchCode(store)).toBe(5);
      // The store's reader counted Observation once (30 + the raw row); another connection to the file shares it.
      expect(runs.get('Observation')).toBe(1);
      const other = new DatabaseSync(path, { readOnly: true });
      try {
        const ids = paramIds(other);
        expect(ids.typeRows!('Observation')).toBe(31);
        expect(runs.get('Observation')).toBe(1);
        // Behind the store's back: not seen until a recount.
        rawRow(path, 'raw2');
        // Creates (new rows) through the store are followed; an update, a delete (the row stays, flagged) and a
        // create over a deleted resource (its row again) change nothing.
        for (let i = 30; i < 37; i++) await put(store, observation(i));
        await put(store, { ...observation(3), status: 'amended' } as Observation);
        await store.delete('Observation', 'o4', { method: 'DELETE' });
        await store.delete('Observation', 'o5', { method: 'DELETE' });
        await put(store, observation(5));
        expect(ids.typeRows!('Observation')).toBe(38);
        // An hour later: still no recount.
        const now = Date.now();
        vi.spyOn(Date, 'now').mockReturnValue(now + 3_600_000);
        expect(await searchCode(store)).toBe(5);
        expect(ids.typeRows!('Observation')).toBe(38);
        expect(runs.get('Observation')).toBe(1);
        // resetSearchCaches drops the counts of the file: the next use counts again and sees the raw rows.
        resetSearchCaches(other);
        expect(ids.typeRows!('Observation')).toBe(39);
        expect(runs.get('Observation')).toBe(2);
        await searchCode(store);
        expect(runs.get('Observation')).toBe(2);
      } finally {
        other.close();
      }
    } finally {
      await store.close();
    }
  });

  it('a type first counted after writes starts from the table; a clear() starts the counts over', async () => {
    const path = join(dir, 'clear.db');
    const store = new SqliteStore({ path });
    await store.init();
    try {
      for (let i = 0; i < 12; i++) await put(store, observation(i));
      const other = new DatabaseSync(path, { readOnly: true });
      try {
        const ids = paramIds(other);
        // Writes before the first count were not counted anywhere: the count reads them all.
        expect(ids.typeRows!('Observation')).toBe(12);
        await store.clear();
        expect(ids.typeRows!('Observation')).toBe(0);
        for (let i = 0; i < 3; i++) await put(store, observation(i));
        expect(ids.typeRows!('Observation')).toBe(3);
      } finally {
        other.close();
      }
    } finally {
      await store.close();
    }
  });

  it('a rolled-back transaction drops the counts: the next use counts the table again', async () => {
    const path = join(dir, 'rollback.db');
    const store = new SqliteStore({ path });
    await store.init();
    try {
      for (let i = 0; i < 4; i++) await put(store, observation(i));
      const other = new DatabaseSync(path, { readOnly: true });
      try {
        const ids = paramIds(other);
        expect(ids.typeRows!('Observation')).toBe(4);
        await expect(
          store.transaction(async (session) => {
            for (let i = 4; i < 9; i++) await session.put(observation(i), { method: 'PUT', index: extractIndex(observation(i)) });
            throw new Error('rolled back');
          }),
        ).rejects.toThrow('rolled back');
        expect(ids.typeRows!('Observation')).toBe(4);
      } finally {
        other.close();
      }
    } finally {
      await store.close();
    }
  });

  it('an in-memory database (one connection) counts once and follows its creates', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.init();
    try {
      for (let i = 0; i < 10; i++) await put(store, observation(i));
      const runs = spyTypeCounts();
      expect(await searchCode(store)).toBe(5);
      for (let i = 10; i < 20; i++) await put(store, observation(i));
      vi.spyOn(Date, 'now').mockReturnValue(Date.now() + 3_600_000);
      expect(await searchCode(store)).toBe(5);
      expect(runs.get('Observation')).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('a file opened again after its connections closed is counted again', async () => {
    const path = join(dir, 'reopen.db');
    let store = new SqliteStore({ path });
    await store.init();
    for (let i = 0; i < 6; i++) await put(store, observation(i));
    const runs = spyTypeCounts();
    await searchCode(store);
    await store.close();
    rawRow(path, 'raw1');
    store = new SqliteStore({ path });
    await store.init();
    try {
      await searchCode(store);
      expect(runs.get('Observation')).toBe(2);
      const other = new DatabaseSync(path, { readOnly: true });
      try {
        expect(paramIds(other).typeRows!('Observation')).toBe(7);
      } finally {
        other.close();
      }
    } finally {
      await store.close();
    }
  });
});

/**
 * Runs the shared store suite on every adapter: SQLite (in memory) always; the MongoDB adapter always on an
 * in-memory stand-in of the driver (mingo, transactions serialised: see test/support/mongo-memory-client.ts);
 * and on a real MongoDB when MONGODB_URI points at a replica set (see docs/mongodb.md). Each real Mongo run
 * uses a fresh database, dropped at the end.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { DatabaseSync } from 'node:sqlite';
import { defineStoreSuite } from './store-suite.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import type { HistoryQuery, Store, VersionRecord } from '../src/store/port.ts';
import type { Resource } from 'fhir/r4';

defineStoreSuite('sqlite (:memory:)', async () => {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  return store;
});

// The file store has what the in-memory one lacks: a second connection for reads and the WAL fsync of FULL.
const fileDirs: string[] = [];
async function fileStore(synchronous: 'FULL' | 'NORMAL' = 'FULL', historyless?: string[]): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'dsp-store-'));
  fileDirs.push(dir);
  const store = new SqliteStore({ path: join(dir, 'fhir.sqlite'), synchronous, ...(historyless ? { historyless } : {}) });
  await store.init();
  return store;
}
defineStoreSuite('sqlite (file, synchronous FULL)', () => fileStore());
// Patients kept like audit entries (SqliteStoreOptions.historyless): a created version lives in `resources` only
// until it changes; vread, history (every level, paged by lastUpdated) and totals must not tell the difference.
defineStoreSuite('sqlite historyless Patient (file)', () => fileStore('NORMAL', ['Patient']));

describe('sqlite history with historyless types: arms merged in index order, totals from counts', () => {
  it('pages and totals hold every version once, newest first, at every level; no query plan sorts rows', async () => {
    const store = await fileStore('NORMAL', ['AuditEvent', 'Basic']);
    const path = store.path!;
    const writes: VersionRecord[] = [];
    const prepared: string[] = [];
    const prepare = DatabaseSync.prototype.prepare;
    try {
      // Entries created in group commits, each with a head that is changed every commit (copies in history).
      for (let c = 0; c < 8; c++) {
        await store.transaction(async (s) => {
          for (let k = 0; k < 4; k++) writes.push(await s.put({ resourceType: 'AuditEvent', id: `e${c}-${k}` } as Resource, { method: 'POST', index: [] }));
          writes.push(await s.put({ resourceType: 'Basic', id: 'head', code: { text: `c${c}` } } as Resource, { method: c ? 'PUT' : 'POST', index: [] }));
        });
      }
      // An entry changed after all, one deleted, and a type with history copies in the same database.
      writes.push(await store.put({ resourceType: 'AuditEvent', id: 'e3-1', outcome: '4' } as Resource, { method: 'PUT', index: [] }));
      writes.push((await store.delete('AuditEvent', 'e5-0', { method: 'DELETE' }))!);
      writes.push(await store.put({ resourceType: 'Patient', id: 'p1' } as Resource, { method: 'POST', index: [] }));
      writes.push(await store.put({ resourceType: 'Patient', id: 'p1', active: true } as Resource, { method: 'PUT', index: [] }));
      writes.push(await store.put({ resourceType: 'AuditEvent', id: 'last' } as Resource, { method: 'POST', index: [] }));
      for (let i = 1; i < writes.length; i++) expect(writes[i].lastUpdated > writes[i - 1].lastUpdated).toBe(true);

      // The statements the history reads prepare (each shape once per connection) are kept for their plans.
      DatabaseSync.prototype.prepare = function (this: DatabaseSync, sql: string) {
        prepared.push(sql);
        return prepare.call(this, sql);
      } as typeof prepare;
      const queries: Omit<HistoryQuery, 'count'>[] = [
        {},
        { resourceType: 'AuditEvent' },
        { resourceType: 'Basic' },
        { resourceType: 'Basic', id: 'head' },
        { resourceType: 'AuditEvent', id: 'e3-1' },
        { resourceType: 'AuditEvent', id: 'e6-2' },
        { resourceType: 'AuditEvent', since: writes[17].lastUpdated },
        { at: writes[30].lastUpdated, since: writes[3].lastUpdated },
        { resourceType: 'Basic', id: 'head', since: writes[9].lastUpdated },
        { resourceType: 'Patient' },
      ];
      for (const query of queries) {
        const expected = writes
          .filter(
            (w) =>
              (!query.resourceType || w.resourceType === query.resourceType) &&
              (!query.id || w.id === query.id) &&
              (!query.since || w.lastUpdated > query.since) &&
              (!query.at || w.lastUpdated <= query.at),
          )
          .reverse()
          .map((w) => `${w.resourceType}/${w.id}/${w.versionId} ${w.method} ${w.lastUpdated}`);
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.history({ ...query, count: 3, ...(cursor ? { cursor } : {}) });
          expect(page.total, JSON.stringify(query)).toBe(expected.length);
          seen.push(...page.entries.map((e) => `${e.resourceType}/${e.id}/${e.versionId} ${e.method} ${e.lastUpdated}`));
          cursor = page.next;
        } while (cursor);
        expect(seen, JSON.stringify(query)).toEqual(expected);
      }
    } finally {
      DatabaseSync.prototype.prepare = prepare;
      await store.close();
    }
    // Each page reads its arms (history, and each historyless type's versions without a copy) newest first
    // through an index and merges them: no temporary B-tree (a sort of every version, content included).
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      const history = prepared.filter((sql) => /\bhistory\b/.test(sql));
      expect(history.filter((sql) => sql.includes('UNION ALL')).length).toBeGreaterThanOrEqual(8);
      for (const sql of history) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join('\n');
        expect(plan, sql).not.toMatch(/TEMP B-TREE/);
        if (sql.includes('UNION ALL')) expect(plan, sql).toMatch(/MERGE \(UNION ALL\)/);
      }
    } finally {
      db.close();
    }
  });
});

describe('sqlite historyless types are kept in the database', () => {
  const historyRows = (path: string, type: string): number => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM history WHERE resource_type = ?').get(type) as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it('a store opened later without the option reads and changes those types the same way; a stored type stays', async () => {
    const first = await fileStore('NORMAL', ['AuditEvent']);
    const path = first.path!;
    const created = await first.put({ resourceType: 'AuditEvent', id: 'a1', outcome: '0' } as Resource, { method: 'POST', index: [] });
    await first.put({ resourceType: 'AuditEvent', id: 'a2', outcome: '0' } as Resource, { method: 'POST', index: [] });
    await first.close();
    expect(historyRows(path, 'AuditEvent')).toBe(0);

    // Reopened without the option: the never-changed entries are still there to vread and in every history.
    const plain = new SqliteStore({ path, synchronous: 'NORMAL' });
    await plain.init();
    try {
      expect(await plain.version('AuditEvent', 'a1', 1)).toMatchObject({ versionId: 1, method: 'POST', lastUpdated: created.lastUpdated });
      const instance = await plain.history({ resourceType: 'AuditEvent', id: 'a1', count: 10 });
      expect(instance.entries.map((e) => e.versionId)).toEqual([1]);
      expect(instance.total).toBe(1);
      expect((await plain.history({ resourceType: 'AuditEvent', count: 10 })).entries.map((e) => e.id)).toEqual(['a2', 'a1']);
      expect((await plain.history({ count: 10 })).total).toBe(2);
      // An update through it copies version 1 into history first: both versions stay.
      await plain.put({ resourceType: 'AuditEvent', id: 'a1', outcome: '8' } as Resource, { method: 'PUT', index: [] });
      expect((await plain.version('AuditEvent', 'a1', 1))?.resource).toMatchObject({ outcome: '0', meta: { versionId: '1' } });
      expect((await plain.version('AuditEvent', 'a1', 2))?.resource).toMatchObject({ outcome: '8' });
      const both = await plain.history({ resourceType: 'AuditEvent', id: 'a1', count: 10 });
      expect(both.entries.map((e) => [e.versionId, e.method])).toEqual([
        [2, 'PUT'],
        [1, 'POST'],
      ]);
      // A delete too; and a create after clear() is still kept without a history copy.
      await plain.delete('AuditEvent', 'a2', { method: 'DELETE' });
      expect((await plain.version('AuditEvent', 'a2', 1))?.resource).toMatchObject({ id: 'a2', outcome: '0' });
      expect((await plain.history({ resourceType: 'AuditEvent', count: 10 })).total).toBe(4);
      await plain.clear();
      await plain.put({ resourceType: 'AuditEvent', id: 'a3' } as Resource, { method: 'POST', index: [] });
    } finally {
      await plain.close();
    }
    expect(historyRows(path, 'AuditEvent')).toBe(0);

    // Another type given later joins the stored one; neither can be dropped.
    const more = new SqliteStore({ path, synchronous: 'NORMAL', historyless: ['Basic'] });
    await more.init();
    try {
      await more.put({ resourceType: 'Basic', id: 'b1', code: { text: 'x' } } as Resource, { method: 'POST', index: [] });
      await more.put({ resourceType: 'AuditEvent', id: 'a4' } as Resource, { method: 'POST', index: [] });
      await more.put({ resourceType: 'Patient', id: 'p1' } as Resource, { method: 'POST', index: [] });
    } finally {
      await more.close();
    }
    expect([historyRows(path, 'Basic'), historyRows(path, 'AuditEvent'), historyRows(path, 'Patient')]).toEqual([0, 0, 1]);
    const last = new SqliteStore({ path, synchronous: 'NORMAL' });
    await last.init();
    try {
      expect((await last.history({ count: 10 })).entries.map((e) => `${e.resourceType}/${e.id}`)).toEqual(['Patient/p1', 'AuditEvent/a4', 'Basic/b1', 'AuditEvent/a3']);
    } finally {
      await last.close();
    }
  });
});

describe('sqlite durability: FULL commits wait for a WAL fsync run off the event loop', () => {
  it('every acknowledged commit is covered by a finished fsync, concurrent commits share fsyncs, reads wait for pending ones', async () => {
    const store = await fileStore();
    try {
      const before = store.syncStats();
      // 40 writers at once: each resolves only after an fdatasync that started after its COMMIT.
      const writes = Array.from({ length: 40 }, (_, i) =>
        store.put({ resourceType: 'Patient', id: `p${i}`, active: true } as Resource, { method: 'PUT', index: [] }).then(() => store.syncStats()),
      );
      const seen = await Promise.all(writes);
      const after = store.syncStats();
      expect(after.commits - before.commits).toBe(40);
      // No write was acknowledged before an fsync had finished.
      for (const s of seen) expect(s.syncs).toBeGreaterThan(before.syncs);
      expect(after.durableThrough).toBe(after.commits);
      expect(after.syncs - before.syncs).toBeGreaterThan(0);
      // Group commit: commits made while an fsync ran shared the next one.
      expect(after.syncs - before.syncs).toBeLessThan(40);
      // A commit that need not be durable does not wait; a read started after it waits until it is on disk.
      await store.transaction((s) => s.put({ resourceType: 'Patient', id: 'lazy', active: false } as Resource, { method: 'PUT', index: [] }), { durable: false });
      const pending = store.syncStats();
      expect(pending.durableThrough).toBeLessThan(pending.commits);
      const read = await store.current('Patient', 'lazy');
      expect(read?.resource).toMatchObject({ id: 'lazy', active: false });
      expect(store.syncStats().durableThrough).toBe(pending.commits);
    } finally {
      await store.close();
    }
  });

  it('checkpoints run in a worker thread while writes go on, and nothing is lost across a reopen', async () => {
    const store = await fileStore();
    const path = join(fileDirs[fileDirs.length - 1], 'fhir.sqlite');
    try {
      for (let i = 0; i < 600; i++) await store.put({ resourceType: 'Patient', id: `c${i}`, gender: 'other' } as Resource, { method: 'PUT', index: [] });
      // The worker answers asynchronously: give it the time to finish the checkpoints it was asked for.
      for (let i = 0; i < 2400 && store.syncStats().checkpoints < 2; i++) await new Promise((r) => setTimeout(r, 25));
      expect(store.syncStats().checkpoints).toBeGreaterThanOrEqual(2);
    } finally {
      await store.close();
    }
    const again = new SqliteStore({ path });
    await again.init();
    try {
      expect(await again.count('Patient')).toBe(600);
      expect((await again.current('Patient', 'c599'))?.resource).toMatchObject({ gender: 'other' });
    } finally {
      await again.close();
    }
  }, 120_000);

  it('a transaction that changed nothing waits for no fsync and makes no reader wait', async () => {
    const store = await fileStore();
    try {
      await store.put({ resourceType: 'Patient', id: 'kept' } as Resource, { method: 'PUT', index: [] });
      const before = store.syncStats();
      // A delete of a resource that does not exist writes nothing.
      expect(await store.delete('Patient', 'never-there', { method: 'DELETE' })).toBeUndefined();
      expect(store.syncStats()).toMatchObject({ commits: before.commits, syncs: before.syncs });
      await store.put({ resourceType: 'Patient', id: 'kept2' } as Resource, { method: 'PUT', index: [] });
      expect(store.syncStats().commits).toBe(before.commits + 1);
    } finally {
      await store.close();
    }
  });

  it('a failed fsync fails its commit, the commits queued behind it and every later write (503): nothing is called durable over lost pages', async () => {
    const fs = (await import('node:fs')).default;
    const { syncBuiltinESMExports } = await import('node:module');
    const store = await fileStore();
    const original = fs.fdatasync;
    let calls = 0;
    fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      // The first fsync fails, late (while a second commit queues behind it); later ones would succeed, as
      // Linux lets them after marking the failed pages clean.
      if (++calls === 1) setTimeout(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })), 60);
      else original(fd, cb);
    }) as typeof fs.fdatasync;
    syncBuiltinESMExports();
    try {
      const first = store.put({ resourceType: 'Patient', id: 'f1' } as Resource, { method: 'PUT', index: [] });
      first.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 15));
      const second = store.put({ resourceType: 'Patient', id: 'f2' } as Resource, { method: 'PUT', index: [] });
      second.catch(() => undefined);
      await expect(first).rejects.toMatchObject({ status: 503 });
      await expect(second).rejects.toMatchObject({ status: 503 });
      await expect(store.put({ resourceType: 'Patient', id: 'f3' } as Resource, { method: 'PUT', index: [] })).rejects.toMatchObject({ status: 503 });
      expect(store.syncStats().durableThrough).toBe(0);
      // A read that would show the undurable commits is refused too.
      await expect(store.current('Patient', 'f1')).rejects.toMatchObject({ status: 503 });
    } finally {
      fs.fdatasync = original;
      syncBuiltinESMExports();
      await store.close();
    }
  });

  it('a process ends once its store is closed, also when close() comes while a checkpoint runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsp-store-close-'));
    fileDirs.push(dir);
    const script = join(dir, 'close.ts');
    const storeModule = join(process.cwd(), 'src/store/sqlite/store.ts');
    writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(storeModule)};
const store = new SqliteStore({ path: ${JSON.stringify(join(dir, 'c.sqlite'))}, synchronous: 'NORMAL' });
await store.init();
// 300 commits ask for a checkpoint; close() follows at once, while the worker still runs it.
for (let i = 0; i < 300; i++) await store.put({ resourceType: 'Patient', id: 'p' + i }, { method: 'PUT', index: [] });
await store.close();
console.log('closed');
`,
    );
    const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 60_000 });
    // Exit 13 is Node's "unsettled top-level await": the loop ended while close() still waited.
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('closed');
  }, 90_000);

  it('synchronous NORMAL runs no fsync of its own', async () => {
    const store = await fileStore('NORMAL');
    try {
      await Promise.all(Array.from({ length: 5 }, (_, i) => store.put({ resourceType: 'Patient', id: `n${i}` }, { method: 'PUT', index: [] })));
      expect(store.syncStats()).toMatchObject({ commits: 0, syncs: 0 });
      expect((await store.current('Patient', 'n4'))?.resource?.id).toBe('n4');
    } finally {
      await store.close();
      for (const d of fileDirs.splice(0)) rmSync(d, { recursive: true, force: true });
    }
  });
});

defineStoreSuite('mongodb adapter on the in-memory driver stand-in', async () => {
  // Imported here so that a broken Mongo adapter never stops the SQLite run from loading.
  const { MongoStore } = await import('../src/store/mongo/store.ts');
  const { memoryMongoClient } = await import('./support/mongo-memory-client.ts');
  const store = new MongoStore({ uri: 'memory:', client: memoryMongoClient() });
  await store.init();
  return store;
});

describe('mongodb adapter: server checks', () => {
  it('init() refuses a standalone server and says how to start a replica set', async () => {
    const { MongoStore } = await import('../src/store/mongo/store.ts');
    const { memoryMongoClient } = await import('./support/mongo-memory-client.ts');
    const store = new MongoStore({ uri: 'memory:', client: memoryMongoClient({ standalone: true }) });
    await expect(store.init()).rejects.toThrow(/replica set.*--replSet rs0.*rs\.initiate\(\)/s);
  });
});

const mongoUri = process.env.MONGODB_URI;
if (mongoUri) {
  const dbName = `dsp_fhir_test_${Date.now()}_${randomBytes(3).toString('hex')}`;
  defineStoreSuite(`mongodb (${dbName})`, async () => {
    const { MongoStore } = await import('../src/store/mongo/store.ts');
    const store = new MongoStore({ uri: mongoUri, dbName });
    await store.init();
    // Drop the test database when the suite closes the store.
    const close = store.close.bind(store);
    store.close = async () => {
      const client = new MongoClient(mongoUri);
      try {
        await client.db(dbName).dropDatabase();
      } finally {
        await client.close();
        await close();
      }
    };
    return store as Store;
  });
} else {
  describe.skip('store port semantics: mongodb (MONGODB_URI is not set; see docs/mongodb.md)', () => {
    it('runs the shared store suite against MongoDB', () => {});
  });
}

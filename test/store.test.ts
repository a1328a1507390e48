/**
 * Runs the shared store suite on every adapter: SQLite (in memory) always; the MongoDB adapter always on an
 * in-memory stand-in of the driver (mingo, transactions serialised: see test/support/mongo-memory-client.ts);
 * and on a real MongoDB when MONGODB_URI points at a replica set (see docs/mongodb.md). Each real Mongo run
 * uses a fresh database, dropped at the end.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { defineStoreSuite } from './store-suite.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import type { Store } from '../src/store/port.ts';

defineStoreSuite('sqlite (:memory:)', async () => {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  return store;
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

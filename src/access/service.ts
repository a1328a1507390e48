/**
 * Per-server access runtime: the token verifier and signing key, the audit trail, the key binding paging
 * links to principals, the jti replay cache. One per store (so every Context over the same store shares it).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AuthConfig, Config } from '../config.ts';
import type { Store } from '../store/port.ts';
import { AUDIT_HISTORYLESS, AuditLog } from '../audit/chain.ts';
import { type AuditTrail, AuditTrailWorker } from '../audit/writer.ts';
import { PolicyCache, storedFactsOf } from './decision.ts';
import { SqliteStore } from '../store/sqlite/store.ts';
import { ReplayCache, type SigningKey, TokenVerifier, loadSigningKey } from './tokens.ts';

export interface AccessRuntime {
  auth: AuthConfig;
  key: SigningKey;
  verifier: TokenVerifier;
  /** In a writer thread for the embedded store's audit file (writer.ts); in process otherwise. */
  audit: AuditTrail;
  /** The audit trail's own store: AuditEvents never mix with clinical data (counts, history, searches). */
  auditStore: Store;
  cursorKey: Buffer;
  replay: ReplayCache;
  /** Patient policies between requests: 60 s on the embedded store (one process), 5 s on MongoDB. */
  policies: PolicyCache;
}

const runtimes = new WeakMap<Store, Promise<AccessRuntime>>();

export function defaultAuth(): AuthConfig {
  return { mode: 'development', audience: 'dsp-fhir', issuers: [], clients: [] };
}

/**
 * The audit store: `audit.sqlite` in the data folder next to the embedded store, the `<db>_audit` database
 * next to MongoDB's, or in memory for tests and embedding (no key file configured).
 */
export async function openAuditStore(config: Config, main?: Store): Promise<Store> {
  let store: Store;
  if (config.mongodbUri && (!main || main.kind === 'mongodb')) {
    const { MongoStore } = await import('../store/mongo/store.ts');
    store = new MongoStore({ uri: config.mongodbUri, dbName: `${config.mongodbDb}_audit` });
  } else {
    store = new SqliteStore({ path: config.auth?.keyFile ? join(config.dataDir, 'audit.sqlite') : ':memory:', synchronous: config.sqliteSynchronous, historyless: AUDIT_HISTORYLESS });
  }
  await store.init();
  return store;
}

export function accessRuntime(ctx: { store: Store; config: Config }): Promise<AccessRuntime> {
  let rt = runtimes.get(ctx.store);
  if (!rt) {
    // The embedded clinical store keeps each version's access facts beside it from now on: reads decide on them
    // without parsing the stored JSON (decision.ts storedFactsOf; rows written before fall back to the resource).
    if (ctx.store instanceof SqliteStore) ctx.store.accessFacts ??= storedFactsOf;
    const auth = ctx.config.auth ?? defaultAuth();
    rt = (async () => {
      const key = await loadSigningKey(auth.keyFile);
      const auditStore = await openAuditStore(ctx.config, ctx.store);
      const waitForDisk = ctx.config.auditSync === 'disk';
      const auditFile = auditStore instanceof SqliteStore && ctx.config.auditThread ? auditStore.path : undefined;
      let audit: AuditTrail;
      if (auditFile) {
        const writer = new AuditTrailWorker({ path: auditFile, synchronous: ctx.config.sqliteSynchronous, waitForDisk });
        await writer.start();
        audit = writer;
      } else audit = new AuditLog(auditStore, { waitForDisk });
      return {
        auth,
        key,
        verifier: new TokenVerifier(auth, key),
        audit,
        auditStore,
        cursorKey: randomBytes(32),
        replay: new ReplayCache(),
        policies: new PolicyCache(ctx.store.kind === 'sqlite' ? 60_000 : 5_000),
      };
    })();
    runtimes.set(ctx.store, rt);
  }
  return rt;
}

/**
 * Assembles the server: store (embedded SQLite, or MongoDB when MONGODB_URI is set), the FHIR context,
 * the HTTP app; loads examples/ into an empty store on first start.
 */
import { join } from 'node:path';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Config } from './config.ts';
import type { Store } from './store/port.ts';
import { SqliteStore } from './store/sqlite/store.ts';
import type { Context } from './fhir/interactions.ts';
import { createApp } from './http/app.ts';
import { createLogger, type Logger } from './logger.ts';
import { loadExamples } from './examples.ts';
import { syncSearchParameters } from './search/reindex.ts';
import { terminologyService } from './terminology/service.ts';
import { accessRuntime } from './access/service.ts';
import { cancelValidationWarmUp, warmUpValidationInBackground } from './validation/index.ts';

export async function openStore(config: Config): Promise<Store> {
  let store: Store;
  if (config.mongodbUri) {
    const { MongoStore } = await import('./store/mongo/store.ts');
    store = new MongoStore({ uri: config.mongodbUri, dbName: config.mongodbDb });
  } else {
    store = new SqliteStore({ path: join(config.dataDir, 'fhir.sqlite'), synchronous: config.sqliteSynchronous });
  }
  await store.init();
  return store;
}

export interface RunningServer {
  ctx: Context;
  server: Server;
  url: string;
  logger: Logger;
  close(): Promise<void>;
}

export async function startServer(config: Config): Promise<RunningServer> {
  const logger = createLogger(config.logLevel);
  const store = await openStore(config);
  const ctx: Context = { store, config };
  // SearchParameters defined on the server join the registry before the first request.
  await syncSearchParameters(store, false);
  // Terminology content (terminology/: the eHDSI MVC) is loaded before the first request, not by it.
  const tx = terminologyService().load();
  logger.info({ resources: tx.loadStats.resources, ms: tx.loadStats.ms }, 'terminology loaded');
  // The signing key and the audit store are opened before listening: a failure stops the start with its
  // message instead of answering 500 to every request. Before the examples too: the access runtime makes the
  // embedded store keep each version's access facts, which the examples' rows should have like any other.
  const access = await accessRuntime(ctx);
  if (config.loadExamples && (await store.count()) === 0) {
    const n = await loadExamples(ctx, config.examplesDir);
    logger.info({ resources: n, dir: config.examplesDir }, 'examples loaded into the empty store');
  }
  const app = createApp({ ctx, logger });
  const server = await new Promise<Server>((resolve, reject) => {
    // HTTPS when configured; with trust anchors, client certificates are requested and checked by the
    // authentication step (an unknown or untrusted certificate is a 401 there, not a TLS failure).
    const s: Server = config.tls
      ? createHttpsServer({ cert: config.tls.cert, key: config.tls.key, ...(config.tls.ca ? { ca: config.tls.ca, requestCert: true, rejectUnauthorized: false } : {}) }, app)
      : createHttpServer(app);
    s.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  // Idle keep-alive sockets stay open longer than a large transaction can keep the event loop busy, so a
  // client never has a reused connection closed under a request it already sent.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `${config.tls ? 'https' : 'http'}://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port}/fhir`;
  logger.info({ url, store: store.kind }, 'dsp-fhir-server listening');
  // The validator's one-off costs (packages, snapshots, value sets: several seconds) are paid in the
  // background once listening, so the first $validate or validating write is fast. DSP_VALIDATION_WARMUP=off skips it.
  if (config.validationWarmUp) {
    const warm = warmUpValidationInBackground();
    void warm.finished.then(() => logger.info({ ms: warm.ms, steps: warm.steps, ...(warm.error ? { error: warm.error } : {}) }, warm.done ? 'validation warm-up done' : 'validation warm-up stopped'));
  }
  return {
    ctx,
    server,
    url,
    logger,
    async close() {
      cancelValidationWarmUp();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Entries still queued (answers that did not wait for their commit) are written before the stores close.
      await access.audit.close();
      await access.auditStore.close();
      await store.close();
    },
  };
}

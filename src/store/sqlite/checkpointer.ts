/**
 * Worker thread that checkpoints an embedded store's WAL into its database file on a connection of its own,
 * so that the copy and the fsyncs a checkpoint makes never block the server's event loop (the writer
 * connection runs with `wal_autocheckpoint = 0`; see `Checkpointer` in store.ts). PASSIVE: it copies what no
 * reader still needs and never waits for the writer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DatabaseSync } from 'node:sqlite';

const db = new DatabaseSync((workerData as { path: string }).path);
db.exec('PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

parentPort!.on('message', (message: string) => {
  if (message === 'close') {
    db.close();
    parentPort!.close();
    return;
  }
  try {
    const row = checkpoint.get() as { busy: number; log: number; checkpointed: number };
    parentPort!.postMessage({ ok: true, log: row.log, checkpointed: row.checkpointed });
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) });
  }
});

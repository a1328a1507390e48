/**
 * The audit trail's writer thread (see AuditTrailWorker in writer.ts): it owns the audit database's writes.
 * Batches of entries arrive in chain order; each is linked (hash chain), committed and, in the background,
 * indexed by an AuditLog of its own, exactly as the in-process trail does, but off the server's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { AuditEvent } from 'fhir/r4';
import { SqliteStore } from '../store/sqlite/store.ts';
import { AUDIT_HISTORYLESS, AuditLog } from './chain.ts';

export interface WriterData {
  path: string;
  synchronous: 'FULL' | 'NORMAL';
  waitForDisk: boolean;
}
export type WriterRequest =
  | { id: number; type: 'write'; /** `{ event: AuditEvent; durable: boolean }[]` as JSON. */ json: string }
  | { id: number; type: 'indexed' }
  | { id: number; type: 'close' };
export type WriterReply = { id: number; ok: true; written: number } | { id: number; ok: false; error: string } | { id: 0; ok: true; ready: true };

const port = parentPort!;
const data = workerData as WriterData;
const store = new SqliteStore({ path: data.path, synchronous: data.synchronous, historyless: AUDIT_HISTORYLESS });
await store.init();
// inlineIndexUpTo 0: in this thread the background index chunks do not hold the server's event loop, which is
// what inline index rows avoid on the main thread; the 12-entry default was measured there only, not here.
const log = new AuditLog(store, { waitForDisk: data.waitForDisk, inlineIndexUpTo: 0 });

port.on('message', (m: WriterRequest) => {
  const work = async (): Promise<void> => {
    if (m.type === 'write') {
      for (const e of JSON.parse(m.json) as { event: AuditEvent; durable: boolean }[]) log.record(e.event, { durable: e.durable });
      await log.flush();
    } else if (m.type === 'indexed') {
      await log.indexed();
    } else {
      await log.close();
      await store.close();
    }
  };
  work().then(
    () => {
      port.postMessage({ id: m.id, ok: true, written: log.written } satisfies WriterReply);
      if (m.type === 'close') port.close();
    },
    (err: unknown) => port.postMessage({ id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies WriterReply),
  );
});
port.postMessage({ id: 0, ok: true, ready: true } satisfies WriterReply);

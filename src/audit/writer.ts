/**
 * The audit trail as the request handlers see it (`AuditTrail`), and its worker-thread form for the embedded
 * store: `AuditTrailWorker` sends each turn's entries to a writer thread (worker.ts) that links, commits and
 * indexes them, so that an audited read spends on the event loop only the building of its entry and one
 * message, not the hashing, the rows, the COMMIT and the indexing. The answer still waits until its entry is
 * committed (and on disk with `DSP_AUDIT_SYNC=disk`). Reads of the trail (AuditEvent searches, $access-log,
 * verification) go to the audit store in the server's thread, which sees every committed entry (WAL).
 */
import { Worker } from 'node:worker_threads';
import type { AuditEvent } from 'fhir/r4';
import type { WriterData, WriterReply, WriterRequest } from './worker.ts';

/** What request handlers use: the in-process AuditLog (chain.ts) and AuditTrailWorker both are one. */
export interface AuditTrail {
  record(event: AuditEvent, options?: { durable?: boolean }): void;
  /** Resolves once everything recorded so far is committed (a failed write rejects: the answer must not go). */
  flush(): Promise<void>;
  /** Resolves once every committed entry has its search index rows. */
  indexed(): Promise<void>;
  /** Entries written so far. */
  readonly written: number;
  /** Writes what is queued and stops (the audit store is closed by its owner). */
  close?(): Promise<void>;
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class AuditTrailWorker implements AuditTrail {
  private readonly worker: Worker;
  private readonly ready: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private queue: { event: AuditEvent; durable: boolean }[] = [];
  private window: Promise<void> | undefined;
  /** The last batch sent (what `flush()` waits for when nothing is queued). */
  private last: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  written = 0;

  constructor(data: WriterData) {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: data });
    // The writer keeps the process alive only while a request to it is pending (start-up included; see send()).
    this.ready = new Promise<void>((resolve, reject) => {
      this.pending.set(0, { resolve, reject });
    });
    this.ready.catch(() => undefined);
    this.worker.on('message', (m: WriterReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (!this.pending.size) this.worker.unref();
      if (m.ok) {
        if ('written' in m) this.written = m.written;
        p.resolve();
      } else p.reject(new Error(`audit trail: ${m.error}`));
    });
    const fail = (err: Error) => {
      // Fail closed: no answer that waits for its entry goes out once the writer is gone.
      this.failure ??= err;
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(new Error(`audit trail writer failed: ${err.message}`)));
    this.worker.on('exit', (code) => fail(new Error(`audit trail writer stopped (exit code ${code})`)));
  }

  /** Resolves when the writer thread has opened the audit store (start-up fails if it cannot). */
  start(): Promise<void> {
    return this.ready;
  }

  record(event: AuditEvent, options?: { durable?: boolean }): void {
    this.queue.push({ event, durable: options?.durable !== false });
  }

  flush(): Promise<void> {
    if (!this.queue.length) return this.last;
    // Every entry recorded during this turn of the event loop goes in one message (one group commit).
    this.window ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.window = undefined;
      const entries = this.queue;
      this.queue = [];
      const sent = this.send({ type: 'write', entries });
      this.last = sent.catch(() => undefined);
      return sent;
    });
    return this.window;
  }

  async indexed(): Promise<void> {
    await this.flush().catch(() => undefined);
    await this.send({ type: 'indexed' });
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    if (this.failure) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    await this.send({ type: 'close' }).catch(() => undefined);
    await exited;
  }

  private send(request: { type: 'write'; entries: { event: AuditEvent; durable: boolean }[] } | { type: 'indexed' } | { type: 'close' }): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      if (!this.pending.size) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      // Entries travel as one JSON text: a string crosses threads in one copy, where the structured clone of
      // the AuditEvent objects cost ~15 % of an audited read's CPU (measured, bench/run.ts profile).
      const message: WriterRequest = request.type === 'write' ? { id, type: 'write', json: JSON.stringify(request.entries) } : { id, type: request.type };
      this.worker.postMessage(message);
    });
  }
}

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
import { FhirError } from '../fhir/outcome.ts';
import { GroupWindow } from './window.ts';

/** What request handlers use: the in-process AuditLog (chain.ts) and AuditTrailWorker both are one. */
export interface AuditTrail {
  record(event: AuditEvent, options?: { durable?: boolean }): void;
  /**
   * Resolves once everything recorded so far is committed (a failed write rejects, with a 503, this and every
   * later flush: the answer must not go). `lazy`: the caller's answer does not wait (window.ts).
   */
  flush(options?: { lazy?: boolean }): Promise<void>;
  /** Resolves once every committed entry has its search index rows. */
  indexed(): Promise<void>;
  /** Entries written so far. */
  readonly written: number;
  /** A write failed or the writer is gone: every answer is refused from now on (fail closed). */
  readonly failed: boolean;
  /** Writes what is queued and stops (the audit store is closed by its owner). */
  close(): Promise<void>;
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
  private readonly window = new GroupWindow(() => this.sendQueued());
  /** The last batch sent (what `flush()` waits for when nothing is queued). */
  private last: Promise<void> = Promise.resolve();
  private failure: FhirError | undefined;
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
      } else p.reject(this.fail(m.error));
    });
    this.worker.on('error', (err) => this.fail(`the writer thread failed: ${err.message}`));
    this.worker.on('exit', (code) => this.fail(`the writer thread stopped (exit code ${code})`));
  }

  /**
   * Fail closed: once a write failed or the writer is gone, the trail may have a gap, and no answer that waits
   * for its entry goes out (503) until the server is restarted.
   */
  private fail(reason: string): FhirError {
    this.failure ??= new FhirError(503, `The audit trail cannot be written (${reason}); no answer is given until it can`, 'transient');
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    return this.failure;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Resolves when the writer thread has opened the audit store (start-up fails if it cannot). */
  start(): Promise<void> {
    return this.ready;
  }

  record(event: AuditEvent, options?: { durable?: boolean }): void {
    // After a failure nothing is sent again (flush() rejects at once): queuing would only grow memory per request.
    if (this.failure) return;
    this.queue.push({ event, durable: options?.durable !== false });
  }

  flush(options?: { lazy?: boolean }): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.queue.length && !this.window.pending) return this.last;
    // Every entry recorded while the window is open goes in one message (one group commit).
    return this.window.schedule(options?.lazy === true);
  }

  private sendQueued(): Promise<void> {
    const entries = this.queue;
    this.queue = [];
    if (!entries.length) return this.last;
    const sent = this.send({ type: 'write', entries });
    this.last = sent;
    sent.catch(() => undefined);
    return sent;
  }

  async indexed(): Promise<void> {
    await this.flush().catch(() => undefined);
    await this.send({ type: 'indexed' });
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    if (this.failure) {
      await this.worker.terminate();
      return;
    }
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

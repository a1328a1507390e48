/**
 * The tamper-evident audit trail: AuditEvents kept in the audit store, each carrying an extension with its
 * sequence number, the previous entry's hash and its own hash: SHA-256 over the previous hash, the sequence
 * number and the JSON text of the event without its chain extension and without the store's
 * `meta.versionId` / `meta.lastUpdated` (so `meta.tag` flags are covered). The chain head (last sequence
 * number and hash) is a `Basic` resource in the same store, a new one written in the same transaction as
 * the entries, so that a truncated trail (or a removed head) is detected as well.
 *
 * Entries are queued by the request handlers and written in group commits: every entry queued during one
 * turn of the event loop goes into one store transaction (entries + head), which the HTTP layer awaits
 * before it answers. A commit of sequential traffic (at most one answer waiting on it and on the commits just
 * before it, at most 12 entries: INLINE_INDEX_UP_TO) writes its entries' search index rows in the same
 * transaction; any other commit (requests in flight together) writes the entries and their chain links only,
 * and their index rows are built later (when the server is idle, when the backlog grows large, and always
 * before an AuditEvent search runs: `indexed()`), so a search still sees every entry.
 */
import { createHash, randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { AuditEvent, Basic, Extension, Resource } from 'fhir/r4';
import type { Store } from '../store/port.ts';
import type { Filter, IndexValue } from '../search/types.ts';
import { auditIndexValues } from './index-values.ts';
import { FhirError } from '../fhir/outcome.ts';
import { GroupWindow } from './window.ts';

export const CHAIN_URL = 'https://dsp.lu/fhir/StructureDefinition/audit-chain';
export const GENESIS = '0'.repeat(64);
/** The chain head's resources in the audit store: one per group commit, the newest (highest id) counts. */
export const HEAD_TYPE = 'Basic';
/**
 * Types of the audit store written once and never changed (entries and heads): the embedded store keeps them
 * without a history copy (SqliteStoreOptions.historyless; measured ~30-40 µs of CPU less per entry).
 */
export const AUDIT_HISTORYLESS: readonly string[] = ['AuditEvent', HEAD_TYPE];

/**
 * The id of the head written with entry `seq`: zero-padded, so the newest head is the highest id. A new head
 * per commit is an INSERT next to the previous one, where updating one head row would also clear its search
 * index rows on every commit (measured: ~30 µs per entry at 7 entries per commit, a quarter of the write).
 */
export function headId(seq: number): string {
  return `audit-head-${String(seq).padStart(15, '0')}`;
}

export interface ChainLink {
  seq: number;
  prev: string;
  hash: string;
}

export function chainOf(event: Resource): ChainLink | undefined {
  const ext = (event as AuditEvent).extension?.find((e) => e.url === CHAIN_URL);
  if (!ext) return undefined;
  const get = (url: string) => ext.extension?.find((e) => e.url === url);
  const seq = get('seq')?.valueInteger;
  const prev = get('prev')?.valueString;
  const hash = get('hash')?.valueString;
  return seq !== undefined && prev && hash ? { seq, prev, hash } : undefined;
}

/**
 * The text an entry's hash covers: the event as stored, without its chain extension and the store's
 * versionId / lastUpdated. JSON.parse keeps key order and JSON.stringify of parsed JSON gives the same text,
 * so the text computed from the stored copy equals the one computed before the write (a key order change
 * counts as a change).
 */
export function hashedText(event: Resource): string {
  const { meta, extension, ...rest } = event as AuditEvent;
  const body: Record<string, unknown> = rest;
  if (extension) {
    const others = extension.filter((e) => e.url !== CHAIN_URL);
    if (others.length) body.extension = others;
  }
  if (meta) {
    const { versionId: _v, lastUpdated: _l, ...kept } = meta;
    for (const _k in kept) {
      body.meta = kept;
      break;
    }
  }
  return JSON.stringify(body);
}

/** The hash an entry must carry, given the previous hash. */
export function entryHash(event: Resource, prev: string, seq: number): string {
  return createHash('sha256').update(`${prev}\n${seq}\n`).update(hashedText(event)).digest('hex');
}

function linkExtension(link: ChainLink): Extension {
  return {
    url: CHAIN_URL,
    extension: [
      { url: 'seq', valueInteger: link.seq },
      { url: 'prev', valueString: link.prev },
      { url: 'hash', valueString: link.hash },
    ],
  };
}

export interface Head {
  seq: number;
  hash: string;
  /** lastUpdated of the newest entry whose search index rows are written (every older one has them too). */
  indexedThrough?: string;
}

function headResource(head: Head): Basic {
  const ext: Extension[] = [
    { url: 'seq', valueInteger: head.seq },
    { url: 'hash', valueString: head.hash },
  ];
  if (head.indexedThrough) ext.push({ url: 'indexedThrough', valueInstant: head.indexedThrough });
  return {
    resourceType: 'Basic',
    id: headId(head.seq),
    code: { coding: [{ system: CHAIN_URL, code: 'head' }], text: 'audit trail chain head' },
    extension: [{ url: CHAIN_URL, extension: ext }],
  };
}

/** The newest chain head kept in the audit store; undefined when there is none (or it is unreadable). */
export async function readHead(store: Store): Promise<Head | undefined> {
  const page = await store.search({ resourceTypes: [HEAD_TYPE], filters: [], sort: [{ param: '_id', descending: true }], count: 1, total: 'none', include: [] });
  const newest = page.resources[0] as Basic | undefined;
  if (!newest) return undefined;
  const ext = newest.extension?.find((e) => e.url === CHAIN_URL)?.extension ?? [];
  const seq = ext.find((e) => e.url === 'seq')?.valueInteger;
  const hash = ext.find((e) => e.url === 'hash')?.valueString;
  if (seq === undefined || !hash) return undefined;
  const indexedThrough = ext.find((e) => e.url === 'indexedThrough')?.valueInstant;
  return { seq, hash, ...(indexedThrough ? { indexedThrough } : {}) };
}

/** AuditEvents of the store (all, or those last updated after an instant), unsorted. */
async function auditEvents(store: Store, after?: string): Promise<AuditEvent[]> {
  const filters: Filter[] = after ? [{ kind: 'lastUpdated', anyOf: [{ type: 'date', prefix: 'gt', low: after, high: after }] }] : [];
  const out: AuditEvent[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.search({ resourceTypes: ['AuditEvent'], filters, sort: [], count: 1000, total: 'none', include: [], ...(cursor ? { cursor } : {}) });
    out.push(...(page.resources as AuditEvent[]));
    cursor = page.next;
  } while (cursor);
  return out;
}

/** Every AuditEvent in the store, in chain order (by seq; unchained ones last). */
export async function allAuditEvents(store: Store): Promise<AuditEvent[]> {
  const out = await auditEvents(store);
  return out.sort((a, b) => (chainOf(a)?.seq ?? Infinity) - (chainOf(b)?.seq ?? Infinity));
}

/**
 * A UUID whose first 48 bits are the time in milliseconds (the layout of UUID version 7): entries written
 * together land next to each other in the store's id indexes instead of on random pages, so a group commit
 * writes a few pages instead of two random ones per entry.
 */
export function timeOrderedId(now = Date.now()): string {
  const t = now.toString(16).padStart(12, '0');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${randomUUID().slice(15)}`;
}

/**
 * Entries whose index rows are written in one store transaction by the background indexer. The values come
 * from auditIndexValues (index-values.ts, ~20-30 µs per read's event; the generic indexer ~90-150), so a chunk's
 * cost is its ~17 index rows per entry plus a COMMIT that writes every index page the chunk touched (~1.5 ms
 * whatever the size): in process, 16-entry chunks cost ~280-350 µs per entry, 32-entry ones ~180-260, 64-entry
 * ones ~180-200 but hold the event loop ~10 ms. 32 holds it about as long as the earlier chunks cut by their
 * 2 ms of extraction (~20 entries), for more entries per chunk.
 */
const INDEX_CHUNK = 32;
/**
 * Longest time a chunk's index extraction may take before the chunk is written and the event loop is given
 * back: a chunk of large events (a transaction's event lists every entry) would otherwise hold it for tens of ms.
 */
const INDEX_BUDGET_MS = 2;
/** Backlog of unindexed entries above which indexing runs even while requests keep coming. */
const INDEX_HIGH_WATER = 10_000;
/** Quiet time after the last write before the backlog is indexed. */
const INDEX_IDLE_MS = 500;
/**
 * Largest group commit that writes its entries' index rows itself (`inlineIndexUpTo`), when it is sequential
 * traffic: at most one answer waits for this commit and for each of the SEQUENTIAL_RUN - 1 before it. One request
 * in flight gives one entry whose answer waits (a patient read) plus the entries of answers that do not (shared
 * data, lazy window: 1-12 of them at ~800 requests/s). Deferred, those entries let the backlog pass
 * INDEX_HIGH_WATER after ~10,000 requests with no idle time, and from there the 32-entry chunks, back to back
 * between requests, held the event loop 4-6 ms each until the backlog was empty (sequential p99 8-12 ms). Inline,
 * the rows cost more CPU per entry than in a chunk (the COMMIT writes ~25 index pages for one entry: in process
 * +880 µs per one-entry commit against ~256 µs per entry in 32-entry chunks, +372 against ~228 at four entries
 * per commit), but no request meets a chunk. Requests in flight together (several answers waiting on a commit, or
 * lazy commits of more than 12 entries) still leave their rows to the backlog: inlining there cost +14 % CPU per
 * read and a third of the 16-in-flight `$validate-code` throughput (docs/terminology.md "Session 5").
 */
const INLINE_INDEX_UP_TO = 12;
/** Consecutive commits with at most one waiting answer before commits index their own entries (see above). */
const SEQUENTIAL_RUN = 4;

interface Unindexed {
  id: string;
  event: AuditEvent;
  lastUpdated: string;
}

export class AuditLog {
  private readonly store: Store;
  private queue: AuditEvent[] = [];
  /** Entries of the queue whose answers wait for a durable commit. */
  private durableQueued = 0;
  private head: Head | undefined;
  private headRead: Promise<Head> | undefined;
  /** The last write's commit (the next one follows it). */
  private writing: Promise<void> = Promise.resolve();
  /** The last write's outcome: its commit and, for a durable one waiting for the disk, its fsync. */
  private lastDone: Promise<void> = Promise.resolve();
  /** Set by the first failed write: every later write and flush fails too (fail closed, see flush()). */
  private failure: FhirError | undefined;
  private readonly window = new GroupWindow(() => this.writeQueued());
  /** Written entries without search index rows yet, oldest first. */
  private unindexed: Unindexed[] = [];
  /** `indexedThrough` of the head found at start: entries after it may lack index rows (found once). */
  private recoverAfter: string | undefined | null = null;
  private indexing: Promise<void> = Promise.resolve();
  private indexRunning = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Set by close(): no indexing starts afterwards (its owner closes the store). */
  private closed = false;
  private lastWrite = 0;
  /** lastUpdated of the newest entry committed by this process. */
  private newestWritten: string | undefined;
  /** Entries written so far by this process. */
  written = 0;
  /** Entries of those whose index rows were written in their own commit (a hook for tests and benchmarks). */
  indexedInline = 0;

  private readonly waitForDisk: boolean;
  private readonly inlineIndexUpTo: number;
  /** Consecutive commits so far with at most one answer waiting (capped at SEQUENTIAL_RUN; a new log starts there). */
  private sequentialRun = SEQUENTIAL_RUN;

  /**
   * `waitForDisk`: a durable entry's answer waits for the fsync of its commit (`DSP_AUDIT_SYNC=disk`); without
   * it (the default) the answer waits for the commit, and the fsync, started at once, runs beside the answer.
   * `inlineIndexUpTo`: a group commit of sequential traffic with at most this many entries writes their index rows
   * itself (default INLINE_INDEX_UP_TO; 0: every entry goes to the backlog, as before session 5). A hook for tests,
   * benchmarks and the writer thread (worker.ts), not a deployment setting.
   */
  constructor(store: Store, options?: { waitForDisk?: boolean; inlineIndexUpTo?: number }) {
    this.store = store;
    this.waitForDisk = options?.waitForDisk ?? false;
    this.inlineIndexUpTo = options?.inlineIndexUpTo ?? INLINE_INDEX_UP_TO;
  }

  /**
   * Queues an entry for the next group commit. `durable: false` (answers about shared, non-patient data that
   * do not wait for their entry): a commit holding only such entries skips the fsync; any other entry in the
   * same commit makes it durable.
   */
  record(event: AuditEvent, options?: { durable?: boolean }): void {
    // After a failure no write happens again (flush() rejects at once): queuing would only grow memory per request.
    if (this.failure) return;
    this.queue.push(event);
    if (options?.durable !== false) this.durableQueued++;
  }

  /**
   * The head, read once: concurrent callers (the first write, an `indexed()`) share one read, and a read that
   * finishes late never replaces a head a write has moved on since.
   */
  private async loadHead(): Promise<Head> {
    if (this.head) return this.head;
    this.headRead ??= this.readHeadFromStore();
    const head = await this.headRead;
    this.head ??= head;
    return this.head;
  }

  private async readHeadFromStore(): Promise<Head> {
    let head = await readHead(this.store);
    if (!head) {
      // No head (a new trail, or one written before the head moved into the store): the entries tell.
      head = { seq: 0, hash: GENESIS };
      const events = await auditEvents(this.store);
      for (const e of events) {
        const l = chainOf(e);
        if (l && l.seq > head.seq) head = { seq: l.seq, hash: l.hash };
      }
      // An empty trail has nothing to recover: its first commits may record their own indexing at once.
      if (!events.length) return head;
    }
    if (this.recoverAfter === null) this.recoverAfter = head.indexedThrough;
    return head;
  }

  /**
   * Resolves once everything recorded so far is committed. Writes are group commits (window.ts): the first
   * caller of an event-loop turn schedules the write for the end of that turn, so every request handled in
   * the same turn joins the same store transaction; `lazy` (an answer that does not wait) lets the window stay
   * open up to LAZY_MS. A failed write fails this and every later flush: the trail has a gap, so no answer
   * that waits for its entry goes out until the server is restarted (fail closed, 503).
   */
  flush(options?: { lazy?: boolean }): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    // Nothing queued and no window open: what was recorded is in the last write (which may wait for the disk).
    if (!this.queue.length && !this.window.pending) return this.lastDone;
    return this.window.schedule(options?.lazy === true);
  }

  /**
   * Writes everything queued so far (entries + head in one store transaction), after any write in progress.
   * The batch is taken now, when the window fires, so that a flush always waits for the write holding its
   * entries. Commits follow each other in chain order; waiting for the disk does not hold the next commit
   * back: the next batch commits while this one's fsync runs, and the store's group fsync covers both.
   */
  private writeQueued(): Promise<void> {
    const batch = this.queue;
    const waiting = this.durableQueued;
    const durable = waiting > 0;
    this.queue = [];
    this.durableQueued = 0;
    if (!batch.length) return this.lastDone;
    const run = this.writing.then(async (): Promise<boolean> => {
      if (this.failure) throw this.failure;
      const head: Head = { ...(this.head ?? (await this.loadHead())) };
      const linked: AuditEvent[] = [];
      for (const e of batch) {
        const seq = head.seq + 1;
        const event = { ...e, id: timeOrderedId() };
        const hash = entryHash(event, head.hash, seq);
        event.extension = [...(e.extension ?? []), linkExtension({ seq, prev: head.hash, hash })];
        linked.push(event);
        head.seq = seq;
        head.hash = hash;
      }
      // Sequential traffic (INLINE_INDEX_UP_TO, SEQUENTIAL_RUN) indexes its own entries; requests in flight
      // together leave them to the backlog. With no older entry waiting for its index rows (backlog empty, nothing
      // to recover from an earlier process) the head written records them as indexed; otherwise `indexedThrough`
      // stays where the backlog is, and moves past them when the backlog drains.
      this.sequentialRun = waiting <= 1 ? Math.min(this.sequentialRun + 1, SEQUENTIAL_RUN) : 0;
      const inline = this.sequentialRun >= SEQUENTIAL_RUN && linked.length <= this.inlineIndexUpTo ? linked.length : 0;
      const advance = inline === linked.length && !this.unindexed.length && this.recoverAfter === null;
      const indexes: IndexValue[][] = [];
      for (let i = 0; i < inline; i++) indexes.push(auditIndexValues(linked[i]));
      const times: string[] = [];
      const before = head.indexedThrough;
      await this.store.transaction(async (s) => {
        times.length = 0; // a store may run the work again (MongoDB transaction retries)
        for (let i = 0; i < linked.length; i++) times.push((await s.put(linked[i], { method: 'POST', index: indexes[i] ?? [] })).lastUpdated);
        head.indexedThrough = advance ? times[times.length - 1] : before;
        await s.put(headResource(head), { method: 'POST', index: [] });
      }, { durable: false });
      // An indexing chunk that finished while this commit ran moved this.head.indexedThrough past the copy's:
      // keep the later of the two (else it is lost, and a restart indexes those entries again).
      const indexed = this.head?.indexedThrough;
      if (indexed !== undefined && (head.indexedThrough === undefined || indexed > head.indexedThrough)) head.indexedThrough = indexed;
      this.head = head;
      this.written += linked.length;
      this.indexedInline += inline;
      for (let i = inline; i < linked.length; i++) this.unindexed.push({ id: linked[i].id!, event: linked[i], lastUpdated: times[i] });
      this.newestWritten = times[times.length - 1];
      this.lastWrite = Date.now();
      // A commit that indexed its own rows is sequential traffic again: a small backlog left by the burst before
      // it (at most one chunk) is indexed now, once per burst, so that the stored mark does not wait for 500 ms
      // of idle time that steady traffic never gives (the idle timer re-arms while writes keep coming).
      if (this.unindexed.length >= INDEX_HIGH_WATER || (inline > 0 && this.unindexed.length > 0 && this.unindexed.length <= INDEX_CHUNK)) this.runInBackground();
      else if (this.unindexed.length || this.recoverAfter !== null) this.armIdleTimer();
      return durable;
    });
    this.writing = run.then(
      () => undefined,
      () => undefined,
    );
    const done = run
      .then((durable) => {
        if (!durable) return undefined;
        const disk = this.store.durable();
        if (this.waitForDisk) return disk;
        // The fsync runs in the thread pool beside the answer. A failed fsync fails the store for good
        // (src/store/sqlite, WalSync): the next write, ours included, is refused.
        disk.catch(() => undefined);
        return undefined;
      })
      .catch((err: unknown) => {
        this.failure ??=
          err instanceof FhirError && err.status === 503
            ? err
            : new FhirError(503, `The audit trail cannot be written (${err instanceof Error ? err.message : String(err)}); no answer is given until it can`, 'transient');
        throw this.failure;
      });
    this.lastDone = done;
    done.catch(() => undefined);
    return done;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Writes what is queued, waits for the indexer, and stops its timer (the store is closed by its owner). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    await this.flush().catch(() => undefined);
    await this.writing;
    await this.indexing;
  }

  private armIdleTimer(): void {
    if (this.closed || this.idleTimer || this.indexRunning) return;
    const wait = Math.max(1, this.lastWrite + INDEX_IDLE_MS - Date.now());
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (Date.now() - this.lastWrite >= INDEX_IDLE_MS) this.runInBackground();
      else this.armIdleTimer();
    }, wait);
    this.idleTimer.unref();
  }

  /**
   * Resolves once every entry committed so far has its search index rows (AuditEvent searches wait for it).
   */
  async indexed(): Promise<void> {
    // Entries recorded but not yet committed (answers that did not wait for their flush) are written first.
    await this.flush().catch(() => undefined);
    await this.writing;
    await this.loadHead();
    // A search must not answer without entries that lack their index rows: a failed indexing run (joined or
    // started here) is a 503, not a shorter result.
    const newest = this.unindexed[this.unindexed.length - 1];
    const unavailable = (detail?: string) =>
      new FhirError(503, `The audit trail's search index could not be brought up to date${detail ? ` (${detail})` : ''}`, 'transient');
    await this.runIndexer().catch((err: unknown) => {
      throw err instanceof FhirError ? err : unavailable(err instanceof Error ? err.message : String(err));
    });
    if (newest && this.unindexed.includes(newest)) throw unavailable();
  }

  /**
   * An indexing run nobody waits for (idle time, high-water mark): a failure leaves the backlog as it is, for the
   * next run; the search that starts it (`indexed()`) gets the 503. Without the catch it was an unhandled rejection.
   */
  private runInBackground(): void {
    if (this.closed) return;
    this.runIndexer().catch(() => undefined);
  }

  /** Indexes the backlog in chunks, one store transaction each, yielding to requests between chunks. */
  private runIndexer(): Promise<void> {
    if (this.indexRunning) return this.indexing;
    this.indexRunning = true;
    const run = this.indexing.then(async () => {
      try {
        if (this.recoverAfter !== null) await this.recover();
        while (this.unindexed.length) {
          const started = performance.now();
          const entries: { resourceType: string; id: string; index: IndexValue[] }[] = [];
          for (const u of this.unindexed) {
            entries.push({ resourceType: 'AuditEvent', id: u.id, index: auditIndexValues(u.event) });
            if (entries.length >= INDEX_CHUNK || performance.now() - started >= INDEX_BUDGET_MS) break;
          }
          await this.store.reindex(entries);
          const done = this.unindexed.splice(0, entries.length);
          // Once the backlog is empty every committed entry has its rows (those indexed in their own commit
          // meanwhile included), so the mark moves to the newest entry written.
          let through = done[done.length - 1].lastUpdated;
          if (!this.unindexed.length && this.newestWritten !== undefined && this.newestWritten > through) through = this.newestWritten;
          if (this.head) this.head.indexedThrough = through;
          if (this.unindexed.length) await nextTurn();
        }
      } finally {
        this.indexRunning = false;
      }
    });
    this.indexing = run.catch(() => undefined);
    return run;
  }

  /** Entries committed by an earlier process after the head's `indexedThrough` go to the front of the backlog. */
  private async recover(): Promise<void> {
    if (this.recoverAfter === null) return;
    const after = this.recoverAfter;
    const known = new Set(this.unindexed.map((u) => u.id));
    const found: Unindexed[] = [];
    for (const e of await auditEvents(this.store, after)) {
      if (!known.has(e.id!)) found.push({ id: e.id!, event: e, lastUpdated: e.meta?.lastUpdated ?? '' });
    }
    this.recoverAfter = null;
    if (!found.length) return;
    this.unindexed = [...found, ...this.unindexed].sort((a, b) => (a.lastUpdated < b.lastUpdated ? -1 : a.lastUpdated > b.lastUpdated ? 1 : 0));
  }
}

export interface VerifyReport {
  ok: boolean;
  entries: number;
  problems: string[];
}

/**
 * Checks the whole chain: edited (hash), removed (gap / prev), truncated (the head in the store records more
 * entries), unchained entries.
 */
export async function verifyAuditChain(store: Store): Promise<VerifyReport> {
  const events = await allAuditEvents(store);
  const problems: string[] = [];
  let prev = GENESIS;
  let expected = 1;
  for (const e of events) {
    const link = chainOf(e);
    if (!link) {
      problems.push(`AuditEvent/${e.id} has no chain link (written outside the audit trail)`);
      continue;
    }
    if (link.seq !== expected) problems.push(`entry ${expected}${link.seq > expected + 1 ? `..${link.seq - 1}` : ''} missing (next is ${link.seq}, AuditEvent/${e.id})`);
    if (link.prev !== prev) problems.push(`entry ${link.seq} (AuditEvent/${e.id}) does not follow the previous entry (removed or reordered entries)`);
    if (entryHash(e, link.prev, link.seq) !== link.hash) problems.push(`entry ${link.seq} (AuditEvent/${e.id}) was modified (hash mismatch)`);
    prev = link.hash;
    expected = link.seq + 1;
  }
  const head = await readHead(store);
  if (!head) {
    if (expected > 1) problems.push(`the chain head (${HEAD_TYPE}/${headId(expected - 1)}) is missing from the audit store`);
  } else if (head.seq !== expected - 1 || head.hash !== prev) {
    problems.push(head.seq > expected - 1 ? `the trail is truncated: the head records ${head.seq} entries, the store ends at ${expected - 1}` : `the trail does not end where the head says (entry ${head.seq})`);
  }
  return { ok: problems.length === 0, entries: events.length, problems };
}

/**
 * The tamper-evident audit trail: AuditEvents kept in the FHIR store, each carrying an extension with its
 * sequence number, the previous entry's hash and its own hash (SHA-256 over the previous hash and the
 * canonical JSON of the event without `meta` and without this extension). A head file in the data folder
 * holds the last sequence number and hash, so that a truncated trail is detected as well.
 *
 * Entries are queued by the request handlers and written in group commits (one store transaction per
 * flush, outside any request transaction); the HTTP layer awaits the flush before it answers.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AuditEvent, Extension, Resource } from 'fhir/r4';
import type { Store } from '../store/port.ts';
import { extractIndex } from '../search/indexer.ts';

export const CHAIN_URL = 'https://dsp.lu/fhir/StructureDefinition/audit-chain';
export const GENESIS = '0'.repeat(64);

/** JSON with object keys sorted: the same resource always hashes the same. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj).filter((k) => obj[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
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

/** The hash an entry must carry, given the previous hash. */
export function entryHash(event: Resource, prev: string, seq: number): string {
  const { meta: _m, extension, ...rest } = event as AuditEvent;
  const others = (extension ?? []).filter((e) => e.url !== CHAIN_URL);
  const body = others.length ? { ...rest, extension: others } : rest;
  return createHash('sha256').update(prev).update('\n').update(String(seq)).update('\n').update(canonical(body)).digest('hex');
}

function withLink(event: AuditEvent, link: ChainLink): AuditEvent {
  const ext: Extension = {
    url: CHAIN_URL,
    extension: [
      { url: 'seq', valueInteger: link.seq },
      { url: 'prev', valueString: link.prev },
      { url: 'hash', valueString: link.hash },
    ],
  };
  return { ...event, extension: [...(event.extension ?? []), ext] };
}

export interface Head {
  seq: number;
  hash: string;
}

export function readHead(file: string | undefined): Head | undefined {
  if (!file || !existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as Head;
}

/** Every AuditEvent in the store, in chain order (by seq; unchained ones last). */
export async function allAuditEvents(store: Store): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.search({ resourceTypes: ['AuditEvent'], filters: [], sort: [], count: 1000, total: 'none', include: [], ...(cursor ? { cursor } : {}) });
    out.push(...(page.resources as AuditEvent[]));
    cursor = page.next;
  } while (cursor);
  return out.sort((a, b) => (chainOf(a)?.seq ?? Infinity) - (chainOf(b)?.seq ?? Infinity));
}

/** How long the first entry of a group commit waits for others to join it. */
const GROUP_COMMIT_MS = 2;

export class AuditLog {
  private readonly store: Store;
  private readonly headFile?: string;
  private queue: AuditEvent[] = [];
  private head: Head | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Entries written so far by this process. */
  written = 0;

  constructor(store: Store, headFile?: string) {
    this.store = store;
    this.headFile = headFile;
  }

  record(event: AuditEvent): void {
    this.queue.push(event);
  }

  private async loadHead(): Promise<Head> {
    if (this.head) return this.head;
    let head: Head = { seq: 0, hash: GENESIS };
    const fromFile = readHead(this.headFile);
    // The store is the truth for where the chain ends (a crash may have happened before the head file was
    // written); the head file only detects truncation.
    const events = fromFile ? [] : await allAuditEvents(this.store);
    if (fromFile) head = fromFile;
    for (const e of events) {
      const l = chainOf(e);
      if (l && l.seq > head.seq) head = { seq: l.seq, hash: l.hash };
    }
    this.head = head;
    return head;
  }

  /**
   * Resolves once everything queued so far is durable. Writes are group commits: the first caller opens a
   * short window (GROUP_COMMIT_MS) during which the entries of concurrent requests join the same store
   * transaction, so a busy server commits once per window instead of once per request.
   */
  flush(): Promise<void> {
    if (!this.queue.length) return this.writing;
    this.window ??= new Promise<void>((resolve) => setTimeout(resolve, GROUP_COMMIT_MS)).then(() => {
      this.window = undefined;
      return this.writeQueued();
    });
    return this.window;
  }

  private window: Promise<void> | undefined;

  /** Writes everything queued so far (one store transaction), after any write in progress. */
  private writeQueued(): Promise<void> {
    const run = this.writing.then(async () => {
      if (!this.queue.length) return;
      const batch = this.queue;
      this.queue = [];
      const head = { ...(await this.loadHead()) };
      const linked: AuditEvent[] = [];
      for (const e of batch) {
        const seq = head.seq + 1;
        const event = { ...e, id: randomUUID() };
        const hash = entryHash(event, head.hash, seq);
        linked.push(withLink(event, { seq, prev: head.hash, hash }));
        head.seq = seq;
        head.hash = hash;
      }
      await this.store.transaction(async (s) => {
        for (const e of linked) await s.put(e, { method: 'POST', index: extractIndex(e) });
      });
      this.head = head;
      this.written += linked.length;
      if (this.headFile) {
        writeFileSync(`${this.headFile}.tmp`, JSON.stringify(head));
        renameSync(`${this.headFile}.tmp`, this.headFile);
      }
    });
    this.writing = run.catch(() => undefined);
    return run;
  }
}

export interface VerifyReport {
  ok: boolean;
  entries: number;
  problems: string[];
}

/** Checks the whole chain: edited (hash), removed (gap / prev), truncated (head file), unchained entries. */
export async function verifyAuditChain(store: Store, headFile?: string): Promise<VerifyReport> {
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
  const head = readHead(headFile);
  if (head && (head.seq !== expected - 1 || head.hash !== prev)) {
    problems.push(head.seq > expected - 1 ? `the trail is truncated: the head records ${head.seq} entries, the store ends at ${expected - 1}` : `the trail does not end where the head file says (entry ${head.seq})`);
  }
  return { ok: problems.length === 0, entries: events.length, problems };
}

/**
 * Where an audit entry's search index rows are written (session 5): in its own commit when the commit is small
 * (sequential traffic), in the background backlog when it is large (requests in flight together). Either way an
 * AuditEvent search sees every committed entry, and a restart in the middle of the backlog loses nothing.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { AuditEvent } from 'fhir/r4';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { AUDIT_HISTORYLESS, AuditLog, allAuditEvents, readHead, verifyAuditChain } from '../src/audit/chain.ts';
import { buildAuditEvent } from '../src/audit/event.ts';
import { parseSearch } from '../src/search/parse.ts';
import { tempDir } from './support/process.ts';
import { makeApp } from './support/app.ts';

function event(entity: string): AuditEvent {
  return buildAuditEvent({ principal: { role: 'practitioner', ref: 'Practitioner/p', scopes: [], method: 'development' }, interaction: 'read', action: 'R', status: 200, entity, patients: ['anna'], emergency: false });
}

/** AuditEvents found through the store's index rows alone (no `indexed()` first). */
async function search(store: SqliteStore, params: [string, string][]): Promise<AuditEvent[]> {
  const { request } = parseSearch('AuditEvent', [...params, ['_count', '1000']], { strict: true });
  return (await store.search({ ...request, total: 'none' })).resources as AuditEvent[];
}

async function fileStore(dir: string): Promise<SqliteStore> {
  const store = new SqliteStore({ path: join(dir, 'audit.sqlite'), historyless: AUDIT_HISTORYLESS });
  await store.init();
  return store;
}

/** The backlog of a log (private), for the assertions on where rows went. */
const backlog = (log: AuditLog) => (log as unknown as { unindexed: unknown[] }).unindexed.length;

describe('audit index rows in small commits', () => {
  it('sequential entries (one per commit) are searchable without the indexer, and the stored head records them as indexed', async () => {
    const store = await fileStore(tempDir('dsp-audit-inline-'));
    const log = new AuditLog(store);
    for (let i = 0; i < 40; i++) {
      log.record(event(`Observation/s${i % 4}`));
      await log.flush();
    }
    expect(log.written).toBe(40);
    expect(log.indexedInline).toBe(40);
    expect(backlog(log)).toBe(0);
    // Searched straight through the index rows: no indexing run has happened.
    for (let k = 0; k < 4; k++) expect((await search(store, [['entity', `Observation/s${k}`]])).length).toBe(10);
    expect((await search(store, [['patient', 'Patient/anna']])).length).toBe(40);
    const newest = (await allAuditEvents(store)).at(-1)!;
    expect((await readHead(store))?.indexedThrough).toBe(newest.meta?.lastUpdated);
    await log.close();
    await store.close();
  });

  it('entries whose answers do not wait share a commit with at most one that does: up to 12 are indexed in it; larger commits, and the next three after one that several answers wait for, go to the backlog', async () => {
    const store = await fileStore(tempDir('dsp-audit-lazy-'));
    const log = new AuditLog(store);
    for (let i = 0; i < 11; i++) log.record(event('Observation/lazy'), { durable: false });
    log.record(event('Observation/waits'));
    await log.flush();
    expect(log.indexedInline).toBe(12);
    expect(backlog(log)).toBe(0);
    expect((await search(store, [['entity', 'Observation/lazy']])).length).toBe(11);
    // Thirteen entries in one lazy commit (requests in flight together): all of them wait in the backlog.
    for (let i = 0; i < 13; i++) log.record(event('Observation/many'), { durable: false });
    await log.flush({ lazy: true });
    expect(log.indexedInline).toBe(12);
    expect(backlog(log)).toBe(13);
    expect((await search(store, [['entity', 'Observation/many']])).length).toBe(0);
    await log.indexed();
    expect((await search(store, [['entity', 'Observation/many']])).length).toBe(13);
    // Answers waiting together on one commit (33: more than a chunk, so the backlog is not indexed at once when
    // sequential commits index themselves again): nothing indexed in it, nor in the three one-entry commits after it.
    for (let i = 0; i < 33; i++) log.record(event('Observation/two'));
    await log.flush();
    for (let i = 0; i < 4; i++) {
      log.record(event('Observation/one'));
      await log.flush();
    }
    expect(log.indexedInline).toBe(13);
    expect(backlog(log)).toBe(36);
    expect((await search(store, [['entity', 'Observation/one']])).length).toBe(1);
    await log.indexed();
    expect((await search(store, [['entity', 'Observation/one']])).length).toBe(4);
    expect((await search(store, [['entity', 'Observation/two']])).length).toBe(33);
    await log.close();
    await store.close();
  });

  it('a burst (a large commit) goes to the backlog; later small commits index themselves without moving the mark past it; indexed() drains it and the mark reaches the newest entry', async () => {
    const store = await fileStore(tempDir('dsp-audit-mixed-'));
    const log = new AuditLog(store);
    for (let i = 0; i < 40; i++) log.record(event('Observation/burst'));
    await log.flush();
    expect(backlog(log)).toBe(40);
    const markBefore = (await readHead(store))?.indexedThrough;
    for (let i = 0; i < 8; i++) {
      log.record(event('Observation/after'));
      await log.flush();
    }
    // Three commits after the burst wait too (SEQUENTIAL_RUN), the next five index themselves.
    expect(backlog(log)).toBe(43);
    expect(log.indexedInline).toBe(5);
    expect((await search(store, [['entity', 'Observation/after']])).length).toBe(5);
    expect((await search(store, [['entity', 'Observation/burst']])).length).toBe(0);
    // The mark the stored head carries has not moved past the unindexed burst.
    expect((await readHead(store))?.indexedThrough).toBe(markBefore);
    await log.indexed();
    expect((await search(store, [['entity', 'Observation/burst']])).length).toBe(40);
    expect((await search(store, [['entity', 'Observation/after']])).length).toBe(8);
    log.record(event('Observation/last'));
    await log.flush();
    const newest = (await allAuditEvents(store)).at(-1)!;
    expect((await readHead(store))?.indexedThrough).toBe(newest.meta?.lastUpdated);
    expect((await search(store, [['patient', 'Patient/anna']])).length).toBe(49);
    await log.close();
    await store.close();
  });

  it('steady sequential traffic after a small burst: the burst is indexed at once and the stored mark reaches the newest entry without an idle pause', async () => {
    const store = await fileStore(tempDir('dsp-audit-steady-'));
    const log = new AuditLog(store);
    log.record(event('Observation/first'));
    await log.flush();
    for (let i = 0; i < 12; i++) log.record(event('Observation/burst'));
    await log.flush();
    // One entry every ~2 ms for 1 s: never 500 ms idle, no AuditEvent search.
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      log.record(event('Observation/steady'));
      await log.flush();
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(backlog(log)).toBe(0);
    expect((await search(store, [['entity', 'Observation/burst']])).length).toBe(12);
    const newest = (await allAuditEvents(store)).at(-1)!;
    expect((await readHead(store))?.indexedThrough).toBe(newest.meta?.lastUpdated);
    await log.close();
    await store.close();
  });

  it('a restart in the middle of the backlog loses nothing: the next process indexes the burst, and the inline entries are still found (a search returns distinct resources: duplicate index rows are not checked here)', async () => {
    const dir = tempDir('dsp-audit-restart-');
    const store = await fileStore(dir);
    const log = new AuditLog(store);
    log.record(event('Observation/first'));
    await log.flush();
    for (let i = 0; i < 40; i++) log.record(event('Observation/burst'));
    await log.flush();
    for (let i = 0; i < 4; i++) {
      log.record(event('Observation/after'));
      await log.flush();
    }
    // The burst and the three commits after it wait in the backlog; the fourth indexed itself.
    expect(backlog(log)).toBe(43);
    expect((await search(store, [['entity', 'Observation/after']])).length).toBe(1);
    // Stopped without indexing (a crash): the store is closed under the log, which is dropped.
    await store.close();

    const reopened = await fileStore(dir);
    const next = new AuditLog(reopened);
    // The next process's first sequential entries index themselves; the recovered backlog is still waiting.
    next.record(event('Observation/again'));
    await next.flush();
    expect((await search(reopened, [['entity', 'Observation/again']])).length).toBe(1);
    await next.indexed();
    expect((await search(reopened, [['entity', 'Observation/first']])).length).toBe(1);
    expect((await search(reopened, [['entity', 'Observation/burst']])).length).toBe(40);
    expect((await search(reopened, [['entity', 'Observation/after']])).length).toBe(4);
    expect((await search(reopened, [['patient', 'Patient/anna']])).length).toBe(46);
    expect(await verifyAuditChain(reopened)).toEqual({ ok: true, entries: 46, problems: [] });
    const newest = (await allAuditEvents(reopened)).at(-1)!;
    next.record(event('Observation/again'));
    await next.flush();
    expect((await readHead(reopened))?.indexedThrough).not.toBe(undefined);
    expect((await readHead(reopened))!.indexedThrough! > newest.meta!.lastUpdated!).toBe(true);
    await next.close();
    await reopened.close();
  });
});

describe('over HTTP', () => {
  it('after sequential audited reads a patient AuditEvent search finds every one of them, and so does a search after a burst of reads in flight', async () => {
    const t = await makeApp();
    const put = await t.http.put('/fhir/Patient/seq-anna').send({ resourceType: 'Patient', id: 'seq-anna', name: [{ family: 'Sequential' }] });
    expect(put.status).toBe(201);
    for (let i = 0; i < 30; i++) expect((await t.http.get('/fhir/Patient/seq-anna')).status).toBe(200);
    const found = await t.http.get('/fhir/AuditEvent?patient=Patient/seq-anna&subtype=read&_count=200');
    expect(found.status).toBe(200);
    expect(found.body.entry.length).toBe(30);
    const burst = await Promise.all(Array.from({ length: 12 }, () => t.http.get('/fhir/Patient/seq-anna')));
    for (const r of burst) expect(r.status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await t.http.get('/fhir/Patient/seq-anna')).status).toBe(200);
    const all = await t.http.get('/fhir/AuditEvent?patient=Patient/seq-anna&subtype=read&_count=200');
    expect(all.body.entry.length).toBe(45);
  });
});

describe('close()', () => {
  it('writes after close() start no indexing: no reindex call reaches the store', async () => {
    const store = await fileStore(tempDir('dsp-audit-closed-'));
    const log = new AuditLog(store);
    let reindexCalls = 0;
    const reindex = store.reindex.bind(store);
    store.reindex = async (...args: Parameters<SqliteStore['reindex']>) => {
      reindexCalls++;
      return reindex(...args);
    };
    // A burst goes to the backlog (the idle timer is armed), then close() and more writes.
    for (let i = 0; i < 40; i++) log.record(event('Observation/burst'));
    await log.flush();
    await log.close();
    log.record(event('Observation/late'));
    await log.flush();
    await new Promise((r) => setTimeout(r, 700)); // longer than the 500 ms idle time
    expect(reindexCalls).toBe(0);
    await store.close();
  });
});

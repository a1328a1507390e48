/**
 * The audit trail's hash chain: intact after use; an edited, removed or truncated entry is detected, by the
 * library and by `dsp-fhir audit verify` run as a process.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { AuditEvent, Resource } from 'fhir/r4';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { AuditLog, allAuditEvents, chainOf, verifyAuditChain } from '../src/audit/chain.ts';
import { buildAuditEvent } from '../src/audit/event.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { ROOT, startServerProcess, tempDir } from './support/process.ts';
import { existsSync } from 'node:fs';
import { AUDIT_HISTORYLESS, HEAD_TYPE, headId, readHead } from '../src/audit/chain.ts';
import { DatabaseSync } from 'node:sqlite';
import { parseSearch } from '../src/search/parse.ts';
import { makeApp } from './support/app.ts';
import { accessRuntime } from '../src/access/service.ts';
import { dispatch } from '../src/fhir/router.ts';
import type { FhirRequest } from '../src/fhir/request.ts';
import { type Principal, parseScopes } from '../src/access/principal.ts';

function event(i: number): AuditEvent {
  return buildAuditEvent({ principal: { role: 'practitioner', ref: 'Practitioner/p', scopes: [], method: 'development' }, interaction: 'read', action: 'R', status: 200, entity: `Observation/o${i}`, patients: ['anna'], emergency: false });
}

async function trail(n: number): Promise<{ store: SqliteStore; dir: string }> {
  const dir = tempDir('dsp-audit-');
  const store = new SqliteStore({ path: join(dir, 'audit.sqlite') });
  await store.init();
  const log = new AuditLog(store);
  for (let i = 0; i < n; i++) {
    log.record(event(i));
    if (i % 3 === 0) await log.flush();
  }
  await log.flush();
  return { store, dir };
}

describe('audit hash chain', () => {
  it('an untouched trail verifies, and a new log continues the chain', async () => {
    const { store } = await trail(10);
    expect(await verifyAuditChain(store)).toEqual({ ok: true, entries: 10, problems: [] });
    const again = new AuditLog(store);
    again.record(event(99));
    await again.flush();
    const events = await allAuditEvents(store);
    expect(events.map((e) => chainOf(e)!.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect((await verifyAuditChain(store)).ok).toBe(true);
  });

  it('detects an edited entry', async () => {
    const { store } = await trail(6);
    const victim = (await allAuditEvents(store))[2];
    const edited = { ...victim, agent: [{ ...victim.agent[0], who: { reference: 'Practitioner/someone-else' } }, ...victim.agent.slice(1)] };
    await store.put(edited, { method: 'PUT', index: extractIndex(edited) });
    const report = await verifyAuditChain(store);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/entry 3 .*modified/);
  });

  it('detects a removed entry', async () => {
    const { store } = await trail(6);
    const victim = (await allAuditEvents(store))[3];
    await store.delete('AuditEvent', victim.id!, { method: 'DELETE' });
    const report = await verifyAuditChain(store);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/entry 4 missing/);
  });

  it('detects a truncated trail (the last entries removed)', async () => {
    const { store } = await trail(6);
    const events = await allAuditEvents(store);
    for (const e of events.slice(4)) await store.delete('AuditEvent', e.id!, { method: 'DELETE' });
    const report = await verifyAuditChain(store);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/truncated/);
  });

  it('an entry written outside the trail is reported', async () => {
    const { store } = await trail(2);
    const forged = { ...event(5), id: 'forged' };
    await store.put(forged, { method: 'PUT', index: extractIndex(forged) });
    expect((await verifyAuditChain(store)).problems.join('\n')).toMatch(/AuditEvent\/forged has no chain link/);
  });
});

/** AuditEvents whose `entity` is the given reference, found through the search index rows. */
async function byEntity(store: SqliteStore, ref: string): Promise<AuditEvent[]> {
  const { request } = parseSearch('AuditEvent', [['entity', ref], ['_count', '1000']], { strict: true });
  return (await store.search({ ...request, total: 'none' })).resources as AuditEvent[];
}

describe('lean audit writes', () => {
  it('the chain head lives in the audit store, written with the entries; no head file', async () => {
    const { store, dir } = await trail(5);
    const last = chainOf((await allAuditEvents(store))[4])!;
    expect(await readHead(store)).toMatchObject({ seq: 5, hash: last.hash });
    expect(existsSync(join(dir, 'audit-head.json'))).toBe(false);
  });

  it('a removed chain head is reported: the newest one, or all of them', async () => {
    const { store } = await trail(3); // commits after entries 1 and 3: heads 1 and 3
    await store.delete(HEAD_TYPE, headId(3), { method: 'DELETE' });
    expect((await verifyAuditChain(store)).problems.join('\n')).toMatch(/does not end where the head says \(entry 1\)/);
    await store.delete(HEAD_TYPE, headId(1), { method: 'DELETE' });
    expect((await verifyAuditChain(store)).problems.join('\n')).toMatch(/chain head .* is missing/);
  });

  it('flags in meta.tag are covered by the hash (a removed emergency flag is an edit)', async () => {
    const dir = tempDir('dsp-audit-');
    const store = new SqliteStore({ path: join(dir, 'audit.sqlite') });
    await store.init();
    const log = new AuditLog(store);
    log.record(buildAuditEvent({ principal: { role: 'practitioner', ref: 'Practitioner/p', scopes: [], method: 'development', purpose: 'EMERGENCY', reason: 'unconscious' }, interaction: 'read', action: 'R', status: 200, entity: 'Observation/o1', patients: ['anna'], emergency: true }));
    await log.flush();
    expect((await verifyAuditChain(store)).ok).toBe(true);
    const [flagged] = await allAuditEvents(store);
    expect(flagged.meta?.tag?.map((t) => t.code)).toEqual(['emergency-access']);
    const { tag: _t, ...meta } = flagged.meta!;
    await store.put({ ...flagged, meta }, { method: 'PUT', index: [] });
    expect((await verifyAuditChain(store)).problems.join('\n')).toMatch(/entry 1 .*modified/);
  });

  it('index rows come after the write: indexed() makes every committed entry searchable', async () => {
    const { store } = await trail(0);
    const log = new AuditLog(store);
    for (let i = 0; i < 7; i++) log.record(event(i % 2));
    await log.flush();
    expect((await allAuditEvents(store)).length).toBe(7);
    await log.indexed();
    expect((await byEntity(store, 'Observation/o0')).length).toBe(4);
    expect((await byEntity(store, 'Observation/o1')).length).toBe(3);
  });

  it('entries an earlier process left without index rows are indexed by the next log (restart)', async () => {
    const { store } = await trail(0);
    // Every commit's entries go to the backlog (no index rows in small commits), as a burst's would.
    const first = new AuditLog(store, { inlineIndexUpTo: 0 });
    for (let i = 0; i < 3; i++) first.record(event(1));
    await first.flush();
    await first.indexed();
    // Committed after the head last recorded the indexing state; `first` stops here (its backlog is lost).
    for (let i = 0; i < 2; i++) first.record(event(1));
    await first.flush();
    first.record(event(2));
    await first.flush();
    const next = new AuditLog(store);
    await next.indexed();
    expect((await byEntity(store, 'Observation/o1')).length).toBe(5);
    expect((await byEntity(store, 'Observation/o2')).length).toBe(1);
    expect((await verifyAuditChain(store)).ok).toBe(true);
  });

  it('over HTTP: reads are audited, an AuditEvent search right after sees every one of them, and plain JSON reads send the stored text', async () => {
    const t = await makeApp();
    const put = await t.http.put('/fhir/Observation/o-lean').send({ resourceType: 'Observation', id: 'o-lean', status: 'final', code: { text: 'weight' } });
    expect(put.status).toBe(201);
    const reads = await Promise.all(Array.from({ length: 6 }, () => t.http.get('/fhir/Observation/o-lean')));
    for (const r of reads) expect(r.status).toBe(200);
    // The stored text as it is: the same bytes for every read, the resource with the store's meta.
    expect(reads[0].text).toBe(reads[5].text);
    expect(JSON.parse(reads[0].text)).toEqual({ resourceType: 'Observation', id: 'o-lean', status: 'final', code: { text: 'weight' }, meta: { versionId: '1', lastUpdated: put.body.meta.lastUpdated } });
    expect(reads[0].headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(Number(reads[0].headers['content-length'])).toBe(Buffer.byteLength(reads[0].text));
    const pretty = await t.http.get('/fhir/Observation/o-lean?_pretty=true');
    expect(pretty.text).toContain('\n  ');
    expect(JSON.parse(pretty.text)).toEqual(JSON.parse(reads[0].text));
    const found = await t.http.get('/fhir/AuditEvent?entity=Observation/o-lean&subtype=read&_count=100');
    expect(found.status).toBe(200);
    expect(found.body.entry.length).toBe(7); // the six reads and the _pretty one
    const head = await t.http.head('/fhir/Observation/o-lean');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(reads[0].headers['content-length']);
  });
});

describe('commits that need not be durable', () => {
  it('entries recorded with durable: false are committed, chained and kept across a reopen; the store stays FULL for the next commit', async () => {
    const dir = tempDir('dsp-audit-');
    const path = join(dir, 'audit.sqlite');
    let store = new SqliteStore({ path });
    await store.init();
    const log = new AuditLog(store);
    for (let i = 0; i < 3; i++) log.record(event(i), { durable: false });
    await log.flush();
    log.record(event(3));
    log.record(event(4), { durable: false });
    await log.flush();
    expect(log.written).toBe(5);
    // A lazy commit of the store itself, then a normal one: both visible.
    await store.transaction((s) => s.put({ resourceType: 'Observation', id: 'lazy', status: 'final', code: { text: 'x' } } as Resource, { method: 'PUT', index: [] }), { durable: false });
    await store.put({ resourceType: 'Observation', id: 'durable', status: 'final', code: { text: 'y' } } as Resource, { method: 'PUT', index: [] });
    await store.close();
    store = new SqliteStore({ path });
    await store.init();
    expect((await store.current('Observation', 'lazy'))?.resource).toBeDefined();
    expect((await store.current('Observation', 'durable'))?.resource).toBeDefined();
    const report = await verifyAuditChain(store);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.entries).toBe(5);
    await store.close();
  });
});

describe('answers that wait for their audit entry', () => {
  it('a read of patient data waits for its entry; reads of shared data are audited without waiting, and an AuditEvent search sees them', async () => {
    const t = await makeApp();
    const rt = await accessRuntime(t.ctx);
    await t.http.put('/fhir/Observation/o-wait').send({ resourceType: 'Observation', id: 'o-wait', status: 'final', code: { text: 'weight' }, subject: { reference: 'Patient/p-wait' } });
    await t.http.put('/fhir/Practitioner/pr-wait').send({ resourceType: 'Practitioner', id: 'pr-wait' });
    await t.http.put('/fhir/CodeSystem/cs-wait').send({ resourceType: 'CodeSystem', id: 'cs-wait', url: 'http://example.org/cs-wait', status: 'active', content: 'complete', concept: [{ code: 'a' }] });
    for (let i = 0; i < 3; i++) {
      const before = rt.audit.written;
      expect((await t.http.get('/fhir/Observation/o-wait')).status).toBe(200);
      // Committed before the answer left.
      expect(rt.audit.written).toBe(before + 1);
    }
    const shared = await Promise.all([
      t.http.get('/fhir/Practitioner/pr-wait'),
      t.http.get('/fhir/CodeSystem/$lookup?system=http://example.org/cs-wait&code=a'),
      t.http.get('/fhir/CodeSystem/cs-wait'),
    ]);
    for (const r of shared) expect(r.status).toBe(200);
    const found = await t.http.get('/fhir/AuditEvent?_count=100');
    const entities = (found.body.entry as { resource: AuditEvent }[]).flatMap((e) => (e.resource.entity ?? []).map((x) => x.what?.reference ?? ''));
    expect(entities).toContain('Practitioner/pr-wait');
    expect(entities).toContain('CodeSystem/cs-wait');
    const queries = (found.body.entry as { resource: AuditEvent }[]).flatMap((e) => (e.resource.entity ?? []).map((x) => (x.query ? Buffer.from(x.query, 'base64').toString() : '')));
    expect(queries.some((q) => q.startsWith('CodeSystem/$lookup'))).toBe(true);
    const { ok } = await verifyAuditChain(rt.auditStore);
    expect(ok).toBe(true);
    // Which requests are marked (library API: the flag the HTTP layer reads).
    const principal: Principal = { role: 'admin', ref: 'Practitioner/test-admin', scopes: parseScopes('system/*.cruds'), method: 'oauth' };
    const marked = async (path: string, query: [string, string][] = []) => {
      const req: FhirRequest = { method: 'GET', path, query, headers: {}, baseUrl: 'http://test/fhir', principal };
      await dispatch(t.ctx, req).catch(() => undefined);
      return req.auditNoWait === true;
    };
    expect(await marked('Practitioner/pr-wait')).toBe(true);
    expect(await marked('CodeSystem/$lookup', [['system', 'http://example.org/cs-wait'], ['code', 'a']])).toBe(true);
    expect(await marked('ValueSet')).toBe(true);
    expect(await marked('Observation/o-wait')).toBe(false);
    expect(await marked('Patient/p-wait/Observation')).toBe(false);
    expect(await marked('Observation', [['code', 'x']])).toBe(false);
    expect(await marked('Binary/none')).toBe(false);
    expect(await marked('AuditEvent')).toBe(false);
  });
});

describe('the access check hands its record to the read', () => {
  it('a restricted read or vread reads the instance from the store once, and answers as before', async () => {
    const t = await makeApp();
    await t.http.put('/fhir/Patient/ben').send({ resourceType: 'Patient', id: 'ben' });
    await t.http.put('/fhir/Observation/o-ben').send({ resourceType: 'Observation', id: 'o-ben', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/ben' } });
    await t.http.put('/fhir/Observation/o-ben').send({ resourceType: 'Observation', id: 'o-ben', status: 'amended', code: { text: 'x' }, subject: { reference: 'Patient/ben' } });
    const store = t.ctx.store;
    const calls: string[] = [];
    const current = store.current.bind(store);
    const version = store.version.bind(store);
    store.current = (type, id) => (calls.push(`current ${type}/${id}`), current(type, id));
    store.version = (type, id, v) => (calls.push(`version ${type}/${id}/${v}`), version(type, id, v));
    try {
      const ben = await t.as({ role: 'patient', id: 'Patient/ben' });
      const read = await ben.get('/fhir/Observation/o-ben');
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ id: 'o-ben', status: 'amended', meta: { versionId: '2' } });
      expect(calls.filter((c) => c.includes('Observation/o-ben'))).toEqual(['current Observation/o-ben']);
      calls.length = 0;
      const v1 = await ben.get('/fhir/Observation/o-ben/_history/1');
      expect(v1.status).toBe(200);
      expect(v1.body).toMatchObject({ status: 'final', meta: { versionId: '1' } });
      expect(calls.filter((c) => c.includes('Observation/o-ben'))).toEqual(['current Observation/o-ben', 'version Observation/o-ben/1']);
      calls.length = 0;
      const v2 = await ben.get('/fhir/Observation/o-ben/_history/2');
      expect(v2.body).toMatchObject({ status: 'amended' });
      expect(calls.filter((c) => c.includes('Observation/o-ben'))).toEqual(['current Observation/o-ben']);
      // Someone else's record is still refused.
      const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
      expect((await anna.get('/fhir/Observation/o-ben')).status).toBe(404);
    } finally {
      store.current = current;
      store.version = version;
    }
  });
});

describe('dsp-fhir token and dsp-fhir audit verify (processes)', () => {
  it('a token from the CLI works; verify passes, then fails after tampering', async () => {
    const dataDir = tempDir();
    const env = { ...process.env, DSP_DATA_DIR: dataDir, DSP_LOAD_EXAMPLES: 'false', DSP_LOG_LEVEL: 'silent' };
    const cli = (...args: string[]) => spawnSync(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env, encoding: 'utf8' });
    const tok = cli('token', '--role', 'patient', '--id', 'Patient/p1');
    expect(tok.status).toBe(0);
    const token = tok.stdout.trim();
    const running = await startServerProcess({}, dataDir);
    try {
      const put = await fetch(`${running.url}/Patient/p1`, { method: 'PUT', headers: { ...running.auth, 'Content-Type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Patient', id: 'p1' }) });
      expect(put.status).toBe(201);
      const own = await fetch(`${running.url}/Patient/p1`, { headers: { Authorization: `Bearer ${token}` } });
      expect(own.status).toBe(200);
      expect((await fetch(`${running.url}/Patient/p1`)).status).toBe(401);
      const prod = cli('token', '--role', 'admin', '--id', 'Practitioner/x');
      expect(prod.status).toBe(0);
    } finally {
      await running.stop();
    }
    const ok = cli('audit', 'verify');
    expect(ok.stdout).toMatch(/intact: 3 entries/);
    expect(ok.status).toBe(0);
    const store = new SqliteStore({ path: join(dataDir, 'audit.sqlite') });
    await store.init();
    const [first] = await allAuditEvents(store);
    const edited = { ...first, action: 'D' as const };
    await store.put(edited, { method: 'PUT', index: extractIndex(edited) });
    await store.close();
    const bad = cli('audit', 'verify');
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/TAMPERED: entry 1 .*modified/);
    const prodToken = spawnSync(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), 'token', '--role', 'admin', '--id', 'Practitioner/x'], { cwd: ROOT, env: { ...env, DSP_AUTH_MODE: 'production' }, encoding: 'utf8' });
    expect(prodToken.status).toBe(2);
    expect(prodToken.stderr).toMatch(/production/);
  }, 180_000);
});

describe.each([true, false])('the audit trail of an embedded store with an audit file (DSP_AUDIT_THREAD=%s)', (thread) => {
  it('links, commits and indexes entries (in a writer thread, or on the event loop): answers wait for their entry, searches and verification see every one', async () => {
    const dir = tempDir('dsp-audit-worker-');
    const { defaultAuth } = await import('../src/access/service.ts');
    const { AuditTrailWorker } = await import('../src/audit/writer.ts');
    const t = await makeApp({ dataDir: dir, auditThread: thread, auth: { ...defaultAuth(), keyFile: join(dir, 'signing-key.json') } });
    const rt = await accessRuntime(t.ctx);
    expect(rt.audit).toBeInstanceOf(thread ? AuditTrailWorker : AuditLog);
    expect(existsSync(join(dir, 'audit.sqlite'))).toBe(true);
    await t.http.put('/fhir/Observation/o-w').send({ resourceType: 'Observation', id: 'o-w', status: 'final', code: { text: 'weight' }, subject: { reference: 'Patient/p-w' } });
    for (let i = 0; i < 3; i++) {
      const before = rt.audit.written;
      expect((await t.http.get('/fhir/Observation/o-w')).status).toBe(200);
      // Committed by the writer thread before the answer left.
      expect(rt.audit.written).toBe(before + 1);
    }
    // Concurrent answers share group commits, in chain order.
    const many = await Promise.all(Array.from({ length: 20 }, () => t.http.get('/fhir/Observation/o-w')));
    for (const r of many) expect(r.status).toBe(200);
    const found = await t.http.get('/fhir/AuditEvent?entity=Observation/o-w&_count=100');
    expect(found.status).toBe(200);
    // The update and the 23 reads.
    expect(found.body.entry.length).toBe(24);
    const report = await verifyAuditChain(rt.auditStore);
    expect(report.problems).toEqual([]);
    const events = await allAuditEvents(rt.auditStore);
    expect(events.map((e) => chainOf(e)!.seq)).toEqual(events.map((_, i) => i + 1));
    await rt.audit.flush();
    await rt.audit.close();
    // After close, the trail is complete in the file and verifies from a fresh store.
    const store = new SqliteStore({ path: join(dir, 'audit.sqlite') });
    await store.init();
    try {
      expect((await verifyAuditChain(store)).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});

describe('audit trail failures and durability modes', () => {
  it('a failed write fails its own flush and every later one, also an entry queued while the previous commit ran (fail closed)', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.init();
    // A store whose commits are slow, and whose second commit fails.
    let commits = 0;
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'transaction') {
          return async (work: Parameters<SqliteStore['transaction']>[0], options?: Parameters<SqliteStore['transaction']>[1]) => {
            await new Promise((r) => setTimeout(r, 30));
            if (++commits === 2) throw new Error('disk full');
            return target.transaction(work, options);
          };
        }
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    const log = new AuditLog(failing);
    log.record(event(1));
    const first = log.flush();
    // Queued while the first commit is still running: its flush must wait for the (failing) write that takes it.
    await new Promise((r) => setImmediate(r));
    log.record(event(2));
    const second = log.flush();
    await expect(first).resolves.toBeUndefined();
    await expect(second).rejects.toMatchObject({ status: 503 });
    expect(log.failed).toBe(true);
    log.record(event(3));
    await expect(log.flush()).rejects.toMatchObject({ status: 503 });
    // Nothing is ever written again, so nothing is kept: the queue does not grow with every refused request.
    const queued = () => (log as unknown as { queue: unknown[] }).queue.length;
    for (let i = 4; i < 20; i++) log.record(event(i));
    expect(queued()).toBe(0);
    expect((await allAuditEvents(store)).length).toBe(1);
    await store.close();
  });

  it('an indexing chunk that finishes while a write commits keeps its progress (the head the write installs has it)', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.init();
    let gate: Promise<void> | undefined;
    const held = new Proxy(store, {
      get(target, prop) {
        if (prop === 'transaction') {
          return async (work: Parameters<SqliteStore['transaction']>[0], options?: Parameters<SqliteStore['transaction']>[1]) => {
            if (gate) await gate;
            return target.transaction(work, options);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    // One-entry commits left to the backlog (inlineIndexUpTo: 0), so that the indexer has work here.
    const log = new AuditLog(held, { inlineIndexUpTo: 0 });
    const inner = log as unknown as { head?: { indexedThrough?: string }; runIndexer(): Promise<void>; unindexed: { lastUpdated: string }[] };
    log.record(event(1));
    await log.flush();
    const firstTime = inner.unindexed[0].lastUpdated;
    // The second write copies the head, then waits in its commit while the indexer indexes the first entry.
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    log.record(event(2));
    const second = log.flush();
    await new Promise((r) => setTimeout(r, 10));
    await inner.runIndexer();
    expect(inner.head?.indexedThrough).toBe(firstTime);
    gate = undefined;
    open();
    await second;
    expect(inner.head?.indexedThrough).toBe(firstTime);
    await log.indexed();
    expect(inner.unindexed.length).toBe(0);
    expect(inner.head?.indexedThrough).toBe((await allAuditEvents(store)).at(-1)?.meta?.lastUpdated);
    await log.close();
    await store.close();
  });

  it('a failed indexing run makes every AuditEvent search waiting on it a 503, not a shorter answer', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.init();
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'reindex') return async () => Promise.reject(new Error('database is locked'));
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    const log = new AuditLog(failing, { inlineIndexUpTo: 0 });
    log.record(event(1));
    await log.flush();
    // Two searches at once: the second joins the first one's run.
    const [a, b] = await Promise.allSettled([log.indexed(), log.indexed()]);
    for (const r of [a, b]) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 503 });
    }
    await store.close();
  });

  it('DSP_AUDIT_SYNC=disk: a flush resolves only once its commit is on disk', async () => {
    const dir = tempDir('dsp-audit-disk-');
    const store = new SqliteStore({ path: join(dir, 'audit.sqlite') });
    await store.init();
    const log = new AuditLog(store, { waitForDisk: true });
    for (let i = 0; i < 5; i++) {
      // The flush's own commit is at least the next one after those taken before record(); another commit (an
      // indexing chunk) may land after it, so durableThrough is compared with that, not with the latest count.
      const before = store.syncStats().commits;
      log.record(event(i));
      await log.flush();
      expect(store.syncStats().durableThrough).toBeGreaterThanOrEqual(before + 1);
    }
    await log.close();
    await store.close();
  });

  it('once the writer thread is gone, every answer is a 503, shared data included, and nothing leaves unaudited', async () => {
    const dir = tempDir('dsp-audit-dead-');
    const { defaultAuth } = await import('../src/access/service.ts');
    const t = await makeApp({ dataDir: dir, auditThread: true, auth: { ...defaultAuth(), keyFile: join(dir, 'signing-key.json') } });
    const rt = await accessRuntime(t.ctx);
    await t.http.put('/fhir/Observation/o-dead').send({ resourceType: 'Observation', id: 'o-dead', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/p-dead' } });
    await t.http.put('/fhir/Practitioner/pr-dead').send({ resourceType: 'Practitioner', id: 'pr-dead' });
    expect((await t.http.get('/fhir/Observation/o-dead')).status).toBe(200);
    // The writer thread dies (terminated from outside, as a crash would end it), not closed by the server.
    const { AuditTrailWorker } = await import('../src/audit/writer.ts');
    expect(rt.audit).toBeInstanceOf(AuditTrailWorker);
    const worker = (rt.audit as unknown as { worker: import('node:worker_threads').Worker }).worker;
    const exited = new Promise((r) => worker.once('exit', r));
    await worker.terminate();
    await exited;
    expect(rt.audit.failed).toBe(true);
    const queued = () => (rt.audit as unknown as { queue: unknown[] }).queue.length;
    for (const path of ['/fhir/Observation/o-dead', '/fhir/Practitioner/pr-dead']) {
      const res = await t.http.get(path);
      expect(res.status).toBe(503);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(JSON.stringify(res.body)).toContain('audit trail');
      expect(JSON.stringify(res.body)).not.toContain('o-dead');
    }
    // The refused answers' entries are not kept either (nothing will ever send them).
    expect(queued()).toBe(0);
  });
});

describe('audit entries without a history copy (SqliteStoreOptions.historyless)', () => {
  async function historylessTrail(n: number): Promise<{ store: SqliteStore; path: string; log: AuditLog }> {
    const path = join(tempDir('dsp-audit-nohist-'), 'audit.sqlite');
    const store = new SqliteStore({ path, synchronous: 'NORMAL', historyless: AUDIT_HISTORYLESS });
    await store.init();
    const log = new AuditLog(store);
    for (let i = 0; i < n; i++) {
      log.record(event(i));
      if (i % 4 === 3) await log.flush();
    }
    await log.flush();
    return { store, path, log };
  }
  const historyRows = (path: string, type: string) => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM history WHERE resource_type = ?').get(type) as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it('entries and heads have one row each; vread, instance, type and system history find them, in commit order, paged', async () => {
    const { store, path } = await historylessTrail(7);
    expect(historyRows(path, 'AuditEvent')).toBe(0);
    expect(historyRows(path, HEAD_TYPE)).toBe(0);
    const events = await allAuditEvents(store);
    expect(events.length).toBe(7);
    const third = events[2];
    const v1 = await store.version('AuditEvent', third.id!, 1);
    expect(v1).toMatchObject({ versionId: 1, method: 'POST', deleted: false });
    expect(v1!.resource).toEqual(third);
    expect(await store.version('AuditEvent', third.id!, 2)).toBeUndefined();
    const instance = await store.history({ resourceType: 'AuditEvent', id: third.id!, count: 10 });
    expect(instance.total).toBe(1);
    expect(instance.entries.map((e) => e.resource)).toEqual([third]);
    // The type's history: newest first, three pages of three, two and two, every entry once.
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.history({ resourceType: 'AuditEvent', count: 3, ...(cursor ? { cursor } : {}) });
      expect(page.total).toBe(7);
      seen.push(...page.entries.map((e) => e.id));
      cursor = page.next;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(events.map((e) => e.id!).reverse());
    const since = await store.history({ resourceType: 'AuditEvent', since: events[4].meta!.lastUpdated!, count: 10 });
    expect(since.entries.map((e) => e.id)).toEqual([events[6].id, events[5].id]);
    // System history of the audit store: the entries and the heads of the two group commits.
    const all = await store.history({ count: 100 });
    expect(all.entries.filter((e) => e.resourceType === 'AuditEvent').length).toBe(7);
    expect(all.entries.filter((e) => e.resourceType === HEAD_TYPE).length).toBe(2);
    expect(all.total).toBe(9);
    expect((await verifyAuditChain(store)).ok).toBe(true);
    await store.close();
  });

  it('a changed entry keeps both versions in history, and the chain shows the edit; a reopened store dates new entries after the old ones', async () => {
    const { store, path, log } = await historylessTrail(3);
    await log.close();
    const victim = (await allAuditEvents(store))[1];
    const edited = { ...victim, outcome: '8' as const };
    await store.put(edited, { method: 'PUT', index: [] });
    expect(historyRows(path, 'AuditEvent')).toBe(2);
    const h = await store.history({ resourceType: 'AuditEvent', id: victim.id!, count: 10 });
    expect(h.entries.map((e) => [e.versionId, e.method])).toEqual([[2, 'PUT'], [1, 'POST']]);
    expect((await store.version('AuditEvent', victim.id!, 1))!.resource).toEqual(victim);
    expect((await store.history({ resourceType: 'AuditEvent', count: 10 })).total).toBe(4);
    expect((await verifyAuditChain(store)).problems.join('\n')).toMatch(/entry 2 .*modified/);
    await store.close();
    // A new process: its clock starts after the newest entry, although no history row holds that instant.
    const again = new SqliteStore({ path, synchronous: 'NORMAL', historyless: AUDIT_HISTORYLESS });
    await again.init();
    const newest = (await allAuditEvents(again)).map((e) => e.meta!.lastUpdated!).sort().pop()!;
    const next = new AuditLog(again);
    next.record(event(9));
    await next.flush();
    const added = (await allAuditEvents(again)).find((e) => chainOf(e)!.seq === 4)!;
    expect(added.meta!.lastUpdated! > newest).toBe(true);
    await next.close();
    await again.close();
  });

  it('over HTTP: an administrator vreads an entry and reads its history and the type history', async () => {
    const t = await makeApp();
    expect((await t.http.get('/fhir/Patient/nobody')).status).toBe(404);
    const rt = await accessRuntime(t.ctx);
    await rt.audit.flush();
    const [entry] = await allAuditEvents(rt.auditStore);
    const v = await t.http.get(`/fhir/AuditEvent/${entry.id}/_history/1`);
    expect(v.status).toBe(200);
    expect(v.body.id).toBe(entry.id);
    const h = await t.http.get(`/fhir/AuditEvent/${entry.id}/_history`);
    expect(h.status).toBe(200);
    expect(h.body.entry.map((e: { resource: AuditEvent }) => e.resource.id)).toEqual([entry.id]);
    const type = await t.http.get('/fhir/AuditEvent/_history?_count=1');
    expect(type.status).toBe(200);
    expect(type.body.entry.length).toBe(1);
    expect(type.body.link.some((l: { relation: string }) => l.relation === 'next')).toBe(true);
  });
});

/**
 * The audit trail's hash chain: intact after use; an edited, removed or truncated entry is detected, by the
 * library and by `dsp-fhir audit verify` run as a process.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { AuditEvent } from 'fhir/r4';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { AuditLog, allAuditEvents, chainOf, verifyAuditChain } from '../src/audit/chain.ts';
import { buildAuditEvent } from '../src/audit/event.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { ROOT, startServerProcess, tempDir } from './support/process.ts';

function event(i: number): AuditEvent {
  return buildAuditEvent({ principal: { role: 'practitioner', ref: 'Practitioner/p', scopes: [], method: 'development' }, interaction: 'read', action: 'R', status: 200, entity: `Observation/o${i}`, patients: ['anna'], emergency: false });
}

async function trail(n: number): Promise<{ store: SqliteStore; head: string }> {
  const dir = tempDir('dsp-audit-');
  const store = new SqliteStore({ path: join(dir, 'audit.sqlite') });
  await store.init();
  const head = join(dir, 'audit-head.json');
  const log = new AuditLog(store, head);
  for (let i = 0; i < n; i++) {
    log.record(event(i));
    if (i % 3 === 0) await log.flush();
  }
  await log.flush();
  return { store, head };
}

describe('audit hash chain', () => {
  it('an untouched trail verifies, and a new log continues the chain', async () => {
    const { store, head } = await trail(10);
    expect(await verifyAuditChain(store, head)).toEqual({ ok: true, entries: 10, problems: [] });
    const again = new AuditLog(store, head);
    again.record(event(99));
    await again.flush();
    const events = await allAuditEvents(store);
    expect(events.map((e) => chainOf(e)!.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect((await verifyAuditChain(store, head)).ok).toBe(true);
  });

  it('detects an edited entry', async () => {
    const { store, head } = await trail(6);
    const victim = (await allAuditEvents(store))[2];
    const edited = { ...victim, agent: [{ ...victim.agent[0], who: { reference: 'Practitioner/someone-else' } }, ...victim.agent.slice(1)] };
    await store.put(edited, { method: 'PUT', index: extractIndex(edited) });
    const report = await verifyAuditChain(store, head);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/entry 3 .*modified/);
  });

  it('detects a removed entry', async () => {
    const { store, head } = await trail(6);
    const victim = (await allAuditEvents(store))[3];
    await store.delete('AuditEvent', victim.id!, { method: 'DELETE' });
    const report = await verifyAuditChain(store, head);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/entry 4 missing/);
  });

  it('detects a truncated trail (the last entries removed)', async () => {
    const { store, head } = await trail(6);
    const events = await allAuditEvents(store);
    for (const e of events.slice(4)) await store.delete('AuditEvent', e.id!, { method: 'DELETE' });
    const report = await verifyAuditChain(store, head);
    expect(report.ok).toBe(false);
    expect(report.problems.join('\n')).toMatch(/truncated/);
  });

  it('an entry written outside the trail is reported', async () => {
    const { store, head } = await trail(2);
    const forged = { ...event(5), id: 'forged' };
    await store.put(forged, { method: 'PUT', index: extractIndex(forged) });
    expect((await verifyAuditChain(store, head)).problems.join('\n')).toMatch(/AuditEvent\/forged has no chain link/);
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

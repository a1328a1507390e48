/**
 * The server as a user runs it: `dsp-fhir serve` in its own process, on the embedded store in a data
 * folder. Examples load on first start; acknowledged writes survive kill -9; a real FHIR client works.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Client } from 'fhir-kit-client';
import type { Bundle, Patient } from 'fhir/r4';
import { ROOT, startServerProcess, type ServerProcess } from './support/process.ts';
import { loadConfig } from '../src/config.ts';

let running: ServerProcess | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }> {
  // Every request carries the server's administrator development token (no token, no data).
  const res = await fetch(url, { ...init, headers: { ...running?.auth, ...(init?.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

describe('dsp-fhir serve', () => {
  it('loads examples/ into an empty store on first start, and only then', async () => {
    running = await startServerProcess({ DSP_LOAD_EXAMPLES: 'true' });
    const files = readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    const expectedPatients = new Set<string>();
    for (const f of files) {
      const r = JSON.parse(readFileSync(join(ROOT, 'examples', f), 'utf8'));
      for (const e of r.entry ?? []) if (e.resource?.resourceType === 'Patient' && r.type === 'transaction') expectedPatients.add(e.resource.id);
    }
    const patients = await json(`${running.url}/Patient?_count=100&_total=accurate`);
    expect(patients.status).toBe(200);
    const ids = new Set((patients.body as Bundle).entry!.map((e) => e.resource!.id!));
    for (const id of expectedPatients) expect(ids).toContain(id);
    const before = await json(`${running.url}/_history?_count=1`);
    const dataDir = running.dataDir;
    await running.stop();
    // The examples' rows of patient data carry their access facts like any later write (reads decide on them).
    const db = new DatabaseSync(join(dataDir, 'fhir.sqlite'), { readOnly: true });
    const facts = db.prepare("SELECT count(*) AS n, count(access) AS withFacts FROM resources WHERE resource_type IN ('Patient', 'Observation', 'DocumentReference', 'Composition') AND deleted = 0").get() as { n: number; withFacts: number };
    db.close();
    expect(facts.n).toBeGreaterThan(0);
    expect(facts.withFacts).toBe(facts.n);
    running = await startServerProcess({ DSP_LOAD_EXAMPLES: 'true' }, dataDir);
    const after = await json(`${running.url}/_history?_count=1`);
    expect(after.body.total).toBe(before.body.total);
  });

  it('keeps every acknowledged write after kill -9', async () => {
    running = await startServerProcess();
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const res = await json(`${running.url}/Patient`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'Patient', name: [{ family: `Crash${i}` }] }),
      });
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    const tx = await json(`${running.url}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: { resourceType: 'Patient', id: 'last', name: [{ family: 'Last' }] }, request: { method: 'PUT', url: 'Patient/last' } }],
      }),
    });
    expect(tx.status).toBe(200);
    const dataDir = running.dataDir;
    await running.stop('SIGKILL');
    running = await startServerProcess({}, dataDir);
    for (const [i, id] of ids.entries()) {
      const res = await json(`${running.url}/Patient/${id}`);
      expect(res.status).toBe(200);
      expect(res.body.name[0].family).toBe(`Crash${i}`);
    }
    expect((await json(`${running.url}/Patient/last`)).status).toBe(200);
    // Versions continue where they were.
    const upd = await json(`${running.url}/Patient/last`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', id: 'last', name: [{ family: 'Again' }] }),
    });
    expect(upd.body.meta.versionId).toBe('2');
  });

  it('refuses to start with a bad configuration, naming the variable', async () => {
    await expect(startServerProcess({ DSP_MAX_COUNT: 'lots' })).rejects.toThrow(/DSP_MAX_COUNT/);
  });

  it('refuses a registered client without scope at start-up, naming the variable', async () => {
    const clients = JSON.stringify([{ clientId: 'lab-x', role: 'system', ref: 'Device/lab-x', jwks: { keys: [] } }]);
    await expect(startServerProcess({ DSP_AUTH_CLIENTS: clients })).rejects.toThrow(/DSP_AUTH_CLIENTS must be a list of/);
  });
});

describe('configuration checks', () => {
  const CLIENTS_MSG = 'DSP_AUTH_CLIENTS must be a list of {clientId, role: system|ncp, ref, scope, jwks | certFingerprint}';
  const ISSUERS_MSG = 'DSP_AUTH_ISSUERS must be a list of {issuer, jwksUri | jwks}';
  const client = { clientId: 'lab-x', role: 'system', ref: 'Device/lab-x', scope: 'system/Observation.cruds', jwks: { keys: [] } };
  const clients = (c: object) => loadConfig({ DSP_AUTH_CLIENTS: JSON.stringify([c]) }, ROOT);

  it('accepts a complete registered client (jwks or certFingerprint)', () => {
    expect(clients(client).auth!.clients).toHaveLength(1);
    const { jwks: _jwks, ...noJwks } = client;
    expect(clients({ ...noJwks, role: 'ncp', certFingerprint: 'ab'.repeat(32) }).auth!.clients).toHaveLength(1);
  });

  it('refuses a registered client missing ref, scope, or both jwks and certFingerprint', () => {
    const { ref: _ref, ...noRef } = client;
    const { scope: _scope, ...noScope } = client;
    const { jwks: _jwks, ...noKey } = client;
    expect(() => clients(noRef)).toThrow(CLIENTS_MSG);
    expect(() => clients(noScope)).toThrow(CLIENTS_MSG);
    expect(() => clients({ ...client, scope: 42 })).toThrow(CLIENTS_MSG);
    expect(() => clients(noKey)).toThrow(CLIENTS_MSG);
    expect(() => clients({ ...client, role: 'admin' })).toThrow(CLIENTS_MSG);
    expect(() => loadConfig({ DSP_AUTH_CLIENTS: '[null]' }, ROOT)).toThrow(CLIENTS_MSG);
  });

  it('refuses a trusted issuer without jwksUri or jwks', () => {
    expect(loadConfig({ DSP_AUTH_ISSUERS: JSON.stringify([{ issuer: 'https://idp', jwksUri: 'https://idp/jwks' }]) }, ROOT).auth!.issuers).toHaveLength(1);
    expect(loadConfig({ DSP_AUTH_ISSUERS: JSON.stringify([{ issuer: 'https://idp', jwks: { keys: [] } }]) }, ROOT).auth!.issuers).toHaveLength(1);
    expect(() => loadConfig({ DSP_AUTH_ISSUERS: JSON.stringify([{ issuer: 'https://idp' }]) }, ROOT)).toThrow(ISSUERS_MSG);
    expect(() => loadConfig({ DSP_AUTH_ISSUERS: '[null]' }, ROOT)).toThrow(ISSUERS_MSG);
  });

  it('reads DSP_VALIDATION_WARMUP as a boolean (default on)', () => {
    expect(loadConfig({}, ROOT).validationWarmUp).toBe(true);
    expect(loadConfig({ DSP_VALIDATION_WARMUP: 'off' }, ROOT).validationWarmUp).toBe(false);
    expect(loadConfig({ DSP_VALIDATION_WARMUP: 'false' }, ROOT).validationWarmUp).toBe(false);
    expect(loadConfig({ DSP_VALIDATION_WARMUP: 'on' }, ROOT).validationWarmUp).toBe(true);
    expect(() => loadConfig({ DSP_VALIDATION_WARMUP: 'sometimes' }, ROOT)).toThrow('DSP_VALIDATION_WARMUP must be true or false (got "sometimes")');
  });
});

describe('a real FHIR client (fhir-kit-client)', () => {
  it('create, read, update, search by id, transaction, delete', async () => {
    running = await startServerProcess();
    const client = new Client({ baseUrl: running.url, customHeaders: running.auth });
    const created = (await client.create({
      resourceType: 'Patient',
      body: { resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.3.182.4.4', value: '1979121212345' }], name: [{ family: 'Kieffer' }] },
    })) as Patient;
    expect(created.id).toBeTruthy();
    const read = (await client.read({ resourceType: 'Patient', id: created.id! })) as Patient;
    expect(read.name![0].family).toBe('Kieffer');
    const updated = (await client.update({ resourceType: 'Patient', id: created.id!, body: { ...read, gender: 'male' } })) as Patient;
    expect(updated.meta!.versionId).toBe('2');
    const found = (await client.search({ resourceType: 'Patient', searchParams: { _id: created.id! } })) as unknown as Bundle;
    expect(found.entry!.map((e) => e.resource!.id)).toEqual([created.id]);
    const txResult = (await client.transaction({
      body: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:5b9e4c1e-8c44-4d6c-9b8a-2f0d8d0d2a11', resource: { resourceType: 'Patient', name: [{ family: 'Tx' }] }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:5b9e4c1e-8c44-4d6c-9b8a-2f0d8d0d2a11' } }, request: { method: 'POST', url: 'Observation' } },
        ],
      } as unknown as Record<string, unknown> & { resourceType: string },
    })) as unknown as Bundle;
    expect(txResult.type).toBe('transaction-response');
    expect(txResult.entry!.map((e) => e.response!.status)).toEqual(['201', '201']);
    await client.delete({ resourceType: 'Patient', id: created.id! });
    await expect(client.read({ resourceType: 'Patient', id: created.id! })).rejects.toMatchObject({ response: { status: 410 } });
  });
});

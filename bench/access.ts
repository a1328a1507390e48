/**
 * Enforcement overhead: the same reads and searches by an unrestricted administrator and by a professional
 * whose access is decided per request (médecin référent of the patient; one record with a hidden document
 * and labelled data, so that exclusions are computed). Both are audited, so the difference is enforcement.
 *
 *   node_modules/.bin/node bench/access.ts [requests per case, default 400] [only cases whose label contains this]
 */
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { testConfig } from '../src/config.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { createApp } from '../src/http/app.ts';
import { accessRuntime, defaultAuth } from '../src/access/service.ts';
import { signDevToken } from '../src/access/tokens.ts';

const N = Number(process.argv[2] ?? 400);
const ONLY = process.argv[3];
const dir = mkdtempSync(join(tmpdir(), 'dsp-bench-access-'));
const store = new SqliteStore({ path: join(dir, 'fhir.sqlite'), synchronous: 'NORMAL' });
await store.init();
const ctx = { store, config: testConfig({ baseUrl: 'http://bench/fhir', auth: defaultAuth(), sqliteSynchronous: 'NORMAL' }) };
const app = createApp({ ctx });
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
const rt = await accessRuntime(ctx);
const admin = await signDevToken(rt.key, rt.auth.audience, { role: 'admin', id: 'Practitioner/admin' });
const gp = await signDevToken(rt.key, rt.auth.audience, { role: 'practitioner', id: 'Practitioner/gp' });

async function call(token: string, method: string, path: string, body?: unknown): Promise<number> {
  const res = await fetch(`${base}/${path}`, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' }, body: body ? JSON.stringify(body) : undefined });
  await res.arrayBuffer();
  return res.status;
}

// 50 patients of the GP, 40 observations each; patient p0 has a hidden observation and an R-labelled one.
const entries: unknown[] = [{ resource: { resourceType: 'Practitioner', id: 'gp' }, request: { method: 'PUT', url: 'Practitioner/gp' } }];
for (let p = 0; p < 50; p++) {
  entries.push({ resource: { resourceType: 'Patient', id: `p${p}`, generalPractitioner: [{ reference: 'Practitioner/gp' }] }, request: { method: 'PUT', url: `Patient/p${p}` } });
  for (let o = 0; o < 40; o++) {
    const label = p === 0 && o === 1 ? { meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'V' }] } } : {};
    entries.push({ resource: { resourceType: 'Observation', id: `o${p}-${o}`, status: 'final', ...label, code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/p${p}` }, valueQuantity: { value: 60 + o } }, request: { method: 'PUT', url: `Observation/o${p}-${o}` } });
  }
}
entries.push({ resource: { resourceType: 'Consent', id: 'hide', status: 'active', scope: { coding: [{ code: 'patient-privacy' }] }, category: [{ text: 'x' }], patient: { reference: 'Patient/p0' }, policyRule: { coding: [{ system: 'https://dsp.lu/fhir/CodeSystem/access-policy', code: 'hide' }] }, provision: { type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/o0-2' } }] } }, request: { method: 'PUT', url: 'Consent/hide' } });
if ((await call(admin, 'POST', '', { resourceType: 'Bundle', type: 'transaction', entry: entries })) !== 200) throw new Error('seed failed');

/**
 * Latencies of both principals, requests interleaved (admin, professional, admin...) to cancel drift: mean
 * and median (the median resists the spikes of a shared machine).
 */
async function time(label: string, path: (i: number) => string): Promise<{ mean: [number, number]; median: [number, number] }> {
  for (let i = 0; i < 30; i++) {
    await call(admin, 'GET', path(i));
    await call(gp, 'GET', path(i));
  }
  const samples: [number[], number[]] = [[], []];
  for (let i = 0; i < N; i++) {
    for (const [k, token] of [admin, gp].entries()) {
      const t0 = process.hrtime.bigint();
      const s = await call(token, 'GET', path(i));
      samples[k]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (s !== 200) throw new Error(`${label}: HTTP ${s}`);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { mean: [mean(samples[0]), mean(samples[1])], median: [median(samples[0]), median(samples[1])] };
}

const cases: [string, (i: number) => string][] = [
  ['read Observation (plain record)', (i) => `Observation/o${1 + (i % 49)}-${i % 40}`],
  ['search Observation?patient= (plain record)', (i) => `Observation?patient=Patient/p${1 + (i % 49)}&_count=20`],
  ['read Observation (record with exclusions)', (i) => `Observation/o0-${3 + (i % 37)}`],
  ['search Observation?patient= (record with exclusions)', () => `Observation?patient=Patient/p0&_count=20`],
  ['search Patient (all 50 records of the GP)', () => `Patient?_count=50`],
];
console.log(`requests per case: ${N} (sequential, HTTP, both principals audited)`);
console.log('case | admin mean ms | professional mean ms | overhead (mean) | admin median ms | professional median ms | overhead (median)');
const pct = ([a, p]: [number, number]) => `${(((p - a) / a) * 100).toFixed(1)}%`;
for (const [label, path] of cases) {
  if (ONLY && !label.includes(ONLY)) continue;
  const { mean, median } = await time(label, path);
  console.log(`${label} | ${mean[0].toFixed(3)} | ${mean[1].toFixed(3)} | ${pct(mean)} | ${median[0].toFixed(3)} | ${median[1].toFixed(3)} | ${pct(median)}`);
}
server.close();
await store.close();

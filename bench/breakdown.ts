/**
 * Where the ingest time goes, in process and stage by stage, on the same Synthea resources:
 *   parse      JSON.parse of the Bundle text
 *   validate   assertValidResource (src/validation/index.ts): walker + ajv schema
 *     walker   baseWalker().validate alone
 *     schema   schemaIssues alone (ajv, per resource type)
 *   index      extractIndex (src/search/indexer.ts): FHIRPath evaluation of every search parameter
 *   store      SqliteStore.put inside one transaction per Bundle (upsert + history + index rows), precomputed index
 *   commit     COMMIT (fsync with synchronous=FULL)
 *   audit      the audit trail of the Bundle as the server writes it (src/audit): `--audit transaction` (default)
 *              one AuditEvent listing every entry, `--audit entry` one per entry plus one for the Bundle (the
 *              code before session 3), `--audit none`; events built, chained, committed and indexed (AuditLog)
 * and the per-resource-type and per-search-parameter costs of the two big stages.
 *
 * Usage: node bench/breakdown.ts [--bundles N] [--synchronous FULL|NORMAL] [--audit transaction|entry|none]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Bundle, Resource } from 'fhir/r4';
import { listBundles, loadBundles } from './lib/data.ts';
import { assertValidResource } from '../src/validation/index.ts';
import { baseWalker, type VisitedResource } from '../src/validation/walker.ts';
import { schemaIssues } from '../src/validation/schema.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { searchParamsFor } from '../src/search/registry.ts';
import { compileExpression } from '../src/search/indexer.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import type { Issue } from '../src/fhir/outcome.ts';
import { AUDIT_HISTORYLESS, AuditLog } from '../src/audit/chain.ts';
import { TransactionAudit, buildAuditEvent } from '../src/audit/event.ts';
import { patientsOf, isPatientData } from '../src/access/decision.ts';
import type { Principal } from '../src/access/principal.ts';

const { values } = parseArgs({ options: { bundles: { type: 'string', default: '10' }, synchronous: { type: 'string', default: 'FULL' }, audit: { type: 'string', default: 'transaction' } } });
if (!['transaction', 'entry', 'none'].includes(values.audit)) throw new Error('--audit must be transaction, entry or none');
const files = listBundles().filter((f) => !/hospitalInformation|practitionerInformation/.test(f)).slice(0, Number(values.bundles));
const bundles = await loadBundles(files);
// Stages are timed in CPU time of this process (getrusage, microsecond precision on Linux), so that other
// load on the machine does not inflate them; the wall time of the whole pipeline is printed as well.
const now = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const stage: Record<string, number> = { parse: 0, validate: 0, walker: 0, schema: 0, index: 0, store: 0, commit: 0, audit: 0 };
const byType = new Map<string, { n: number; validate: number; index: number; store: number; indexRows: number }>();
const work = mkdtempSync(join(tmpdir(), 'dsp-breakdown-'));
const store = new SqliteStore({ path: join(work, 'fhir.sqlite'), synchronous: values.synchronous as 'FULL' | 'NORMAL' });
await store.init();
// As the server opens it (src/access/service.ts): entries and heads without a history copy.
const auditStore = new SqliteStore({ path: join(work, 'audit.sqlite'), synchronous: values.synchronous as 'FULL' | 'NORMAL', historyless: AUDIT_HISTORYLESS });
await auditStore.init();
const auditLog = new AuditLog(auditStore);
const admin: Principal = { role: 'admin', ref: 'Practitioner/bench', scopes: [], method: 'oauth' } as Principal;
let auditEvents = 0;

/** What the access decision point and the audit trail do for one transaction of creates by an administrator. */
async function auditBundle(list: Resource[], ids: string[]): Promise<void> {
  if (values.audit === 'none') return;
  const patientsOfEntry = (r: Resource) => (isPatientData(r.resourceType) ? patientsOf(r) : []);
  if (values.audit === 'entry') {
    for (const r of list) {
      auditLog.record(buildAuditEvent({ principal: admin, interaction: 'create', action: 'C', status: 201, patients: patientsOfEntry(r), emergency: false }));
    }
    auditLog.record(buildAuditEvent({ principal: admin, interaction: 'transaction', action: 'E', status: 200, patients: [], emergency: false }));
    auditEvents += list.length + 1;
  } else {
    const tx = new TransactionAudit();
    list.forEach((r, i) => tx.add({ interaction: 'create', status: 201, entity: `${r.resourceType}/${ids[i]}` }, patientsOfEntry(r), false));
    auditLog.record(buildAuditEvent({ principal: admin, interaction: 'transaction', action: 'E', status: 200, patients: [...tx.patients], emergency: false, entries: tx.entries }));
    auditEvents++;
  }
  await auditLog.flush();
}

// Warm-up: compile validators and indexers on the first bundle (not measured).
{
  const b = JSON.parse(bundles[0].text) as Bundle;
  for (const e of b.entry ?? []) {
    assertValidResource(e.resource);
    extractIndex(e.resource as Resource);
  }
  // The compartment definitions and the AuditEvent indexer (loaded on first use).
  patientsOf(b.entry![0]!.resource as Resource);
  isPatientData('Observation');
  extractIndex({ ...buildAuditEvent({ principal: admin, interaction: 'create', action: 'C', status: 201, patients: ['x'], emergency: false }), id: 'warm-up' });
}

let resources = 0;
let rows = 0;
const wall0 = performance.now();
const t0 = now();
for (const bf of bundles) {
  let t = now();
  const bundle = JSON.parse(bf.text) as Bundle;
  stage.parse += now() - t;
  const list = (bundle.entry ?? []).map((e) => e.resource as Resource);
  const indexes: ReturnType<typeof extractIndex>[] = [];
  for (const r of list) {
    const s = byType.get(r.resourceType) ?? { n: 0, validate: 0, index: 0, store: 0, indexRows: 0 };
    byType.set(r.resourceType, s);
    s.n++;
    t = now();
    assertValidResource(r);
    const dv = now() - t;
    stage.validate += dv;
    s.validate += dv;
    // The two validation layers on their own (extra work, for the split only).
    t = now();
    const issues: Issue[] = [];
    const visited: VisitedResource[] = [];
    baseWalker().validate(r, issues, visited);
    stage.walker += now() - t;
    t = now();
    for (const v of visited) schemaIssues(v.resource, v.resourceType, () => ({ expression: '', element: undefined }) as never);
    stage.schema += now() - t;
    t = now();
    const idx = extractIndex(r);
    const di = now() - t;
    stage.index += di;
    s.index += di;
    s.indexRows += idx.length;
    rows += idx.length;
    indexes.push(idx);
  }
  t = now();
  let tc = 0;
  const ids = list.map((r) => r.id ?? crypto.randomUUID());
  await store.transaction(async (session) => {
    for (let i = 0; i < list.length; i++) {
      const r = list[i];
      const ts = now();
      await session.put({ ...r, id: ids[i] } as Resource, { method: 'POST', index: indexes[i] });
      byType.get(r.resourceType)!.store += now() - ts;
    }
    tc = now();
  });
  stage.commit += now() - tc;
  stage.store += tc - t;
  t = now();
  await auditBundle(list, ids);
  stage.audit += now() - t;
  resources += list.length;
}
// The audit trail's deferred index rows (the server writes them when idle or before an AuditEvent search).
{
  const t = now();
  await auditLog.indexed();
  stage.audit += now() - t;
}
const total = now() - t0 - stage.walker - stage.schema;
const wall = performance.now() - wall0;

const pct = (x: number) => `${((x / total) * 100).toFixed(1)}%`;
const us = (x: number) => `${((x / resources) * 1000).toFixed(0)} µs`;
console.log(`${resources} resources in ${bundles.length} bundles, ${rows} index rows (${(rows / resources).toFixed(1)} per resource)`);
console.log(`audit: --audit ${values.audit}, ${auditEvents} AuditEvents`);
console.log(`in-process pipeline: ${(total / 1000).toFixed(2)} CPU s = ${Math.round(resources / (total / 1000))} resources per CPU second (no HTTP, no reference rewriting; wall ${(wall / 1000).toFixed(2)} s including the split measurements)`);
console.log('stage     CPU ms total   per resource   share');
for (const k of ['parse', 'validate', 'walker', 'schema', 'index', 'store', 'commit', 'audit']) {
  const sub = k === 'walker' || k === 'schema' ? '  (part of validate, measured separately)' : '';
  console.log(`${k.padEnd(10)} ${stage[k].toFixed(0).padStart(10)} ${us(stage[k]).padStart(14)} ${pct(stage[k]).padStart(7)}${sub}`);
}
console.log('\nby resource type (CPU µs per resource): n, validate, index, store, index rows per resource');
for (const [type, s] of [...byType].sort((a, b) => b[1].validate + b[1].index + b[1].store - (a[1].validate + a[1].index + a[1].store))) {
  const f = (x: number) => ((x / s.n) * 1000).toFixed(0).padStart(7);
  console.log(`${type.padEnd(26)} ${String(s.n).padStart(6)} ${f(s.validate)} ${f(s.index)} ${f(s.store)} ${(s.indexRows / s.n).toFixed(1).padStart(6)}`);
}

// Per search parameter: time each compiled expression alone on the resources of the busiest types.
console.log('\ncostliest search parameters, weighted by how many resources of the type (CPU µs per resource of that type, evaluation alone, 2 passes, second timed):');
const perParam: { type: string; code: string; expr: string; us: number }[] = [];
const sampleByType = new Map<string, Resource[]>();
for (const bf of bundles.slice(0, 3)) {
  for (const e of (JSON.parse(bf.text) as Bundle).entry ?? []) {
    const r = e.resource as Resource;
    const l = sampleByType.get(r.resourceType) ?? [];
    if (l.length < 300) l.push(r);
    sampleByType.set(r.resourceType, l);
  }
}
for (const [type, list] of sampleByType) {
  for (const def of searchParamsFor(type)) {
    if (!def.expression || def.type === 'special' || def.code === '_id' || def.code === '_lastUpdated') continue;
    let evaluate;
    try {
      evaluate = compileExpression(def.expression);
    } catch {
      continue;
    }
    let t = 0;
    for (let pass = 0; pass < 2; pass++) {
      t = now();
      for (const r of list) {
        try {
          evaluate([{ value: r, type: r.resourceType }] as never);
        } catch {
          /* counted as time anyway */
        }
      }
    }
    perParam.push({ type, code: def.code, expr: def.expression, us: ((now() - t) / list.length) * 1000 });
  }
}
perParam.sort((a, b) => b.us * (byType.get(b.type)?.n ?? 0) - a.us * (byType.get(a.type)?.n ?? 0));
for (const p of perParam.slice(0, 15)) {
  console.log(`${`${p.type}.${p.code}`.padEnd(40)} ${p.us.toFixed(0).padStart(6)} µs  ${p.expr.slice(0, 90)}`);
}
const paramsPerType = [...sampleByType.keys()].map((t) => `${t} ${searchParamsFor(t).length}`).join(', ');
console.log(`\nsearch parameters per type: ${paramsPerType}`);
// Closed last: the figures are printed even if a close fails.
await store.close();
await auditStore.close();
rmSync(work, { recursive: true, force: true });

/**
 * `node bench/search.ts [--resources N]`: FHIR search latency on the embedded store at scale (issue 3).
 *
 * 1. Ingest: the Synthea transaction Bundles (../shared/data/synthea, decompressed once into the bench cache)
 *    are repeated with fresh ids until N resources: copy c rewrites every urn:uuid to `c<c>-<uuid>` and the
 *    conditional references (`Organization?identifier=...`) to the hospital / practitioner resources, loaded
 *    once. Resources go straight to the store (`SqliteStore` on a file, `synchronous=NORMAL` unless
 *    --synchronous FULL) in transactions of --batch resources, every one indexed with `extractIndex` (every
 *    R4 search parameter): the rate is resources per second of wall time, indexing included.
 * 2. Searches: in-process through `dispatch()` (routing, parsing, SQL, Bundle assembly; no HTTP, no
 *    serialisation), as the internal principal. Each kind runs --iterations times with values drawn (fixed
 *    seed) from a fixed sample of the loaded data (the same rows in every run on one database), after a
 *    warm-up; p50 / p95 / mean in milliseconds. `--explain` prints each kind's query plan as the store runs it
 *    (parameter ids and selectivity estimates of the connection).
 *
 * Prints a table and writes bench/results/search-<N>.json. Options: --resources N (default 100000),
 * --iterations N (default 200), --batch N (default 2000), --db FILE (default: a temp file, deleted after),
 * --keep (keep the database), --reuse FILE (skip ingest, search an existing database), --explain, --only REGEX
 * (run only the kinds whose name matches; the values drawn for each kind do not depend on the others).
 */
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Bundle, Resource } from 'fhir/r4';
import { DatabaseSync } from 'node:sqlite';
import { RESULTS_DIR, listBundles, loadBundles } from './lib/data.ts';
import { rng, summarize, type LatencySummary } from './lib/stats.ts';
import { testConfig } from '../src/config.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { dispatch } from '../src/fhir/router.ts';
import type { Context } from '../src/fhir/interactions.ts';
import { parseSearch } from '../src/search/parse.ts';
import { compileSearch, paramIds } from '../src/store/sqlite/search-sql.ts';

const { values: opts } = parseArgs({
  options: {
    resources: { type: 'string', default: '100000' },
    iterations: { type: 'string', default: '200' },
    batch: { type: 'string', default: '2000' },
    synchronous: { type: 'string', default: 'NORMAL' },
    db: { type: 'string' },
    keep: { type: 'boolean', default: false },
    reuse: { type: 'string' },
    explain: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const TARGET = Number(opts.resources);
const ITER = Number(opts.iterations);
const BATCH = Number(opts.batch);
const BASE = 'http://bench/fhir';

const dir = opts.db || opts.reuse ? undefined : mkdtempSync(join(tmpdir(), 'dsp-search-bench-'));
const dbPath = opts.reuse ?? opts.db ?? join(dir!, 'bench.sqlite');
const store = new SqliteStore({ path: dbPath, synchronous: opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL' });
await store.init();
const ctx: Context = { store, config: testConfig({ baseUrl: BASE }) };

// -- ingest -------------------------------------------------------------------------------------------------

interface Loaded {
  count: number;
  seconds: number;
  /** CPU seconds of this process (user + system) during ingest: the machine may be shared. */
  cpuSeconds: number;
  indexSeconds: number;
  indexRows: number;
}

async function ingest(): Promise<Loaded> {
  const files = listBundles();
  const bundles = await loadBundles(files);
  const infra = bundles.filter((b) => /hospitalInformation|practitionerInformation/.test(b.name));
  const patients = bundles.filter((b) => !infra.includes(b));
  const conditional = new Map<string, string>();
  let count = 0;
  let indexSeconds = 0;
  let indexRows = 0;
  let batch: Resource[] = [];
  const flush = async () => {
    const work = batch;
    batch = [];
    await store.transaction(async (session) => {
      for (const r of work) {
        const t0 = performance.now();
        const index = extractIndex(r);
        indexSeconds += (performance.now() - t0) / 1000;
        indexRows += index.length;
        await session.put(r, { method: 'POST', index });
      }
    });
  };
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  let lastReport = started;
  // Shared resources once, under their own ids; conditional references resolve to them.
  for (const b of infra) {
    const bundle = JSON.parse(b.text) as Bundle;
    for (const e of bundle.entry ?? []) {
      const r = e.resource as Resource & { identifier?: { system?: string; value?: string }[] };
      for (const id of r.identifier ?? []) conditional.set(`${r.resourceType}?identifier=${id.system}|${id.value}`, `${r.resourceType}/${r.id}`);
      batch.push(r);
      count++;
    }
  }
  await flush();
  for (let copy = 0; count < TARGET; copy++) {
    for (const b of patients) {
      if (count >= TARGET) break;
      const typeOf = new Map<string, string>();
      for (const m of b.text.matchAll(/"fullUrl"\s*:\s*"urn:uuid:([^"]+)",\s*"resource"\s*:\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"/g)) typeOf.set(m[1]!, m[2]!);
      const text = b.text
        .replace(/"urn:uuid:([0-9a-fA-F-]+)"/g, (m, u: string) => (typeOf.has(u) ? `"${typeOf.get(u)}/c${copy}-${u}"` : m))
        .replace(/"([A-Za-z]+\?identifier=[^"]+)"/g, (m, c: string) => (conditional.has(c) ? `"${conditional.get(c)}"` : m));
      const bundle = JSON.parse(text) as Bundle;
      for (const e of bundle.entry ?? []) {
        const r = e.resource as Resource;
        r.id = `c${copy}-${r.id}`;
        batch.push(r);
        count++;
        if (batch.length >= BATCH) await flush();
        if (count >= TARGET) break;
      }
      const now = performance.now();
      if (now - lastReport > 10_000) {
        lastReport = now;
        const s = (now - started) / 1000;
        console.error(`  ingest: ${count} resources, ${(count / s).toFixed(0)}/s`);
      }
    }
  }
  await flush();
  const cpu = process.cpuUsage(cpu0);
  return { count, seconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, indexSeconds, indexRows };
}

// -- searches -----------------------------------------------------------------------------------------------

let rand = rng(42);
const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)]!;

/** A sample of the loaded data to draw search values from (read back with plain SQL). */
function sample() {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  const rows = (sql: string) => db.prepare(sql).all() as { content: string }[];
  const parse = <T>(sql: string) => rows(sql).map((r) => JSON.parse(r.content) as T);
  const patients = parse<{ id: string; name?: { family?: string }[]; identifier?: { system?: string; value?: string }[] }>(
    "SELECT content FROM resources WHERE resource_type = 'Patient' AND deleted = 0 ORDER BY (rid * 7919) % 10007, rid LIMIT 500",
  );
  const observations = parse<{ code: { coding: { system: string; code: string }[] }; effectiveDateTime?: string }>(
    "SELECT content FROM resources WHERE resource_type = 'Observation' AND deleted = 0 ORDER BY (rid * 7919) % 10007, rid LIMIT 500",
  );
  const encounters = parse<{ period?: { start?: string } }>("SELECT content FROM resources WHERE resource_type = 'Encounter' AND deleted = 0 ORDER BY (rid * 7919) % 10007, rid LIMIT 300");
  db.close();
  return { patients, observations, encounters };
}

type Kind = { name: string; note: string; make: () => [string, [string, string][]]; follow?: boolean };

function kinds(s: ReturnType<typeof sample>): Kind[] {
  const patient = () => pick(s.patients);
  const obsCode = () => pick(s.observations).code.coding[0]!;
  const month = () => {
    const d = new Date(pick(s.encounters).period?.start ?? '2015-06-01');
    const lo = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
    const hi = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
    return [lo.toISOString().slice(0, 10), hi.toISOString().slice(0, 10)];
  };
  const family = () => patient().name?.[0]?.family ?? 'Smith';
  return [
    {
      name: 'token (identifier, selective)',
      note: 'Patient?identifier=system|value',
      make: () => {
        const id = patient().identifier?.find((i) => i.system && i.value) ?? { system: 'x', value: 'y' };
        return ['Patient', [['identifier', `${id.system}|${id.value}`]]];
      },
    },
    {
      name: 'token (code, common)',
      note: 'Observation?code=system|code, first page of 20',
      make: () => {
        const c = obsCode();
        return ['Observation', [['code', `${c.system}|${c.code}`]]];
      },
    },
    { name: 'reference', note: 'Observation?subject=Patient/id', make: () => ['Observation', [['subject', `Patient/${patient().id}`]]] },
    {
      name: 'date range',
      note: 'Encounter?date=geX&date=ltY (one month)',
      make: () => {
        const [lo, hi] = month();
        return ['Encounter', [['date', `ge${lo}`], ['date', `lt${hi}`]]];
      },
    },
    { name: 'string prefix', note: 'Patient?family=<3 letters>', make: () => ['Patient', [['family', family().slice(0, 3)]]] },
    {
      name: 'chained',
      note: 'Observation?subject:Patient.family=<family>&code=<code>',
      make: () => ['Observation', [['subject:Patient.family', family()], ['code', obsCode().code]]],
    },
    {
      name: 'chained (reference only)',
      note: 'Encounter?subject:Patient.identifier=system|value',
      make: () => {
        const id = patient().identifier?.find((i) => i.system && i.value) ?? { system: 'x', value: 'y' };
        return ['Encounter', [['subject:Patient.identifier', `${id.system}|${id.value}`]]];
      },
    },
    {
      name: '_has',
      note: 'Patient?_has:Observation:patient:code=<code>&family=<family>',
      make: () => ['Patient', [['_has:Observation:patient:code', obsCode().code], ['family', family()]]],
    },
    {
      name: '_has (alone)',
      note: 'Patient?_has:Observation:patient:code=<code>, first page',
      make: () => ['Patient', [['_has:Observation:patient:code', obsCode().code]]],
    },
    {
      name: '_include',
      note: 'Encounter?subject=Patient/id&_include=Encounter:participant&_include=Encounter:service-provider',
      make: () => ['Encounter', [['subject', `Patient/${patient().id}`], ['_include', 'Encounter:participant'], ['_include', 'Encounter:service-provider']]],
    },
    {
      name: '_revinclude',
      note: 'Patient?_id=id&_revinclude=Encounter:subject',
      make: () => ['Patient', [['_id', patient().id], ['_revinclude', 'Encounter:subject']]],
    },
    {
      name: 'sorted, paged',
      note: 'Observation?subject=Patient/id&_sort=-date&_count=20, page 1 (page 2 by cursor in its own summary)',
      make: () => ['Observation', [['subject', `Patient/${patient().id}`], ['_sort', '-date'], ['_count', '20']]],
      follow: true,
    },
    {
      name: 'sorted, whole type',
      note: 'Observation?code=<code>&_sort=-date&_count=20',
      make: () => ['Observation', [['code', obsCode().code], ['_sort', '-date'], ['_count', '20']]],
    },
    {
      name: 'sorted, whole type, paged',
      note: 'Observation?code=<code>&_sort=-date&_count=20, page 1 (page 2 by cursor in its own summary)',
      make: () => ['Observation', [['code', obsCode().code], ['_sort', '-date'], ['_count', '20']]],
      follow: true,
    },
  ];
}

async function run(type: string, query: [string, string][]): Promise<{ ms: number; cpuMs: number; next?: [string, string][]; n: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const res = await dispatch(ctx, { method: 'GET', path: type, query, headers: {}, baseUrl: BASE });
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const cpuMs = (c.user + c.system) / 1000;
  if (res.status !== 200) throw new Error(`${type}?${new URLSearchParams(query)}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  const b = res.body as Bundle;
  const next = b.link?.find((l) => l.relation === 'next')?.url;
  return { ms, cpuMs, n: b.entry?.length ?? 0, next: next ? [...new URL(next).searchParams] : undefined };
}

function explain(type: string, query: [string, string][]): string {
  const { request } = parseSearch(type, query, { strict: true });
  const db = new DatabaseSync(dbPath, { readOnly: true });
  // With the connection's parameter ids and selectivity estimates, as the store compiles it.
  const c = compileSearch(request, { paramIds: paramIds(db) });
  const plan = db.prepare(`EXPLAIN QUERY PLAN ${c.sql}`).all(...(c.params as never[])) as { detail: string }[];
  db.close();
  return plan.map((p) => `    ${p.detail}`).join('\n');
}

// -- main ---------------------------------------------------------------------------------------------------

let loaded: Loaded | undefined;
if (!opts.reuse) {
  console.error(`search bench: loading ${TARGET} resources into ${dbPath}`);
  loaded = await ingest();
  console.error(
    `  ingest: ${loaded.count} resources in ${loaded.seconds.toFixed(1)} s (${(loaded.count / loaded.seconds).toFixed(0)}/s wall, ` +
      `${(loaded.count / loaded.cpuSeconds).toFixed(0)}/s of CPU; extractIndex ${loaded.indexSeconds.toFixed(1)} s, ${loaded.indexRows} index values)`,
  );
}
const total = await store.count();
const s = sample();
const results: { name: string; note: string; summary: LatencySummary; cpu: LatencySummary; rows: number }[] = [];
const only = opts.only ? new RegExp(opts.only) : undefined;
for (const [index, k] of kinds(s).entries()) {
  // Each kind draws from its own seeded sequence: the same values whichever kinds run.
  rand = rng(42 + index);
  if (only && !only.test(k.name)) continue;
  const samples: number[] = [];
  const cpuSamples: number[] = [];
  // A followed kind's page 2 (by cursor) has its own summary: another plan, another cost.
  const samples2: number[] = [];
  const cpuSamples2: number[] = [];
  let rows = 0;
  for (let i = 0; i < ITER + 10; i++) {
    const [type, query] = k.make();
    const r = await run(type, query);
    if (i >= 10) {
      samples.push(r.ms);
      cpuSamples.push(r.cpuMs);
      rows += r.n;
    }
    if (k.follow && r.next && i >= 10) {
      const r2 = await run(type, r.next);
      samples2.push(r2.ms);
      cpuSamples2.push(r2.cpuMs);
    }
  }
  const parts: [string, string, number[], number[]][] = [[k.name, k.note, samples, cpuSamples]];
  if (samples2.length) parts.push([`${k.name} (page 2)`, `${k.note}: page 2 only`, samples2, cpuSamples2]);
  for (const [name, note, ms, cpuMs] of parts) {
    const summary = summarize(ms);
    const cpu = summarize(cpuMs);
    results.push({ name, note, summary, cpu, rows: rows / ITER });
    console.error(`  ${name.padEnd(36)} p50 ${summary.p50.toFixed(1)} ms  p95 ${summary.p95.toFixed(1)} ms  (CPU p50 ${cpu.p50.toFixed(1)} p95 ${cpu.p95.toFixed(1)})`);
  }
  if (opts.explain) {
    const [type, query] = k.make();
    console.error(explain(type, query.filter(([n]) => !n.startsWith('_include') && !n.startsWith('_revinclude'))));
  }
}

const fileMb = statSync(dbPath).size / 1e6;
const machine = { loadavg: loadavg(), cpus: cpus().length, cpu: cpus()[0]?.model, memoryGb: +(totalmem() / 1e9).toFixed(1), node: process.version };
console.log(`\nFHIR search, embedded store (node:sqlite), ${total} resources, database ${fileMb.toFixed(0)} MB; in-process through dispatch()`);
if (loaded)
  console.log(
    `ingest with every parameter indexed: ${(loaded.count / loaded.seconds).toFixed(0)} resources/s wall, ${(loaded.count / loaded.cpuSeconds).toFixed(0)}/s per CPU-second ` +
      `(${loaded.count} in ${loaded.seconds.toFixed(1)} s; extractIndex ${loaded.indexSeconds.toFixed(1)} s)`,
  );
console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} CPUs`);
// CPU: this process's user + system time per search (process.cpuUsage), less sensitive to a shared machine's
// load than wall time (not to cache effects).
console.log(`${'search'.padEnd(30)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'mean'.padStart(8)} ${'CPU p50'.padStart(8)} ${'CPU p95'.padStart(8)}  rows/page`);
for (const r of results)
  console.log(
    `${r.name.padEnd(30)} ${r.summary.p50.toFixed(1).padStart(8)} ${r.summary.p95.toFixed(1).padStart(8)} ${r.summary.mean.toFixed(1).padStart(8)} ` +
      `${r.cpu.p50.toFixed(1).padStart(8)} ${r.cpu.p95.toFixed(1).padStart(8)}  ${r.rows.toFixed(1)}`,
  );
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(
  join(RESULTS_DIR, `search-${total}.json`),
  JSON.stringify({ date: new Date().toISOString(), machine, resources: total, databaseMb: fileMb, ingest: loaded, iterations: ITER, results }, null, 2),
);
await store.close();
if (dir && !opts.keep) rmSync(dir, { recursive: true, force: true });

/**
 * `npm run bench [-- options]`: ingest and read throughput of the server over HTTP on the embedded store, with
 * the Synthea transaction Bundles, against a peer measured in the same run (see docs/performance.md).
 *
 * Phases (each server in its own process, so the load generator never shares its event loop):
 *  1. peer ingest: JSON.parse + JSON.stringify + node:sqlite insert of the same resources, 500-row transactions;
 *  2. server ingest: POST every Bundle (hospital and practitioner bundles first, then the patients with
 *     `--posters` in flight), resources per second of wall time;
 *  3. server reads: GET random Patient / Observation ids taken from the ingest responses, `--concurrency` in
 *     flight over keep-alive connections, until `--reads` requests or `--read-seconds`;
 *  4. peer reads: the same load against a bare node:http + node:sqlite server over the peer's file.
 * Prints a table and writes bench/results/latest.json. Exit 1 when the data is missing or a phase fails.
 */
import { loadSigningKey, signDevToken } from '../src/access/tokens.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DataMissing, PROJECT_ROOT, RESULTS_DIR, type BundleFile, listBundles, loadBundles, syntheaDir } from './lib/data.ts';
import { Client, waitUntilUp } from './lib/http.ts';
import { type PeerIngest, peerIngest } from './lib/peer.ts';
import { type Child, freePort, startChild } from './lib/proc.ts';
import { type LatencySummary, rng, summarize } from './lib/stats.ts';

const TARGETS = { ingestMin: 2000, ingestAim: 5000, readsMin: 5000, p99MaxMs: 10, validateCodeP99MaxMs: 5 };

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    bundles: { type: 'string' },
    posters: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '16' },
    reads: { type: 'string' },
    'read-seconds': { type: 'string' },
    synchronous: { type: 'string', default: process.env.DSP_SQLITE_SYNCHRONOUS ?? 'FULL' },
    prefer: { type: 'string', default: 'minimal' },
    'cpu-prof': { type: 'boolean', default: false },
    'skip-peer': { type: 'boolean', default: false },
    'skip-reads': { type: 'boolean', default: false },
    out: { type: 'string', default: join(RESULTS_DIR, 'latest.json') },
    help: { type: 'boolean', default: false },
  },
});

if (opts.help) {
  console.log(`npm run bench -- [options]
  --quick                 smoke run: the two shared bundles + 4 patient bundles, 2 s of reads
  --bundles N             patient bundles to load (default: all)
  --posters N             transactions in flight during ingest (default 2)
  --concurrency N         reads in flight (default 16)
  --reads N               most read requests (default 20000; quick 5000)
  --read-seconds S        longest read phase (default 10; quick 2)
  --synchronous FULL|NORMAL  SQLite synchronous for the server and the peer (default FULL)
  --prefer minimal|representation  Prefer: return= on the ingest POSTs (default minimal)
  --cpu-prof              run the server with --cpu-prof (profile in bench/results/profile/)
  --skip-peer, --skip-reads
  --out FILE              results file (default bench/results/latest.json)`);
  process.exit(0);
}

function intOpt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer (got "${raw}")`);
  return n;
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(1);
}

const quick = opts.quick;
const sync = opts.synchronous.toUpperCase();
if (sync !== 'FULL' && sync !== 'NORMAL') fail('--synchronous must be FULL or NORMAL');
const synchronous = sync as 'FULL' | 'NORMAL';
if (opts.prefer !== 'minimal' && opts.prefer !== 'representation') fail('--prefer must be minimal or representation');
const settings = {
  quick,
  patientBundles: intOpt('bundles', opts.bundles, quick ? 4 : Number.MAX_SAFE_INTEGER),
  posters: intOpt('posters', opts.posters, 2),
  concurrency: intOpt('concurrency', opts.concurrency, 16),
  maxReads: intOpt('reads', opts.reads, quick ? 5000 : 20_000),
  readSeconds: intOpt('read-seconds', opts['read-seconds'], quick ? 2 : 10),
  synchronous,
  prefer: opts.prefer,
  cpuProf: opts['cpu-prof'],
};

// -- data ---------------------------------------------------------------------------------------------------

let files: string[];
try {
  files = listBundles();
} catch (e) {
  if (e instanceof DataMissing) fail(e.message);
  throw e;
}
const shared = files.filter((f) => /hospitalInformation|practitionerInformation/.test(f));
const patients = files.filter((f) => !shared.includes(f)).slice(0, settings.patientBundles);
console.log(`bench: ${shared.length + patients.length} bundles from ${syntheaDir()} (decompressing into bench/results/cache on first use)`);
const bundles = await loadBundles([...shared, ...patients]);
const sharedBundles = bundles.slice(0, shared.length);
const patientBundles = bundles.slice(shared.length);
const totalResources = bundles.reduce((n, b) => n + b.entries, 0);
console.log(`bench: ${totalResources} resources, ${(bundles.reduce((n, b) => n + b.bytes, 0) / 1e6).toFixed(1)} MB of JSON`);

const machine = {
  nproc: availableParallelism(),
  cpu: cpus()[0]?.model ?? '?',
  memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100),
  git: gitState(),
};

/** The commit measured, and whether src/ had uncommitted changes (others' work in progress). */
function gitState(): { commit?: string; srcDirty?: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim() !== '';
    return { commit, srcDirty: dirty };
  } catch {
    return {};
  }
}

const work = mkdtempSync(join(tmpdir(), 'dsp-bench-'));
const children: Child[] = [];
const cleanup = async () => {
  for (const c of children) await c.stop();
  rmSync(work, { recursive: true, force: true });
};
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

// -- phases -------------------------------------------------------------------------------------------------

interface IngestResult {
  resources: number;
  bundles: number;
  seconds: number;
  perSecond: number;
  serverCpuSeconds: number;
  /** Patient transactions only (after the shared batch bundles). */
  transactions: { resources: number; seconds: number; perSecond: number; bundleMs: LatencySummary; serverCpuSeconds: number; auditCatchUpCpuSeconds: number; monotonicUs: [number, number] };
  shared: { resources: number; seconds: number };
}

interface ReadResult extends LatencySummary {
  seconds: number;
  perSecond: number;
  errors: number;
  serverCpuSeconds: number;
}

async function postBundle(client: Client, b: BundleFile, ids: Map<string, string[]>): Promise<void> {
  const s0 = performance.now();
  const r = await client.send('POST', '/fhir', b.text, { prefer: `return=${settings.prefer}` }).catch((e: Error) => {
    throw new Error(`POST ${b.name} failed after ${Math.round(performance.now() - s0)} ms: ${e.message}`);
  });
  if (r.status !== 200) {
    let detail = r.body.slice(0, 800);
    try {
      const oo = JSON.parse(r.body) as { issue?: { diagnostics?: string }[] };
      detail = (oo.issue ?? []).map((i) => i.diagnostics).slice(0, 5).join(' | ') || detail;
    } catch {
      /* not JSON */
    }
    throw new Error(`POST ${b.name} answered ${r.status}: ${detail}`);
  }
  const response = JSON.parse(r.body) as { entry?: { response?: { status?: string; location?: string } }[] };
  const entries = response.entry ?? [];
  if (entries.length !== b.entries) throw new Error(`POST ${b.name}: ${entries.length} response entries for ${b.entries} entries`);
  entries.forEach((e, i) => {
    const status = e.response?.status ?? '';
    if (!/^20[01]/.test(status)) throw new Error(`POST ${b.name}: entry ${i} answered ${status}`);
    const m = /^(?:.*\/)?(Patient|Observation)\/([^/]+)/.exec(e.response?.location ?? '');
    if (m) ids.get(m[1])!.push(m[2]);
  });
}

async function ingest(client: Client, server: Child, ids: Map<string, string[]>): Promise<IngestResult> {
  const cpu0 = server.cpuSeconds();
  const t0 = performance.now();
  for (const b of sharedBundles) await postBundle(client, b, ids);
  const t1 = performance.now();
  const cpu1 = server.cpuSeconds();
  const mono1 = Number(process.hrtime.bigint() / 1000n);
  const bundleMs: number[] = [];
  let next = 0;
  let done = 0;
  const poster = async () => {
    while (next < patientBundles.length) {
      const b = patientBundles[next++];
      const s = performance.now();
      await postBundle(client, b, ids);
      bundleMs.push(performance.now() - s);
      if (++done % 20 === 0) process.stdout.write(`  ${done}/${patientBundles.length} patient bundles\n`);
    }
  };
  await Promise.all(Array.from({ length: settings.posters }, poster));
  const t2 = performance.now();
  const cpu2 = server.cpuSeconds();
  const mono2 = Number(process.hrtime.bigint() / 1000n);
  // The audit trail indexes its entries later (when idle, or before an AuditEvent search): one search makes
  // the server catch up, so that the CPU of the ingest's audit entries is counted in full.
  const catchUp = await client.send('GET', '/fhir/AuditEvent?_count=1&_total=none');
  if (catchUp.status !== 200) throw new Error(`GET AuditEvent after the ingest answered ${catchUp.status}`);
  const auditCatchUpCpuSeconds = server.cpuSeconds() - cpu2;
  const sharedResources = sharedBundles.reduce((n, b) => n + b.entries, 0);
  const txResources = patientBundles.reduce((n, b) => n + b.entries, 0);
  return {
    resources: sharedResources + txResources,
    bundles: bundles.length,
    seconds: (t2 - t0) / 1000,
    perSecond: (sharedResources + txResources) / ((t2 - t0) / 1000),
    serverCpuSeconds: server.cpuSeconds() - cpu0,
    transactions: { resources: txResources, seconds: (t2 - t1) / 1000, perSecond: txResources / ((t2 - t1) / 1000), bundleMs: summarize(bundleMs), serverCpuSeconds: cpu2 - cpu1, auditCatchUpCpuSeconds, monotonicUs: [mono1, mono2] },
    shared: { resources: sharedResources, seconds: (t1 - t0) / 1000 },
  };
}

/**
 * Terminology over HTTP (issue 5): ValueSet/$validate-code on a required R4 binding (resource-types), 61 codes
 * drawn at random (one in five is not in the value set, so both answers are measured). Same load generator
 * as the reads.
 */
const RESOURCE_TYPE_CODES = ('Account ActivityDefinition AllergyIntolerance Appointment AuditEvent Basic Binary Bundle CarePlan CareTeam ' +
  'ChargeItem Claim ClinicalImpression CodeSystem Communication Composition ConceptMap Condition Consent Coverage DetectedIssue ' +
  'Device DiagnosticReport DocumentReference Encounter Endpoint EpisodeOfCare FamilyMemberHistory Flag Goal Group HealthcareService ' +
  'ImagingStudy Immunization Library List Location Measure Media Medication MedicationAdministration MedicationDispense ' +
  'MedicationRequest MedicationStatement NutritionOrder Observation Organization Patient Practitioner PractitionerRole Procedure ' +
  'Provenance Questionnaire QuestionnaireResponse RelatedPerson RiskAssessment ServiceRequest Specimen StructureDefinition Task ValueSet').split(' ');
function validateCodePath(random: () => number): string {
  const known = RESOURCE_TYPE_CODES[Math.floor(random() * RESOURCE_TYPE_CODES.length)]!;
  const code = random() < 0.2 ? `${known}X` : known;
  return `/fhir/ValueSet/$validate-code?url=${encodeURIComponent('http://hl7.org/fhir/ValueSet/resource-types')}&system=${encodeURIComponent('http://hl7.org/fhir/resource-types')}&code=${code}`;
}

/**
 * Latency of $validate-code with one request in flight (what the issue-5 target judges), interleaved in a
 * shuffled order with as many point reads of the same server (the peer), so both see the same machine load.
 */
async function sequentialValidateCode(client: Client, ids: { Patient: string[]; Observation: string[] }, seed: number): Promise<{ validateCode: LatencySummary; reads: LatencySummary }> {
  const random = rng(seed);
  const n = quick ? 500 : 2000;
  const types = (['Patient', 'Observation'] as const).filter((t) => ids[t].length);
  const pick = (vc: boolean) => {
    if (vc || !types.length) return validateCodePath(random);
    const t = types[Math.floor(random() * types.length)];
    return `/fhir/${t}/${ids[t][Math.floor(random() * ids[t].length)]}`;
  };
  const order = Array.from({ length: 2 * n }, (_, i) => i % 2 === 0);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let i = 0; i < 100; i++) await client.send('GET', pick(i % 2 === 0));
  const vc: number[] = [];
  const rd: number[] = [];
  let errors = 0;
  for (const isVc of order) {
    const path = pick(isVc);
    const r = await client.send('GET', path);
    if (r.status !== 200 && errors++ === 0) console.error(`bench: GET ${path} answered ${r.status}: ${r.body.slice(0, 200)}`);
    (isVc ? vc : rd).push(r.ms);
  }
  return { validateCode: summarize(vc), reads: summarize(rd) };
}

async function reads(client: Client, server: Child, ids: { Patient: string[]; Observation: string[] }, seed: number, paths?: (random: () => number) => string): Promise<ReadResult> {
  const random = rng(seed);
  const types = (['Patient', 'Observation'] as const).filter((t) => ids[t].length);
  if (!types.length && !paths) throw new Error('no Patient or Observation ids to read');
  const pick = paths ? () => paths(random) : () => {
    const t = types[Math.floor(random() * types.length)];
    const list = ids[t];
    return `/fhir/${t}/${list[Math.floor(random() * list.length)]}`;
  };
  // Warm-up (connections, JIT, page cache), not measured.
  await Promise.all(Array.from({ length: settings.concurrency }, async () => {
    for (let i = 0; i < 30; i++) await client.send('GET', pick());
  }));
  const samples: number[] = [];
  let errors = 0;
  let firstError = '';
  let issued = 0;
  const cpu0 = server.cpuSeconds();
  const t0 = performance.now();
  const deadline = t0 + settings.readSeconds * 1000;
  const worker = async () => {
    while (issued < settings.maxReads && performance.now() < deadline) {
      issued++;
      const path = pick();
      const r = await client.send('GET', path);
      samples.push(r.ms);
      if (r.status !== 200) {
        errors++;
        firstError ||= `GET ${path} answered ${r.status}: ${r.body.slice(0, 200)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  if (errors) console.error(`bench: ${errors} read errors, first: ${firstError}`);
  return { ...summarize(samples), seconds, perSecond: samples.length / seconds, errors, serverCpuSeconds: server.cpuSeconds() - cpu0 };
}

async function startAndWait(args: string[], env: NodeJS.ProcessEnv, port: number, what: string): Promise<{ child: Child; client: Client }> {
  const child = startChild(args, env, PROJECT_ROOT);
  children.push(child);
  const client = new Client(port, Math.max(settings.concurrency, settings.posters));
  try {
    await waitUntilUp(client, '/fhir/metadata', 60_000, child.alive);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}\n${child.output()}`);
  }
  return { child, client };
}

// -- run ----------------------------------------------------------------------------------------------------

const results: Record<string, unknown> = { date: new Date().toISOString(), machine, settings: { ...settings, patientBundles: patientBundles.length } };
let peer: PeerIngest | undefined;
let server: { ingest: IngestResult; reads?: ReadResult; validateCode?: ReadResult; validateCodeSequential?: { validateCode: LatencySummary; reads: LatencySummary }; peakRssMb: number } | undefined;
let peerReads: ReadResult | undefined;

try {
  if (!opts['skip-peer']) {
    console.log(`bench: peer ingest (JSON.parse + node:sqlite insert, WAL, synchronous=${synchronous}, 500-row transactions)`);
    peer = peerIngest(join(work, 'peer.sqlite'), bundles, synchronous);
    console.log(`  ${peer.resources} resources in ${peer.seconds.toFixed(2)} s = ${Math.round(peer.perSecond)}/s`);
  }

  console.log('bench: server ingest over HTTP');
  const port = await freePort();
  const profDir = join(RESULTS_DIR, 'profile');
  if (settings.cpuProf) mkdirSync(profDir, { recursive: true });
  const nodeArgs = [...(settings.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), 'src/cli/main.ts', 'serve'];
  const env = {
    ...process.env,
    PORT: String(port),
    DSP_HOST: '127.0.0.1',
    DSP_DATA_DIR: join(work, 'server'),
    DSP_LOAD_EXAMPLES: 'false',
    DSP_LOG_LEVEL: 'silent',
    DSP_SQLITE_SYNCHRONOUS: synchronous,
  };
  // No token, no data: the bench acts as an administrator with a development token signed by the key the
  // server will use (created in its data folder before it starts).
  const token = await signDevToken(await loadSigningKey(join(work, 'server', 'signing-key.jwk.json')), 'dsp-fhir', { role: 'admin', id: 'Practitioner/bench' });
  const { child, client } = await startAndWait(nodeArgs, env, port, 'server');
  client.defaultHeaders.authorization = `Bearer ${token}`;
  const ids = new Map<string, string[]>([['Patient', []], ['Observation', []]]);
  // One connection per Bundle: the server blocks its event loop for seconds on a large transaction, and an
  // idle keep-alive socket reused meanwhile can be closed by its keep-alive timer (ECONNRESET; see the doc).
  const posting = new Client(port, settings.posters, false);
  posting.defaultHeaders.authorization = `Bearer ${token}`;
  const mono = () => Number(process.hrtime.bigint() / 1000n);
  const phases: Record<string, [number, number]> = {};
  results.phasesMonotonicUs = phases;
  let phaseStart = mono();
  const ing = await ingest(posting, child, ids).catch((e: Error) => {
    throw new Error(`${e.message}${child.alive() ? '' : `\nserver output:\n${child.output()}`}`);
  });
  console.log(`  ${ing.resources} resources in ${ing.seconds.toFixed(2)} s = ${Math.round(ing.perSecond)}/s (server CPU ${ing.serverCpuSeconds.toFixed(1)} s)`);
  phases.ingest = [phaseStart, mono()];
  phases.transactions = ing.transactions.monotonicUs;
  posting.close();
  server = { ingest: ing, peakRssMb: NaN };
  if (!opts['skip-reads']) {
    console.log(`bench: server reads (${settings.concurrency} in flight, up to ${settings.maxReads} or ${settings.readSeconds} s)`);
    phaseStart = mono();
    server.reads = await reads(client, child, { Patient: ids.get('Patient')!, Observation: ids.get('Observation')! }, 42);
    phases.reads = [phaseStart, mono()];
    console.log(`  ${server.reads.count} reads in ${server.reads.seconds.toFixed(2)} s = ${Math.round(server.reads.perSecond)}/s, p99 ${server.reads.p99.toFixed(2)} ms`);
    console.log(`bench: server ValueSet/$validate-code (${settings.concurrency} in flight)`);
    phaseStart = mono();
    server.validateCode = await reads(client, child, { Patient: [], Observation: [] }, 43, validateCodePath);
    phases.validateCode = [phaseStart, mono()];
    console.log(`  ${server.validateCode.count} calls in ${server.validateCode.seconds.toFixed(2)} s = ${Math.round(server.validateCode.perSecond)}/s, p99 ${server.validateCode.p99.toFixed(2)} ms`);
    console.log('bench: server ValueSet/$validate-code, one request in flight (interleaved with as many reads)');
    phaseStart = mono();
    server.validateCodeSequential = await sequentialValidateCode(client, { Patient: ids.get('Patient')!, Observation: ids.get('Observation')! }, 44);
    phases.validateCodeSequential = [phaseStart, mono()];
    const sq = server.validateCodeSequential;
    console.log(`  ${sq.validateCode.count} calls: p50 ${sq.validateCode.p50.toFixed(2)} / p99 ${sq.validateCode.p99.toFixed(2)} ms (reads p50 ${sq.reads.p50.toFixed(2)} / p99 ${sq.reads.p99.toFixed(2)} ms)`);
  }
  server.peakRssMb = child.peakRssMb();
  client.close();
  const code = await child.stop();
  if (code !== 0) console.error(`bench: the server exited with code ${code}\n${child.output()}`);

  if (peer && !opts['skip-reads']) {
    console.log('bench: peer reads (bare node:http + node:sqlite point SELECT)');
    const peerPort = await freePort();
    const p = await startAndWait(['bench/peer-server.ts', join(work, 'peer.sqlite'), String(peerPort)], process.env, peerPort, 'peer server');
    peerReads = await reads(p.client, p.child, peer.ids, 42);
    console.log(`  ${peerReads.count} reads in ${peerReads.seconds.toFixed(2)} s = ${Math.round(peerReads.perSecond)}/s, p99 ${peerReads.p99.toFixed(2)} ms`);
    p.client.close();
    await p.child.stop();
  }
} catch (e) {
  await cleanup();
  fail((e as Error).message);
}
await cleanup();

// -- report -------------------------------------------------------------------------------------------------

const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? Math.round((a / b) * 1000) / 1000 : undefined);
const ing = server!.ingest;
const rd = server!.reads;
const vc = server!.validateCode;
const vcSeq = server!.validateCodeSequential;
const targets = {
  ingest: { target: `>= ${TARGETS.ingestMin}/s (aim ${TARGETS.ingestAim})`, value: Math.round(ing.perSecond), met: ing.perSecond >= TARGETS.ingestMin, aimMet: ing.perSecond >= TARGETS.ingestAim },
  ...(rd
    ? {
        reads: { target: `>= ${TARGETS.readsMin}/s`, value: Math.round(rd.perSecond), met: rd.perSecond >= TARGETS.readsMin },
        readP99: { target: `< ${TARGETS.p99MaxMs} ms`, value: Math.round(rd.p99 * 100) / 100, met: rd.p99 < TARGETS.p99MaxMs },
      }
    : {}),
  // Latency, one request in flight (the 16-in-flight phase is reported as throughput, not judged here).
  ...(vcSeq ? { validateCodeP99: { target: `< ${TARGETS.validateCodeP99MaxMs} ms (sequential)`, value: Math.round(vcSeq.validateCode.p99 * 100) / 100, met: vcSeq.validateCode.p99 < TARGETS.validateCodeP99MaxMs } } : {}),
};
Object.assign(results, {
  peer: peer && { ingest: { resources: peer.resources, seconds: peer.seconds, cpuSeconds: peer.cpuSeconds, perSecond: peer.perSecond }, reads: peerReads },
  server: { ...server, ingest: ing },
  ratios: {
    ingestVsPeer: ratio(ing.perSecond, peer?.perSecond),
    ingestCpuVsPeer: peer ? ratio(peer.cpuSeconds / peer.resources, ing.serverCpuSeconds / ing.resources) : undefined,
    readsVsPeer: ratio(rd?.perSecond, peerReads?.perSecond),
    readP99VsPeer: ratio(rd?.p99, peerReads?.p99),
    validateCodeVsPeerReads: ratio(vc?.perSecond, peerReads?.perSecond),
    validateCodeSequentialP99VsServerReads: ratio(vcSeq?.validateCode.p99, vcSeq?.reads.p99),
  },
  targets,
});
(results.machine as Record<string, unknown>).loadavgAfter = loadavg().map((x) => Math.round(x * 100) / 100);

const f0 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : Math.round(x).toLocaleString('en-US'));
const f2 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2));
const r3 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(3));
const rows: [string, string, string, string][] = [
  ['ingest, resources/s (wall)', f0(ing.perSecond), f0(peer?.perSecond), r3(ratio(ing.perSecond, peer?.perSecond))],
  ['ingest, CPU ms per 1000 resources', f0((ing.serverCpuSeconds / ing.resources) * 1e6), f0(peer ? (peer.cpuSeconds / peer.resources) * 1e6 : undefined), r3((results.ratios as { ingestCpuVsPeer?: number }).ingestCpuVsPeer)],
  ['  the 2 batch Bundles, seconds', f2(ing.shared.seconds), '', ''],
  ['  patient transactions only, /s', f0(ing.transactions.perSecond), '', ''],
  ['  patient transactions, CPU ms per 1000', f0((ing.transactions.serverCpuSeconds * 1e6) / ing.transactions.resources), '', ''],
  ['  + audit index catch-up, CPU ms per 1000', f0(((ing.transactions.serverCpuSeconds + ing.transactions.auditCatchUpCpuSeconds) * 1e6) / ing.transactions.resources), '', ''],
  ['  bundle latency p50 / p99, ms', `${f0(ing.transactions.bundleMs.p50)} / ${f0(ing.transactions.bundleMs.p99)}`, '', ''],
];
if (rd) {
  rows.push(
    ['reads/s', f0(rd.perSecond), f0(peerReads?.perSecond), r3(ratio(rd.perSecond, peerReads?.perSecond))],
    ['read p50, ms', f2(rd.p50), f2(peerReads?.p50), r3(ratio(rd.p50, peerReads?.p50))],
    ['read p95, ms', f2(rd.p95), f2(peerReads?.p95), r3(ratio(rd.p95, peerReads?.p95))],
    ['read p99, ms', f2(rd.p99), f2(peerReads?.p99), r3(ratio(rd.p99, peerReads?.p99))],
    ['read max, ms', f2(rd.max), f2(peerReads?.max), ''],
  );
}
if (vc) {
  // No terminology peer: the bare point read is the floor any HTTP answer of this machine can reach.
  rows.push(
    ['$validate-code/s (peer: reads)', f0(vc.perSecond), f0(peerReads?.perSecond), r3(ratio(vc.perSecond, peerReads?.perSecond))],
    ['$validate-code p50 / p99, ms', `${f2(vc.p50)} / ${f2(vc.p99)}`, peerReads ? `${f2(peerReads.p50)} / ${f2(peerReads.p99)}` : '-', r3(ratio(vc.p99, peerReads?.p99))],
  );
}
if (vcSeq) {
  // One in flight, p50 / p95 / p99 ms; the peer column is the same server's point reads, interleaved with the calls.
  rows.push(
    ['$validate-code 1 in flight p50/95/99', `${f2(vcSeq.validateCode.p50)} / ${f2(vcSeq.validateCode.p95)} / ${f2(vcSeq.validateCode.p99)}`, `${f2(vcSeq.reads.p50)} / ${f2(vcSeq.reads.p95)} / ${f2(vcSeq.reads.p99)}`, r3(ratio(vcSeq.validateCode.p99, vcSeq.reads.p99))],
  );
}
const widths = [36, 14, 14, 16];
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
console.log('');
console.log(`machine: ${machine.nproc} cores (${machine.cpu}), ${machine.memoryGb} GB, Node ${machine.node}, load ${machine.loadavgBefore.join(' ')}`);
console.log(`code: ${machine.git.commit ?? '?'}${machine.git.srcDirty ? ' + uncommitted changes in src/' : ''}`);
console.log(`${ing.resources} resources in ${ing.bundles} bundles, synchronous=${synchronous}, ${settings.posters} posters, ${settings.concurrency} reads in flight`);
console.log(line(['', 'server', 'peer', 'ratio*']));
// ratio*: throughput rows = server / peer (fraction of the peer); CPU row = peer CPU / server CPU per resource
// (efficiency, fraction of the peer); latency rows = server / peer (multiple of the peer's latency).
for (const r of rows) console.log(line(r));
console.log('');
for (const [k, t] of Object.entries(targets)) {
  const aim = 'aimMet' in t ? (t.aimMet ? ' (aim met)' : ' (aim not met)') : '';
  console.log(`target ${k}: ${t.target} -> ${t.value}: ${t.met ? 'MET' : 'MISSED'}${aim}`);
}
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(opts.out, JSON.stringify(results, null, 2) + '\n');
console.log(`\nresults written to ${opts.out}`);

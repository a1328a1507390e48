/**
 * `node_modules/.bin/node bench/terminology-http.ts [options]`: latency and throughput of the terminology
 * operations over HTTP (issue 5: p99 < 5 ms) against peers answered by the same server in the same run.
 *
 * The server runs in its own process (src/cli/main.ts serve, empty data folder, no examples, logging off) with
 * every MVC value set, the LU ConceptMaps and the other static content loaded; the client (this process) sends
 * GET requests over keep-alive connections. Request kinds:
 *   validate-code  ValueSet/$validate-code on eHDSIIllnessandDisorder 8.0.0 (14,158 ICD-10 codes), codes drawn
 *                  from its expansion, one in seven absent (result=false);
 *   translate      ConceptMap/$translate, LU VIDAL substance -> ATC (forward);
 *   translate-rev  ConceptMap/$translate, ATC -> VIDAL (reverse=true);
 *   read           peer: GET Patient/{id} (a plain point read);
 *   metadata       peer: GET metadata (only when named in --kinds: each answer rebuilds and serialises the
 *                  CapabilityStatement, ~1.4 MB of garbage, and the young-generation collections it causes land on
 *                  whatever request comes next).
 * Two phases:
 *   sequential  one request in flight, the kinds interleaved in a shuffled order (the same number of each), so
 *               every kind sees the same machine load: p50/p95/p99 per kind and the p99 ratio to the read's.
 *               This is the latency the issue-5 target (p99 < 5 ms) is judged on.
 *   in flight   `--concurrency` requests in flight (default 16; 0 skips the phase), one kind at a time (the
 *               operations and the read): calls/s, server CPU per call and latency under load (throughput).
 * Writes bench/results/terminology-http.json.
 *
 * Options: --requests N (per kind, default 3000), --warmup N (per kind, default 300), --concurrency C,
 * --inflight-requests N (per kind in the in-flight phase, default --requests),
 * --kinds a,b (default validate-code,translate,translate-rev,read; the read is always kept as the peer), --synchronous FULL|NORMAL (the
 * server's DSP_SQLITE_SYNCHRONOUS; default FULL),
 * --cpu-prof (server profile in bench/results/profile/; `node bench/profile-summary.ts --phase sequential
 * --results bench/results/terminology-http.json` keeps that phase; the in-flight phases are named
 * `inflight-<kind>`), --out FILE.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { loadSigningKey, signDevToken } from '../src/access/tokens.ts';
import { PROJECT_ROOT, RESULTS_DIR } from './lib/data.ts';
import { Client, waitUntilUp } from './lib/http.ts';
import { freePort, startChild } from './lib/proc.ts';
import { rng, summarize, type LatencySummary } from './lib/stats.ts';

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '16' },
    'inflight-requests': { type: 'string' },
    kinds: { type: 'string' },
    synchronous: { type: 'string', default: process.env.DSP_SQLITE_SYNCHRONOUS ?? 'FULL' },
    'cpu-prof': { type: 'boolean', default: false },
    out: { type: 'string', default: join(RESULTS_DIR, 'terminology-http.json') },
  },
});
const perKind = Number(opts.requests);
const warmup = Number(opts.warmup);
const concurrency = Number(opts.concurrency);
const inflightPerKind = Number(opts['inflight-requests'] ?? opts.requests);
for (const [k, v] of [['requests', perKind], ['warmup', warmup], ['concurrency', concurrency], ['inflight-requests', inflightPerKind]] as const) {
  if (!Number.isInteger(v) || v < (k === 'warmup' || k === 'concurrency' ? 0 : 1)) {
    console.error(`bench: --${k} must be a positive integer`);
    process.exit(1);
  }
}

const synchronous = opts.synchronous.toUpperCase();
if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
  console.error('bench: --synchronous must be FULL or NORMAL');
  process.exit(1);
}

/** Resident memory of a process in MB (Linux /proc; NaN elsewhere). */
function rssMb(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const VS = 'http://terminology.ehdsi.eu/ValueSet/eHDSIIllnessandDisorder';
const ICD10 = 'http://hl7.org/fhir/sid/icd-10';
const VIDAL_SUBSTANCES = 'urn:oid:1.3.182.5.35';
const ATC = 'http://www.whocc.no/atc';
const q = (params: Record<string, string>) => new URLSearchParams(params).toString();

const work = mkdtempSync(join(tmpdir(), 'dsp-bench-tx-'));
const port = await freePort();
const profDir = join(RESULTS_DIR, 'profile');
if (opts['cpu-prof']) mkdirSync(profDir, { recursive: true });
const child = startChild(
  [...(opts['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), 'src/cli/main.ts', 'serve'],
  { ...process.env, PORT: String(port), DSP_HOST: '127.0.0.1', DSP_DATA_DIR: join(work, 'server'), DSP_LOAD_EXAMPLES: 'false', DSP_LOG_LEVEL: 'silent', DSP_SQLITE_SYNCHRONOUS: synchronous },
  PROJECT_ROOT,
);
const token = await signDevToken(await loadSigningKey(join(work, 'server', 'signing-key.jwk.json')), 'dsp-fhir', { role: 'admin', id: 'Practitioner/bench' });
const client = new Client(port, Math.max(1, concurrency));
client.defaultHeaders.authorization = `Bearer ${token}`;

try {
  await waitUntilUp(client, '/fhir/metadata', 60_000, child.alive);
  // The first terminology call loads the static content (seconds): not measured, but its memory is.
  const rssBefore = rssMb(child.proc.pid);
  const t0 = performance.now();
  const exp = await client.send('GET', `/fhir/ValueSet/$expand?${q({ url: VS, valueSetVersion: '8.0.0', count: '1000', offset: '3000' })}`);
  if (exp.status !== 200) throw new Error(`$expand answered ${exp.status}: ${exp.body.slice(0, 300)}`);
  const rssLoaded = rssMb(child.proc.pid);
  console.log(`bench: terminology loaded by the first call in ${Math.round(performance.now() - t0)} ms; server RSS ${rssBefore.toFixed(0)} -> ${rssLoaded.toFixed(0)} MB`);
  const codes = ((JSON.parse(exp.body) as { expansion?: { contains?: { code?: string }[] } }).expansion?.contains ?? []).map((c) => c.code!).filter(Boolean);
  if (codes.length < 100) throw new Error(`the expansion gave ${codes.length} codes`);
  const patient = await client.send('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Bench' }] }), { prefer: 'return=representation' });
  if (patient.status !== 201) throw new Error(`POST Patient answered ${patient.status}`);
  const patientId = (JSON.parse(patient.body) as { id: string }).id;

  const random = rng(7);
  const substances = ['3728', '18996', '18204', '18416'];
  const atc = ['J05AF01', 'J05AF07', 'J05AG01', 'J05AF06'];
  const kinds: { name: string; peer?: boolean; path: () => string }[] = [
    {
      name: 'validate-code',
      path: () => {
        const code = random() < 1 / 7 ? `X${Math.floor(random() * 1000)}.9` : codes[Math.floor(random() * codes.length)];
        return `/fhir/ValueSet/$validate-code?${q({ url: VS, valueSetVersion: '8.0.0', system: ICD10, code })}`;
      },
    },
    { name: 'translate', path: () => `/fhir/ConceptMap/$translate?${q({ system: VIDAL_SUBSTANCES, code: substances[Math.floor(random() * 4)], targetsystem: ATC })}` },
    { name: 'translate-rev', path: () => `/fhir/ConceptMap/$translate?${q({ system: ATC, code: atc[Math.floor(random() * 4)], reverse: 'true' })}` },
    { name: 'read', peer: true, path: () => `/fhir/Patient/${patientId}` },
    { name: 'metadata', peer: true, path: () => '/fhir/metadata' },
  ];
  {
    const want = new Set((opts.kinds ?? 'validate-code,translate,translate-rev,read').split(','));
    for (let i = kinds.length - 1; i >= 0; i--) if (!want.has(kinds[i].name)) kinds.splice(i, 1);
    if (!kinds.some((k) => k.name === 'read')) kinds.push({ name: 'read', peer: true, path: () => `/fhir/Patient/${patientId}` });
  }
  let errors = 0;
  let firstError = '';
  const mono = () => Number(process.hrtime.bigint() / 1000n);
  const phasesMonotonicUs: Record<string, [number, number]> = {};
  // Sends `seq` (indexes into kinds), `inFlight` at a time; the latency of each answer goes to samples[kind].
  const run = async (seq: number[], inFlight: number, samples?: number[][]) => {
    let next = 0;
    const worker = async () => {
      while (next < seq.length) {
        const k = seq[next++];
        const path = kinds[k].path();
        const r = await client.send('GET', path);
        if (r.status !== 200) {
          errors++;
          firstError ||= `GET ${path} answered ${r.status}: ${r.body.slice(0, 200)}`;
        }
        samples?.[k].push(r.ms);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  };
  // Kinds in a shuffled order (the same count of each): a fixed rotation would always put the same kind after
  // the expensive metadata answer (its garbage collection and socket work land on the next request).
  const shuffled = (total: number) => {
    const o = Array.from({ length: total }, (_, i) => i % kinds.length);
    for (let i = o.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [o[i], o[j]] = [o[j], o[i]];
    }
    return o;
  };
  const f = (x: number) => x.toFixed(2);
  // Before a measured phase: the audit trail's backlog indexed (an AuditEvent search waits for it), then the
  // server idle; a phase that ran during that catch-up would be charged for the previous phase's entries.
  const settle = async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const indexed = await client.send('GET', '/fhir/AuditEvent?_count=1&_summary=count');
    if (indexed.status !== 200) throw new Error(`GET AuditEvent answered ${indexed.status}: ${indexed.body.slice(0, 200)}`);
    await sleep(700);
    for (let i = 0; i < 60; i++) {
      const c0 = child.cpuSeconds();
      await sleep(250);
      if (child.cpuSeconds() - c0 < 0.0125) return;
    }
  };

  // -- sequential: latency ----------------------------------------------------------------------------------
  await run(shuffled(warmup * kinds.length), Math.max(1, Math.min(concurrency, 4)));
  await settle();
  const seqSamples = kinds.map(() => [] as number[]);
  const cpu0 = child.cpuSeconds();
  const load0 = loadavg()[0];
  let t = mono();
  const m0 = performance.now();
  await run(shuffled(perKind * kinds.length), 1, seqSamples);
  phasesMonotonicUs.sequential = [t, mono()];
  const seconds = (performance.now() - m0) / 1000;
  const cpu = child.cpuSeconds() - cpu0;
  if (errors) throw new Error(`${errors} errors, first: ${firstError}`);
  const summary: Record<string, LatencySummary> = {};
  kinds.forEach((k, i) => (summary[k.name] = summarize(seqSamples[i])));
  const read = summary.read;
  console.log(`bench: sequential, ${perKind} requests per kind, synchronous=${synchronous}, ${seconds.toFixed(1)} s, ${Math.round((perKind * kinds.length) / seconds)} requests/s, server CPU ${Math.round((cpu * 1e6) / (perKind * kinds.length))} us per request (all kinds), load average ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)} on ${availableParallelism()} cores`);
  console.log('| kind, sequential | p50 ms | p95 ms | p99 ms | max ms | p99 / read p99 |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const k of kinds) {
    const s = summary[k.name];
    console.log(`| ${k.name}${k.peer ? ' (peer)' : ''} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.p99)} | ${f(s.max)} | ${(s.p99 / read.p99).toFixed(2)} |`);
  }
  const opKinds = ['validate-code', 'translate', 'translate-rev'].filter((k) => summary[k]);
  const worst = Math.max(...opKinds.map((k) => summary[k].p99));

  // -- N in flight: throughput, one kind at a time -------------------------------------------------------------
  interface InFlight extends LatencySummary {
    perSecond: number;
    serverCpuUsPerCall: number;
  }
  const inflight: Record<string, InFlight> = {};
  if (concurrency > 0) {
    const measured = kinds.map((k, i) => ({ k, i })).filter(({ k }) => k.name !== 'metadata');
    for (const { k, i } of measured) {
      await run(Array.from({ length: Math.min(300, warmup) }, () => i), concurrency);
      await settle();
      const samples = kinds.map(() => [] as number[]);
      const c0 = child.cpuSeconds();
      t = mono();
      const w0 = performance.now();
      await run(Array.from({ length: inflightPerKind }, () => i), concurrency, samples);
      phasesMonotonicUs[`inflight-${k.name}`] = [t, mono()];
      const secs = (performance.now() - w0) / 1000;
      if (errors) throw new Error(`${errors} errors, first: ${firstError}`);
      inflight[k.name] = { ...summarize(samples[i]), perSecond: inflightPerKind / secs, serverCpuUsPerCall: ((child.cpuSeconds() - c0) * 1e6) / inflightPerKind };
    }
    const r = inflight.read;
    console.log(`\nbench: ${concurrency} in flight, ${inflightPerKind} requests of one kind at a time, load average ${loadavg()[0].toFixed(1)}`);
    console.log('| kind, in flight | calls/s | / read | server CPU us per call | p50 ms | p99 ms |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const { k } of measured) {
      const s = inflight[k.name];
      console.log(`| ${k.name}${k.peer ? ' (peer)' : ''} | ${Math.round(s.perSecond)} | ${(s.perSecond / r.perSecond).toFixed(2)} | ${Math.round(s.serverCpuUsPerCall)} | ${f(s.p50)} | ${f(s.p99)} |`);
    }
  }
  console.log(`\ntarget p99 < 5 ms (sequential) for $validate-code and $translate: ${worst < 5 ? 'met' : 'NOT met'} (worst p99 ${f(worst)} ms)`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  let commit = '';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    /* no git */
  }
  writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), commit, perKind, inflightPerKind, concurrency, synchronous, seconds, serverCpuSeconds: cpu, loadavg: [load0, loadavg()[0]], summary, inflight, targetMet: worst < 5, rssMb: { beforeTerminology: rssBefore, afterLoad: rssLoaded, peak: child.peakRssMb() }, phasesMonotonicUs }, null, 2));
} finally {
  client.close();
  const code = await child.stop();
  if (code !== 0 && code !== null) console.error(`bench: the server exited with code ${code}\n${child.output()}`);
  rmSync(work, { recursive: true, force: true });
}

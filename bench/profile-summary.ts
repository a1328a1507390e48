/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --cpu-prof`, written to bench/results/profile/):
 * self time by area (project folder / library), self time by function, and inclusive time of the project's
 * functions (a function's samples counted once per stack, recursion included once).
 *
 * Usage: node bench/profile-summary.ts [file.cpuprofile] [--top N] [--phase ingest|reads] [--results FILE]
 * --phase keeps the samples taken during that phase of the run, using the monotonic-clock phase boundaries
 * that bench/run.ts writes to bench/results/latest.json (CLOCK_MONOTONIC is shared by processes on Linux).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { PROJECT_ROOT, RESULTS_DIR } from './lib/data.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
const valueOf = (flag: string) => (args.indexOf(flag) >= 0 ? args[args.indexOf(flag) + 1] : undefined);
const top = Number(valueOf('--top') ?? 30);
const phase = valueOf('--phase');
let file = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!file) {
  const dir = join(RESULTS_DIR, 'profile');
  const all = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
  if (!all.length) {
    console.error(`no .cpuprofile in ${dir}; run npm run bench -- --cpu-prof first`);
    process.exit(1);
  }
  // One run writes a profile per thread (the store's and the audit trail's worker threads too): of the files
  // written within a minute of the newest, the largest is the main thread's.
  const newest = Math.max(...all.map((f) => statSync(f).mtimeMs));
  file = all.filter((f) => statSync(f).mtimeMs > newest - 60_000).sort((a, b) => statSync(b).size - statSync(a).size)[0];
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

let window: [number, number] = [-Infinity, Infinity];
if (phase) {
  const latest = JSON.parse(readFileSync(valueOf('--results') ?? join(RESULTS_DIR, 'latest.json'), 'utf8')) as { phasesMonotonicUs?: Record<string, [number, number]> };
  const w = latest.phasesMonotonicUs?.[phase];
  if (!w) {
    console.error(`the results file has no phase "${phase}" (phases: ${Object.keys(latest.phasesMonotonicUs ?? {}).join(', ')})`);
    process.exit(1);
  }
  window = w;
}

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of profile.nodes) byId.set(n.id, n);
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function where(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, '');
  if (!url) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  if (url.startsWith('node:')) return url;
  const src = url.lastIndexOf('/src/');
  if (src >= 0 && !url.includes('/node_modules/')) return url.slice(src + 1).split('/').slice(0, -1).join('/');
  const rel = relative(PROJECT_ROOT, url);
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(rel);
  if (nm) return `lib ${nm[1]}`;
  return rel.split('/').slice(0, -1).join('/') || rel;
}
function fnKey(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, '');
  const src = url.lastIndexOf('/src/');
  const rel = src >= 0 && !url.includes('/node_modules/') ? url.slice(src + 1) : url.startsWith('/') ? relative(PROJECT_ROOT, url).replace(/^.*node_modules\//, '') : url;
  return `${cf.functionName || '(anonymous)'} ${rel ? `${rel}:${cf.lineNumber + 1}` : ''}`.trim();
}

const selfByArea = new Map<string, number>();
const selfByFn = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
let at = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i];
  const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000; // ms attributed to sample i
  if (at < window[0] || at > window[1]) continue;
  const node = byId.get(profile.samples[i])!;
  total += dt;
  selfByArea.set(where(node.callFrame), (selfByArea.get(where(node.callFrame)) ?? 0) + dt);
  selfByFn.set(fnKey(node.callFrame), (selfByFn.get(fnKey(node.callFrame)) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const cf = byId.get(id)!.callFrame;
    // The project's own functions (also when the profile comes from a copy of the tree elsewhere).
    if (!cf.url.includes('/src/') || cf.url.includes('/node_modules/')) continue;
    const k = fnKey(cf);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
  }
}
const idle = selfByArea.get('(idle)') ?? 0;
const busy = total - idle;
const show = (title: string, m: Map<string, number>, n: number) => {
  console.log(`\n${title}`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${(v / 1000).toFixed(2).padStart(9)} s ${((v / busy) * 100).toFixed(1).padStart(6)}%  ${k}`);
  }
};
console.log(`${file}${phase ? ` (phase ${phase})` : ''}\nprofile ${(total / 1000).toFixed(1)} s, busy ${(busy / 1000).toFixed(1)} s (idle ${(idle / 1000).toFixed(1)} s); percentages are of busy time`);
show('self time by area', selfByArea, 25);
show('self time by function', selfByFn, top);
show('inclusive time of project functions (src/)', inclusive, top);

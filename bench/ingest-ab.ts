/**
 * Paired, in-process comparison of the transaction ingest path of two source trees, and where its SQLite time
 * goes. Each tree is loaded in this one process with its own file store (synchronous=FULL) and access runtime; every
 * patient Bundle is posted to both through `dispatch` (the HTTP layer's body parse included, no sockets), in
 * alternating order, and the main thread's CPU time of each post is compared (process.threadCpuUsage). Both sides
 * share the machine's load at the same moments, which a pair of separate runs does not (on this shared 2-core
 * machine, separate runs of one code moved by ±25 %).
 *
 * Usage: node bench/ingest-ab.ts [--a DIR] [--b DIR] [--bundles N] [--warm N] [--sql]
 *   --a, --b    roots of the two trees (default: this project for both); e.g. a `git worktree` of an older commit
 *               with a node_modules symlink
 *   --bundles   patient Bundles measured (default 12), after the two shared batch Bundles and --warm (default 2)
 *               patient Bundles that are posted untimed (first-use work: validators compiled, caches filled)
 *   --sql       also time every node:sqlite call by statement, on both sides (the timing adds its own cost to both:
 *               ~2 getrusage calls per statement), and list side B's (CPU µs per patient resource)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DatabaseSync, StatementSync } from 'node:sqlite';
import { PROJECT_ROOT, listBundles, loadBundles } from './lib/data.ts';

const { values: opts } = parseArgs({
  options: {
    a: { type: 'string', default: PROJECT_ROOT },
    b: { type: 'string', default: PROJECT_ROOT },
    bundles: { type: 'string', default: '12' },
    warm: { type: 'string', default: '2' },
    sql: { type: 'boolean', default: false },
  },
});
const measured = Number(opts.bundles);
const warm = Number(opts.warm);

/** CPU µs of node:sqlite calls by statement text, per side (`sqlActive` names the side posting a measured Bundle). */
const sqlCpu = { A: new Map<string, { calls: number; us: number }>(), B: new Map<string, { calls: number; us: number }>() };
let sqlActive: 'A' | 'B' | undefined;
if (opts.sql) {
  const wrap = (proto: object, name: string, sqlOf: (self: unknown, args: unknown[]) => string) => {
    const original = (proto as Record<string, (...a: unknown[]) => unknown>)[name]!;
    (proto as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
      const into = sqlActive && sqlCpu[sqlActive];
      if (!into) return original.apply(this, args);
      const start = process.threadCpuUsage();
      try {
        return original.apply(this, args);
      } finally {
        const d = process.threadCpuUsage(start);
        const key = sqlOf(this, args).replace(/\s+/g, ' ').slice(0, 100);
        const e = into.get(key) ?? { calls: 0, us: 0 };
        e.calls++;
        e.us += d.user + d.system;
        into.set(key, e);
      }
    };
  };
  for (const name of ['run', 'get', 'all']) wrap(StatementSync.prototype, name, (self) => (self as StatementSync).sourceSQL);
  wrap(DatabaseSync.prototype, 'exec', (_self, args) => String(args[0]));
}

interface Side {
  root: string;
  post(text: string): Promise<number>;
  close(): Promise<void>;
}

async function side(rootDir: string): Promise<Side> {
  const root = resolve(rootDir);
  const { testConfig } = await import(join(root, 'src/config.ts'));
  const { SqliteStore } = await import(join(root, 'src/store/sqlite/store.ts'));
  const { dispatch } = await import(join(root, 'src/fhir/router.ts'));
  const { accessRuntime, defaultAuth } = await import(join(root, 'src/access/service.ts'));
  const { flushAudit } = await import(join(root, 'src/access/http.ts'));
  const { parseBody } = await import(join(root, 'src/formats/negotiate.ts'));
  const { warmUpValidation } = await import(join(root, 'src/validation/index.ts'));
  const { parseScopes, defaultScopes } = await import(join(root, 'src/access/principal.ts'));
  const dir = mkdtempSync(join(tmpdir(), 'dsp-ingest-ab-'));
  const store = new SqliteStore({ path: join(dir, 'fhir.sqlite'), synchronous: 'FULL' });
  await store.init();
  const ctx = { store, config: testConfig({ baseUrl: 'http://bench/fhir', auth: defaultAuth(), dataDir: dir }) };
  const runtime = await accessRuntime(ctx);
  // What the server's start-up warm-up compiles before the first request.
  warmUpValidation(['Bundle', 'Patient', 'Composition', 'Observation']);
  const principal = { role: 'admin', ref: 'Practitioner/bench', scopes: parseScopes(defaultScopes('admin')), method: 'development', tokenId: 'bench' };
  return {
    root,
    async post(text: string): Promise<number> {
      const start = process.threadCpuUsage();
      const body = parseBody(text, 'application/fhir+json', { maxDepth: ctx.config.limits.maxDepth });
      const req = { method: 'POST', path: '', query: [], body, contentType: 'application/fhir+json', headers: { prefer: 'return=minimal' }, baseUrl: 'http://bench/fhir', principal };
      const res = await flushAudit(ctx, dispatch(ctx, req), req);
      if (res.status !== 200) throw new Error(`${root}: a Bundle was answered ${res.status}`);
      JSON.stringify(res.body);
      const cpu = process.threadCpuUsage(start);
      // The fsync runs in the thread pool and the audit entries' index rows are built later (after 500 ms of
      // quiet in the server): wait for both before the other side posts, so that neither is charged for the
      // other's leftovers. (The indexing itself is outside the measured CPU, as in the server's idle time.)
      await store.durable();
      await runtime.audit.indexed();
      return cpu.user + cpu.system;
    },
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const A = await side(opts.a);
const B = await side(opts.b);
const all = listBundles();
const shared = all.filter((f) => /hospitalInformation|practitionerInformation/.test(f));
const patients = all.filter((f) => !/hospitalInformation|practitionerInformation/.test(f)).slice(0, warm + measured);
const files = await loadBundles([...shared, ...patients]);
for (const f of files.slice(0, shared.length + warm)) {
  await A.post(f.text);
  await B.post(f.text);
}
let a = 0;
let b = 0;
let resources = 0;
const ratios: number[] = [];
for (const [i, f] of files.slice(shared.length + warm).entries()) {
  let ta: number;
  let tb: number;
  const timed = async (s: Side, name: 'A' | 'B') => {
    if (opts.sql) sqlActive = name;
    try {
      return await s.post(f.text);
    } finally {
      sqlActive = undefined;
    }
  };
  if (i % 2 === 0) {
    ta = await timed(A, 'A');
    tb = await timed(B, 'B');
  } else {
    tb = await timed(B, 'B');
    ta = await timed(A, 'A');
  }
  a += ta;
  b += tb;
  resources += f.entries;
  ratios.push(tb / ta);
}
await A.close();
await B.close();
ratios.sort((x, y) => x - y);
console.log(`A ${A.root}\nB ${B.root}\n${resources} patient resources in ${ratios.length} Bundles (after ${shared.length} shared and ${warm} warm-up Bundles)`);
console.log(`main-thread CPU µs per resource: A ${(a / resources).toFixed(0)}, B ${(b / resources).toFixed(0)}, B/A ${(b / a).toFixed(3)}`);
console.log(`B/A per Bundle: ${ratios.map((r) => r.toFixed(2)).join(' ')} (median ${ratios[Math.floor(ratios.length / 2)]!.toFixed(2)})`);
if (opts.sql) {
  const total = (m: Map<string, { us: number }>) => [...m.values()].reduce((sum, e) => sum + e.us, 0);
  console.log(`\nnode:sqlite calls, CPU µs per resource: A ${(total(sqlCpu.A) / resources).toFixed(0)}, B ${(total(sqlCpu.B) / resources).toFixed(0)}; B's by statement:`);
  for (const [sql, e] of [...sqlCpu.B].sort((x, y) => y[1].us - x[1].us).slice(0, 20)) {
    console.log(`${(e.us / resources).toFixed(1).padStart(7)} µs/res ${String(e.calls).padStart(7)} calls ${(e.us / e.calls).toFixed(1).padStart(7)} µs/call  ${sql}`);
  }
}
process.exit(0);

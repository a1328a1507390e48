/**
 * The benchmark's data: the Synthea transaction Bundles in ../shared/data/synthea (relative to the project
 * root), decompressed once with `bzip2 -dc` into bench/results/cache/ (git-ignored) and read from there on
 * later runs.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');
const CACHE_DIR = join(RESULTS_DIR, 'cache');

/** One Bundle as text, with what the load generator needs to know about it before timing starts. */
export interface BundleFile {
  name: string;
  text: string;
  bytes: number;
  type: string;
  entries: number;
}

export class DataMissing extends Error {}

/** Where the Synthea bundles live: DSP_SYNTHEA_DIR, else ../shared/data/synthea beside the project. */
export function syntheaDir(): string {
  return process.env.DSP_SYNTHEA_DIR ? resolve(process.env.DSP_SYNTHEA_DIR) : resolve(PROJECT_ROOT, '..', 'shared', 'data', 'synthea');
}

/**
 * Lists the bundle files in load order: hospitalInformation and practitionerInformation first (the patient
 * bundles reference their Organizations, Locations and Practitioners conditionally), then the patients by name.
 */
export function listBundles(dir = syntheaDir()): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new DataMissing(
      `Synthea data not found at ${dir}. The benchmark needs the Synthea transaction Bundles (*.json.bz2) in ` +
        `../shared/data/synthea relative to the project root, or a folder named by DSP_SYNTHEA_DIR.`,
    );
  }
  const files = readdirSync(dir).filter((f) => f.endsWith('.json.bz2') || f.endsWith('.json'));
  if (!files.length) throw new DataMissing(`No *.json.bz2 Bundles in ${dir}`);
  const rank = (f: string) => (/hospitalInformation/.test(f) ? 0 : /practitionerInformation/.test(f) ? 1 : 2);
  return files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).map((f) => join(dir, f));
}

function bunzip(src: string, dest: string): Promise<void> {
  return new Promise((ok, fail) => {
    const tmp = `${dest}.${process.pid}.part`;
    const child = spawn('bzip2', ['-dc', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(tmp);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => fail(new Error(`cannot run bzip2 (${e.message}); install bzip2`)));
    child.stdout.pipe(out);
    const exited = new Promise<number | null>((ok2) => child.on('close', ok2));
    const written = new Promise<void>((ok2, fail2) => {
      out.on('close', () => ok2());
      out.on('error', fail2);
    });
    Promise.all([exited, written]).then(([code]) => {
      if (code !== 0) fail(new Error(`bzip2 -dc ${src} failed (${code}): ${err.trim()}`));
      else {
        renameSync(tmp, dest);
        ok();
      }
    }, fail);
  });
}

/** Decompressed text of each file (cached), `parallel` bzip2 processes at a time. */
export async function loadBundles(files: string[], parallel = 2): Promise<BundleFile[]> {
  mkdirSync(CACHE_DIR, { recursive: true });
  const out: BundleFile[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const src = files[i];
      const name = basename(src).replace(/\.bz2$/, '');
      let path = src;
      if (src.endsWith('.bz2')) {
        path = join(CACHE_DIR, name);
        if (!existsSync(path)) await bunzip(src, path);
      }
      const text = await readFile(path, 'utf8');
      const bundle = JSON.parse(text) as { resourceType?: string; type?: string; entry?: unknown[] };
      if (bundle.resourceType !== 'Bundle') throw new Error(`${src} is not a Bundle`);
      out[i] = { name, text, bytes: Buffer.byteLength(text), type: bundle.type ?? '?', entries: bundle.entry?.length ?? 0 };
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return out;
}

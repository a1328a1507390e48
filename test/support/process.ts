/** Test support: run `dsp-fhir serve` as a real child process on a free port. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSigningKey, signDevToken, type DevTokenClaims } from '../../src/access/tokens.ts';

export const ROOT = new URL('../..', import.meta.url).pathname;

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  dataDir: string;
  /** An administrator development token for this server (its data folder's signing key). */
  token: string;
  /** `{ Authorization: 'Bearer <admin token>' }` */
  auth: Record<string, string>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A development token signed with the key of `dataDir` (created there when missing, as the server does). */
export async function devToken(dataDir: string, claims: DevTokenClaims, audience = 'dsp-fhir'): Promise<string> {
  return signDevToken(await loadSigningKey(join(dataDir, 'signing-key.jwk.json')), audience, claims);
}

export function tempDir(prefix = 'dsp-fhir-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Starts the server (Node 24 from node_modules) and resolves once it logs its URL. */
export async function startServerProcess(env: Record<string, string> = {}, dataDir = tempDir()): Promise<ServerProcess> {
  const token = await devToken(dataDir, { role: 'admin', id: 'Practitioner/test-admin' }, env.DSP_AUTH_AUDIENCE);
  const child = spawn(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), 'serve'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', DSP_HOST: '127.0.0.1', DSP_DATA_DIR: dataDir, DSP_LOAD_EXAMPLES: 'false', DSP_LOG_LEVEL: 'info', DSP_VALIDATION_WARMUP: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in time\nstdout: ${out}\nstderr: ${err}`));
    }, 60_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(https?:[^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          url: m[1],
          dataDir,
          token,
          auth: { Authorization: `Bearer ${token}` },
          stop: (signal: NodeJS.Signals = 'SIGTERM') =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill(signal);
            }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}\nstdout: ${out}\nstderr: ${err}`));
    });
  });
}

/**
 * Configuration: the signing key follows the data folder (also a `dataDir` given in code), values are checked
 * with messages naming the variable, and loading the configuration does not load the validator.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, testConfig } from '../src/config.ts';
import { defaultAuth } from '../src/access/service.ts';
import { type RunningServer, startServer } from '../src/server.ts';
import { signDevToken, loadSigningKey } from '../src/access/tokens.ts';

const root = resolve(import.meta.dirname, '..');
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'dsp-config-'));
  dirs.push(d);
  return d;
};
let running: RunningServer | undefined;
afterAll(async () => {
  await running?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the signing key lives in the data folder', () => {
  it('DSP_DATA_DIR, and a dataDir override in code, both move it', () => {
    const fromEnv = tempDir();
    expect(loadConfig({ DSP_DATA_DIR: fromEnv }, root).auth?.keyFile).toBe(join(fromEnv, 'signing-key.jwk.json'));
    const override = tempDir();
    const config = testConfig({ dataDir: override });
    expect(config.dataDir).toBe(override);
    expect(config.auth?.keyFile).toBe(join(override, 'signing-key.jwk.json'));
    // An explicit auth wins (in-memory key: no keyFile).
    expect(testConfig({ dataDir: override, auth: defaultAuth() }).auth?.keyFile).toBeUndefined();
  });

  it('a server started with a dataDir override keeps its key and audit trail there, and its tokens work over HTTP', async () => {
    const dir = tempDir();
    running = await startServer(testConfig({ port: 0, host: '127.0.0.1', dataDir: dir }));
    expect(existsSync(join(dir, 'signing-key.jwk.json'))).toBe(true);
    const key = await loadSigningKey(join(dir, 'signing-key.jwk.json'));
    const token = await signDevToken(key, 'dsp-fhir', { role: 'admin', id: 'Practitioner/config-test' });
    const res = await fetch(`${running.url}/Patient?_count=1`, { headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json' } });
    expect(res.status).toBe(200);
    await running.close();
    running = undefined;
    expect(existsSync(join(dir, 'audit.sqlite'))).toBe(true);
  }, 60_000);
});

describe('checked values', () => {
  it('DSP_PROFILE_VALIDATION: off, warn (default) or reject; anything else names the variable', () => {
    expect(loadConfig({}, root).profileValidation).toBe('warn');
    expect(loadConfig({ DSP_PROFILE_VALIDATION: ' Reject ' }, root).profileValidation).toBe('reject');
    expect(loadConfig({ DSP_PROFILE_VALIDATION: 'off' }, root).profileValidation).toBe('off');
    expect(() => loadConfig({ DSP_PROFILE_VALIDATION: 'strict' }, root)).toThrow(/DSP_PROFILE_VALIDATION must be off, warn or reject/);
  });

  it('DSP_AUDIT_SYNC: commit (default) or disk; DSP_AUDIT_THREAD: a boolean (default false); anything else names the variable', () => {
    expect(loadConfig({}, root)).toMatchObject({ auditSync: 'commit', auditThread: false });
    expect(loadConfig({ DSP_AUDIT_SYNC: 'DISK', DSP_AUDIT_THREAD: 'true' }, root)).toMatchObject({ auditSync: 'disk', auditThread: true });
    expect(() => loadConfig({ DSP_AUDIT_SYNC: 'fsync' }, root)).toThrow(/DSP_AUDIT_SYNC must be commit or disk/);
    expect(() => loadConfig({ DSP_AUDIT_THREAD: 'maybe' }, root)).toThrow(/DSP_AUDIT_THREAD must be true or false/);
  });
});

describe('loading the configuration', () => {
  it('does not load the validator (every CLI command loads the configuration)', () => {
    // A child process records every module it resolves while importing src/config.ts.
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
      await import(${JSON.stringify(join(root, 'src/config.ts'))});
      process.stdout.write(JSON.stringify(seen));`;
    const seen = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' })) as string[];
    expect(seen.some((u) => u.endsWith('/src/config.ts'))).toBe(true);
    expect(seen.filter((u) => u.includes('/src/validation/') || u.includes('/ajv/') || u.includes('/fhirpath/'))).toEqual([]);
  });
});

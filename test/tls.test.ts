/**
 * `dsp-fhir serve` over HTTPS with mutual TLS (DSP_TLS_CERT / DSP_TLS_KEY / DSP_TLS_CA): the server process
 * answers on https; a registered client certificate authenticates; no certificate and no token is a 401;
 * a plain-HTTP request is not served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as plainRequest } from 'node:http';
import { createDevPki, type DevPki } from '../src/cli/pki.ts';
import { startServerProcess, tempDir, type ServerProcess } from './support/process.ts';
import { httpsGet } from './support/tls.ts';

let pki: DevPki;
let running: ServerProcess;

const get = (url: string, withCert: boolean) => httpsGet(url, pki, withCert);

beforeAll(async () => {
  pki = createDevPki('ncp-fr');
  const dir = tempDir('dsp-tls-');
  for (const [name, pem] of [['server.pem', pki.serverCert], ['server-key.pem', pki.serverKey], ['ca.pem', pki.caCert]] as const) writeFileSync(join(dir, name), pem);
  running = await startServerProcess({
    DSP_TLS_CERT: join(dir, 'server.pem'),
    DSP_TLS_KEY: join(dir, 'server-key.pem'),
    DSP_TLS_CA: join(dir, 'ca.pem'),
    DSP_AUTH_CLIENTS: JSON.stringify([{ clientId: 'ncp-fr', role: 'ncp', ref: 'Organization/ncp-fr', scope: 'user/*.rs', certFingerprint: pki.clientFingerprint }]),
  });
}, 180_000);

afterAll(async () => {
  await running?.stop();
});

describe('HTTPS and mutual TLS in dsp-fhir serve', () => {
  it('serves https, authenticates a registered client certificate, refuses anonymous requests', async () => {
    expect(running.url.startsWith('https://')).toBe(true);
    const meta = await get(`${running.url}/metadata`, false);
    expect(meta.status).toBe(200);
    expect(JSON.parse(meta.body).resourceType).toBe('CapabilityStatement');
    const anonymous = await get(`${running.url}/Patient/none`, false);
    expect(anonymous.status).toBe(401);
    // Authenticated by its certificate: an unknown patient is a 404, not a 401.
    const withCert = await get(`${running.url}/Patient/none`, true);
    expect(withCert.status).toBe(404);
  });

  it('does not answer plain HTTP on the TLS port', async () => {
    const u = new URL(running.url);
    const outcome = await new Promise<string>((resolve) => {
      const req = plainRequest({ host: u.hostname, port: u.port, path: '/fhir/metadata' }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', () => resolve('error'));
      req.end();
    });
    expect(outcome).not.toBe('status 200');
  });
});

/**
 * Mutual TLS with the development PKI of `dsp-fhir pki dev`: a registered client certificate authenticates
 * its client (here an NCP peer, which reads essential data only); no certificate and no token is a 401.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:https';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { makeApp, type TestApp } from './support/app.ts';
import { httpsGet } from './support/tls.ts';
import { consent } from './access-fixture.ts';
import { defaultAuth } from '../src/access/service.ts';
import { createDevPki, type DevPki } from '../src/cli/pki.ts';

let pki: DevPki;
let t: TestApp;
let server: Server;
let port: number;

const get = (path: string, withCert: boolean) => httpsGet(`https://127.0.0.1:${port}${path}`, pki, withCert);

beforeAll(async () => {
  pki = createDevPki('ncp-be');
  t = await makeApp({ auth: { ...defaultAuth(), clients: [{ clientId: 'ncp-be', role: 'ncp', ref: 'Organization/ncp-be', scope: 'user/*.rs', certFingerprint: pki.clientFingerprint }] } });
  await t.http.put('/fhir/Patient/p1').send({ resourceType: 'Patient', id: 'p1' });
  await t.http.put('/fhir/Consent/x1').send(consent('x1', 'p1', 'cross-border'));
  await t.http.put('/fhir/Observation/o1').send({ resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/p1' } });
  server = createServer({ key: pki.serverKey, cert: pki.serverCert, ca: pki.caCert, requestCert: true, rejectUnauthorized: false }, t.app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
}, 120_000);

afterAll(() => server?.close());

describe('dsp-fhir pki dev and mutual TLS', () => {
  it('the development PKI chains to its CA, with the right key usages', () => {
    const ca = new X509Certificate(pki.caCert);
    const client = new X509Certificate(pki.clientCert);
    const srv = new X509Certificate(pki.serverCert);
    expect(client.checkIssued(ca)).toBe(true);
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(srv.checkHost('localhost')).toBe('localhost');
    expect(client.keyUsage).toContain('1.3.6.1.5.5.7.3.2');
    expect(client.fingerprint256.replace(/:/g, '').toLowerCase()).toBe(pki.clientFingerprint);
  });

  it('a registered client certificate authenticates the NCP: essential data only', async () => {
    expect((await get('/fhir/Patient/p1', true)).status).toBe(200);
    expect((await get('/fhir/Observation/o1', true)).status).toBe(404);
  });

  it('without a certificate or token: 401', async () => {
    const res = await get('/fhir/Patient/p1', false);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).resourceType).toBe('OperationOutcome');
  });
});

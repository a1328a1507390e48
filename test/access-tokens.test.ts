/**
 * Token failures (expired, not yet valid, wrong audience, bad signature, alg none, untrusted issuer,
 * development tokens in production), tokens of a configured OAuth2 issuer (SMART v2 scopes, fhirUser), and
 * SMART Backend Services (private_key_jwt: exp at most 5 minutes ahead, jti replay refused).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { makeApp, type TestApp } from './support/app.ts';
import { defaultAuth } from '../src/access/service.ts';
import { DEV_ISSUER } from '../src/access/tokens.ts';

const ISSUER = 'https://idp.example.lu/realms/dsp';
let t: TestApp;
let idpKey: CryptoKey;
let clientKey: CryptoKey;

async function idpToken(claims: Record<string, unknown>, opts: { aud?: string; exp?: string | number; nbf?: string | number; iss?: string; key?: CryptoKey } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'idp-1' }).setIssuer(opts.iss ?? ISSUER).setAudience(opts.aud ?? 'dsp-fhir').setIssuedAt().setExpirationTime(opts.exp ?? '5m');
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(opts.key ?? idpKey);
}

beforeAll(async () => {
  const idp = await generateKeyPair('ES256', { extractable: true });
  idpKey = idp.privateKey;
  const client = await generateKeyPair('ES256', { extractable: true });
  clientKey = client.privateKey;
  t = await makeApp({
    auth: {
      ...defaultAuth(),
      issuers: [{ issuer: ISSUER, jwks: { keys: [{ ...(await exportJWK(idp.publicKey)), kid: 'idp-1', alg: 'ES256' }] } }],
      clients: [{ clientId: 'lab-ketterthill', role: 'system', ref: 'Device/lab-ketterthill', organization: 'Organization/ketterthill', scope: 'system/Observation.cruds system/Patient.rs', jwks: { keys: [{ ...(await exportJWK(client.publicKey)), kid: 'c1', alg: 'ES256' }] } }],
    },
  });
  await t.http.put('/fhir/Patient/p1').send({ resourceType: 'Patient', id: 'p1' });
});

const msg = (res: { body: { issue: { diagnostics: string }[] } }) => res.body.issue[0].diagnostics;

describe('bearer token failures are 401 with an OperationOutcome', () => {
  it('a configured issuer’s token works (fhirUser gives the role)', async () => {
    const res = await t.client(await idpToken({ fhirUser: 'Patient/p1', scope: 'openid patient/*.rs', patient: 'p1' })).get('/fhir/Patient/p1');
    expect(res.status).toBe(200);
  });
  it('expired', async () => {
    const res = await t.client(await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs' }, { exp: Math.floor(Date.now() / 1000) - 120 })).get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    expect(msg(res)).toMatch(/expired/);
  });
  it('a token accepted earlier is refused once it has expired (verified tokens are cached until exp only)', async () => {
    const token = await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs', patient: 'p1' }, { exp: Math.floor(Date.now() / 1000) + 1 });
    expect((await t.client(token).get('/fhir/Patient/p1')).status).toBe(200);
    expect((await t.client(token).get('/fhir/Patient/p1')).status).toBe(200);
    // Past exp plus the 5 s clock tolerance the verifier allows.
    await new Promise((r) => setTimeout(r, 6500));
    const late = await t.client(token).get('/fhir/Patient/p1');
    expect(late.status).toBe(401);
    expect(msg(late)).toMatch(/expired/);
  });
  it('not yet valid', async () => {
    const res = await t.client(await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs' }, { nbf: Math.floor(Date.now() / 1000) + 600 })).get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    expect(msg(res)).toMatch(/not yet valid/);
  });
  it('wrong audience', async () => {
    const res = await t.client(await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs' }, { aud: 'another-server' })).get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    expect(msg(res)).toMatch(/aud/);
  });
  it('bad signature (signed by another key, or altered)', async () => {
    const other = (await generateKeyPair('ES256')).privateKey;
    const res = await t.client(await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs' }, { key: other })).get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    const good = await idpToken({ fhirUser: 'Patient/p1', scope: 'patient/*.rs' });
    const [h, p, s] = good.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, fhirUser: 'Patient/p2' })).toString('base64url')}.${s}`;
    const res2 = await t.client(forged).get('/fhir/Patient/p1');
    expect(res2.status).toBe(401);
    expect(msg(res2)).toMatch(/signature/);
  });
  it('alg none', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ iss: DEV_ISSUER, aud: 'dsp-fhir', role: 'admin', fhirUser: 'Practitioner/x', scope: 'system/*.cruds', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    const res = await t.client(`${header}.${body}.`).get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    expect(msg(res)).toMatch(/none/);
  });
  it('untrusted issuer; a token naming no role', async () => {
    expect((await t.client(await idpToken({ fhirUser: 'Patient/p1' }, { iss: 'https://evil.example' })).get('/fhir/Patient/p1')).status).toBe(401);
    expect((await t.client(await idpToken({ fhirUser: 'Organization/o1', scope: 'system/*.rs' })).get('/fhir/Patient/p1')).status).toBe(401);
  });
  it('development tokens are refused in production mode', async () => {
    const prod = await makeApp({ auth: { ...defaultAuth(), mode: 'production' } });
    const res = await prod.http.get('/fhir/Patient/p1');
    expect(res.status).toBe(401);
    expect(msg(res)).toMatch(/production/);
  });
});

describe('SMART Backend Services token endpoint', () => {
  async function assertion(opts: { jti?: string; exp?: number; aud?: string } = {}): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'c1' })
      .setIssuer('lab-ketterthill')
      .setSubject('lab-ketterthill')
      .setAudience(opts.aud ?? 'http://test/auth/token')
      .setJti(opts.jti ?? randomUUID())
      .setExpirationTime(opts.exp ?? Math.floor(Date.now() / 1000) + 120)
      .sign(clientKey);
  }
  const tokenRequest = (clientAssertion: string, scope = 'system/Observation.cruds') =>
    request(t.app).post('/auth/token').type('form').send({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: clientAssertion, scope });

  it('issues a short-lived token limited to the client’s scopes; it works on the API', async () => {
    const res = await tokenRequest(await assertion(), 'system/Observation.cruds system/Consent.cruds');
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('bearer');
    expect(res.body.scope).toBe('system/Observation.cruds');
    const api = t.client(res.body.access_token);
    expect((await api.post('/fhir/Observation').send({ resourceType: 'Observation', status: 'final', code: { text: 'Hb' }, subject: { reference: 'Patient/p1' } })).status).toBe(201);
    expect((await api.get('/fhir/Consent')).status).toBe(403);
  });
  it('refuses a replayed jti', async () => {
    const a = await assertion({ jti: 'once-only' });
    expect((await tokenRequest(a)).status).toBe(200);
    const again = await tokenRequest(a);
    expect(again.status).toBe(401);
    expect(again.body.error_description).toMatch(/jti/);
  });
  it('refuses an assertion expiring more than 5 minutes ahead, for another audience, or from an unknown client', async () => {
    expect((await tokenRequest(await assertion({ exp: Math.floor(Date.now() / 1000) + 3600 }))).body.error_description).toMatch(/5 minutes/);
    expect((await tokenRequest(await assertion({ aud: 'https://elsewhere/token' }))).status).toBe(401);
    const stranger = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer('nobody').setSubject('nobody').setAudience('http://test/auth/token').setJti('x').setExpirationTime('1m').sign(clientKey);
    expect((await tokenRequest(stranger)).body.error).toBe('invalid_client');
  });
});

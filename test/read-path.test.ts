/**
 * The per-read shortcuts of the plain JSON read: HTTP dates formatted once per second, the stored text written
 * with one writeHead, verified Authorization header values remembered as they are.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { httpDate } from '../src/fhir/interactions.ts';
import { TokenVerifier, loadSigningKey, signDevToken } from '../src/access/tokens.ts';
import { defaultAuth } from '../src/access/service.ts';
import { makeApp, type TestApp } from './support/app.ts';

describe('httpDate', () => {
  it('gives what Date gives, for store instants of one second and for any other ISO text', () => {
    const instants = ['2024-05-01T10:20:30.000Z', '2024-05-01T10:20:30.999Z', '2024-05-01T10:20:31.001Z', '1999-12-31T23:59:59.500Z', '2024-02-29T00:00:00.000Z'];
    const others = ['2024-05-01T10:20:30+02:00', '2024-05-01T10:20:30Z', '2024-05-01', '2024-05-01T10:20:30.123456Z', 'not a date'];
    for (const iso of [...instants, ...instants, ...others]) expect(httpDate(iso), iso).toBe(new Date(iso).toUTCString());
  });
});

describe('a plain JSON read', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
    expect((await t.http.put('/fhir/Patient/rp-1').send({ resourceType: 'Patient', id: 'rp-1', name: [{ family: 'Müller' }] })).status).toBe(201);
  });

  it('sends the stored text with its status, ETag, Last-Modified, content type and byte length', async () => {
    const res = await t.http.get('/fhir/Patient/rp-1');
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers['last-modified']).toBe(new Date(JSON.parse(res.text).meta.lastUpdated).toUTCString());
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
    expect(JSON.parse(res.text).name[0].family).toBe('Müller');
    const head = await t.http.head('/fhir/Patient/rp-1');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(res.headers['content-length']);
    expect(head.text ?? '').toBe('');
    const notModified = await t.http.get('/fhir/Patient/rp-1').set('If-None-Match', 'W/"1"');
    expect(notModified.status).toBe(304);
    expect(notModified.headers.etag).toBe('W/"1"');
  });
});

describe('TokenVerifier: verified header values', () => {
  it('remembers a verified value as it is; other spellings are checked on their own, malformed ones refused', async () => {
    const key = await loadSigningKey(undefined);
    const auth = defaultAuth();
    const verifier = new TokenVerifier(auth, key);
    const token = await signDevToken(key, auth.audience, { role: 'practitioner', id: 'Practitioner/rp' });
    const first = await verifier.verify(`Bearer ${token}`);
    expect(first.ref).toBe('Practitioner/rp');
    // A copy each time: changing one principal changes no later one.
    first.ref = 'Practitioner/other';
    expect((await verifier.verify(`Bearer ${token}`)).ref).toBe('Practitioner/rp');
    expect((await verifier.verify(`bearer ${token}`)).ref).toBe('Practitioner/rp');
    await expect(verifier.verify(`Bearer ${token}x.y`)).rejects.toMatchObject({ status: 401 });
    await expect(verifier.verify(`Basic ${token}`)).rejects.toMatchObject({ status: 401 });
    await expect(verifier.verify(`Bearer ${token.slice(0, -4)}AAAA`)).rejects.toMatchObject({ status: 401 });
  });
});

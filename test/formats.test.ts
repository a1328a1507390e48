/**
 * Every interaction and its error paths, once in JSON and once in XML: requests are sent and responses read
 * in the format under test (XML parsed with our own reader, which the XML suite checks on its own).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Bundle, FhirResource, OperationOutcome, Parameters, Patient, Resource } from 'fhir/r4';
import { makeApp, type TestApp } from './support/app.ts';
import { parseFhirXml, toFhirXml } from '../src/formats/xml.ts';
import { acceptRanges, responseFormat, withUtf8Charset } from '../src/formats/negotiate.ts';

type Fmt = 'json' | 'xml';
const MIME: Record<Fmt, string> = { json: 'application/fhir+json', xml: 'application/fhir+xml' };

describe.each<Fmt>(['json', 'xml'])('in %s', (fmt) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await makeApp();
  });

  const encode = (r: FhirResource | Resource) => (fmt === 'xml' ? toFhirXml(r) : JSON.stringify(r));
  const decode = (text: string): Resource => (fmt === 'xml' ? parseFhirXml(text) : (JSON.parse(text) as Resource));

  async function call(method: 'get' | 'post' | 'put' | 'delete' | 'patch', url: string, body?: FhirResource, headers: Record<string, string> = {}) {
    let r = t.http[method](url).set('Accept', MIME[fmt]);
    for (const [k, v] of Object.entries(headers)) r = r.set(k, v);
    if (body) r = r.set('Content-Type', MIME[fmt]).send(encode(body));
    const res = await r.buffer(true).parse((response, cb) => {
      let data = '';
      response.setEncoding('utf8');
      response.on('data', (c: string) => (data += c));
      response.on('end', () => cb(null, data));
    });
    const text = res.body as unknown as string;
    if (text) expect(res.headers['content-type']).toContain(MIME[fmt]);
    return { status: res.status, headers: res.headers, resource: text ? decode(text) : undefined };
  }

  const patient: Patient = {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:oid:1.3.182.4.4', value: '1975061012345' }],
    name: [{ family: 'Reuter', given: ['Marc'] }],
    birthDate: '1975-06-10',
  };

  const expectOutcome = (r: Resource | undefined) => {
    expect(r?.resourceType).toBe('OperationOutcome');
    expect((r as OperationOutcome).issue.length).toBeGreaterThan(0);
  };

  it('create, read, vread, update, patch, delete, history and search', async () => {
    const c = await call('post', '/fhir/Patient', patient);
    expect(c.status).toBe(201);
    const id = c.resource!.id!;
    const r = await call('get', `/fhir/Patient/${id}`);
    expect((r.resource as Patient).name![0].family).toBe('Reuter');
    const u = await call('put', `/fhir/Patient/${id}`, { ...patient, id, gender: 'male' }, { 'If-Match': 'W/"1"' });
    expect(u.status).toBe(200);
    expect(u.resource!.meta!.versionId).toBe('2');
    const params: Parameters = {
      resourceType: 'Parameters',
      parameter: [{ name: 'operation', part: [{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.gender' }, { name: 'value', valueCode: 'other' }] }],
    };
    const p = await call('patch', `/fhir/Patient/${id}`, params);
    expect(p.status).toBe(200);
    expect((p.resource as Patient).gender).toBe('other');
    const v1 = await call('get', `/fhir/Patient/${id}/_history/1`);
    expect((v1.resource as Patient).gender).toBeUndefined();
    const s = await call('get', `/fhir/Patient?identifier=urn:oid:1.3.182.4.4|1975061012345`);
    expect((s.resource as Bundle).entry!.map((e) => e.resource!.id)).toEqual([id]);
    const d = await call('delete', `/fhir/Patient/${id}`);
    expect(d.status).toBe(204);
    const h = await call('get', `/fhir/Patient/${id}/_history`);
    expect((h.resource as Bundle).entry!.map((e) => e.request!.method)).toEqual(['DELETE', 'PATCH', 'PUT', 'POST']);
  });

  it('error paths: 400, 404, 405, 410, 412, 413, each an OperationOutcome', async () => {
    const bad = await call('post', '/fhir/Patient', { ...patient, birthDate: '10/06/1975' } as Patient);
    expect(bad.status).toBe(400);
    expectOutcome(bad.resource);
    const nf = await call('get', '/fhir/Patient/none');
    expect(nf.status).toBe(404);
    expectOutcome(nf.resource);
    const na = await call('post', '/fhir/Patient/none', patient);
    expect(na.status).toBe(405);
    expectOutcome(na.resource);
    await call('put', '/fhir/Patient/g1', { ...patient, id: 'g1' });
    await call('delete', '/fhir/Patient/g1');
    const g = await call('get', '/fhir/Patient/g1');
    expect(g.status).toBe(410);
    expectOutcome(g.resource);
    await call('put', '/fhir/Patient/m1', { ...patient, id: 'm1' });
    const pf = await call('put', '/fhir/Patient/m1', { ...patient, id: 'm1' }, { 'If-Match': 'W/"7"' });
    expect(pf.status).toBe(412);
    expectOutcome(pf.resource);
    const small = await makeApp({ limits: { maxBodyBytes: 200 } as never });
    const big = await small.http.post('/fhir/Patient').set('Content-Type', MIME[fmt]).set('Accept', MIME[fmt]).send(encode({ ...patient, name: [{ text: 'y'.repeat(500) }] }));
    expect(big.status).toBe(413);
  });

  it('conditional interactions, 304 and Prefer answer in the format asked', async () => {
    const ident = 'identifier=urn:oid:1.3.182.4.4|1975061012345';
    const first = await call('post', '/fhir/Patient', patient, { 'If-None-Exist': ident });
    expect(first.status).toBe(201);
    const id = first.resource!.id!;
    const again = await call('post', '/fhir/Patient', patient, { 'If-None-Exist': ident });
    expect(again.status).toBe(200);
    expect(again.resource!.id).toBe(id);
    const notModified = await call('get', `/fhir/Patient/${id}`, undefined, { 'If-None-Match': 'W/"1"' });
    expect(notModified.status).toBe(304);
    expect(notModified.resource).toBeUndefined();
    const since = await call('get', `/fhir/Patient/${id}`, undefined, { 'If-Modified-Since': String(first.headers['last-modified']) });
    expect(since.status).toBe(304);
    const cu = await call('put', `/fhir/Patient?${ident}`, { ...patient, gender: 'female' });
    expect(cu.status).toBe(200);
    expect(cu.resource!.id).toBe(id);
    expect((cu.resource as Patient).gender).toBe('female');
    const minimal = await call('post', '/fhir/Patient', patient, { Prefer: 'return=minimal' });
    expect(minimal.status).toBe(201);
    expect(minimal.resource).toBeUndefined();
    expect(String(minimal.headers.location)).toContain('/Patient/');
    const oo = await call('post', '/fhir/Patient', patient, { Prefer: 'return=OperationOutcome' });
    expect(oo.status).toBe(201);
    expectOutcome(oo.resource);
    // Three patients share the identifier now: a conditional update or delete cannot choose.
    const many = await call('put', `/fhir/Patient?${ident}`, patient);
    expect(many.status).toBe(412);
    expectOutcome(many.resource);
    const manyDelete = await call('delete', `/fhir/Patient?${ident}`);
    expect(manyDelete.status).toBe(412);
    expectOutcome(manyDelete.resource);
    expect((await call('get', `/fhir/Patient/${id}`)).status).toBe(200);
  });

  it('422: a resource that does not conform to the profile it declares is refused and not stored', async () => {
    const strict = await makeApp({ profileValidation: 'reject' });
    const bad = { resourceType: 'Patient', meta: { profile: ['http://dsp.lu/fhir/StructureDefinition/lu-patient'] }, active: true } as Patient;
    const res = await strict.http.post('/fhir/Patient').set('Content-Type', MIME[fmt]).set('Accept', MIME[fmt]).send(encode(bad));
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toContain(MIME[fmt]);
    expectOutcome(decode(res.text));
    expect(await strict.ctx.store.count('Patient')).toBe(0);
  });

  it('transaction and batch', async () => {
    const tx: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:4c1f3f1e-0000-4000-8000-000000000001', resource: patient, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'Taille' }, subject: { reference: 'urn:uuid:4c1f3f1e-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const res = await call('post', '/fhir', tx);
    expect(res.status).toBe(200);
    expect((res.resource as Bundle).entry!.map((e) => e.response!.status)).toEqual(['201', '201']);
    const batch: Bundle = { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient/nope' } }, { resource: patient, request: { method: 'POST', url: 'Patient' } }] };
    const b = await call('post', '/fhir', batch);
    expect((b.resource as Bundle).entry!.map((e) => e.response!.status)).toEqual(['404', '201']);
  });
});

describe('Accept ranges and the raw answers\' charset (one parser for FHIR and raw XML negotiation)', () => {
  it('orders ranges by q then header order, drops q=0, lower-cases types', () => {
    expect(acceptRanges('text/html;q=0.5, Application/XML, application/fhir+json;q=0.9, image/png;q=0')).toEqual([
      { type: 'application/xml', q: 1 },
      { type: 'application/fhir+json', q: 0.9 },
      { type: 'text/html', q: 0.5 },
    ]);
    expect(acceptRanges('application/fhir+xml;q=0.8, application/xml;q=0.8').map((r) => r.type)).toEqual(['application/fhir+xml', 'application/xml']);
    // The same ranges decide the FHIR format: the most preferred FHIR-capable type wins.
    expect(responseFormat(undefined, 'text/html;q=0.5, application/fhir+xml;q=0.7, application/fhir+json;q=0.6')).toBe('xml');
    expect(responseFormat(undefined, 'application/fhir+xml;q=0, application/json')).toBe('json');
  });
  it('appends a UTF-8 charset only when the content type names none', () => {
    expect(withUtf8Charset('application/xml')).toBe('application/xml; charset=utf-8');
    expect(withUtf8Charset('application/xml; charset=ISO-8859-1')).toBe('application/xml; charset=ISO-8859-1');
    expect(withUtf8Charset('text/xml;Charset=utf-8')).toBe('text/xml;Charset=utf-8');
  });
});

/** batch and transaction Bundles over HTTP, in JSON and XML. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Bundle, BundleEntry, Observation, Patient } from 'fhir/r4';
import { FHIR_XML, makeApp, type TestApp } from './support/app.ts';
import { toFhirXml, parseFhirXml } from '../src/formats/xml.ts';

let t: TestApp;
beforeEach(async () => {
  t = await makeApp();
});

const MATRICULE = 'urn:oid:1.3.182.4.4';
const patient = (value: string, family = 'Hoffmann'): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: MATRICULE, value }],
  name: [{ family }],
});
const obs = (subject: string, text = 'Poids'): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: { text },
  subject: { reference: subject },
});

function tx(entries: BundleEntry[], type: 'transaction' | 'batch' = 'transaction'): Bundle {
  return { resourceType: 'Bundle', type, entry: entries };
}

describe('transaction', () => {
  it('creates resources, resolves urn:uuid references and reports per-entry status, location and etag', async () => {
    const res = await t.http.post('/fhir').send(
      tx([
        { fullUrl: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a', resource: patient('1970010112345'), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: 'urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059', resource: obs('urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a'), request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.type).toBe('transaction-response');
    expect(bundle.entry!.map((e) => e.response!.status)).toEqual(['201', '201']);
    const patientLoc = bundle.entry![0].response!.location!;
    expect(patientLoc).toMatch(/^Patient\/[^/]+\/_history\/1$/);
    expect(bundle.entry![1].response!.etag).toBe('W/"1"');
    const patientId = patientLoc.split('/')[1];
    const obsId = bundle.entry![1].response!.location!.split('/')[1];
    const stored = await t.http.get(`/fhir/Observation/${obsId}`);
    expect(stored.body.subject.reference).toBe(`Patient/${patientId}`);
  });

  it('is atomic: one failing entry rolls back every write and answers with its error', async () => {
    await t.http.put('/fhir/Patient/keep').send({ ...patient('1970010112345'), id: 'keep' });
    const res = await t.http.post('/fhir').send(
      tx([
        { resource: patient('1980010112345'), request: { method: 'POST', url: 'Patient' } },
        { resource: { ...patient('1970010112345', 'Changed'), id: 'keep' }, request: { method: 'PUT', url: 'Patient/keep' } },
        { request: { method: 'DELETE', url: 'Patient/keep' } },
        { resource: { ...patient('1990010112345'), id: 'v' }, request: { method: 'PUT', url: 'Patient/v', ifMatch: 'W/"4"' } },
      ]),
    );
    expect(res.status).toBe(412);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(res.body)).toContain('Bundle.entry[3]');
    expect(await t.ctx.store.count('Patient')).toBe(1);
    const keep = await t.http.get('/fhir/Patient/keep');
    expect(keep.status).toBe(200);
    expect(keep.body.name[0].family).toBe('Hoffmann');
    expect(keep.body.meta.versionId).toBe('1');
  });

  it('an invalid resource fails the whole transaction with 400 and nothing is written', async () => {
    const res = await t.http.post('/fhir').send(
      tx([
        { resource: patient('1970010112345'), request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final' } as never, request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('Bundle.entry[1]');
    expect(await t.ctx.store.count()).toBe(0);
  });

  it('processes DELETE, POST, PUT, GET in that order whatever the entry order, answering in entry order', async () => {
    await t.http.put('/fhir/Patient/old').send({ ...patient('1960010112345'), id: 'old' });
    const res = await t.http.post('/fhir').send(
      tx([
        { request: { method: 'GET', url: 'Patient?identifier=urn:oid:1.3.182.4.4|1950010112345' } },
        { resource: { ...patient('1950010112345'), id: 'p2' }, request: { method: 'PUT', url: 'Patient/p2' } },
        { resource: patient('1950010112345'), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'DELETE', url: 'Patient/old' } },
      ]),
    );
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries.map((e) => e.response!.status)).toEqual(['200', '201', '201', '204']);
    // The GET ran last, so it sees both new patients with that identifier.
    const search = entries[0].resource as Bundle;
    expect(search.type).toBe('searchset');
    expect(search.entry).toHaveLength(2);
  });

  it('resolves conditional references and conditional creates (ifNoneExist)', async () => {
    await t.http.put('/fhir/Patient/known').send({ ...patient('1940010112345'), id: 'known' });
    const res = await t.http.post('/fhir').send(
      tx([
        { fullUrl: 'urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0', resource: patient('1940010112345'), request: { method: 'POST', url: 'Patient', ifNoneExist: 'identifier=urn:oid:1.3.182.4.4|1940010112345' } },
        { resource: obs('urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0', 'a'), request: { method: 'POST', url: 'Observation' } },
        { resource: obs('Patient?identifier=urn:oid:1.3.182.4.4|1940010112345', 'b'), request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries[0].response!.status).toBe('200');
    expect(await t.ctx.store.count('Patient')).toBe(1);
    for (const e of entries.slice(1)) {
      const o = await t.http.get(`/fhir/${e.response!.location!.split('/_history')[0]}`);
      expect(o.body.subject.reference).toBe('Patient/known');
    }
  });

  it('a conditional reference matching nothing fails the transaction', async () => {
    const res = await t.http.post('/fhir').send(
      tx([{ resource: obs('Patient?identifier=urn:oid:1.3.182.4.4|1111111111111'), request: { method: 'POST', url: 'Observation' } }]),
    );
    expect(res.status).toBe(412);
    expect(await t.ctx.store.count()).toBe(0);
  });

  it('conditional update entries and PUT with urn:uuid fullUrl references', async () => {
    const res = await t.http.post('/fhir').send(
      tx([
        { fullUrl: 'urn:uuid:a3f0b0a9-8d7c-4bb5-9d36-7f7b2a6f9e10', resource: patient('1930010112345'), request: { method: 'PUT', url: 'Patient?identifier=urn:oid:1.3.182.4.4|1930010112345' } },
        { resource: obs('urn:uuid:a3f0b0a9-8d7c-4bb5-9d36-7f7b2a6f9e10'), request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries[0].response!.status).toBe('201');
    const pid = entries[0].response!.location!.split('/')[1];
    const o = await t.http.get(`/fhir/${entries[1].response!.location!.split('/_history')[0]}`);
    expect(o.body.subject.reference).toBe(`Patient/${pid}`);
    // Running it again updates the same patient.
    const again = await t.http.post('/fhir').send(
      tx([{ resource: patient('1930010112345', 'Other'), request: { method: 'PUT', url: 'Patient?identifier=urn:oid:1.3.182.4.4|1930010112345' } }]),
    );
    expect(again.body.entry[0].response.status).toBe('200');
    expect(again.body.entry[0].response.location).toContain(`Patient/${pid}/_history/2`);
  });

  it('works in XML', async () => {
    const bundle = tx([
      { fullUrl: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0b', resource: patient('1920010112345'), request: { method: 'POST', url: 'Patient' } },
      { resource: obs('urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0b'), request: { method: 'POST', url: 'Observation' } },
    ]);
    const res = await t.http.post('/fhir').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(toFhirXml(bundle));
    expect(res.status).toBe(200);
    const back = parseFhirXml(res.text) as Bundle;
    expect(back.type).toBe('transaction-response');
    expect(back.entry!.map((e) => e.response!.status)).toEqual(['201', '201']);
  });

  it('refuses more entries than the configured limit with 413', async () => {
    const small = await makeApp({ limits: { maxBundleEntries: 2 } as never });
    const res = await small.http.post('/fhir').send(tx([1, 2, 3].map((i) => ({ resource: patient(`19200101${i}2345`), request: { method: 'POST', url: 'Patient' } }))));
    expect(res.status).toBe(413);
  });

  it('refuses bundles that are neither batch nor transaction, and entries without request', async () => {
    const doc = await t.http.post('/fhir').send({ resourceType: 'Bundle', type: 'collection' });
    expect(doc.status).toBe(400);
    const noReq = await t.http.post('/fhir').send({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: patient('1') }] });
    expect(noReq.status).toBe(400);
  });
});

describe('batch', () => {
  it('processes entries independently and reports each outcome', async () => {
    await t.http.put('/fhir/Patient/b1').send({ ...patient('1970010112345'), id: 'b1' });
    const res = await t.http.post('/fhir').send(
      tx(
        [
          { resource: patient('1980010112345'), request: { method: 'POST', url: 'Patient' } },
          { request: { method: 'GET', url: 'Patient/missing' } },
          { resource: { ...patient('1970010112345'), id: 'b1' }, request: { method: 'PUT', url: 'Patient/b1', ifMatch: 'W/"9"' } },
          { request: { method: 'GET', url: 'Patient/b1' } },
          { resource: { resourceType: 'Patient', foo: 1 } as never, request: { method: 'POST', url: 'Patient' } },
        ],
        'batch',
      ),
    );
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries.map((e) => e.response!.status)).toEqual(['201', '404', '412', '200', '400']);
    expect(entries[1].response!.outcome!.resourceType).toBe('OperationOutcome');
    expect((entries[3].resource as Patient).id).toBe('b1');
    expect(await t.ctx.store.count('Patient')).toBe(2);
  });
});

describe('PATCH over HTTP', () => {
  it('applies JSON Patch and FHIRPath Patch with versioning', async () => {
    await t.http.put('/fhir/Patient/p1').send({ ...patient('1970010112345'), id: 'p1', active: true });
    const json = await t.http
      .patch('/fhir/Patient/p1')
      .set('Content-Type', 'application/json-patch+json')
      .set('If-Match', 'W/"1"')
      .send(JSON.stringify([{ op: 'replace', path: '/active', value: false }]));
    expect(json.status).toBe(200);
    expect(json.body.active).toBe(false);
    expect(json.body.meta.versionId).toBe('2');
    const fp = await t.http.patch('/fhir/Patient/p1').set('Content-Type', 'application/fhir+json').send({
      resourceType: 'Parameters',
      parameter: [
        {
          name: 'operation',
          part: [
            { name: 'type', valueCode: 'add' },
            { name: 'path', valueString: 'Patient' },
            { name: 'name', valueString: 'birthDate' },
            { name: 'value', valueDate: '1970-01-01' },
          ],
        },
      ],
    });
    expect(fp.status).toBe(200);
    expect(fp.body.birthDate).toBe('1970-01-01');
    const stale = await t.http
      .patch('/fhir/Patient/p1')
      .set('Content-Type', 'application/json-patch+json')
      .set('If-Match', 'W/"1"')
      .send(JSON.stringify([{ op: 'replace', path: '/active', value: true }]));
    expect(stale.status).toBe(412);
    const invalid = await t.http
      .patch('/fhir/Patient/p1')
      .set('Content-Type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'add', path: '/nonsense', value: 1 }]));
    // The patch applies but leaves an element R4 does not define: base validation refuses it (400).
    expect(invalid.status).toBe(400);
    expect(JSON.stringify(invalid.body)).toContain('nonsense');
    expect((await t.http.get('/fhir/Patient/p1')).body.meta.versionId).toBe('3');
    const missing = await t.http.patch('/fhir/Patient/none').set('Content-Type', 'application/json-patch+json').send('[]');
    expect(missing.status).toBe(404);
  });
});

describe('transaction internals', () => {
  it('never modifies the submitted Bundle (a retried store transaction starts again from it)', async () => {
    const { dispatch } = await import('../src/fhir/router.ts');
    const bundle = tx([
      { fullUrl: 'urn:uuid:7d2f9a10-0000-4000-8000-000000000001', resource: patient('1990020212345'), request: { method: 'POST', url: 'Patient' } },
      { resource: obs('urn:uuid:7d2f9a10-0000-4000-8000-000000000001'), request: { method: 'POST', url: 'Observation' } },
      { resource: obs('Patient?identifier=urn:oid:1.3.182.4.4|1990020212345'), request: { method: 'POST', url: 'Observation' } },
    ]);
    await t.http.put('/fhir/Patient/pre').send({ ...patient('1990020212345'), id: 'pre' });
    // The conditional reference must resolve to exactly one: remove the ambiguity by using another value.
    (bundle.entry![2].resource as Observation).subject!.reference = 'Patient?_id=pre';
    const before = JSON.stringify(bundle);
    const res = await dispatch(t.ctx, { method: 'POST', path: '', query: [], headers: {}, baseUrl: 'http://test/fhir', body: bundle });
    expect(res.status).toBe(200);
    expect(JSON.stringify(bundle)).toBe(before);
    const created = (res.body as Bundle).entry!.map((e) => e.response!.location!.split('/_history')[0]);
    const o1 = await t.http.get(`/fhir/${created[1]}`);
    expect(o1.body.subject.reference).toBe(created[0]);
    const o2 = await t.http.get(`/fhir/${created[2]}`);
    expect(o2.body.subject.reference).toBe('Patient/pre');
  });
});

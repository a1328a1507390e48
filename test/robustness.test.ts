/** Hostile or malformed requests get a clear OperationOutcome with a 4xx status, never a 500. */
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type TestApp } from './support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await makeApp();
  await t.http.put('/fhir/Patient/p1').send({ resourceType: 'Patient', id: 'p1', name: [{ family: 'Wagner' }] });
});

const cases: [string, string, unknown?][] = [
  ['GET', '/fhir/Patient/%E0%A4%A'],
  ['GET', '/fhir/Patient?_count=-1'],
  ['GET', '/fhir/Patient?_count=abc'],
  ['GET', '/fhir/Patient?_cursor=%%%'],
  ['GET', '/fhir/Patient?_cursor=bm90IGpzb24'],
  ['GET', '/fhir/Patient?birthdate=yesterday'],
  ['GET', '/fhir/Patient?_has:Observation'],
  ['GET', '/fhir/Patient?_include=Nothing:nothing'],
  ['GET', '/fhir/Patient/p1/_history/abc'],
  ['GET', '/fhir/_history?_since=2020-13-45'],
  ['POST', '/fhir/Patient', []],
  ['POST', '/fhir/Patient', 'null'],
  ['POST', '/fhir/Patient', { resourceType: 'Patient', id: { nested: true } }],
  ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: 'no' }],
  ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'FETCH', url: 'Patient' } }] }],
  ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'GET', url: 'http://elsewhere.example/Patient/1' } }] }],
  ['PATCH', '/fhir/Patient/p1', { not: 'a patch' }],
  ['PUT', '/fhir/Patient/p1', { resourceType: 'Patient', id: 'p1', name: 'not an array' }],
  ['DELETE', '/fhir/Patient?'],
  ['GET', '/fhir/Patient/$nothing'],
  ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: 'x', request: { method: 'POST', url: 'Patient' } }] }],
  ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [null] }],
  ['GET', '/fhir/Patient?name:nonsense=x&_total=sometimes'],
  ['GET', '/fhir/ValueSet/$expand'],
  ['GET', '/fhir/ValueSet/$expand?url=http://nowhere.example/vs&count=-5'],
  ['GET', '/fhir/ValueSet/$validate-code?url=http://nowhere.example/vs&code=x'],
  ['GET', '/fhir/CodeSystem/$lookup?system=http://nowhere.example/cs&code=x'],
  ['GET', '/fhir/ConceptMap/$translate'],
  ['POST', '/fhir/Patient/$validate', { resourceType: 'Parameters', parameter: 'x' }],
  ['POST', '/fhir/Bundle/$from-cda', { resourceType: 'Binary', contentType: 'application/xml', data: Buffer.from('<ClinicalDocument><unclosed>').toString('base64') }],
  ['POST', '/fhir/Bundle/$from-cda', { resourceType: 'Binary', contentType: 'application/xml', data: Buffer.from('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>').toString('base64') }],
  ['POST', '/fhir/Bundle/$to-cda', { resourceType: 'Bundle', type: 'collection' }],
  ['GET', '/fhir/Patient/p1/$everything?_type=Nothing'],
  ['PATCH', '/fhir/Patient/p1', [{ op: 'replace', path: '/id', value: 'other' }]],
];

describe('malformed requests', () => {
  it.each(cases)('%s %s', async (method, url, body) => {
    let req = t.http[method.toLowerCase() as 'get'](url);
    const type = method === 'PATCH' && Array.isArray(body) ? 'application/json-patch+json' : 'application/fhir+json';
    if (body !== undefined) req = req.set('Content-Type', type).send(typeof body === 'string' ? body : JSON.stringify(body));
    const res = await req;
    expect(res.status, JSON.stringify(res.body)).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  it('an unknown _sort key is ignored and reported (strict handling refuses it)', async () => {
    const lenient = await t.http.get('/fhir/Patient?_sort=nonsense');
    expect(lenient.status).toBe(200);
    expect(lenient.body.entry.some((e: { search: { mode: string } }) => e.search.mode === 'outcome')).toBe(true);
    const strict = await t.http.get('/fhir/Patient?_sort=nonsense').set('Prefer', 'handling=strict');
    expect(strict.status).toBe(400);
  });

  it('the stored resource is unchanged after the bad writes', async () => {
    const res = await t.http.get('/fhir/Patient/p1');
    expect(res.body.meta.versionId).toBe('1');
  });
});

describe('malformed XML bodies', () => {
  const xmlCases: [string, string][] = [
    ['not XML at all', 'hello'],
    ['unclosed', '<Patient xmlns="http://hl7.org/fhir"><name>'],
    ['wrong root namespace', '<Patient xmlns="urn:other"/>'],
    ['unknown element', '<Patient xmlns="http://hl7.org/fhir"><nmae/></Patient>'],
    ['billion laughs', '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><Patient xmlns="http://hl7.org/fhir"><id value="&lol2;"/></Patient>'],
    ['empty', ' '],
  ];
  it.each(xmlCases)('%s', async (_name, body) => {
    const res = await t.http.post('/fhir/Patient').set('Content-Type', 'application/fhir+xml').set('Accept', 'application/fhir+json').send(body);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
  });
});

describe('review findings', () => {
  it('a Bundle entry that is itself a batch or transaction is refused (no nested transaction on the writer lock)', async () => {
    const inner = { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }] };
    const res = await t.http.post('/fhir').send({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: inner, request: { method: 'POST', url: '' } }] });
    expect(res.status).toBe(400);
    // The writer is still free.
    expect((await t.http.post('/fhir/Patient').send({ resourceType: 'Patient' })).status).toBe(201);
  });

  it('an operation body that is not a resource is a 400', async () => {
    const res = await t.http.post('/fhir/Patient/$validate').set('Content-Type', 'application/fhir+json').send('null');
    expect(res.status).toBe(400);
    const params = await t.http.post('/fhir/ValueSet/$expand').send({ resourceType: 'Parameters', parameter: {} });
    expect(params.status).toBe(400);
  });

  it('$reindex is for administrators only', async () => {
    const sys = await t.as({ role: 'system', id: 'Device/lab' });
    expect((await sys.post('/fhir/$reindex?type=Patient')).status).toBe(403);
    expect((await t.http.get('/fhir/$reindex')).status).toBe(200);
  });

  it('a multi-type search keeps only the types the token may search', async () => {
    await t.http.put('/fhir/Observation/o1').send({ resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/p1' } });
    const narrow = await t.as({ role: 'system', id: 'Device/lab', scope: 'system/Patient.rs' });
    const both = await narrow.get('/fhir?_type=Patient,Observation');
    expect(both.status).toBe(200);
    const types = new Set((both.body.entry ?? []).filter((e: { search: { mode: string } }) => e.search.mode === 'match').map((e: { resource: { resourceType: string } }) => e.resource.resourceType));
    expect(types.has('Patient')).toBe(true);
    expect(types.has('Observation')).toBe(false);
    expect((await narrow.get('/fhir?_type=Observation')).status).toBe(403);
  });
});

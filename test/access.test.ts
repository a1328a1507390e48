/**
 * Access control end to end over HTTP: authentication (no token, no data), the access model (links, blocks,
 * labels, hidden documents, visit objections, closure, emergency), search narrowing (totals, includes,
 * chains, _has, paging), batch/transaction, writes, and the audit trail a patient can read.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { consent, doc, obs, seed } from './access-fixture.ts';

let t: TestApp;
const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => `${e.resource!.resourceType}/${e.resource!.id}`).sort();

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
});

describe('authentication: no token, no data', () => {
  it('401 with an OperationOutcome on every path without a token', async () => {
    for (const [m, url] of [['get', '/fhir/Patient/anna'], ['get', '/fhir/Patient'], ['get', '/fhir/'], ['post', '/fhir/Patient'], ['get', '/fhir/_history'], ['get', '/fhir/Patient/anna/$everything'], ['get', '/fhir/Binary/x'], ['delete', '/fhir/Patient/anna'], ['get', '/fhir/AuditEvent']] as const) {
      const res = await t.anon[m](url).set('Accept', 'application/fhir+json');
      expect(res.status, `${m} ${url}`).toBe(401);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    }
  });
  it('the CapabilityStatement and SMART configuration are public', async () => {
    expect((await t.anon.get('/fhir/metadata')).status).toBe(200);
    const smart = await t.anon.get('/fhir/.well-known/smart-configuration');
    expect(smart.status).toBe(200);
    expect(smart.body.token_endpoint).toMatch(/\/auth\/token$/);
  });
  it('401 for a malformed token, 403 for a valid token without the scope', async () => {
    expect((await t.client('not-a-jwt').get('/fhir/Patient/anna')).status).toBe(401);
    const readOnly = await t.as({ role: 'patient', id: 'Patient/anna', scope: 'patient/*.rs' });
    expect((await readOnly.get('/fhir/Patient/anna')).status).toBe(200);
    const w = await readOnly.put('/fhir/Patient/anna').send({ resourceType: 'Patient', id: 'anna' });
    expect(w.status).toBe(403);
    expect(w.body.issue[0].code).toBe('forbidden');
  });
});

describe('the access model', () => {
  let gp: Http, grant: Http, expired: Http, blocked: Http, none: Http, author: Http, anna: Http, ben: Http, asst: Http;
  beforeAll(async () => {
    gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    grant = await t.as({ role: 'practitioner', id: 'Practitioner/dr-grant' });
    expired = await t.as({ role: 'practitioner', id: 'Practitioner/dr-expired' });
    blocked = await t.as({ role: 'practitioner', id: 'Practitioner/dr-blocked' });
    none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    author = await t.as({ role: 'practitioner', id: 'Practitioner/dr-author' });
    anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    ben = await t.as({ role: 'patient', id: 'Patient/ben' });
    asst = await t.as({ role: 'assistant', id: 'RelatedPerson/asst' });
  });

  it('the médecin référent and granted professionals read; expired, blocked and unlinked ones get 404', async () => {
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
    expect((await grant.get('/fhir/Observation/o-normal')).status).toBe(200);
    for (const c of [expired, blocked, none]) {
      const res = await c.get('/fhir/Observation/o-normal');
      expect(res.status).toBe(404);
      // Same answer as for a resource that does not exist.
      const missing = await c.get('/fhir/Observation/does-not-exist');
      expect(res.body.issue[0].code).toBe(missing.body.issue[0].code);
    }
  });

  it('searches count and page only visible data', async () => {
    const annaAll = await anna.get('/fhir/Observation?_total=accurate');
    expect(ids(annaAll.body)).toEqual(['Observation/o-blood', 'Observation/o-enc2', 'Observation/o-normal', 'Observation/o-r', 'Observation/o-v']);
    expect(annaAll.body.total).toBe(5);
    // dr-gp: no V, no objected visit; R allowed (médecin référent); ben's too.
    const g = await gp.get('/fhir/Observation?_total=accurate');
    expect(ids(g.body)).toEqual(['Observation/o-ben', 'Observation/o-blood', 'Observation/o-normal', 'Observation/o-r']);
    expect(g.body.total).toBe(4);
    const a = await author.get('/fhir/Observation?patient=Patient/anna&_total=accurate');
    expect(ids(a.body)).toEqual(['Observation/o-blood', 'Observation/o-normal', 'Observation/o-v']);
    expect((await none.get('/fhir/Observation?_total=accurate')).body.total).toBe(0);
    expect((await blocked.get('/fhir/Observation?patient=Patient/anna&_total=accurate')).body.total).toBe(0);
    const summary = await gp.get('/fhir/Observation?patient=Patient/anna&_summary=count');
    expect(summary.body.total).toBe(3);
  });

  it('hidden documents and labelled ones: patient and author only', async () => {
    expect((await gp.get('/fhir/DocumentReference/doc-hidden')).status).toBe(404);
    expect((await gp.get('/fhir/DocumentReference/doc-v')).status).toBe(404);
    expect((await author.get('/fhir/DocumentReference/doc-hidden')).status).toBe(200);
    expect((await author.get('/fhir/DocumentReference/doc-v')).status).toBe(200);
    expect((await anna.get('/fhir/DocumentReference/doc-hidden')).status).toBe(200);
    expect((await asst.get('/fhir/DocumentReference/doc-hidden')).status).toBe(200);
    expect(ids((await gp.get('/fhir/DocumentReference?patient=Patient/anna')).body)).toEqual(['DocumentReference/doc-plain', 'DocumentReference/doc-ps']);
    expect((await gp.get('/fhir/Encounter/enc-2')).status).toBe(404);
    expect((await gp.get('/fhir/Observation/o-enc2')).status).toBe(404);
  });

  it('patients see only their own record; the patient reads their Consents, professionals do not', async () => {
    expect((await ben.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect(ids((await ben.get('/fhir/Observation')).body)).toEqual(['Observation/o-ben']);
    expect((await anna.get('/fhir/Consent/c-hide')).status).toBe(200);
    expect((await gp.get('/fhir/Consent/c-hide')).status).toBe(404);
    expect((await gp.get('/fhir/Consent?patient=Patient/anna&_total=accurate')).body.total).toBe(0);
  });

  it('_include, _revinclude, chains and _has see visible data only', async () => {
    const inc = await gp.get('/fhir/Patient?_id=anna&_revinclude=DocumentReference:subject');
    expect(ids(inc.body)).toEqual(['DocumentReference/doc-plain', 'DocumentReference/doc-ps', 'Patient/anna']);
    const has = await gp.get('/fhir/Patient?_has:Observation:subject:code=8867-4&_id=anna');
    expect(ids(has.body)).toEqual(['Patient/anna']);
    // Only o-v (V) carries dr-author as performer: invisible to dr-gp, so the chain finds nothing.
    const chain = await gp.get('/fhir/Patient?_has:Observation:subject:performer=Practitioner/dr-author');
    expect(ids(chain.body)).toEqual([]);
    const chain2 = await anna.get('/fhir/Patient?_has:Observation:subject:performer=Practitioner/dr-author');
    expect(ids(chain2.body)).toEqual(['Patient/anna']);
    const fwd = await none.get('/fhir/Observation?subject:Patient.general-practitioner=Practitioner/dr-gp');
    expect(ids(fwd.body)).toEqual([]);
  });

  it('$everything is narrowed; unknown and invisible patients look the same', async () => {
    const ev = await gp.get('/fhir/Patient/anna/$everything');
    expect(ev.status).toBe(200);
    const got = ids(ev.body);
    expect(got).toContain('Patient/anna');
    expect(got).toContain('Observation/o-normal');
    for (const hidden of ['DocumentReference/doc-hidden', 'DocumentReference/doc-v', 'Observation/o-v', 'Observation/o-enc2', 'Encounter/enc-2', 'Consent/c-hide']) expect(got).not.toContain(hidden);
    expect((await none.get('/fhir/Patient/anna/$everything')).status).toBe(404);
    expect((await none.get('/fhir/Patient/nobody/$everything')).status).toBe(404);
  });

  it('paging links are bound to the principal', async () => {
    const first = await gp.get('/fhir/Observation?_count=1');
    const next = (first.body as Bundle).link!.find((l) => l.relation === 'next')!.url.replace('http://test', '');
    expect((await gp.get(next)).status).toBe(200);
    const stolen = await grant.get(next);
    expect(stolen.status).toBe(400);
  });

  it('history: instance history checked; type and system history for administrators only', async () => {
    expect((await gp.get('/fhir/Observation/o-normal/_history')).status).toBe(200);
    expect((await none.get('/fhir/Observation/o-normal/_history')).status).toBe(404);
    expect((await gp.get('/fhir/Observation/_history')).status).toBe(403);
    expect((await gp.get('/fhir/_history')).status).toBe(403);
    expect((await gp.get('/fhir/Observation/o-normal/_history/1')).status).toBe(200);
    expect((await none.get('/fhir/Observation/o-normal/_history/1')).status).toBe(404);
  });

  it('batch entries are decided one by one; a transaction is all or nothing', async () => {
    const batch = await gp.post('/fhir').send({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: 'Observation/o-normal' } },
        { request: { method: 'GET', url: 'DocumentReference/doc-hidden' } },
        { request: { method: 'GET', url: 'Observation?patient=Patient/anna&_total=accurate' } },
      ],
    });
    expect(batch.body.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['200', '404', '200']);
    expect(batch.body.entry[2].resource.total).toBe(3);
    const tx = await none.post('/fhir').send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: obs('tx-ok', 'ben'), request: { method: 'PUT', url: 'Observation/tx-ok' } },
        { request: { method: 'GET', url: 'Observation/o-normal' } },
      ],
    });
    expect(tx.status).toBe(404);
    expect((await t.http.get('/fhir/Observation/tx-ok')).status).toBe(404);
  });

  it('writes: only into accessible records; others’ subject, author and labels cannot change', async () => {
    expect((await none.post('/fhir/Observation').send(obs('x', 'anna', { author: 'Practitioner/dr-none' }))).status).toBe(404);
    const mine = await grant.put('/fhir/Observation/grant-own').send(obs('grant-own', 'anna', { author: 'Practitioner/dr-grant' }));
    expect(mine.status).toBe(201);
    expect((await grant.put('/fhir/Observation/grant-own').send(obs('grant-own', 'anna', { author: 'Practitioner/dr-grant', label: 'R' }))).status).toBe(200);
    const others = await grant.put('/fhir/DocumentReference/doc-plain').send(doc('doc-plain', 'anna', 'Practitioner/dr-author', { label: 'R' }));
    expect(others.status).toBe(403);
    const resubject = await grant.put('/fhir/DocumentReference/doc-plain').send(doc('doc-plain', 'ben', 'Practitioner/dr-author'));
    expect(resubject.status).toBe(403);
    expect((await grant.delete('/fhir/DocumentReference/doc-plain')).status).toBe(403);
    expect((await grant.post('/fhir/Consent').send(consent('x', 'anna', 'grant', { actor: 'Practitioner/dr-grant' }))).status).toBe(403);
    expect((await gp.post('/fhir/Practitioner').send({ resourceType: 'Practitioner' })).status).toBe(403);
    expect((await ben.post('/fhir/Observation').send(obs('y', 'anna'))).status).toBe(404);
    expect((await ben.post('/fhir/Observation').send(obs('y', 'ben'))).status).toBe(201);
  });

  it('a malformed body is a 400 naming the element, before the write rules look at it', async () => {
    const badLabels = await gp.put('/fhir/DocumentReference/doc-plain').send({ ...doc('doc-plain', 'anna', 'Practitioner/dr-author'), securityLabel: 5 });
    expect(badLabels.status).toBe(400);
    expect(badLabels.body.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(badLabels.body.issue)).toContain('securityLabel');
    const badMeta = await gp.put('/fhir/DocumentReference/doc-plain').send({ ...doc('doc-plain', 'anna', 'Practitioner/dr-author'), meta: { security: { code: 'x' } } });
    expect(badMeta.status).toBe(400);
    const badSubject = await gp.post('/fhir/Observation').send({ ...obs('z', 'anna'), subject: { reference: 5 } });
    expect(badSubject.status).toBe(400);
    expect(JSON.stringify(badSubject.body.issue)).toContain('subject');
    // Nothing was written.
    expect((await t.http.get('/fhir/DocumentReference/doc-plain')).body.meta.versionId).toBe('1');
  });
});

describe('closure and emergency', () => {
  it('a closed record: only the patient and each author for their own; reopening restores access', async () => {
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const author = await t.as({ role: 'practitioner', id: 'Practitioner/dr-author' });
    expect((await anna.put('/fhir/Consent/c-close').send(consent('c-close', 'anna', 'close'))).status).toBe(201);
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await gp.get('/fhir/Patient/anna')).status).toBe(404);
    expect(ids((await gp.get('/fhir/DocumentReference?patient=Patient/anna')).body)).toEqual(['DocumentReference/doc-ps']);
    expect(ids((await author.get('/fhir/DocumentReference?patient=Patient/anna')).body)).toEqual(['DocumentReference/doc-hidden', 'DocumentReference/doc-plain', 'DocumentReference/doc-v']);
    expect((await author.get('/fhir/DocumentReference/doc-plain')).status).toBe(200);
    expect((await author.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await anna.get('/fhir/Observation/o-normal')).status).toBe(200);
    expect((await anna.put('/fhir/Consent/c-close').send(consent('c-close', 'anna', 'close', { status: 'inactive' }))).status).toBe(200);
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
  });

  it('emergency access: essential data only, with a reason, audited and flagged to the patient; refused when disabled', async () => {
    const er = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none', purpose: 'EMERGENCY', reason: 'unconscious at the ER' });
    expect((await er.get('/fhir/Patient/anna')).status).toBe(200);
    expect((await er.get('/fhir/AllergyIntolerance/allergy')).status).toBe(200);
    expect((await er.get('/fhir/Observation/o-blood')).status).toBe(200);
    expect((await er.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await er.get('/fhir/DocumentReference/doc-ps')).status).toBe(200);
    expect((await er.get('/fhir/DocumentReference/doc-plain')).status).toBe(404);
    expect(ids((await er.get('/fhir/Observation?patient=Patient/anna')).body)).toEqual(['Observation/o-blood']);
    // Without a pinned patient an emergency search finds nothing.
    expect(ids((await er.get('/fhir/Observation')).body)).toEqual([]);
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const flagged = await anna.get('/fhir/AuditEvent?_tag=https://dsp.lu/fhir/CodeSystem/audit-flag|emergency-access');
    expect(flagged.status).toBe(200);
    expect(flagged.body.entry.length).toBeGreaterThan(0);
    expect(flagged.body.entry[0].resource.agent[0].who.reference).toBe('Practitioner/dr-none');
    expect(flagged.body.entry[0].resource.agent[0].purposeOfUse[0].text).toBe('unconscious at the ER');
    expect((await anna.put('/fhir/Consent/c-optout').send(consent('c-optout', 'anna', 'emergency-optout'))).status).toBe(201);
    expect((await er.get('/fhir/Patient/anna')).status).toBe(404);
    // A dev token for emergency needs a reason.
    await expect(t.tokenFor({ role: 'practitioner', id: 'Practitioner/x', purpose: 'EMERGENCY' })).rejects.toThrow(/reason/);
    await anna.delete('/fhir/Consent/c-optout');
  });
});

describe('audit trail through the API', () => {
  it('AuditEvent cannot be created, changed or deleted, even by an administrator', async () => {
    const ev = { resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: '2024-01-01T00:00:00Z', agent: [{ requestor: true }], source: { observer: { display: 'x' } } };
    expect((await t.http.post('/fhir/AuditEvent').send(ev)).status).toBe(405);
    expect((await t.http.put('/fhir/AuditEvent/x').send({ ...ev, id: 'x' })).status).toBe(405);
    expect((await t.http.delete('/fhir/AuditEvent/x')).status).toBe(405);
  });
  it('a patient reads only their own audit events; professionals none', async () => {
    const ben = await t.as({ role: 'patient', id: 'Patient/ben' });
    await ben.get('/fhir/Observation/o-ben');
    const own = await ben.get('/fhir/AuditEvent?_count=1000');
    expect(own.status).toBe(200);
    expect(own.body.entry.length).toBeGreaterThan(0);
    for (const e of own.body.entry) expect(JSON.stringify([e.resource.entity, e.resource.agent])).toContain('Patient/ben');
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const some = own.body.entry[0].resource.id;
    expect((await anna.get(`/fhir/AuditEvent/${some}`)).status).toBe(404);
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    expect((await gp.get('/fhir/AuditEvent?_total=accurate')).body.total ?? 0).toBe(0);
    // Denials are recorded too.
    const all = await t.http.get('/fhir/AuditEvent?_count=1000&outcome=4');
    expect(all.body.entry.length).toBeGreaterThan(0);
  });
});

/**
 * The NCP interface (issue 7, src/crossborder/ncp.ts) end to end over HTTP, as a foreign national contact
 * point uses it after the MyHealth@EU NCPeH FHIR API: patient identification (minimal Patient), Patient Summary
 * DocumentReference search by patient.identifier, retrieval of the document as FHIR and as eHDSI pivot CDA;
 * only for consenting patients (active cross-border Consent, record not closed), only for the NCP role where
 * the interface is the NCP's, and every access in the patient's audit trail.
 *
 * The eHDSI validator check uses ../shared/tools/ehdsi-cda-validate and Java; it is skipped with a message
 * when either is absent.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, Binary, Bundle, DocumentReference, Patient, Resource } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { consent } from './access-fixture.ts';
import { loadExamples } from '../src/examples.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const validator = resolve(root, '..', 'shared', 'tools', 'ehdsi-cda-validate');
const canValidate = existsSync(validator) && spawnSync('java', ['-version']).status === 0;
if (!canValidate) console.warn('ncp.test: ../shared/tools/ehdsi-cda-validate or Java is absent: the eHDSI validator check is skipped');

const MATRICULE = 'urn:oid:1.3.182.4.4';
const PS_TYPE = 'http://loinc.org|60591-5';
const CLAIRE = { id: 'pat-claire-wagner', matricule: '1958031490443', bundle: 'ps-claire-wagner-20261012', docref: 'docref-ps-claire-wagner-20261012' };
const example = JSON.parse(readFileSync(join(root, 'examples/05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;

let t: TestApp;
let ncp: Http;

const q = (v: string) => encodeURIComponent(v);
const entries = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource!);
const identify = (matricule: string, extra = '') => ncp.get(`/fhir/Patient?identifier=${q(`${MATRICULE}|${matricule}`)}${extra}`);
const findSummaries = (matricule: string, extra = '') => ncp.get(`/fhir/DocumentReference?patient.identifier=${q(`${MATRICULE}|${matricule}`)}&type=${q(PS_TYPE)}&date=ge2024-01-01${extra}`);

/**
 * A record like Claire Wagner's: a Patient (with address and telecom, which the NCP must not receive), its
 * Patient Summary document (a copy of the example with this patient's matricule and a new identifier), the PS
 * DocumentReference naming it, and the given Consents.
 */
async function addRecord(id: string, matricule: string, kinds: { kind: string; status?: string }[]): Promise<void> {
  const put = async (r: Resource) => {
    const res = await t.http.put(`/fhir/${r.resourceType}/${r.id}`).send(r);
    if (res.status >= 300) throw new Error(`${r.resourceType}/${r.id}: ${res.status} ${JSON.stringify(res.body)}`);
  };
  await put({
    resourceType: 'Patient', id, identifier: [{ system: MATRICULE, value: matricule }], name: [{ family: 'Wagner', given: ['Test'] }], gender: 'female', birthDate: '1958-03-14',
    address: [{ city: 'Mersch', country: 'LU' }], telecom: [{ system: 'phone', value: '+352 000 000' }],
  } as Patient);
  const doc = structuredClone(example);
  doc.id = `ps-${id}`;
  doc.identifier = { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` };
  const patient = doc.entry!.find((e) => e.resource?.resourceType === 'Patient')!.resource as Patient;
  patient.identifier = [{ system: MATRICULE, value: matricule }];
  await put(doc);
  await put({
    resourceType: 'DocumentReference', id: `docref-ps-${id}`, masterIdentifier: doc.identifier, status: 'current',
    type: { coding: [{ system: 'http://loinc.org', code: '60591-5' }] }, subject: { reference: `Patient/${id}` }, date: '2026-10-12T09:30:00+02:00',
    content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('Résumé patient').toString('base64') } }],
  } as DocumentReference);
  let n = 0;
  for (const k of kinds) await put(consent(`c-${id}-${n++}`, id, k.kind, { status: k.status }));
}

beforeAll(async () => {
  t = await makeApp();
  await loadExamples(t.ctx, join(root, 'examples')); // Claire Wagner consents (examples/06-consents.json)
  await addRecord('xb-none', '1958031499901', []);
  await addRecord('xb-closed', '1958031499902', [{ kind: 'cross-border' }, { kind: 'close' }]);
  await addRecord('xb-withdrawn', '1958031499903', [{ kind: 'cross-border', status: 'inactive' }]);
  await addRecord('xb-optout', '1958031499904', [{ kind: 'cross-border' }, { kind: 'emergency-optout' }]);
  await addRecord('xb-toggle', '1958031499905', [{ kind: 'cross-border' }]);
  ncp = await t.as({ role: 'ncp', id: 'Organization/ncp-be' });
}, 120_000);

describe('patient identification (Patient search)', () => {
  it('finds a consenting patient by matricule and answers a minimal Patient', async () => {
    const res = await identify(CLAIRE.matricule);
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('searchset');
    const found = entries(res.body) as Patient[];
    expect(found.map((p) => p.id)).toEqual([CLAIRE.id]);
    const p = found[0]!;
    expect(Object.keys(p).sort()).toEqual(['birthDate', 'gender', 'id', 'identifier', 'meta', 'name', 'resourceType']);
    expect(p.identifier).toContainEqual(expect.objectContaining({ system: MATRICULE, value: CLAIRE.matricule }));
    expect(p.name?.[0]?.family).toBe('Wagner');
    expect(p.birthDate).toBe('1958-03-14');
    expect(p.gender).toBe('female');
    expect(p.meta?.tag).toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
    expect(JSON.stringify(p)).not.toMatch(/Mersch|example\.org|621 000|generalPractitioner|communication/);
  });

  it('every demographic given must match too', async () => {
    const all = '&family=Wagner&given=Claire&birthdate=1958-03-14&gender=female';
    expect(entries((await identify(CLAIRE.matricule, all)).body)).toHaveLength(1);
    for (const wrong of ['&family=Weber', '&given=Anne', '&birthdate=1958-03-15', '&gender=male']) {
      const res = await identify(CLAIRE.matricule, wrong);
      expect(res.status, wrong).toBe(200);
      expect(entries(res.body), wrong).toHaveLength(0);
    }
  });

  it('a patient who did not consent, closed the record or withdrew consent is not found (empty searchset, not 403)', async () => {
    for (const m of ['1958031499901', '1958031499902', '1958031499903']) {
      const res = await identify(m);
      expect(res.status, m).toBe(200);
      expect(res.body.resourceType).toBe('Bundle');
      expect(entries(res.body), m).toEqual([]);
    }
    // The same answer as for a matricule nobody has.
    expect(entries((await identify('1900010100000')).body)).toEqual([]);
  });

  it('the emergency opt-out does not govern NCP access (docs/access.md): that patient is found', async () => {
    expect(entries((await identify('1958031499904')).body).map((p) => p.id)).toEqual(['xb-optout']);
  });

  it('the NCP must identify by system|value: a search without identifier, with a bare value or a modifier is refused', async () => {
    for (const url of ['/fhir/Patient?family=Wagner', '/fhir/Patient', `/fhir/Patient?identifier=${CLAIRE.matricule}`, `/fhir/Patient?identifier:not=${q(`${MATRICULE}|1`)}`, `/fhir/DocumentReference?patient.family=Wagner&type=${q(PS_TYPE)}`]) {
      const res = await ncp.get(url);
      expect(res.status, url).toBe(403);
      expect(res.body.issue[0].code).toBe('forbidden');
    }
  });

  it('a read of the Patient by the NCP is minimal too; other roles get the whole Patient', async () => {
    const read = await ncp.get(`/fhir/Patient/${CLAIRE.id}`);
    expect(read.status).toBe(200);
    expect(Object.keys(read.body).sort()).toEqual(['birthDate', 'gender', 'id', 'identifier', 'meta', 'name', 'resourceType']);
    expect((await ncp.get('/fhir/Patient/xb-none')).status).toBe(404);
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/pract-schmit-marc' });
    const full = await gp.get(`/fhir/Patient?identifier=${q(`${MATRICULE}|${CLAIRE.matricule}`)}`);
    expect((entries(full.body)[0] as Patient).address?.[0]?.city).toBe('Mersch');
  });
});

describe('Patient Summary DocumentReference search', () => {
  it('finds the Patient Summary of a consenting patient, with its FHIR and CDA representations', async () => {
    const res = await findSummaries(CLAIRE.matricule);
    expect(res.status).toBe(200);
    const docs = entries(res.body) as DocumentReference[];
    expect(docs.map((d) => d.id)).toEqual([CLAIRE.docref]);
    const content = docs[0]!.content.map((c) => `${c.attachment.contentType} ${c.attachment.url}`);
    expect(content).toEqual([
      'application/pdf Binary/bin-ps-claire-wagner-20261012',
      `application/fhir+json Bundle/${CLAIRE.bundle}`,
      `application/xml Bundle/${CLAIRE.bundle}/$to-cda`,
    ]);
  });

  it('finds nothing for patients who did not consent, closed the record or withdrew', async () => {
    for (const m of ['1958031499901', '1958031499902', '1958031499903']) {
      const res = await findSummaries(m);
      expect(res.status, m).toBe(200);
      expect(entries(res.body), m).toEqual([]);
    }
  });

  it('the date and type parameters apply; other document types are not the NCP\'s', async () => {
    expect(entries((await ncp.get(`/fhir/DocumentReference?patient.identifier=${q(`${MATRICULE}|${CLAIRE.matricule}`)}&type=${q(PS_TYPE)}&date=ge2027-01-01`)).body)).toEqual([]);
    expect(entries((await ncp.get(`/fhir/DocumentReference?subject:Patient.identifier=${q(`${MATRICULE}|${CLAIRE.matricule}`)}&type=${q(PS_TYPE)}`)).body)).toHaveLength(1);
    // Without the type, still only the Patient Summary (the NCP sees essential data only).
    const all = entries((await ncp.get(`/fhir/DocumentReference?patient.identifier=${q(`${MATRICULE}|${CLAIRE.matricule}`)}`)).body);
    expect(all.map((d) => d.id)).toEqual([CLAIRE.docref]);
    // Without a patient.identifier chain (or patient=), nothing.
    expect(entries((await ncp.get(`/fhir/DocumentReference?type=${q(PS_TYPE)}`)).body)).toEqual([]);
  });
});

describe('Patient Summary retrieval', () => {
  it('follows the DocumentReference: the FHIR document Bundle and the eHDSI CDA in a Binary', async () => {
    const doc = entries((await findSummaries(CLAIRE.matricule)).body)[0] as DocumentReference;
    const fhir = doc.content.find((c) => c.attachment.contentType === 'application/fhir+json')!.attachment.url!;
    const bundle = await ncp.get(`/fhir/${fhir}`);
    expect(bundle.status).toBe(200);
    expect(bundle.body.type).toBe('document');
    expect(bundle.body.identifier).toEqual(example.identifier);
    // The document is sent as it is (its own Patient copy included).
    expect(JSON.stringify(bundle.body)).toContain('Mersch');
    const cda = doc.content.find((c) => c.attachment.contentType === 'application/xml')!.attachment.url!;
    const bin = await ncp.get(`/fhir/${cda}`);
    expect(bin.status).toBe(200);
    expect(bin.body.resourceType).toBe('Binary');
    expect((bin.body as Binary).contentType).toBe('application/xml');
    const xml = Buffer.from((bin.body as Binary).data!, 'base64').toString('utf8');
    expect(xml).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.1.3');
    expect(xml).toContain(`root="1.3.182.4.4" extension="${CLAIRE.matricule}"`);
  });

  it('no document of a patient who did not consent, closed the record or withdrew (404 like a missing one)', async () => {
    for (const id of ['xb-none', 'xb-closed', 'xb-withdrawn']) {
      expect((await ncp.get(`/fhir/Bundle/ps-${id}`)).status, id).toBe(404);
      expect((await ncp.get(`/fhir/Bundle/ps-${id}/$to-cda`)).status, id).toBe(404);
    }
    expect((await ncp.get('/fhir/Bundle/does-not-exist')).status).toBe(404);
    expect((await ncp.get('/fhir/Bundle/ps-xb-optout')).status).toBe(200);
  });

  it('a DocumentReference of a consenting record naming another patient\'s document does not open it', async () => {
    const other = (await t.http.get('/fhir/Bundle/ps-xb-none')).body as Bundle;
    const res = await t.http.put('/fhir/DocumentReference/docref-misfiled').send({
      resourceType: 'DocumentReference', id: 'docref-misfiled', masterIdentifier: other.identifier, status: 'current',
      type: { coding: [{ system: 'http://loinc.org', code: '60591-5' }] }, subject: { reference: `Patient/${CLAIRE.id}` },
      content: [{ attachment: { contentType: 'text/plain', data: 'eA==' } }],
    });
    expect(res.status).toBe(201);
    expect((await ncp.get('/fhir/Bundle/ps-xb-none')).status).toBe(404);
    await t.http.delete('/fhir/DocumentReference/docref-misfiled');
  });

  it('a restricted (R) Patient Summary is not sent; a matricule shared by two visible records is a 409 for the document search', async () => {
    await addRecord('xb-restricted', '1958031499906', [{ kind: 'cross-border' }]);
    const d = (await t.http.get('/fhir/DocumentReference/docref-ps-xb-restricted')).body as DocumentReference;
    d.securityLabel = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] }];
    expect((await t.http.put('/fhir/DocumentReference/docref-ps-xb-restricted').send(d)).status).toBe(200);
    expect(entries((await identify('1958031499906')).body)).toHaveLength(1); // the patient is found...
    expect(entries((await findSummaries('1958031499906')).body)).toEqual([]); // ...but not the restricted summary
    expect((await ncp.get('/fhir/Bundle/ps-xb-restricted')).status).toBe(404);

    await addRecord('xb-dup-1', '1958031499907', [{ kind: 'cross-border' }]);
    await addRecord('xb-dup-2', '1958031499907', [{ kind: 'cross-border' }]);
    expect(entries((await identify('1958031499907')).body).map((p) => p.id)).toEqual(['xb-dup-1', 'xb-dup-2']);
    const ambiguous = await findSummaries('1958031499907');
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.issue[0].diagnostics).toMatch(/patient=Patient\/<id>/);
    expect(entries((await ncp.get(`/fhir/DocumentReference?patient=Patient/xb-dup-1&type=${q(PS_TYPE)}`)).body).map((r) => r.id)).toEqual(['docref-ps-xb-dup-1']);
  });

  it('withdrawing the consent closes the interface at once', async () => {
    expect((await ncp.get('/fhir/Bundle/ps-xb-toggle')).status).toBe(200);
    const patient = await t.as({ role: 'patient', id: 'Patient/xb-toggle' });
    const c = (await patient.get('/fhir/Consent/c-xb-toggle-0')).body;
    expect((await patient.put('/fhir/Consent/c-xb-toggle-0').send({ ...c, status: 'inactive' })).status).toBe(200);
    expect((await ncp.get('/fhir/Bundle/ps-xb-toggle')).status).toBe(404);
    expect(entries((await identify('1958031499905')).body)).toEqual([]);
    expect(entries((await findSummaries('1958031499905')).body)).toEqual([]);
  });

  it.skipIf(!canValidate)('the CDA passes the official eHDSI validator (XSD + schematron) with zero errors', async () => {
    const bin = await ncp.get(`/fhir/Bundle/${CLAIRE.bundle}/$to-cda`);
    const dir = mkdtempSync(join(tmpdir(), 'ncp-'));
    const file = join(dir, 'ps.xml');
    writeFileSync(file, Buffer.from((bin.body as Binary).data!, 'base64'));
    const r = spawnSync(validator, ['--json', file], { encoding: 'utf8', timeout: 600_000 });
    const res = JSON.parse(r.stdout.trim().split('\n')[0]!);
    expect(res.errors, JSON.stringify(res.errors).slice(0, 2000)).toEqual([]);
    expect(res.xsdErrors).toBe(0);
    expect(res.ok).toBe(true);
  }, 600_000);
});

describe('other roles', () => {
  it('the document retrieval is the NCP\'s: practitioners and patients get 404 for the Bundle and 403 for $to-cda', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/pract-schmit-marc' });
    const emergency = await t.as({ role: 'practitioner', id: 'Practitioner/pract-weber-anne', purpose: 'EMERGENCY', reason: 'accident' });
    const claire = await t.as({ role: 'patient', id: `Patient/${CLAIRE.id}` });
    for (const c of [gp, emergency, claire]) {
      expect((await c.get(`/fhir/Bundle/${CLAIRE.bundle}`)).status).toBe(404);
      expect((await c.get(`/fhir/Bundle/${CLAIRE.bundle}/$to-cda`)).status).toBe(403);
    }
    // The linked GP's DocumentReference answer is the stored one (no added representations).
    const doc = await gp.get(`/fhir/DocumentReference/${CLAIRE.docref}`);
    expect(doc.body.content).toHaveLength(1);
  });

  it('the NCP writes nothing and runs no other operation', async () => {
    expect((await ncp.put('/fhir/Consent/c-x').send(consent('c-x', CLAIRE.id, 'cross-border'))).status).toBe(403);
    expect((await ncp.post('/fhir/Bundle/$to-cda').send(example)).status).toBe(403);
    // $everything stays open to the NCP (essential data only, docs/access.md); its Patient is minimal too.
    const everything = await ncp.get(`/fhir/Patient/${CLAIRE.id}/$everything`);
    expect(everything.status).toBe(200);
    const patients = entries(everything.body).filter((r) => r.resourceType === 'Patient');
    expect(patients.map((p) => Object.keys(p).sort())).toEqual([['birthDate', 'gender', 'id', 'identifier', 'meta', 'name', 'resourceType']]);
  });
});

describe('audit', () => {
  it('the patient reads every NCP access in their AuditEvents, with the purpose of use', async () => {
    await identify(CLAIRE.matricule);
    await findSummaries(CLAIRE.matricule);
    await ncp.get(`/fhir/Bundle/${CLAIRE.bundle}`);
    await ncp.get(`/fhir/Bundle/${CLAIRE.bundle}/$to-cda`);
    const claire = await t.as({ role: 'patient', id: `Patient/${CLAIRE.id}` });
    const res = await claire.get(`/fhir/AuditEvent?agent=${q('Organization/ncp-be')}&_count=200`);
    expect(res.status).toBe(200);
    const events = entries(res.body) as AuditEvent[];
    const ok = events.filter((e) => e.outcome === '0');
    const kinds = new Set(ok.map((e) => e.subtype?.[0]?.code));
    for (const k of ['search-type', 'read', 'operation']) expect(kinds.has(k), k).toBe(true);
    for (const e of ok) {
      expect(e.entity?.some((x) => x.what?.reference === `Patient/${CLAIRE.id}`)).toBe(true);
      expect(e.agent[0]?.who?.reference).toBe('Organization/ncp-be');
      expect(e.agent[0]?.role?.[0]?.text).toBe('ncp');
      expect(e.agent[0]?.purposeOfUse?.[0]?.coding?.[0]?.code).toMatch(/^E?TREAT$/);
      expect(e.purposeOfEvent?.[0]?.coding?.[0]?.code).toBe(e.agent[0]?.purposeOfUse?.[0]?.coding?.[0]?.code);
    }
    const reads = ok.filter((e) => e.subtype?.[0]?.code === 'read' && e.entity?.some((x) => x.what?.reference === `Bundle/${CLAIRE.bundle}`));
    expect(reads.length).toBeGreaterThanOrEqual(1);
    const cda = ok.filter((e) => e.subtype?.[0]?.code === 'operation' && e.entity?.some((x) => x.what?.reference === `Bundle/${CLAIRE.bundle}`));
    expect(cda.length).toBeGreaterThanOrEqual(1);
    // No values of the query in the trail (names only).
    expect(JSON.stringify(events)).not.toContain(CLAIRE.matricule);
  });

  it('a patient whom the NCP could not see finds no NCP access to their record', async () => {
    await identify('1958031499901');
    await ncp.get('/fhir/Bundle/ps-xb-none');
    const p = await t.as({ role: 'patient', id: 'Patient/xb-none' });
    const res = await p.get(`/fhir/AuditEvent?agent=${q('Organization/ncp-be')}`);
    expect(res.status).toBe(200);
    expect(entries(res.body).filter((e) => (e as AuditEvent).outcome === '0')).toEqual([]);
  });
});

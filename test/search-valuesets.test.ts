/** Token :in / :not-in over HTTP, with value sets from the MVC content and ValueSets stored on the server. */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4';
import { makeApp, type TestApp } from './support/app.ts';

let t: TestApp;
const SCT = 'http://snomed.info/sct';
const obs = (id: string, code: string) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '882-1' }] },
  valueCodeableConcept: { coding: [{ system: SCT, code }] },
});

beforeAll(async () => {
  t = await makeApp();
  // 112144000 (blood group A) is in eHDSIBloodGroup; 271649006 (systolic blood pressure) is not.
  for (const [id, code] of [['o1', '112144000'], ['o2', '278152006'], ['o3', '271649006']] as const) {
    expect((await t.http.put(`/fhir/Observation/${id}`).send(obs(id, code))).status).toBe(201);
  }
  await t.http.put('/fhir/ValueSet/local').send({
    resourceType: 'ValueSet',
    id: 'local',
    url: 'http://dsp.lu/fhir/ValueSet/test-local',
    status: 'active',
    compose: { include: [{ system: SCT, concept: [{ code: '271649006' }] }] },
  });
});

const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id).sort();

describe('token :in / :not-in', () => {
  it('uses an eHDSI MVC value set', async () => {
    const res = await t.http.get('/fhir/Observation?value-concept:in=http://terminology.ehdsi.eu/ValueSet/eHDSIBloodGroup');
    expect(res.status).toBe(200);
    expect(ids(res.body)).toEqual(['o1', 'o2']);
    const not = await t.http.get('/fhir/Observation?value-concept:not-in=http://terminology.ehdsi.eu/ValueSet/eHDSIBloodGroup');
    expect(ids(not.body)).toEqual(['o3']);
  });

  it('uses a ValueSet stored on the server', async () => {
    const res = await t.http.get('/fhir/Observation?value-concept:in=http://dsp.lu/fhir/ValueSet/test-local');
    expect(ids(res.body)).toEqual(['o3']);
  });

  it('refuses an unknown value set with 400', async () => {
    const res = await t.http.get('/fhir/Observation?value-concept:in=http://nowhere.example/ValueSet/none');
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });
});

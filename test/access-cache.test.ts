/**
 * Issue 6: the access decisions cached between requests (policies, a record's restrictions, the records an
 * unpinned search spans) follow every write that can change them, on the next request.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { CONF, consent, obs, seed } from './access-fixture.ts';

let t: TestApp;
let gp: Http;

const ids = async (url: string) => {
  const res = await gp.get(url);
  expect(res.status).toBe(200);
  return ((res.body as Bundle).entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
};

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
});

describe('cached access decisions of unpinned searches (all the records of a GP)', () => {
  it('a new label, a hide, a new patient, a block and a withdrawn block are seen by the next search', async () => {
    await t.http.put('/fhir/Observation/cache-1').send(obs('cache-1', 'anna'));
    await t.http.put('/fhir/Observation/cache-2').send(obs('cache-2', 'ben'));
    // Warm the caches: the same unpinned search twice.
    for (let i = 0; i < 2; i++) expect(await ids('/fhir/Observation?_count=500')).toEqual(expect.arrayContaining(['Observation/cache-1', 'Observation/cache-2']));
    // A very restricted label on one resource: gone at once.
    const labelled = { ...obs('cache-1', 'anna'), meta: { security: [{ system: CONF, code: 'V' }] } };
    expect((await t.http.put('/fhir/Observation/cache-1').send(labelled)).status).toBe(200);
    let seen = await ids('/fhir/Observation?_count=500');
    expect(seen).not.toContain('Observation/cache-1');
    expect(seen).toContain('Observation/cache-2');
    // The patient hides a resource: gone at once.
    await t.http.put('/fhir/Consent/cache-hide').send(consent('cache-hide', 'ben', 'hide', { data: 'Observation/cache-2' }));
    expect(await ids('/fhir/Observation?_count=500')).not.toContain('Observation/cache-2');
    // A new patient of this GP: in the next Patient search.
    expect(await ids('/fhir/Patient?_count=500')).not.toContain('Patient/cache-new');
    await t.http.put('/fhir/Patient/cache-new').send({ resourceType: 'Patient', id: 'cache-new', generalPractitioner: [{ reference: 'Practitioner/dr-gp' }] });
    expect(await ids('/fhir/Patient?_count=500')).toContain('Patient/cache-new');
    // The new patient blocks the GP: the record leaves the GP's searches; withdrawn, it comes back.
    await t.http.put('/fhir/Consent/cache-block').send(consent('cache-block', 'cache-new', 'block', { actor: 'Practitioner/dr-gp' }));
    expect(await ids('/fhir/Patient?_count=500')).not.toContain('Patient/cache-new');
    await t.http.put('/fhir/Consent/cache-block').send(consent('cache-block', 'cache-new', 'block', { actor: 'Practitioner/dr-gp', status: 'inactive' }));
    seen = await ids('/fhir/Patient?_count=500');
    expect(seen).toContain('Patient/cache-new');
    expect(seen).toEqual(expect.arrayContaining(['Patient/anna', 'Patient/ben']));
  });
});

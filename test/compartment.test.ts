/** Compartment search and Patient/$everything over HTTP. */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4';
import { makeApp, type TestApp } from './support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await makeApp();
  const tx: Bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: { resourceType: 'Patient', id: 'p1', name: [{ family: 'Weber' }] }, request: { method: 'PUT', url: 'Patient/p1' } },
      { resource: { resourceType: 'Patient', id: 'p2', name: [{ family: 'Klein' }] }, request: { method: 'PUT', url: 'Patient/p2' } },
      { resource: { resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'a' }, subject: { reference: 'Patient/p1' } }, request: { method: 'PUT', url: 'Observation/o1' } },
      { resource: { resourceType: 'Observation', id: 'o2', status: 'final', code: { text: 'b' }, subject: { reference: 'Patient/p2' } }, request: { method: 'PUT', url: 'Observation/o2' } },
      { resource: { resourceType: 'Observation', id: 'o3', status: 'final', code: { text: 'c' }, subject: { reference: 'Group/g' }, performer: [{ reference: 'Patient/p1' }] }, request: { method: 'PUT', url: 'Observation/o3' } },
      { resource: { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' } }, request: { method: 'PUT', url: 'Condition/c1' } },
      { resource: { resourceType: 'AllergyIntolerance', id: 'a1', patient: { reference: 'Patient/p2' } }, request: { method: 'PUT', url: 'AllergyIntolerance/a1' } },
      { resource: { resourceType: 'Organization', id: 'org', name: 'CHL' }, request: { method: 'PUT', url: 'Organization/org' } },
    ],
  };
  const res = await t.http.post('/fhir').send(tx);
  expect(res.status).toBe(200);
});

const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => `${e.resource!.resourceType}/${e.resource!.id}`).sort();

describe('compartment search', () => {
  it('finds the members of one type through any compartment parameter', async () => {
    const res = await t.http.get('/fhir/Patient/p1/Observation');
    expect(res.status).toBe(200);
    expect(ids(res.body)).toEqual(['Observation/o1', 'Observation/o3']);
    const narrowed = await t.http.get('/fhir/Patient/p1/Observation?code:text=c');
    expect(ids(narrowed.body)).toEqual(['Observation/o3']);
  });

  it('Patient/[id]/* finds members of every type', async () => {
    const res = await t.http.get('/fhir/Patient/p1/*');
    expect(ids(res.body)).toEqual(['Condition/c1', 'Observation/o1', 'Observation/o3']);
  });

  it('refuses types outside the compartment and unknown owners', async () => {
    expect((await t.http.get('/fhir/Patient/p1/Organization')).status).toBe(400);
    expect((await t.http.get('/fhir/Patient/nobody/Observation')).status).toBe(404);
  });
});

describe('Patient/$everything', () => {
  it('returns the patient and its compartment, pages with next links, narrows by _type', async () => {
    const all = await t.http.get('/fhir/Patient/p2/$everything');
    expect(all.status).toBe(200);
    expect(ids(all.body)).toEqual(['AllergyIntolerance/a1', 'Observation/o2', 'Patient/p2']);
    expect(all.body.entry[0].resource.id).toBe('p2');

    const seen: string[] = [];
    let url: string | undefined = '/fhir/Patient/p1/$everything?_count=1';
    while (url) {
      const page = await t.http.get(url);
      expect(page.status).toBe(200);
      seen.push(...ids(page.body));
      url = (page.body as Bundle).link?.find((l) => l.relation === 'next')?.url.replace('http://test', '');
    }
    expect(seen.sort()).toEqual(['Condition/c1', 'Observation/o1', 'Observation/o3', 'Patient/p1']);

    const typed = await t.http.get('/fhir/Patient/p1/$everything?_type=Condition');
    expect(ids(typed.body)).toEqual(['Condition/c1']);
    expect((await t.http.get('/fhir/Patient/zz/$everything')).status).toBe(404);
    expect((await t.http.get('/fhir/Observation/o1/$everything')).status).toBe(400);
  });
});

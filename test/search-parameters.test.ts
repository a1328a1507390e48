/** SearchParameter resources created on the server: registry, re-indexing with visible progress, removal. */
import { afterAll, describe, expect, it } from 'vitest';
import type { Bundle, Parameters, Patient, SearchParameter } from 'fhir/r4';
import { makeApp } from './support/app.ts';
import { setServerSearchParameters } from '../src/search/registry.ts';

const EXT = 'http://dsp.lu/fhir/StructureDefinition/commune';
const patient = (id: string, commune: string): Patient => ({
  resourceType: 'Patient',
  id,
  extension: [{ url: EXT, valueString: commune }],
  name: [{ family: id }],
});
const sp: SearchParameter = {
  resourceType: 'SearchParameter',
  id: 'lu-commune',
  url: 'http://dsp.lu/fhir/SearchParameter/lu-commune',
  name: 'LuCommune',
  status: 'active',
  description: 'Commune of residence recorded by the DSP',
  code: 'lu-commune',
  base: ['Patient'],
  type: 'string',
  expression: `Patient.extension.where(url='${EXT}').value`,
};

afterAll(() => {
  setServerSearchParameters([]);
});

async function waitForJobs(http: Awaited<ReturnType<typeof makeApp>>['http']): Promise<Parameters> {
  for (let i = 0; i < 200; i++) {
    const res = await http.get('/fhir/$reindex');
    expect(res.status).toBe(200);
    const running = (res.body as Parameters).parameter?.some((p) => p.part?.some((x) => x.name === 'status' && x.valueCode === 'running'));
    if (!running) return res.body as Parameters;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('re-index did not finish');
}

const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id).sort();

describe('SearchParameter resources', () => {
  it('a new parameter re-indexes existing resources in the background and then searches', async () => {
    const { http } = await makeApp();
    for (const [id, c] of [['a', 'Mersch'], ['b', 'Esch-sur-Alzette'], ['c', 'Mersch']]) {
      expect((await http.put(`/fhir/Patient/${id}`).send(patient(id, c))).status).toBe(201);
    }
    const before = await http.get('/fhir/Patient?lu-commune=mersch');
    expect(before.body.entry.some((e: { search: { mode: string } }) => e.search.mode === 'outcome')).toBe(true);

    expect((await http.put('/fhir/SearchParameter/lu-commune').send(sp)).status).toBe(201);
    const jobs = await waitForJobs(http);
    const job = jobs.parameter!.find((p) => p.part!.some((x) => x.name === 'type' && x.valueCode === 'Patient'))!;
    const part = (n: string) => job.part!.find((x) => x.name === n)!;
    expect(part('status').valueCode).toBe('completed');
    expect(part('processed').valueInteger).toBe(3);
    expect(part('total').valueInteger).toBe(3);

    expect(ids((await http.get('/fhir/Patient?lu-commune=mersch')).body)).toEqual(['a', 'c']);
    expect(ids((await http.get('/fhir/Patient?lu-commune:exact=Esch-sur-Alzette')).body)).toEqual(['b']);
    // New writes are indexed at once.
    await http.put('/fhir/Patient/d').send(patient('d', 'Mersch'));
    expect(ids((await http.get('/fhir/Patient?lu-commune=mersch')).body)).toEqual(['a', 'c', 'd']);
    const cap = await http.get('/fhir/metadata');
    const pat = cap.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    expect(pat.searchParam.map((p: { name: string }) => p.name)).toContain('lu-commune');

    // Deleting it removes the parameter.
    expect((await http.delete('/fhir/SearchParameter/lu-commune')).status).toBe(204);
    const strict = await http.get('/fhir/Patient?lu-commune=mersch').set('Prefer', 'handling=strict');
    expect(strict.status).toBe(400);
  });

  it('refuses a SearchParameter whose expression does not compile or whose base is not a type', async () => {
    const { http } = await makeApp();
    const bad = await http.post('/fhir/SearchParameter').send({ ...sp, id: undefined, expression: 'Patient.extension.where(' });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body)).toContain('SearchParameter.expression');
    const base = await http.post('/fhir/SearchParameter').send({ ...sp, id: undefined, base: ['Nothing'] });
    expect(base.status).toBe(422);
    expect(JSON.stringify(base.body)).toContain('SearchParameter.base[0]');
  });

  it('POST $reindex starts a job for the given types; an unknown type is refused', async () => {
    const { http } = await makeApp();
    await http.put('/fhir/Patient/x').send(patient('x', 'Vianden'));
    const res = await http.post('/fhir/$reindex?type=Patient');
    expect(res.status).toBe(202);
    const jobs = await waitForJobs(http);
    expect(jobs.parameter!.length).toBeGreaterThan(0);
    expect((await http.post('/fhir/$reindex?type=Nope')).status).toBe(400);
  });

  it('in a batch, the entries after a SearchParameter are indexed with it at once', async () => {
    const { http } = await makeApp();
    const batch: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: sp, request: { method: 'PUT', url: 'SearchParameter/lu-commune' } },
        { resource: patient('d', 'Mersch'), request: { method: 'PUT', url: 'Patient/d' } },
        { resource: patient('e', 'Clervaux'), request: { method: 'PUT', url: 'Patient/e' } },
      ],
    };
    const res = await http.post('/fhir').send(batch);
    expect(res.status).toBe(200);
    expect((res.body as Bundle).entry!.map((e) => e.response!.status)).toEqual(['201', '201', '201']);
    // No wait for a re-index job: the patients were written after the parameter was in the registry.
    const found = await http.get('/fhir/Patient?lu-commune=mersch');
    expect(found.status).toBe(200);
    expect(ids(found.body as Bundle)).toEqual(['d']);
    await waitForJobs(http);
  });
});

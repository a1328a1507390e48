/**
 * Search paging over HTTP: `first`, `previous` and `next` links (keyset cursors, both directions) on type,
 * compartment and $everything searches, sealed to the principal; and the access decision point's cached
 * exclusions (a `not-refs` filter), which writes must invalidate.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, Observation, Resource } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { walkBothWays, type WalkPage } from './support/paging.ts';

const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const BASE = 'http://test/fhir';

let t: TestApp;
let gp: Http;
/** effectiveDateTime per Observation id (undefined: none). */
const dates = new Map<string, string | undefined>();

function observation(id: string, date: string | undefined, label?: string): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { text: 'weight' },
    subject: { reference: 'Patient/pat' },
    ...(date ? { effectiveDateTime: date } : {}),
    ...(label ? { meta: { security: [{ system: CONF, code: label }] } } : {}),
  };
}

async function put(r: Resource): Promise<void> {
  const res = await t.http.put(`/fhir/${r.resourceType}/${r.id}`).send(r);
  expect([200, 201]).toContain(res.status);
}

beforeAll(async () => {
  t = await makeApp();
  await put({ resourceType: 'Practitioner', id: 'gp' } as Resource);
  await put({ resourceType: 'Patient', id: 'pat', generalPractitioner: [{ reference: 'Practitioner/gp' }] } as Resource);
  for (let i = 0; i < 20; i++) {
    const id = `o${String(i).padStart(2, '0')}`;
    const date = i === 7 ? undefined : `2024-01-${String(((i * 7) % 10) + 1).padStart(2, '0')}`;
    dates.set(id, date);
    await put(observation(id, date));
  }
  // Very restricted: the médecin référent does not see it, in any page.
  await put(observation('secret', '2024-01-05', 'V'));
  gp = await t.as({ role: 'practitioner', id: 'Practitioner/gp' });
});

const link = (b: Bundle, rel: string) => b.link?.find((l) => l.relation === rel)?.url;
const refs = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
const path = (url: string) => url.slice(BASE.length - '/fhir'.length);

async function getPage(client: Http, url: string): Promise<Bundle> {
  const res = await client.get(url);
  expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
  return res.body as Bundle;
}

function walkPage(b: Bundle): WalkPage {
  const next = link(b, 'next');
  const previous = link(b, 'previous');
  return { ids: refs(b), ...(next ? { next: path(next) } : {}), ...(previous ? { previous: path(previous) } : {}) };
}

describe('search paging links', () => {
  for (const [label, query] of [
    ['unsorted', 'patient=Patient/pat'],
    ['sorted by -date', 'patient=Patient/pat&_sort=-date'],
    ['sorted by date', 'patient=Patient/pat&_sort=date'],
  ] as const) {
    it(`${label}: first, next and previous walk the record both ways while it changes (as a professional)`, async () => {
      const first = `/fhir/Observation?${query}&_count=3`;
      await walkBothWays(
        {
          page: async (cursor) => {
            const b = await getPage(gp, cursor ?? first);
            // Every page: self, and first = the search without a cursor.
            expect(link(b, 'self')).toBeDefined();
            expect(link(b, 'first')).toBe(`${BASE}/Observation?${new URLSearchParams(`${query}&_count=3`).toString()}`);
            expect(refs(b)).not.toContain('Observation/secret');
            return walkPage(b);
          },
          all: async () => {
            const all = refs(await getPage(gp, `/fhir/Observation?${query}&_count=1000`));
            expect(all).not.toContain('Observation/secret');
            return all;
          },
          cloneAfter: async (ref) => {
            const id = ref.split('/')[1]!;
            await put(observation(`${id}x`, dates.get(id)));
            dates.set(`${id}x`, dates.get(id));
            return `Observation/${id}x`;
          },
          remove: async (ref) => {
            expect([200, 204]).toContain((await t.http.delete(`/fhir/${ref}`)).status);
          },
        },
        3,
      );
    });
  }

  it('a link is bound to its principal; altered or foreign cursors are 400', async () => {
    const b = await getPage(gp, '/fhir/Observation?patient=Patient/pat&_count=3');
    const next = path(link(b, 'next')!);
    expect((await gp.get(next)).status).toBe(200);
    // Another principal (the administrator) cannot use the professional's link.
    expect((await t.http.get(next)).status).toBe(400);
    // An altered cursor: one character of the position changed, the seal no longer matches.
    const url = new URL(`http://x${next}`);
    const cursor = url.searchParams.get('_cursor')!;
    const altered = (cursor[0] === 'e' ? 'f' : 'e') + cursor.slice(1);
    url.searchParams.set('_cursor', altered);
    const res = await gp.get(`${url.pathname}${url.search}`);
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect((await gp.get('/fhir/Observation?patient=Patient/pat&_cursor=garbage')).status).toBe(400);
    // Unsealed links of in-process callers still decode strictly: a cursor that is not one is a 400 too.
    expect((await t.http.get('/fhir/Observation?_cursor=eyJ2IjpbXSwidCI6MX0')).status).toBe(400);
  });

  it('compartment search pages back to its first page', async () => {
    const p1 = await getPage(gp, '/fhir/Patient/pat/Observation?_count=4');
    expect(link(p1, 'first')).toBe(`${BASE}/Patient/pat/Observation?_count=4`);
    expect(link(p1, 'previous')).toBeUndefined();
    const p2 = await getPage(gp, path(link(p1, 'next')!));
    expect(refs(p2)).toHaveLength(4);
    expect(refs(p2).some((r) => refs(p1).includes(r))).toBe(false);
    const back = await getPage(gp, path(link(p2, 'previous')!));
    expect(refs(back)).toEqual(refs(p1));
    expect(link(back, 'previous')).toBeUndefined();
    expect(path(link(back, 'next')!)).toContain('Patient/pat/Observation');
  });

  it('$everything: the patient leads the first page, also when it is reached backwards', async () => {
    const p1 = await getPage(gp, '/fhir/Patient/pat/$everything?_count=4');
    expect(refs(p1)[0]).toBe('Patient/pat');
    expect(link(p1, 'previous')).toBeUndefined();
    const p2 = await getPage(gp, path(link(p1, 'next')!));
    expect(refs(p2)).not.toContain('Patient/pat');
    expect(link(p2, 'previous')).toBeDefined();
    const back = await getPage(gp, path(link(p2, 'previous')!));
    expect(refs(back)).toEqual(refs(p1));
    // _since travels in the links as _lastUpdated, which $everything accepts back.
    const since = await getPage(gp, '/fhir/Patient/pat/$everything?_count=2&_since=2000-01-01');
    const sinceNext = await getPage(gp, path(link(since, 'next')!));
    expect(refs(sinceNext)).toHaveLength(2);
  });
});

describe('cached exclusions follow writes', () => {
  const visible = async () => refs(await getPage(gp, '/fhir/Observation?patient=Patient/pat&_count=1000'));

  it('a resource labelled after the first search is excluded at once; unlabelled, it comes back', async () => {
    await put(observation('c1', '2024-03-01'));
    expect(await visible()).toContain('Observation/c1');
    await put(observation('c1', '2024-03-01', 'V'));
    expect(await visible()).not.toContain('Observation/c1');
    await put(observation('c1', '2024-03-01'));
    expect(await visible()).toContain('Observation/c1');
  });

  it('also when the write answers without the resource (Prefer: return=minimal)', async () => {
    await put(observation('c2', '2024-03-01'));
    expect(await visible()).toContain('Observation/c2');
    const res = await t.http.put('/fhir/Observation/c2').set('Prefer', 'return=minimal').send(observation('c2', '2024-03-01', 'V'));
    expect(res.status).toBe(200);
    expect(await visible()).not.toContain('Observation/c2');
    await put(observation('c2', '2024-03-01'));
    expect(await visible()).toContain('Observation/c2');
  });

  it('a new labelled resource and a hide Consent are excluded at once', async () => {
    await put(observation('c3', '2024-03-01'));
    expect(await visible()).toContain('Observation/c3');
    await put(observation('new-secret', '2024-02-01', 'V'));
    expect(await visible()).not.toContain('Observation/new-secret');
    const anna = await t.as({ role: 'patient', id: 'Patient/pat' });
    const hide = {
      resourceType: 'Consent',
      id: 'hide-c3',
      status: 'active',
      scope: { coding: [{ code: 'patient-privacy' }] },
      category: [{ text: 'x' }],
      patient: { reference: 'Patient/pat' },
      policyRule: { coding: [{ system: 'https://dsp.lu/fhir/CodeSystem/access-policy', code: 'hide' }] },
      provision: { type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/c3' } }] },
    };
    expect([200, 201]).toContain((await anna.put('/fhir/Consent/hide-c3').send(hide)).status);
    expect(await visible()).not.toContain('Observation/c3');
    expect([200, 204]).toContain((await anna.delete('/fhir/Consent/hide-c3')).status);
    expect(await visible()).toContain('Observation/c3');
  });
});

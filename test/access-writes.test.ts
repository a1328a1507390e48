/**
 * Write decisions are made inside the write's own store transaction, on the record it read there: a change
 * committed after the request passed the access decision point but before its transaction began (another
 * request, another process) is what the decision sees. The test commits such a change at exactly that moment
 * by holding back the store's next transaction until the change is in.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, Bundle, Resource } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { CONF, consent, doc, obs, seed } from './access-fixture.ts';
import { extractIndex } from '../src/search/indexer.ts';
import type { Store, StoreSession } from '../src/store/port.ts';

let t: TestApp;
let grant: Http, author: Http;

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  grant = await t.as({ role: 'practitioner', id: 'Practitioner/dr-grant' });
  author = await t.as({ role: 'practitioner', id: 'Practitioner/dr-author' });
});

/** The next store transaction first lets `change` commit (written straight to the store, as another process would). */
function beforeNextTransaction(store: Store, change: Resource): void {
  const original = store.transaction;
  store.transaction = async <T>(work: (s: StoreSession) => Promise<T>, options?: Parameters<Store['transaction']>[1]): Promise<T> => {
    store.transaction = original;
    await original.call(store, (s: StoreSession) => s.put(change, { method: 'PUT', index: extractIndex(change) }));
    return original.call(store, work, options) as Promise<T>;
  };
}

const labels = (r: { meta?: { security?: { code?: string }[] }; securityLabel?: { coding?: { code?: string }[] }[] }) => [
  ...(r.meta?.security ?? []).map((c) => c.code),
  ...(r.securityLabel ?? []).flatMap((l) => (l.coding ?? []).map((c) => c.code)),
];

describe('write decisions are made on the state the write commits on', () => {
  it('update: a document labelled V just before the write is not overwritten by a professional who may not see V', async () => {
    // dr-grant may update doc-plain (same patient, authors and labels): without the interloper this is a 200.
    const first = await grant.put('/fhir/DocumentReference/doc-plain').send({ ...doc('doc-plain', 'anna', 'Practitioner/dr-author'), description: 'seen by dr-grant' });
    expect(first.status).toBe(200);
    const labelled = { ...(first.body as Resource), meta: undefined, securityLabel: [{ coding: [{ system: CONF, code: 'V' }] }] } as Resource;
    beforeNextTransaction(t.ctx.store, labelled);
    const res = await grant.put('/fhir/DocumentReference/doc-plain').send({ ...doc('doc-plain', 'anna', 'Practitioner/dr-author'), description: 'second edit' });
    expect(res.status).toBe(404);
    const stored = (await t.http.get('/fhir/DocumentReference/doc-plain')).body;
    expect(labels(stored)).toEqual(['V']);
    expect(stored.description).toBe('seen by dr-grant');
  });

  it('patch: a record closed just before the write refuses a linked professional', async () => {
    beforeNextTransaction(t.ctx.store, consent('c-close-race', 'anna', 'close'));
    const res = await grant
      .patch('/fhir/Observation/o-normal')
      .set('Content-Type', 'application/json-patch+json')
      .send([{ op: 'add', path: '/status', value: 'amended' }]);
    expect(res.status).toBe(404);
    expect((await t.http.get('/fhir/Observation/o-normal')).body.status).toBe('final');
    // Reopened: the same patch goes through.
    await t.http.put('/fhir/Consent/c-close-race').send(consent('c-close-race', 'anna', 'close', { status: 'inactive' }));
    const again = await grant
      .patch('/fhir/Observation/o-normal')
      .set('Content-Type', 'application/json-patch+json')
      .send([{ op: 'add', path: '/status', value: 'amended' }]);
    expect(again.status).toBe(200);
  });

  it('delete: an author blocked just before the write cannot delete their own resource', async () => {
    const own = await author.put('/fhir/Observation/author-own').send(obs('author-own', 'anna', { author: 'Practitioner/dr-author' }));
    expect(own.status).toBe(201);
    beforeNextTransaction(t.ctx.store, consent('c-block-author', 'anna', 'block', { actor: 'Practitioner/dr-author' }));
    const res = await author.delete('/fhir/Observation/author-own');
    expect(res.status).toBe(404);
    expect((await t.http.get('/fhir/Observation/author-own')).status).toBe(200);
    await t.http.delete('/fhir/Consent/c-block-author');
    expect((await author.delete('/fhir/Observation/author-own')).status).toBe(204);
  });

  it('update: a resource whose patient changed just before the write is checked as it now is', async () => {
    // dr-grant writes its own Observation in anna's record; meanwhile it moves to ben's (dr-grant has a grant on
    // ben too, so the target stays visible) and its author becomes dr-author: dr-grant no longer wrote it.
    const mine = await grant.put('/fhir/Observation/grant-moved').send(obs('grant-moved', 'anna', { author: 'Practitioner/dr-grant' }));
    expect(mine.status).toBe(201);
    beforeNextTransaction(t.ctx.store, obs('grant-moved', 'ben', { author: 'Practitioner/dr-author' }));
    const res = await grant.put('/fhir/Observation/grant-moved').send(obs('grant-moved', 'anna', { author: 'Practitioner/dr-grant' }));
    expect(res.status).toBe(403);
    expect(res.body.issue[0].code).toBe('forbidden');
    expect((await t.http.get('/fhir/Observation/grant-moved')).body.subject.reference).toBe('Patient/ben');
  });

  it('create (POST): a record closed just before the write refuses a linked professional', async () => {
    const count = async () => (await t.http.get('/fhir/Observation?subject=Patient/anna&code=8302-2&_summary=count')).body.total as number;
    const body = { ...obs('ignored', 'anna', { code: '8302-2' }), id: undefined };
    const before = await count();
    beforeNextTransaction(t.ctx.store, consent('c-close-post', 'anna', 'close'));
    const res = await grant.post('/fhir/Observation').send(body);
    expect(res.status).toBe(404);
    expect(await count()).toBe(before);
    // Reopened: the same create goes through.
    await t.http.put('/fhir/Consent/c-close-post').send(consent('c-close-post', 'anna', 'close', { status: 'inactive' }));
    expect((await grant.post('/fhir/Observation').send(body)).status).toBe(201);
    expect(await count()).toBe(before + 1);
  });

  it('create in a transaction (preset id): a professional without access to the record is refused, nothing is written', async () => {
    const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    const count = async () => (await t.http.get('/fhir/Observation?subject=Patient/anna&code=8310-5&_summary=count')).body.total as number;
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: 'urn:uuid:5b7e1c2a-0d3f-4a8e-9c61-2f4b8d9e0a17', resource: { ...obs('x', 'anna', { code: '8310-5' }), id: undefined }, request: { method: 'POST', url: 'Observation' } }],
    };
    const res = await none.post('/fhir').send(bundle);
    expect(res.status).toBe(404);
    expect(await count()).toBe(0);
    // dr-grant (linked) may: the same Bundle commits.
    expect((await grant.post('/fhir').send(bundle)).status).toBe(200);
    expect(await count()).toBe(1);
  });
});

describe("a refused write is in the audit trail of the patient whose record it targeted", () => {
  /** The events of anna's $access-log by `who`, as [outcome, entity references]. */
  async function annaLogOf(who: string): Promise<[string, string[]][]> {
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const log = await anna.get('/fhir/Patient/anna/$access-log?_count=500');
    expect(log.status).toBe(200);
    return (log.body as Bundle).entry!
      .map((e) => e.resource as AuditEvent)
      .filter((e) => e.agent.some((a) => a.who?.reference === who))
      .map((e) => [e.outcome!, (e.entity ?? []).map((x) => x.what?.reference ?? '')]);
  }

  it("an unlinked professional's PUT and POST into the record, a linked one's PUT of the Patient: refused, and in anna's $access-log", async () => {
    const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const put = await none.put('/fhir/Observation/none-put').send(obs('none-put', 'anna'));
    expect(put.status).toBe(404);
    const post = await none.post('/fhir/Observation').send({ ...obs('x', 'anna'), id: undefined });
    expect(post.status).toBe(404);
    // The body's patient does not exist: nobody's record, nobody's trail.
    expect((await none.put('/fhir/Observation/none-nobody').send(obs('none-nobody', 'nobody'))).status).toBe(404);
    const patientPut = await gp.put('/fhir/Patient/anna').send({ resourceType: 'Patient', id: 'anna', generalPractitioner: [{ reference: 'Practitioner/dr-gp' }], active: false });
    expect(patientPut.status).toBe(403);

    const byNone = await annaLogOf('Practitioner/dr-none');
    expect(byNone.filter(([outcome]) => outcome === '4')).toEqual(
      expect.arrayContaining([
        ['4', expect.arrayContaining(['Patient/anna', 'Observation/none-put'])],
        ['4', ['Patient/anna']],
      ]),
    );
    expect(byNone.some(([, refs]) => refs.includes('Observation/none-nobody'))).toBe(false);
    expect(await annaLogOf('Practitioner/dr-gp')).toEqual(expect.arrayContaining([['4', expect.arrayContaining(['Patient/anna'])]]));
    const nobody = (await t.http.get('/fhir/AuditEvent?entity=Observation/none-nobody')).body as Bundle;
    expect(nobody.entry!.map((e) => (e.resource as AuditEvent).entity!.map((x) => x.what?.reference))).toEqual([['Observation/none-nobody']]);
  });
});

describe('the interaction reads what the access check read', () => {
  it("a professional's vread of a deleted resource's last live version reads that version once; the read of the tombstone reads it once", async () => {
    await t.http.put('/fhir/Observation/gone-later').send(obs('gone-later', 'anna'));
    expect((await t.http.delete('/fhir/Observation/gone-later')).status).toBe(204);
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const store = t.ctx.store;
    const { current, version } = store;
    const calls: string[] = [];
    store.current = (type, id) => (calls.push(`current ${type}/${id}`), current.call(store, type, id));
    store.version = (type, id, v) => (calls.push(`version ${type}/${id}/${v}`), version.call(store, type, id, v));
    try {
      const res = await gp.get('/fhir/Observation/gone-later/_history/1');
      expect(res.status).toBe(200);
      expect(res.body.subject.reference).toBe('Patient/anna');
      expect(calls.filter((c) => c.includes('gone-later'))).toEqual(['current Observation/gone-later', 'version Observation/gone-later/1']);
      calls.length = 0;
      expect((await gp.get('/fhir/Observation/gone-later')).status).toBe(410);
      expect(calls.filter((c) => c.includes('gone-later'))).toEqual(['current Observation/gone-later', 'version Observation/gone-later/1']);
    } finally {
      store.current = current;
      store.version = version;
    }
    // Not visible to dr-none before the delete: its vread is the same 404 as a missing one.
    const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    expect((await none.get('/fhir/Observation/gone-later/_history/1')).status).toBe(404);
  });
});

describe('plain JSON reads send the stored text', () => {
  it('byte for byte as stored, for a professional and an administrator; a body the server replaced is serialised anew', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const stored = await t.ctx.store.current('Observation', 'o-blood');
    expect(stored?.json).toBeDefined();
    for (const client of [gp, t.http]) {
      const res = await client.get('/fhir/Observation/o-blood').set('Accept', 'application/fhir+json');
      expect(res.status).toBe(200);
      expect(res.text).toBe(stored!.json);
    }
    // The national contact point gets a minimal Patient (the body is replaced): not the stored text.
    const ncp = await t.as({ role: 'ncp', id: 'Organization/ncp-be' });
    const patient = await t.ctx.store.current('Patient', 'anna');
    const minimal = await ncp.get('/fhir/Patient/anna').set('Accept', 'application/fhir+json');
    expect(minimal.status).toBe(200);
    expect(minimal.text).not.toBe(patient!.json);
    expect(minimal.body.generalPractitioner).toBeUndefined();
    expect(minimal.body.meta.tag.map((c: { code: string }) => c.code)).toContain('SUBSETTED');
  });
});

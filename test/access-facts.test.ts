/**
 * Access facts stored beside each version (src/access/decision.ts storedFactsOf, the SQLite `access` column):
 * a read decided on them answers exactly as one decided on the parsed resource. Two servers hold the same data,
 * one with the facts and one written without them (the fallback parses the resource); every principal of the
 * access fixture reads every resource of both and gets the same status. Then the cases where a decision
 * depends on the new path: a hidden document, a blocked author, a resource whose patient changed by update,
 * facts computed with other definitions, and a database file of the layout before the column, opened and read.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, Resource } from 'fhir/r4';
import { makeApp, withToken, type Http, type TestApp } from './support/app.ts';
import { doc, obs, seed } from './access-fixture.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { ACCESS_FACTS } from '../src/store/port.ts';
import { testConfig } from '../src/config.ts';
import { createApp } from '../src/http/app.ts';
import type { Context } from '../src/fhir/interactions.ts';
import { accessRuntime, defaultAuth } from '../src/access/service.ts';
import { signDevToken, type DevTokenClaims } from '../src/access/tokens.ts';
import { authorsOf, encountersOf, labelsOf, patientsOf, storedFactsOf } from '../src/access/decision.ts';

const SYNTHEA = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'data', 'synthea');
const HAVE_DATA = existsSync(SYNTHEA);
if (!HAVE_DATA) console.warn(`access-facts: ${SYNTHEA} is absent (a fresh clone): the comparison over Synthea resources is skipped`);

const PRINCIPALS: DevTokenClaims[] = [
  { role: 'practitioner', id: 'Practitioner/dr-gp' },
  { role: 'practitioner', id: 'Practitioner/dr-grant' },
  { role: 'practitioner', id: 'Practitioner/dr-expired' },
  { role: 'practitioner', id: 'Practitioner/dr-blocked' },
  { role: 'practitioner', id: 'Practitioner/dr-none' },
  { role: 'practitioner', id: 'Practitioner/dr-author' },
  { role: 'practitioner', id: 'Practitioner/dr-team' },
  { role: 'practitioner', id: 'Practitioner/dr-carl' },
  { role: 'practitioner', id: 'Practitioner/dr-none', purpose: 'EMERGENCY', reason: 'unconscious at the ER' },
  { role: 'patient', id: 'Patient/anna' },
  { role: 'patient', id: 'Patient/ben' },
  { role: 'assistant', id: 'RelatedPerson/asst' },
  { role: 'ncp', id: 'Organization/ncp-be' },
];

/** The fixture plus: a resource authored by the blocked professional, and Patient carl with his own GP. */
async function seedMore(http: Http): Promise<void> {
  const put = async (r: Resource) => {
    const res = await http.put(`/fhir/${r.resourceType}/${r.id}`).send(r);
    if (res.status >= 300) throw new Error(`seed ${r.resourceType}/${r.id}: ${res.status}`);
  };
  await put({ resourceType: 'Practitioner', id: 'dr-carl' } as Resource);
  await put({ resourceType: 'Patient', id: 'carl', generalPractitioner: [{ reference: 'Practitioner/dr-carl' }] } as Resource);
  await put(obs('o-by-blocked', 'anna', { author: 'Practitioner/dr-blocked' }));
  await put(doc('doc-by-blocked', 'anna', 'Practitioner/dr-blocked'));
  await put(obs('o-carl', 'carl'));
  await put(obs('o-move', 'carl'));
}

/** Every stored resource of the fixture, as `Type/id`. */
async function everything(http: Http): Promise<string[]> {
  const out: string[] = [];
  for (const type of ['Patient', 'Observation', 'DocumentReference', 'AllergyIntolerance', 'Encounter', 'Consent', 'CareTeam', 'EpisodeOfCare', 'Practitioner', 'PractitionerRole']) {
    const b = await http.get(`/fhir/${type}?_count=500&_elements=id`);
    for (const e of b.body.entry ?? []) out.push(`${type}/${e.resource.id}`);
  }
  return out.sort();
}

/** Status of every principal's read of every resource: `principal|Type/id -> status`. */
async function answers(app: TestApp, refs: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const claims of PRINCIPALS) {
    const client = await app.as(claims);
    for (const ref of refs) out.set(`${claims.id}${claims.purpose ? ' (emergency)' : ''}|${ref}`, (await client.get(`/fhir/${ref}`)).status);
  }
  return out;
}

async function factsOf(store: SqliteStore, type: string, id: string): Promise<unknown> {
  const rec = await store.current(type, id);
  return (rec as unknown as Record<symbol, unknown>)[ACCESS_FACTS];
}

let withFacts: TestApp;
let without: TestApp;
let refs: string[];

beforeAll(async () => {
  withFacts = await makeApp();
  without = await makeApp();
  // The second server writes no facts: every decision there parses the resource (the fallback, and the reference).
  (without.ctx.store as SqliteStore).accessFacts = undefined;
  for (const t of [withFacts, without]) {
    await seed(t);
    await seedMore(t.http);
  }
  refs = await everything(withFacts.http);
}, 60_000);

describe('access facts stored beside each version', () => {
  it('are written for patient data only, and not by a store without the function', async () => {
    const store = withFacts.ctx.store as SqliteStore;
    for (const [t, i] of [['Observation', 'o-normal'], ['Patient', 'anna'], ['DocumentReference', 'doc-hidden'], ['Consent', 'c-hide'], ['Encounter', 'enc-2']]) {
      expect(typeof (await factsOf(store, t, i)), `${t}/${i}`).toBe('string');
    }
    expect(JSON.parse((await factsOf(store, 'DocumentReference', 'doc-by-blocked')) as string)).toEqual([1, expect.any(String), ['anna'], ['Practitioner/dr-blocked'], [], [], 0]);
    expect(await factsOf(store, 'Practitioner', 'dr-gp')).toBeUndefined();
    expect(await factsOf(without.ctx.store as SqliteStore, 'Observation', 'o-normal')).toBeUndefined();
  });

  it('every principal reads every resource with the same answer as on the parsed resource', async () => {
    expect(refs.length).toBeGreaterThan(40);
    const a = await answers(withFacts, refs);
    const b = await answers(without, refs);
    expect([...a.entries()]).toEqual([...b.entries()]);
    // The matrix is not trivial: both answers occur for most principals.
    expect(new Set(a.values())).toEqual(new Set([200, 404]));
  }, 120_000);

  it('the hidden document, the blocked author and the labels decide on the stored facts', async () => {
    const get = async (claims: DevTokenClaims, ref: string) => (await (await withFacts.as(claims)).get(`/fhir/${ref}`)).status;
    const gp = { role: 'practitioner' as const, id: 'Practitioner/dr-gp' };
    expect(await get(gp, 'DocumentReference/doc-hidden')).toBe(404);
    expect(await get(gp, 'DocumentReference/doc-plain')).toBe(200);
    // Its author (granted access) still sees the hidden document.
    expect(await get({ role: 'practitioner', id: 'Practitioner/dr-author' }, 'DocumentReference/doc-hidden')).toBe(200);
    // Blocked by the patient: not even what they wrote themselves.
    for (const ref of ['Observation/o-by-blocked', 'DocumentReference/doc-by-blocked', 'Observation/o-normal']) {
      expect(await get({ role: 'practitioner', id: 'Practitioner/dr-blocked' }, ref)).toBe(404);
    }
    expect(await get(gp, 'Observation/o-by-blocked')).toBe(200);
    expect(await get(gp, 'Observation/o-v')).toBe(404);
    expect(await get({ role: 'patient', id: 'Patient/anna' }, 'Observation/o-v')).toBe(200);
  });

  it('a resource whose patient changed by update is decided on its new patient, and audited under it', async () => {
    const carlsGp = await withFacts.as({ role: 'practitioner', id: 'Practitioner/dr-carl' });
    const annasGp = await withFacts.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    expect((await carlsGp.get('/fhir/Observation/o-move')).status).toBe(200);
    expect((await annasGp.get('/fhir/Observation/o-move')).status).toBe(404);
    const moved = await withFacts.http.put('/fhir/Observation/o-move').send(obs('o-move', 'anna'));
    expect(moved.status).toBe(200);
    expect(JSON.parse((await factsOf(withFacts.ctx.store as SqliteStore, 'Observation', 'o-move')) as string)[2]).toEqual(['anna']);
    expect((await carlsGp.get('/fhir/Observation/o-move')).status).toBe(404);
    expect((await annasGp.get('/fhir/Observation/o-move')).status).toBe(200);
    // An administrator's read is audited under the patients of the version read (from the facts, unparsed).
    expect((await withFacts.http.get('/fhir/Observation/o-move')).status).toBe(200);
    const audited = await withFacts.http.get('/fhir/AuditEvent?entity=Observation/o-move&subtype=read&_count=100');
    const patientsOfEntry = (e: { resource: { entity?: { what?: { reference?: string } }[] } }) =>
      (e.resource.entity ?? []).map((x) => x.what?.reference).filter((r) => r?.startsWith('Patient/'));
    const entries = audited.body.entry as { resource: { agent: { who?: { reference?: string } }[]; entity?: { what?: { reference?: string } }[] } }[];
    const admin = entries.filter((e) => e.resource.agent.some((a) => a.who?.reference === 'Practitioner/test-admin'));
    expect(admin.length).toBe(1);
    expect(patientsOfEntry(admin[0])).toEqual(['Patient/anna']);
  });
});

describe('storedFactsOf', () => {
  /** The facts text against what the decision functions compute from the resource itself. */
  const compare = (r: Resource) => {
    const text = storedFactsOf(r);
    expect(text, `${r.resourceType}/${r.id}`).toBeDefined();
    const [, , patients, authors, labels, encounters] = JSON.parse(text!) as unknown[];
    expect([patients, authors, labels, encounters], `${r.resourceType}/${r.id}`).toEqual([patientsOf(r), [...authorsOf(r)], labelsOf(r), encountersOf(r)]);
  };

  it('holds what patientsOf, authorsOf, labelsOf and encountersOf give, in their order', async () => {
    const rs: Resource[] = [
      obs('f1', 'anna', { author: 'Practitioner/a', label: 'R', encounter: 'e1' }),
      doc('f2', 'anna', 'PractitionerRole/r', { label: 'V', encounter: 'e2' }),
      { resourceType: 'Encounter', id: 'f3', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/p' }, participant: [{ individual: { reference: 'Practitioner/x' } }] } as Resource,
      { resourceType: 'Patient', id: 'f4', generalPractitioner: [{ reference: 'Practitioner/gp' }], meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } } as Resource,
      { resourceType: 'Condition', id: 'f5', subject: { reference: 'Patient/p' }, asserter: { reference: 'Patient/p' }, recorder: { reference: 'Practitioner/q' }, encounter: { reference: 'Encounter/e' } } as Resource,
    ];
    for (const r of rs) compare(r);
    // Shared, non-patient data has none (decided by its type alone).
    expect(storedFactsOf({ resourceType: 'Practitioner', id: 'x' } as Resource)).toBeUndefined();
  });

  it.skipIf(!HAVE_DATA)('holds the same for every resource of four Synthea patient Bundles', () => {
    const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json.bz2') && !/Information/.test(f)).sort().slice(0, 4);
    let n = 0;
    let withPatients = 0;
    let withAuthors = 0;
    for (const f of files) {
      const raw = JSON.parse(execFileSync('bzip2', ['-dc', join(SYNTHEA, f)], { maxBuffer: 1 << 30 }).toString('utf8')) as Bundle;
      // The transaction's urn:uuid references as the server stores them (Type/id).
      const local = new Map((raw.entry ?? []).map((e) => [e.fullUrl!, `${e.resource!.resourceType}/${e.fullUrl!.split(':').pop()}`]));
      // Conditional references to the shared directory (Practitioner?identifier=system|value) as resolved ones.
      const text = JSON.stringify(raw)
        .replace(/urn:uuid:[0-9a-f-]+/g, (u) => local.get(u) ?? u)
        .replace(/"([A-Z][A-Za-z]+)\?identifier=[^"|]*\|([^"]+)"/g, (_m, type: string, value: string) => `"${type}/${value.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 64)}"`);
      const bundle = JSON.parse(text) as Bundle;
      for (const e of bundle.entry ?? []) {
        const r = e.resource!;
        r.id ??= e.fullUrl?.split(':').pop();
        if (storedFactsOf(r) === undefined) continue;
        compare(r);
        n++;
        if (patientsOf(r).length) withPatients++;
        if (authorsOf(r).size) withAuthors++;
      }
    }
    expect(n).toBeGreaterThan(1000);
    expect(withPatients).toBeGreaterThan(n * 0.9);
    expect(withAuthors).toBeGreaterThan(0);
  }, 120_000);
});

describe('a database file of the layout before the access column', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsp-facts-'));
  const path = join(dir, 'dsp.sqlite');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function open(): Promise<{ t: TestApp; store: SqliteStore }> {
    const store = new SqliteStore({ path, synchronous: 'NORMAL' });
    await store.init();
    const ctx: Context = { store, config: testConfig({ baseUrl: 'http://test/fhir', auth: defaultAuth() }) };
    const app = createApp({ ctx });
    const rt = await accessRuntime(ctx);
    const tokenFor = (claims: DevTokenClaims) => signDevToken(rt.key, rt.auth.audience, claims);
    const client = (token: string) => withToken(request(app), token);
    const admin = await tokenFor({ role: 'admin', id: 'Practitioner/test-admin' });
    return { store, t: { app, ctx, http: client(admin), anon: request(app), client, tokenFor, as: async (c) => client(await tokenFor(c)) } };
  }

  it('opens (the column is added, empty), reads every resource as before, and stores facts for new versions', async () => {
    const first = await open();
    await seed(first.t);
    await seedMore(first.t.http);
    await first.store.close();
    // The previous layout: no access column at all.
    const db = new DatabaseSync(path);
    db.exec('ALTER TABLE resources DROP COLUMN access');
    expect((db.prepare('PRAGMA table_info(resources)').all() as { name: string }[]).map((c) => c.name)).not.toContain('access');
    db.close();

    const again = await open();
    try {
      expect(await factsOf(again.store, 'Observation', 'o-normal')).toBeUndefined();
      const a = await answers(again.t, refs);
      const b = await answers(without, refs);
      expect([...a.entries()]).toEqual([...b.entries()]);
      // A version written now has its facts; the others keep none until written.
      expect((await again.t.http.put('/fhir/Observation/o-carl').send(obs('o-carl', 'carl', { label: 'V' }))).status).toBe(200);
      expect(typeof (await factsOf(again.store, 'Observation', 'o-carl'))).toBe('string');
      expect(await factsOf(again.store, 'Observation', 'o-r')).toBeUndefined();
      const carlsGp = await again.t.as({ role: 'practitioner', id: 'Practitioner/dr-carl' });
      expect((await carlsGp.get('/fhir/Observation/o-carl')).status).toBe(404); // labelled V now
    } finally {
      await again.store.close();
    }
  }, 120_000);

  it('facts computed with other definitions, or malformed, are not used: the resource decides', async () => {
    const db = new DatabaseSync(path);
    // Forged facts that would open o-v and o-by-blocked (labelled V; written by dr-blocked) to the GP: another
    // definitions fingerprint, another layout, and text that is not JSON.
    const update = db.prepare("UPDATE resources SET access = ? WHERE resource_type = 'Observation' AND id = ?");
    update.run(JSON.stringify([1, 'other-defs', ['anna'], ['Practitioner/dr-gp'], [], [], 1]), 'o-v');
    update.run(JSON.stringify([2, 'x', ['anna'], ['Practitioner/dr-blocked'], [], [], 0]), 'o-by-blocked');
    update.run('{not json', 'o-normal');
    // Well-formed facts of today's definitions are what decides (forged here without o-enc2's objected visit).
    const blood = db.prepare("SELECT access FROM resources WHERE resource_type = 'Observation' AND id = 'o-carl'").get() as { access: string };
    const fingerprint = (JSON.parse(blood.access) as unknown[])[1];
    update.run(JSON.stringify([1, fingerprint, ['anna'], [], [], [], 0]), 'o-enc2');
    db.close();
    const again = await open();
    try {
      const none = await again.t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
      const gp = await again.t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
      const blocked = await again.t.as({ role: 'practitioner', id: 'Practitioner/dr-blocked' });
      expect((await gp.get('/fhir/Observation/o-v')).status).toBe(404);
      expect((await blocked.get('/fhir/Observation/o-by-blocked')).status).toBe(404);
      expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
      expect((await none.get('/fhir/Observation/o-normal')).status).toBe(404);
      // Forged facts without the objected encounter: the read was decided on them, not on the resource.
      expect((await gp.get('/fhir/Observation/o-enc2')).status).toBe(200);
    } finally {
      await again.store.close();
    }
  }, 60_000);
});

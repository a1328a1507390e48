/**
 * Over HTTP (SQLite store): token :below / :above through the terminology module, reference :below / :above on
 * hierarchies, `_text` / `_content`, `near`; and a database of the previous schema (version 4, without the text
 * and position tables) opened as it is and filled by the re-index path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Bundle, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type TestApp } from './support/app.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { startReindex, waitForReindex } from '../src/search/reindex.ts';

let t: TestApp;
const CS = 'http://dsp.lu/fhir/CodeSystem/test-anatomy';
const SCT = 'http://snomed.info/sct';
const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id).sort();

beforeAll(async () => {
  t = await makeApp();
  const put = async (r: Resource) => expect((await t.http.put(`/fhir/${r.resourceType}/${r.id}`).send(r)).status).toBe(201);
  await put({
    resourceType: 'CodeSystem',
    id: 'anatomy',
    url: CS,
    status: 'active',
    content: 'complete',
    concept: [{ code: 'limb', concept: [{ code: 'arm', concept: [{ code: 'hand' }] }, { code: 'leg' }] }, { code: 'head' }],
  } as Resource);
  for (const [id, code] of [['c1', 'arm'], ['c2', 'hand'], ['c3', 'leg'], ['c4', 'head']] as const)
    await put({ resourceType: 'Condition', id, subject: { reference: 'Patient/p' }, code: { coding: [{ system: CS, code }] } } as Resource);
  await put({ resourceType: 'Condition', id: 'c5', subject: { reference: 'Patient/p' }, code: { coding: [{ system: SCT, code: '73211009' }] } } as Resource);
  await put({ resourceType: 'Organization', id: 'chl', name: 'Centre Hospitalier de Luxembourg' } as Resource);
  await put({ resourceType: 'Organization', id: 'cardio', name: 'Service de cardiologie', partOf: { reference: 'Organization/chl' } } as Resource);
  await put({ resourceType: 'Location', id: 'site', name: 'Site Kirchberg', position: { latitude: 49.6296, longitude: 6.1644 }, managingOrganization: { reference: 'Organization/chl' } } as Resource);
  await put({ resourceType: 'Location', id: 'floor', name: 'Étage 2', partOf: { reference: 'Location/site' } } as Resource);
  await put({ resourceType: 'Location', id: 'ettelbruck', name: 'Ettelbruck', position: { latitude: 49.8475, longitude: 6.1042 } } as Resource);
  await put({
    resourceType: 'Patient',
    id: 'p',
    name: [{ family: 'Weber', given: ['Léa'] }],
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Léa <i>Weber</i>, allergie à la pénicilline</div>' },
  } as Resource);
});

describe('token :below / :above over HTTP', () => {
  it('matches the code and its descendants / ancestors in a CodeSystem stored on the server', async () => {
    expect(ids((await t.http.get(`/fhir/Condition?code:below=${encodeURIComponent(`${CS}|limb`)}`)).body)).toEqual(['c1', 'c2', 'c3']);
    expect(ids((await t.http.get(`/fhir/Condition?code:below=${encodeURIComponent(`${CS}|arm`)}`)).body)).toEqual(['c1', 'c2']);
    expect(ids((await t.http.get(`/fhir/Condition?code:above=${encodeURIComponent(`${CS}|hand`)}`)).body)).toEqual(['c1', 'c2']);
    expect(ids((await t.http.get(`/fhir/Patient?_has:Condition:subject:code:below=${encodeURIComponent(`${CS}|limb`)}`)).body)).toEqual(['p']);
  });

  it('answers 400 naming the parameter for a system held without its hierarchy (SNOMED CT fragment) or not held', async () => {
    for (const v of [`${SCT}|73211009`, 'http://example.org/nowhere|x']) {
      const res = await t.http.get(`/fhir/Condition?code:below=${encodeURIComponent(v)}`);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(JSON.stringify(res.body)).toContain('code:below');
    }
  });
});

describe('reference :below / :above, _text, _content and near over HTTP', () => {
  it('follows Location.partOf and Organization.partOf', async () => {
    expect(ids((await t.http.get('/fhir/Location?partof:below=site')).body)).toEqual(['floor']);
    expect(ids((await t.http.get('/fhir/Location?organization:below=Organization/chl')).body)).toEqual(['site']);
    expect(ids((await t.http.get('/fhir/Organization?partof:above=Organization/cardio')).body)).toEqual(['cardio']);
    expect((await t.http.get('/fhir/Condition?subject:below=Patient/p')).status).toBe(400);
  });

  it('searches narrative and content words', async () => {
    expect(ids((await t.http.get('/fhir/Patient?_text=penicil')).body)).toEqual(['p']);
    expect(ids((await t.http.get('/fhir/Patient?_text=lea weber')).body)).toEqual(['p']);
    expect(ids((await t.http.get('/fhir/Organization?_content=cardio')).body)).toEqual(['cardio']);
    expect(ids((await t.http.get('/fhir/Location?_content=etage')).body)).toEqual(['floor']);
    expect((await t.http.get('/fhir/Patient?_text=%2B%2B')).status).toBe(400);
  });

  it('finds locations within a distance', async () => {
    // Kirchberg to Ettelbruck: about 24.5 km.
    expect(ids((await t.http.get('/fhir/Location?near=49.6116|6.1319|5|km')).body)).toEqual(['site']);
    expect(ids((await t.http.get('/fhir/Location?near=49.6116|6.1319|30')).body)).toEqual(['ettelbruck', 'site']);
    expect((await t.http.get('/fhir/Location?near=north')).status).toBe(400);
  });
});

describe('a database of schema version 4', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsp-search-v4-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('opens, and POST $reindex (startReindex) fills the text and position tables', async () => {
    const path = join(dir, 'fhir.db');
    const loc = { resourceType: 'Location', id: 'l', name: 'Clervaux', position: { latitude: 50.0547, longitude: 6.0314 } } as Resource;
    let store = new SqliteStore({ path });
    await store.init();
    await store.put(loc, { method: 'PUT', index: extractIndex(loc) });
    await store.close();
    // Back to what version 4 had: no text / position tables.
    const raw = new DatabaseSync(path);
    raw.exec('DROP TABLE idx_text; DROP TABLE idx_position; PRAGMA user_version = 4');
    raw.close();
    store = new SqliteStore({ path });
    await store.init();
    const search = async (q: string) => (await store.search(parseSearch('Location', [...new URLSearchParams(q)], { strict: true }).request)).resources.map((r) => r.id);
    expect(await search('near=50.05|6.03|2')).toEqual([]);
    expect(await search('_content=clervaux')).toEqual([]);
    const job = await startReindex(store, ['Location'], 'test');
    expect((await waitForReindex(job.id))?.status).toBe('completed');
    expect(await search('near=50.05|6.03|2')).toEqual(['l']);
    expect(await search('_content=clervaux')).toEqual(['l']);
    await store.close();
  });
});

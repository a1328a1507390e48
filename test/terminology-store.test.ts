/**
 * Terminology resources written through the API are used by the next operation at once (issue 5): the layer of
 * stored CodeSystems / ValueSets / ConceptMaps is renewed by a generation counter bumped after such writes, not by
 * asking the store on every call; writes that bypass dispatch() (another process, the store port directly) are
 * noticed by the history check that runs at most every `recheckMs`.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Bundle, CodeSystem, ConceptMap, Parameters, ValueSet } from 'fhir/r4';
import { FHIR_JSON, makeApp, type TestApp } from './support/app.ts';
import { mayWriteTerminology, terminologyService } from '../src/terminology/service.ts';
import { dispatch } from '../src/fhir/router.ts';
import { extractIndex } from '../src/search/indexer.ts';

const CS_URL = 'http://dsp.lu/fhir/CodeSystem/test-store-colours';
const VS_URL = 'http://dsp.lu/fhir/ValueSet/test-store-colours';
const CM_URL = 'http://dsp.lu/fhir/ConceptMap/test-store-colours';

let t: TestApp;
let savedRecheck: number;
beforeAll(async () => {
  t = await makeApp();
  terminologyService().load();
  savedRecheck = terminologyService().recheckMs;
  // Never ask the history during these tests unless a test says so: only the write generation can refresh.
  terminologyService().recheckMs = 1e12;
}, 60_000);
afterAll(() => {
  terminologyService().recheckMs = savedRecheck;
});

const param = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);

async function validate(code: string, url = VS_URL): Promise<boolean | undefined> {
  const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url, system: CS_URL, code });
  expect(r.status).toBe(200);
  return param(r.body as Parameters, 'result')?.valueBoolean;
}

const codeSystem = (codes: string[]): CodeSystem => ({
  resourceType: 'CodeSystem',
  url: CS_URL,
  status: 'active',
  content: 'complete',
  concept: codes.map((c) => ({ code: c, display: c.toUpperCase() })),
});
const valueSet = (codes: string[]): ValueSet => ({ resourceType: 'ValueSet', url: VS_URL, status: 'active', compose: { include: [{ system: CS_URL, concept: codes.map((code) => ({ code })) }] } });

describe('stored terminology is used by the next operation', () => {
  it('a CodeSystem and ValueSet created, updated and deleted through the API', async () => {
    // Before: the value set is unknown.
    expect((await t.http.get('/fhir/ValueSet/$validate-code').query({ url: VS_URL, system: CS_URL, code: 'red' })).status).toBe(404);
    expect((await t.http.post('/fhir/CodeSystem').set('Content-Type', FHIR_JSON).send(codeSystem(['red', 'green', 'blue']))).status).toBe(201);
    const created = await t.http.post('/fhir/ValueSet').set('Content-Type', FHIR_JSON).send(valueSet(['red', 'green']));
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(await validate('red')).toBe(true);
    expect(await validate('blue')).toBe(false);

    // Update: blue in, red out.
    expect((await t.http.put(`/fhir/ValueSet/${id}`).set('Content-Type', FHIR_JSON).send({ ...valueSet(['green', 'blue']), id })).status).toBe(200);
    expect(await validate('blue')).toBe(true);
    expect(await validate('red')).toBe(false);

    // A conditional update by url is a write too.
    expect((await t.http.put('/fhir/ValueSet').query({ url: VS_URL }).set('Content-Type', FHIR_JSON).send(valueSet(['red']))).status).toBe(200);
    expect(await validate('red')).toBe(true);
    expect(await validate('blue')).toBe(false);

    // A code added to the CodeSystem by PATCH is displayed at once.
    const csId = (await t.http.get('/fhir/CodeSystem').query({ url: CS_URL })).body.entry[0].resource.id as string;
    const patched = await t.http
      .patch(`/fhir/CodeSystem/${csId}`)
      .set('Content-Type', 'application/json-patch+json')
      .send([{ op: 'replace', path: '/concept/0/display', value: 'Rouge' }]);
    expect(patched.status).toBe(200);
    const shown = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: CS_URL, code: 'red' });
    expect(param(shown.body as Parameters, 'display')?.valueString).toBe('Rouge');

    // Delete: the value set is gone at once.
    expect((await t.http.delete(`/fhir/ValueSet/${id}`)).status).toBe(204);
    expect((await t.http.get('/fhir/ValueSet/$validate-code').query({ url: VS_URL, system: CS_URL, code: 'red' })).status).toBe(404);
  });

  it('a ValueSet and ConceptMap written in a transaction Bundle, and updated in a batch', async () => {
    const vs2 = 'http://dsp.lu/fhir/ValueSet/test-store-bundle';
    const map = (target: string): ConceptMap => ({
      resourceType: 'ConceptMap',
      url: CM_URL,
      status: 'active',
      group: [{ source: CS_URL, target: 'http://example.org/colour-names', element: [{ code: 'green', target: [{ code: target, equivalence: 'equivalent' }] }] }],
    });
    const tx: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { ...valueSet(['green']), id: 'test-store-bundle', url: vs2 }, request: { method: 'PUT', url: 'ValueSet/test-store-bundle' } },
        { resource: { ...map('vert'), id: 'test-store-map' }, request: { method: 'PUT', url: 'ConceptMap/test-store-map' } },
      ],
    };
    expect((await t.http.post('/fhir').set('Content-Type', FHIR_JSON).send(tx)).status).toBe(200);
    expect(await validate('green', vs2)).toBe(true);
    const translate = async () => {
      const r = await t.http.get('/fhir/ConceptMap/$translate').query({ url: CM_URL, system: CS_URL, code: 'green' });
      expect(r.status).toBe(200);
      return (r.body as Parameters).parameter?.find((p) => p.name === 'match')?.part?.find((p) => p.name === 'concept')?.valueCoding?.code;
    };
    expect(await translate()).toBe('vert');

    const batch: Bundle = { resourceType: 'Bundle', type: 'batch', entry: [{ resource: { ...map('groen'), id: 'test-store-map' }, request: { method: 'PUT', url: 'ConceptMap/test-store-map' } }] };
    expect((await t.http.post('/fhir').set('Content-Type', FHIR_JSON).send(batch)).status).toBe(200);
    expect(await translate()).toBe('groen');
  });

  it('in-process writes without a principal (example loading) count too', async () => {
    const base = { query: [], headers: {}, baseUrl: 'http://test/fhir' };
    const vs3 = 'http://dsp.lu/fhir/ValueSet/test-store-inprocess';
    await dispatch(t.ctx, { ...base, method: 'PUT', path: 'ValueSet/test-store-inprocess', body: { ...valueSet(['blue']), id: 'test-store-inprocess', url: vs3 } });
    expect(await validate('blue', vs3)).toBe(true);
  });

  it('answers from memory: no store query per call while nothing is written', async () => {
    expect(await validate('green', 'http://dsp.lu/fhir/ValueSet/test-store-bundle')).toBe(true);
    const history = vi.spyOn(t.ctx.store, 'history');
    const search = vi.spyOn(t.ctx.store, 'search');
    try {
      for (let i = 0; i < 20; i++) expect(await validate(i % 2 ? 'green' : 'red', 'http://dsp.lu/fhir/ValueSet/test-store-bundle')).toBe(i % 2 === 1);
      expect(history).not.toHaveBeenCalled();
      expect(search).not.toHaveBeenCalled();
    } finally {
      history.mockRestore();
      search.mockRestore();
    }
  });

  it('a write straight to the store (another process, tooling) is seen once the recheck interval has passed', async () => {
    const vs4 = 'http://dsp.lu/fhir/ValueSet/test-store-direct';
    const direct: ValueSet = { ...valueSet(['red']), id: 'test-store-direct', url: vs4 };
    const unknown = async () => (await t.http.get('/fhir/ValueSet/$validate-code').query({ url: vs4, system: CS_URL, code: 'red' })).status;
    expect(await unknown()).toBe(404);
    await t.ctx.store.put(direct, { method: 'PUT', index: extractIndex(direct) });
    // Within the interval the layer is not asked again (documented staleness for writes behind the server's back).
    expect(await unknown()).toBe(404);
    terminologyService().recheckMs = 0;
    try {
      expect(await validate('red', vs4)).toBe(true);
    } finally {
      terminologyService().recheckMs = 1e12;
    }
  });
});

describe('mayWriteTerminology', () => {
  it('recognises requests that may write CodeSystems, ValueSets or ConceptMaps', () => {
    const bundle = (entry: Bundle['entry']) => ({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(mayWriteTerminology({ method: 'GET', path: 'ValueSet/1' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: 'ValueSet' })).toBe(true);
    expect(mayWriteTerminology({ method: 'PUT', path: 'CodeSystem/x' })).toBe(true);
    expect(mayWriteTerminology({ method: 'PATCH', path: 'ConceptMap/x' })).toBe(true);
    expect(mayWriteTerminology({ method: 'DELETE', path: 'ValueSet' })).toBe(true);
    expect(mayWriteTerminology({ method: 'POST', path: 'ValueSet/$validate-code' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: 'ValueSet/vs1/$expand' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: 'ValueSet/_search' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: 'ValueSetX' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: 'Patient' })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: '', body: bundle([{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }]) })).toBe(false);
    expect(mayWriteTerminology({ method: 'POST', path: '', body: bundle([{ resource: { resourceType: 'CodeSystem', status: 'active', content: 'complete' }, request: { method: 'POST', url: 'CodeSystem' } }]) })).toBe(true);
    expect(mayWriteTerminology({ method: 'POST', path: '', body: bundle([{ request: { method: 'DELETE', url: 'ConceptMap?url=x' } }]) })).toBe(true);
    expect(mayWriteTerminology({ method: 'POST', path: '', body: { resourceType: 'Parameters' } })).toBe(false);
  });
});

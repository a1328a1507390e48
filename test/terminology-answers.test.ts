/**
 * Answers of repeated type-level GET $validate-code and $translate are kept per terminology scope
 * (src/operations/terminology.ts, `remembered`): a repeat is served the kept answer, and nothing that changes the
 * answer (terminology content added to a layer, a stored ValueSet written, the Accept-Language header, another
 * parameter) is ever served an answer computed for something else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CodeSystem, Parameters, ValueSet } from 'fhir/r4';
import { FHIR_JSON, makeApp, type TestApp } from './support/app.ts';
import { terminologyService } from '../src/terminology/service.ts';
import { dispatch } from '../src/fhir/router.ts';
import type { FhirRequest } from '../src/fhir/request.ts';

const CS_URL = 'http://dsp.lu/fhir/CodeSystem/test-answers-fruit';
const VS_URL = 'http://dsp.lu/fhir/ValueSet/test-answers-fruit';
const STATIC_VS_URL = 'http://dsp.lu/fhir/ValueSet/test-answers-fruit-static';

const valueSet: ValueSet = { resourceType: 'ValueSet', url: VS_URL, status: 'active', compose: { include: [{ system: CS_URL }] } };
const codeSystem: CodeSystem = {
  resourceType: 'CodeSystem',
  url: CS_URL,
  status: 'active',
  content: 'complete',
  concept: [
    { code: 'apple', display: 'Apple', designation: [{ language: 'fr', value: 'Pomme' }] },
    { code: 'pear', display: 'Pear' },
  ],
};

let t: TestApp;
let savedRecheck: number;
beforeAll(async () => {
  t = await makeApp();
  terminologyService().load();
  terminologyService().add(codeSystem);
  savedRecheck = terminologyService().recheckMs;
  // The store layer stays fresh between calls unless a write says otherwise (no history recheck in between).
  terminologyService().recheckMs = 1e12;
}, 60_000);
afterAll(() => {
  terminologyService().recheckMs = savedRecheck;
});

const param = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);

function get(path: string, query: [string, string][], headers: Record<string, string> = {}): FhirRequest {
  return { method: 'GET', path, query, headers, baseUrl: 'http://test/fhir' };
}

describe('answers of repeated terminology calls', () => {
  it('a repeat gets the kept answer; content added to the static layer is seen by the next call', async () => {
    const fruit = (version: string, codes: string[]): ValueSet => ({ resourceType: 'ValueSet', url: STATIC_VS_URL, version, status: 'active', compose: { include: [{ system: CS_URL, concept: codes.map((code) => ({ code })) }] } });
    terminologyService().add(fruit('1', ['apple']));
    const q: [string, string][] = [['url', STATIC_VS_URL], ['system', CS_URL], ['code', 'pear']];
    // The first call may read the store layer afresh (earlier writes); answers are kept from the next one on.
    await dispatch(t.ctx, get('ValueSet/$validate-code', q));
    const first = await dispatch(t.ctx, get('ValueSet/$validate-code', q));
    expect(first.status).toBe(200);
    expect(param(first.body as Parameters, 'result')?.valueBoolean).toBe(false);
    const again = await dispatch(t.ctx, get('ValueSet/$validate-code', q));
    expect(again.body).toBe(first.body);
    expect(Object.isFrozen(again.body)).toBe(true);

    // A newer version of the value set (the one an unversioned url means) now holds the code.
    terminologyService().add(fruit('2', ['apple', 'pear']));
    const after = await dispatch(t.ctx, get('ValueSet/$validate-code', q));
    expect(after.body).not.toBe(first.body);
    expect(param(after.body as Parameters, 'result')?.valueBoolean).toBe(true);
    expect(param(after.body as Parameters, 'display')?.valueString).toBe('Pear');
  });

  it('Accept-Language and every non-underscore parameter are part of what is kept; _format is not', async () => {
    expect((await t.http.post('/fhir/ValueSet').set('Content-Type', FHIR_JSON).send(valueSet)).status).toBe(201);
    const q: [string, string][] = [['url', VS_URL], ['system', CS_URL], ['code', 'apple']];
    const en = await t.http.get('/fhir/ValueSet/$validate-code').query(Object.fromEntries(q));
    const fr = await t.http.get('/fhir/ValueSet/$validate-code').query(Object.fromEntries(q)).set('Accept-Language', 'fr');
    const enAgain = await t.http.get('/fhir/ValueSet/$validate-code').query({ ...Object.fromEntries(q), _format: 'json' });
    expect([en.status, fr.status, enAgain.status]).toEqual([200, 200, 200]);
    expect(param(en.body as Parameters, 'display')?.valueString).toBe('Apple');
    expect(param(fr.body as Parameters, 'display')?.valueString).toBe('Pomme');
    expect(enAgain.body).toEqual(en.body);
    const pear = await t.http.get('/fhir/ValueSet/$validate-code').query({ ...Object.fromEntries(q), code: 'pear' });
    expect(param(pear.body as Parameters, 'display')?.valueString).toBe('Pear');
    const wrongDisplay = await t.http.get('/fhir/ValueSet/$validate-code').query({ ...Object.fromEntries(q), display: 'Banana' });
    expect(param(wrongDisplay.body as Parameters, 'result')?.valueBoolean).toBe(false);
    // Errors are not kept: the same failing call fails the same way twice.
    for (let i = 0; i < 2; i++) {
      const missing = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: `${VS_URL}-missing`, system: CS_URL, code: 'apple' });
      expect(missing.status).toBe(404);
    }
  });

  it('a ValueSet written through the API changes the next answer', async () => {
    const q: [string, string][] = [['url', VS_URL], ['system', CS_URL], ['code', 'pear']];
    const before = await dispatch(t.ctx, get('ValueSet/$validate-code', q));
    expect(param(before.body as Parameters, 'result')?.valueBoolean).toBe(true);
    const found = await t.http.get('/fhir/ValueSet').query({ url: VS_URL });
    const id = (found.body as { entry: { resource: ValueSet }[] }).entry[0].resource.id!;
    const narrowed: ValueSet = { ...valueSet, id, compose: { include: [{ system: CS_URL, concept: [{ code: 'apple' }] }] } };
    expect((await t.http.put(`/fhir/ValueSet/${id}`).set('Content-Type', FHIR_JSON).send(narrowed)).status).toBe(200);
    const after = await t.http.get('/fhir/ValueSet/$validate-code').query(Object.fromEntries(q));
    expect(after.status).toBe(200);
    expect(param(after.body as Parameters, 'result')?.valueBoolean).toBe(false);
  });

  it('$translate: a repeat gets the kept answer, another code its own', async () => {
    const q = (code: string): [string, string][] => [['system', 'urn:oid:1.3.182.5.35'], ['code', code], ['targetsystem', 'http://www.whocc.no/atc']];
    await dispatch(t.ctx, get('ConceptMap/$translate', q('3728')));
    const a = await dispatch(t.ctx, get('ConceptMap/$translate', q('3728')));
    const b = await dispatch(t.ctx, get('ConceptMap/$translate', q('3728')));
    const c = await dispatch(t.ctx, get('ConceptMap/$translate', q('18996')));
    expect(a.status).toBe(200);
    expect(b.body).toBe(a.body);
    expect(c.body).not.toBe(a.body);
    const concepts = (p: Parameters) => (p.parameter ?? []).filter((x) => x.name === 'match').map((m) => m.part?.find((x) => x.name === 'concept')?.valueCoding?.code);
    expect(concepts(a.body as Parameters)).not.toEqual(concepts(c.body as Parameters));
  });
});

// POST Bundle/$from-cda (and Binary/{id}/$from-cda) with a malformed body: refused with a 400 OperationOutcome
// (the posted resource is base-validated; `lang` must be a string), never a 500 from inside the handler.
import { describe, expect, it } from 'vitest';
import type { OperationOutcome } from 'fhir/r4';
import { makeApp } from './support/app.ts';

const cda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>').toString('base64');

describe('POST $from-cda with a malformed body', () => {
  it('answers 400 with an OperationOutcome, not a 500', async () => {
    const t = await makeApp();
    const params = (...parameter: unknown[]) => ({ resourceType: 'Parameters', parameter });
    const cases: [string, unknown][] = [
      ['document as valueString 123', params({ name: 'document', valueString: 123 })],
      ['document as valueBase64Binary 123', params({ name: 'document', valueBase64Binary: 123 })],
      ['a Binary whose data is an object', { resourceType: 'Binary', contentType: 'application/xml', data: { x: 1 } }],
      ['a Parameters document Binary whose data is an object', params({ name: 'document', resource: { resourceType: 'Binary', contentType: 'application/xml', data: { x: 1 } } })],
      ['lang as valueCode 7', params({ name: 'document', valueBase64Binary: cda }, { name: 'lang', valueCode: 7 })],
      ['lang as valueCode object', params({ name: 'document', valueBase64Binary: cda }, { name: 'lang', valueCode: { a: 'fr' } })],
      ['lang as valueString object', params({ name: 'document', valueBase64Binary: cda }, { name: 'lang', valueString: { a: 'fr' } })],
    ];
    for (const [name, body] of cases) {
      const res = await t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/fhir+json').send(body as object);
      expect(res.status, `${name}: ${JSON.stringify(res.body).slice(0, 500)}`).toBe(400);
      const oo = res.body as OperationOutcome;
      expect(oo.resourceType, name).toBe('OperationOutcome');
      expect(oo.issue.some((i) => i.severity === 'error'), name).toBe(true);
    }
  }, 60_000);

  it('Binary/{id}/$from-cda refuses a posted Parameters whose lang is not a string', async () => {
    const t = await makeApp();
    const put = await t.http.put('/fhir/Binary/cda1').set('content-type', 'application/fhir+json').send({ resourceType: 'Binary', id: 'cda1', contentType: 'application/xml', data: cda });
    expect(put.status, JSON.stringify(put.body).slice(0, 300)).toBeLessThan(300);
    // Well-formed FHIR but no language tag (valueBoolean): refused by the handler itself, not by the validator.
    for (const lang of [{ valueCode: 7 }, { valueCode: { a: 'fr' } }, { valueString: ['fr'] }, { valueBoolean: true }]) {
      const res = await t.http.post('/fhir/Binary/cda1/$from-cda').set('content-type', 'application/fhir+json').send({ resourceType: 'Parameters', parameter: [{ name: 'lang', ...lang }] });
      expect(res.status, `${JSON.stringify(lang)}: ${JSON.stringify(res.body).slice(0, 500)}`).toBe(400);
      expect((res.body as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    // A well-formed lang, or no body at all, reaches the converter (this CDA is not a Patient Summary: 422, not 400).
    const okLang = await t.http.post('/fhir/Binary/cda1/$from-cda').set('content-type', 'application/fhir+json').send({ resourceType: 'Parameters', parameter: [{ name: 'lang', valueCode: 'fr' }] });
    expect(okLang.status, JSON.stringify(okLang.body).slice(0, 300)).toBe(422);
    const noBody = await t.http.post('/fhir/Binary/cda1/$from-cda');
    expect(noBody.status, JSON.stringify(noBody.body).slice(0, 300)).toBe(422);
    const get = await t.http.get('/fhir/Binary/cda1/$from-cda?lang=fr');
    expect(get.status, JSON.stringify(get.body).slice(0, 300)).toBe(422);
  }, 60_000);
});

/**
 * Terminology operations through HTTP with the committed MVC content (terminology/): $expand, $validate-code,
 * $lookup, $subsumes, $translate; language fallback; unknown systems and value sets; paging; resources stored
 * through the API; the code-system table; TSAM import; UCUM.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CodeSystem, ConceptMap, OperationOutcome, Parameters, ValueSet } from 'fhir/r4';
import { FHIR_JSON, FHIR_XML, makeApp, type TestApp } from './support/app.ts';
import { canonicalSystem, cdaCodeSystemName, describeCodeSystem, oidToUri, uriToOid } from '../src/terminology/codesystems.ts';
import { parseTsamXml, importTsamFolder, toSupplements } from '../src/terminology/tsam.ts';
import { ucumValidate, ucumConvert } from '../src/terminology/ucum.ts';
import { terminologyService } from '../src/terminology/service.ts';
import { validateInValueSet } from '../src/terminology/engine.ts';

const EHDSI = 'http://terminology.ehdsi.eu/ValueSet/';
const SCT = 'http://snomed.info/sct';
const TSAM_DIR = resolve(__dirname, '..', '..', 'shared', 'specs', 'ehdsi', 'terminology', 'mvc-tsam-export-xml');

let t: TestApp;
beforeAll(async () => {
  t = await makeApp();
  terminologyService().load();
}, 60_000);

const param = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);
const params = (p: Parameters, name: string) => p.parameter?.filter((x) => x.name === name) ?? [];

function outcome(body: unknown): OperationOutcome {
  const oo = body as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  return oo;
}

describe('ValueSet/$validate-code with MVC value sets', () => {
  it('accepts a SNOMED CT code of eHDSISeverity (GET, type level, url)', async () => {
    const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: `${EHDSI}eHDSISeverity`, system: SCT, code: '6736007' });
    expect(r.status).toBe(200);
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(true);
    expect(param(p, 'display')?.valueString).toBe('Moderate');
  });

  it('rejects a code that is not in the value set, with a message', async () => {
    const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: `${EHDSI}eHDSISeverity`, system: SCT, code: '22298006' });
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(false);
    expect(param(p, 'message')?.valueString).toContain('was not found in the value set');
  });

  it('rejects a wrong display and names the valid one', async () => {
    const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: `${EHDSI}eHDSISeverity`, system: SCT, code: '6736007', display: 'Severe' });
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(false);
    expect(param(p, 'message')?.valueString).toContain("Valid display is 'Moderate'");
  });

  it('validates a Coding in a POSTed Parameters body against the 8.0.0 version by OID', async () => {
    const body: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'url', valueUri: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.42.5' },
        { name: 'valueSetVersion', valueString: '8.0.0' },
        { name: 'coding', valueCoding: { system: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.2', code: 'A00.0' } },
      ],
    };
    const r = await t.http.post('/fhir/ValueSet/$validate-code').set('Content-Type', FHIR_JSON).send(body);
    expect(r.status).toBe(200);
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(true);
    // The eHDSI ICD-10 OID is the same system as http://hl7.org/fhir/sid/icd-10.
    expect(param(p, 'system')?.valueUri).toBe('http://hl7.org/fhir/sid/icd-10');
  });

  it('validates a CodeableConcept: valid when one coding is', async () => {
    const body: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'url', valueUri: `${EHDSI}eHDSIAdministrativeGender` },
        { name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: 'urn:oid:1.3.182.5.5.99', code: 'X' }, { system: 'http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender', code: 'F' }] } },
      ],
    };
    const r = await t.http.post('/fhir/ValueSet/$validate-code').set('Content-Type', FHIR_JSON).send(body);
    expect(param(r.body as Parameters, 'result')?.valueBoolean).toBe(true);
  });

  it('answers 404 with an OperationOutcome for an unknown value set', async () => {
    const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: 'http://example.org/ValueSet/nope', system: SCT, code: '1' });
    expect(r.status).toBe(404);
    expect(outcome(r.body).issue[0]!.diagnostics).toContain("value set 'http://example.org/ValueSet/nope'");
  });

  it('returns XML when asked', async () => {
    const r = await t.http.get('/fhir/ValueSet/$validate-code').query({ url: `${EHDSI}eHDSISeverity`, system: SCT, code: '6736007' }).set('Accept', FHIR_XML);
    expect(r.status).toBe(200);
    expect(r.text).toContain('<Parameters');
    expect(r.text).toMatch(/<valueBoolean value="true"\s*\/>/);
  });
});

describe('ValueSet/$expand', () => {
  it('expands a small MVC value set with its used code system', async () => {
    const r = await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSICertainty` });
    expect(r.status).toBe(200);
    const vs = r.body as ValueSet;
    expect(vs.expansion?.total).toBe(5);
    expect(vs.expansion?.contains?.map((c) => c.code).sort()).toEqual(['confirmed', 'differential', 'provisional', 'refuted', 'unconfirmed']);
    expect(vs.expansion?.parameter?.some((p) => p.name === 'used-codesystem')).toBe(true);
  });

  it('refuses an unpaged expansion over 1000 codes and pages a large one with count/offset', async () => {
    const big = await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIIllnessandDisorder` });
    expect(big.status).toBe(400);
    expect(outcome(big.body).issue[0]!.code).toBe('too-costly');
    const p1 = (await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIIllnessandDisorder`, count: 100, offset: 0 })).body as ValueSet;
    const p2 = (await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIIllnessandDisorder`, count: 100, offset: 100 })).body as ValueSet;
    expect(p1.expansion?.total).toBeGreaterThan(10000);
    expect(p1.expansion?.total).toBe(p2.expansion?.total);
    expect(p1.expansion?.contains).toHaveLength(100);
    expect(p2.expansion?.offset).toBe(100);
    const codes1 = new Set(p1.expansion!.contains!.map((c) => c.code));
    expect(p2.expansion!.contains!.some((c) => codes1.has(c.code))).toBe(false);
  });

  it('filters by text', async () => {
    const vs = (await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIIllnessandDisorder`, filter: 'cholera', count: 50 })).body as ValueSet;
    expect(vs.expansion!.total).toBeGreaterThan(0);
    for (const c of vs.expansion!.contains!) expect(`${c.code} ${c.display}`.toLowerCase()).toContain('cholera');
  });

  it('applies displayLanguage with designations from the TSAM import (nl-NL) and includeDesignations', async () => {
    const vs = (await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIAdministrativeGender`, displayLanguage: 'nl-NL', includeDesignations: 'true' })).body as ValueSet;
    const f = vs.expansion!.contains!.find((c) => c.code === 'F')!;
    expect(f.display).toBe('Vrouwelijk');
    expect(f.designation?.some((d) => d.language === 'en-GB' && d.value === 'Female')).toBe(true);
  });

  it('falls back fr-LU -> fr -> en when no French designation exists', async () => {
    const vs = (await t.http.get('/fhir/ValueSet/$expand').query({ url: `${EHDSI}eHDSIAdministrativeGender`, displayLanguage: 'fr-LU' })).body as ValueSet;
    expect(vs.expansion!.contains!.find((c) => c.code === 'F')!.display).toBe('Female');
  });

  it('expands compose filters (is-a, =, regex, in), exclude and a nested value set over a stored CodeSystem', async () => {
    const cs: CodeSystem = {
      resourceType: 'CodeSystem',
      url: 'http://dsp.lu/fhir/CodeSystem/test-routes',
      version: '1',
      status: 'active',
      content: 'complete',
      caseSensitive: true,
      language: 'fr',
      property: [{ code: 'kind', type: 'code' }],
      concept: [
        {
          code: 'ORAL',
          display: 'Voie orale',
          designation: [{ language: 'de', value: 'Oral' }, { language: 'en', value: 'Oral route' }],
          property: [{ code: 'kind', valueCode: 'enteral' }],
          concept: [
            { code: 'ORAL-SUB', display: 'Voie sublinguale', property: [{ code: 'kind', valueCode: 'enteral' }] },
            { code: 'ORAL-BUC', display: 'Voie buccale', property: [{ code: 'kind', valueCode: 'enteral' }] },
          ],
        },
        { code: 'IV', display: 'Voie intraveineuse', property: [{ code: 'kind', valueCode: 'parenteral' }] },
      ],
    };
    expect((await t.http.post('/fhir/CodeSystem').set('Content-Type', FHIR_JSON).send(cs)).status).toBe(201);
    const inner: ValueSet = { resourceType: 'ValueSet', url: 'http://dsp.lu/fhir/ValueSet/test-enteral', status: 'active', compose: { include: [{ system: cs.url, filter: [{ property: 'kind', op: '=', value: 'enteral' }] }] } };
    expect((await t.http.post('/fhir/ValueSet').set('Content-Type', FHIR_JSON).send(inner)).status).toBe(201);
    const outer: ValueSet = {
      resourceType: 'ValueSet',
      url: 'http://dsp.lu/fhir/ValueSet/test-outer',
      status: 'active',
      compose: {
        include: [{ system: cs.url, filter: [{ property: 'concept', op: 'is-a', value: 'ORAL' }] }, { system: cs.url, filter: [{ property: 'code', op: 'regex', value: 'I.' }] }],
        exclude: [{ system: cs.url, concept: [{ code: 'ORAL-BUC' }] }],
      },
    };
    const created = await t.http.post('/fhir/ValueSet').set('Content-Type', FHIR_JSON).send(outer);
    expect(created.status).toBe(201);
    const exp = (await t.http.get(`/fhir/ValueSet/${created.body.id}/$expand`)).body as ValueSet;
    expect(exp.expansion!.contains!.map((c) => c.code).sort()).toEqual(['IV', 'ORAL', 'ORAL-SUB']);

    const nested: ValueSet = { resourceType: 'ValueSet', status: 'active', compose: { include: [{ valueSet: [inner.url!], system: cs.url, filter: [{ property: 'code', op: 'in', value: 'ORAL,IV,ORAL-BUC' }] }] } };
    const r = await t.http.post('/fhir/ValueSet/$expand').set('Content-Type', FHIR_JSON).send({ resourceType: 'Parameters', parameter: [{ name: 'valueSet', resource: nested }, { name: 'displayLanguage', valueCode: 'de-LU' }] });
    expect(r.status).toBe(200);
    const got = (r.body as ValueSet).expansion!.contains!;
    expect(got.map((c) => c.code).sort()).toEqual(['ORAL', 'ORAL-BUC']);
    expect(got.find((c) => c.code === 'ORAL')!.display).toBe('Oral'); // de-LU -> de
    expect(got.find((c) => c.code === 'ORAL-BUC')!.display).toBe('Voie buccale'); // no de, no en: own display

    // $subsumes over the stored hierarchy, at instance level
    const sub = await t.http.get(`/fhir/CodeSystem/$subsumes`).query({ system: cs.url, codeA: 'ORAL', codeB: 'ORAL-SUB' });
    expect(param(sub.body as Parameters, 'outcome')?.valueCode).toBe('subsumes');
    const sub2 = await t.http.get(`/fhir/CodeSystem/$subsumes`).query({ system: cs.url, codeA: 'ORAL-SUB', codeB: 'IV' });
    expect(param(sub2.body as Parameters, 'outcome')?.valueCode).toBe('not-subsumed');

    // An update through the API is seen by the next operation.
    cs.concept!.push({ code: 'IM', display: 'Voie intramusculaire', property: [{ code: 'kind', valueCode: 'parenteral' }] });
    const csId = (await t.http.get('/fhir/CodeSystem').query({ url: cs.url })).body.entry[0].resource.id as string;
    expect((await t.http.put(`/fhir/CodeSystem/${csId}`).set('Content-Type', FHIR_JSON).send({ ...cs, id: csId })).status).toBe(200);
    const exp2 = (await t.http.get(`/fhir/ValueSet/${created.body.id}/$expand`)).body as ValueSet;
    expect(exp2.expansion!.contains!.map((c) => c.code).sort()).toEqual(['IM', 'IV', 'ORAL', 'ORAL-SUB']);
  });

  it('reports an unknown code system in a filter with a clear OperationOutcome', async () => {
    const vs: ValueSet = { resourceType: 'ValueSet', status: 'active', compose: { include: [{ system: 'http://example.org/unknown-cs', filter: [{ property: 'concept', op: 'is-a', value: 'x' }] }] } };
    const r = await t.http.post('/fhir/ValueSet/$expand').set('Content-Type', FHIR_JSON).send({ resourceType: 'Parameters', parameter: [{ name: 'valueSet', resource: vs }] });
    expect(r.status).toBe(404);
    expect(outcome(r.body).issue[0]!.diagnostics).toContain("CodeSystem 'http://example.org/unknown-cs' could not be found");
  });
});

describe('CodeSystem/$lookup', () => {
  it('looks up an EDQM dose form with its properties', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'http://standardterms.edqm.eu', code: '0098' });
    expect(r.status).toBe(200);
    const p = r.body as Parameters;
    expect(param(p, 'display')?.valueString).toBe('Semi-solid');
    expect(params(p, 'property').some((x) => x.part?.[0]?.valueCode === 'class' && x.part?.[1]?.valueCode === 'SOM')).toBe(true);
  });

  it('returns designations per language and picks the display by displayLanguage, with fallback', async () => {
    const nl = (await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'urn:oid:2.16.840.1.113883.5.1', code: 'M', displayLanguage: 'nl' })).body as Parameters;
    expect(param(nl, 'display')?.valueString).toBe('Mannelijk');
    expect(params(nl, 'designation').map((d) => d.part?.find((x) => x.name === 'language')?.valueCode)).toEqual(expect.arrayContaining(['en-GB', 'nl-NL']));
    const fr = (await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender', code: 'M' }).set('Accept-Language', 'fr-LU, fr;q=0.9')).body as Parameters;
    expect(param(fr, 'display')?.valueString).toBe('Male');
  });

  it('looks up a SNOMED CT code known from the MVC (fragment) by Coding in a POST', async () => {
    const r = await t.http.post('/fhir/CodeSystem/$lookup').set('Content-Type', FHIR_JSON).send({ resourceType: 'Parameters', parameter: [{ name: 'coding', valueCoding: { system: SCT, code: '6736007' } }] });
    expect(param(r.body as Parameters, 'display')?.valueString).toBe('Moderate');
  });

  it('answers 404 for an unknown code system and for an unknown code', async () => {
    const a = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'http://example.org/none', code: 'x' });
    expect(a.status).toBe(404);
    expect(outcome(a.body).issue[0]!.diagnostics).toContain("CodeSystem 'http://example.org/none' could not be found");
    const b = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'http://standardterms.edqm.eu', code: 'NOPE' });
    expect(b.status).toBe(404);
    expect(outcome(b.body).issue[0]!.diagnostics).toContain("Unknown code 'NOPE'");
  });

  it('answers 400 for a missing code', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: SCT });
    expect(r.status).toBe(400);
  });
});

describe('CodeSystem/$subsumes on EMDN', () => {
  it('computes subsumption from the EMDN hierarchy', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$subsumes').query({ system: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.6', codeA: 'A0101010101', codeB: 'A01' });
    expect(param(r.body as Parameters, 'outcome')?.valueCode).toBe('subsumed-by');
  });
  it('refuses subsumption on a fragment', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$subsumes').query({ system: SCT, codeA: '6736007', codeB: '255604002' });
    expect(r.status).toBe(400);
  });
});

describe('ConceptMap/$translate', () => {
  const cm: ConceptMap = {
    resourceType: 'ConceptMap',
    url: 'http://dsp.lu/fhir/ConceptMap/test-lu-route-to-edqm',
    status: 'active',
    sourceUri: 'urn:oid:1.3.182.5.5.10',
    targetUri: `${EHDSI}eHDSIRouteofAdministration`,
    group: [
      {
        source: 'urn:oid:1.3.182.5.5.10',
        target: 'http://standardterms.edqm.eu',
        element: [
          { code: 'ORAL', target: [{ code: '20053000', display: 'Oral use', equivalence: 'equivalent' }] },
          { code: 'INJ', target: [{ code: '20045000', display: 'Intravenous use', equivalence: 'wider' }, { code: '20035000', display: 'Intramuscular use', equivalence: 'wider' }] },
        ],
      },
    ],
  };
  beforeAll(async () => {
    expect((await t.http.post('/fhir/ConceptMap').set('Content-Type', FHIR_JSON).send(cm)).status).toBe(201);
  });

  it('translates system + code (GET) with any stored map', async () => {
    const r = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'urn:oid:1.3.182.5.5.10', code: 'ORAL', targetsystem: 'http://standardterms.edqm.eu' });
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(true);
    const m = params(p, 'match')[0]!;
    expect(m.part?.find((x) => x.name === 'concept')?.valueCoding?.code).toBe('20053000');
    expect(m.part?.find((x) => x.name === 'equivalence')?.valueCode).toBe('equivalent');
  });

  it('translates a CodeableConcept by map url (POST) and in reverse', async () => {
    const r = await t.http.post('/fhir/ConceptMap/$translate').set('Content-Type', FHIR_JSON).send({
      resourceType: 'Parameters',
      parameter: [{ name: 'url', valueUri: cm.url }, { name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: 'urn:oid:1.3.182.5.5.10', code: 'INJ' }] } }],
    });
    expect(params(r.body as Parameters, 'match')).toHaveLength(2);
    const rev = await t.http.get('/fhir/ConceptMap/$translate').query({ url: cm.url, system: 'http://standardterms.edqm.eu', code: '20035000', reverse: 'true' });
    const m = params(rev.body as Parameters, 'match')[0]!;
    expect(m.part?.find((x) => x.name === 'concept')?.valueCoding?.code).toBe('INJ');
    expect(m.part?.find((x) => x.name === 'equivalence')?.valueCode).toBe('narrower');
  });

  it('says result=false when nothing maps, and 404 for an unknown map', async () => {
    const r = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'urn:oid:1.3.182.5.5.10', code: 'NASAL' });
    expect(param(r.body as Parameters, 'result')?.valueBoolean).toBe(false);
    expect(param(r.body as Parameters, 'message')?.valueString).toContain('No translation');
    const u = await t.http.get('/fhir/ConceptMap/$translate').query({ url: 'http://example.org/cm', system: 'a', code: 'b' });
    expect(u.status).toBe(404);
  });
});

describe('Luxembourg code systems and ConceptMaps from the pivot samples (terminology/lu)', () => {
  const LU_SAMPLE = 'gazelle-wave8-by-country/LU/LU_PS_L3_CELESTINA_DOE-CALLA_W8.1.0.xml';
  const match = (p: Parameters, i = 0) => {
    const m = params(p, 'match')[i]!;
    return { concept: m.part?.find((x) => x.name === 'concept')?.valueCoding, equivalence: m.part?.find((x) => x.name === 'equivalence')?.valueCode, comment: m.part?.find((x) => x.name === 'comment')?.valueString, source: m.part?.find((x) => x.name === 'source')?.valueUri };
  };

  it('translates a VIDAL route to EDQM (forward), naming the sample and XPath it was seen at', async () => {
    const r = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'urn:oid:1.3.182.5.31', code: '38', targetsystem: 'http://standardterms.edqm.eu' });
    expect(r.status).toBe(200);
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(true);
    const m = match(p);
    expect(m.concept).toMatchObject({ system: 'http://standardterms.edqm.eu', code: '20053000', display: 'Oral use' });
    expect(m.source).toBe('http://dsp.lu/fhir/ConceptMap/lu-vidal-routes-to-mvc|0.1.0');
    expect(m.comment).toContain(LU_SAMPLE);
    expect(m.comment).toMatch(/routeCode\[1\]\/translation\[1\]/);
  });

  it('translates an ATC code back to the VIDAL substance (reverse) and ICD-10 to ICD-10-CM', async () => {
    const r = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'http://www.whocc.no/atc', code: 'J05AF06', reverse: 'true' });
    const p = r.body as Parameters;
    expect(param(p, 'result')?.valueBoolean).toBe(true);
    expect(match(p).concept).toMatchObject({ system: 'urn:oid:1.3.182.5.35', code: '18416', display: 'abacavir sulfate' });
    // The CDA OID of the eHDSI ICD-10 resolves to the same system.
    const icd = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.2', code: 'B20', reverse: 'true' });
    expect(match(icd.body as Parameters)).toMatchObject({ concept: { system: 'urn:oid:1.3.182.5.29', code: 'B20' }, equivalence: 'equivalent' });
  });

  it('translates a CodeableConcept of a VIDAL form (POST) and says result=false for a code the samples never paired', async () => {
    const r = await t.http.post('/fhir/ConceptMap/$translate').set('Content-Type', FHIR_JSON).send({
      resourceType: 'Parameters',
      parameter: [{ name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: 'urn:oid:1.3.182.5.36', code: '59' }] } }],
    });
    expect(match(r.body as Parameters).concept?.code).toBe('10219000');
    const none = await t.http.get('/fhir/ConceptMap/$translate').query({ system: 'urn:oid:1.3.182.5.31', code: '27' });
    expect(param(none.body as Parameters, 'result')?.valueBoolean).toBe(false);
  });

  it('looks up national codes in the fragment code systems (French displays)', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'urn:oid:1.3.182.5.31', code: '27' });
    expect(param(r.body as Parameters, 'display')?.valueString).toBe('intramusculaire');
    const d = await t.http.get('/fhir/CodeSystem/$lookup').query({ system: 'urn:oid:1.3.182.5.47', code: '2009050307' });
    expect(param(d.body as Parameters, 'display')?.valueString).toBe('RETROVIR');
  });

  it('extracts pairs with their XPath from a CDA fragment (converter)', async () => {
    const { extractLu, buildLuResources } = await import('../scripts/convert-lu-conceptmaps.ts');
    const xml = `<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:pharm="urn:hl7-org:pharm"><component><x>
      <routeCode code="20053000" codeSystem="0.4.0.127.0.16.1.1.2.1" displayName="Oral use"><translation code="38" codeSystem="1.3.182.5.31" codeSystemName="VIDAL ROUTES" displayName="orale"/></routeCode>
      <pharm:formCode code="10219000" codeSystem="0.4.0.127.0.16.1.1.2.1"><pharm:translation code="59" codeSystem="1.3.182.5.36" codeSystemName="VIDAL FORMS"/></pharm:formCode>
      <code code="2009050307" codeSystem="1.3.182.5.47" codeSystemName="ESANTE DRUGS" displayName="RETROVIR"/>
      <code code="J07AF" codeSystem="2.16.840.1.113883.6.73"><translation code="428214002" codeSystem="2.16.840.1.113883.6.96"/></code>
    </x></component></ClinicalDocument>`;
    const x = extractLu(xml, 'inline.xml');
    expect(x.pairs.map((p) => `${p.lu.oid}#${p.lu.code}>${p.mvc.oid}#${p.mvc.code}`)).toEqual(['1.3.182.5.31#38>0.4.0.127.0.16.1.1.2.1#20053000', '1.3.182.5.36#59>0.4.0.127.0.16.1.1.2.1#10219000']);
    expect(x.pairs[1]!.xpath).toBe('/ClinicalDocument[1]/component[1]/x[1]/pharm:formCode[1]/pharm:translation[1]');
    expect(x.codes.map((c) => c.code)).toEqual(['38', '59', '2009050307']);
    const res = buildLuResources([x]);
    expect(res.filter((r) => r.resourceType === 'CodeSystem').map((r) => r.url)).toEqual(['urn:oid:1.3.182.5.31', 'urn:oid:1.3.182.5.36', 'urn:oid:1.3.182.5.47']);
    const maps = res.filter((r): r is ConceptMap => r.resourceType === 'ConceptMap');
    expect(maps).toHaveLength(2);
    expect(maps[0]!.group?.[0]).toMatchObject({ source: 'urn:oid:1.3.182.5.31', target: 'http://standardterms.edqm.eu', element: [{ code: '38', target: [{ code: '20053000', equivalence: 'relatedto' }] }] });
  });
});

describe('code-system table', () => {
  it('maps FHIR URIs, OIDs and eHDSI CDA names both ways', () => {
    expect(uriToOid(SCT)).toBe('2.16.840.1.113883.6.96');
    expect(oidToUri('2.16.840.1.113883.6.1')).toBe('http://loinc.org');
    expect(oidToUri('1.3.6.1.4.1.12559.11.10.1.3.1.44.2')).toBe('http://hl7.org/fhir/sid/icd-10');
    expect(uriToOid('http://hl7.org/fhir/sid/icd-10')).toBe('1.3.6.1.4.1.12559.11.10.1.3.1.44.2');
    expect(cdaCodeSystemName('http://www.whocc.no/atc')).toBe('Anatomical Therapeutic Chemical');
    expect(canonicalSystem('urn:oid:0.4.0.127.0.16.1.1.2.1')).toBe('http://standardterms.edqm.eu');
    expect(canonicalSystem('https://www.orpha.net')).toBe('http://www.orpha.net');
    expect(describeCodeSystem('1.3.182.5.5.42')).toMatchObject({ uri: 'urn:oid:1.3.182.5.5.42', oid: '1.3.182.5.5.42' });
    expect(oidToUri('1.2.3.4.5')).toBe('urn:oid:1.2.3.4.5');
  });
});

describe('TSAM import', () => {
  it('parses the export format and groups designations into supplements', () => {
    const sets = parseTsamXml(
      '<ValueSet oid="1.2.3" name="X"><concept codeSystem="2.16.840.1.113883.6.96" codeSystemName="SNOMED CT" code="1"><designation lang="fr-LU">Un</designation><designation lang="en-GB">One</designation></concept></ValueSet>',
    );
    const sup = toSupplements(sets);
    expect([...sup.keys()]).toEqual(['en-GB', 'fr-LU']);
    expect(sup.get('fr-LU')![0]).toMatchObject({ content: 'supplement', supplements: SCT, concept: [{ code: '1', designation: [{ language: 'fr-LU', value: 'Un' }] }] });
    expect(() => parseTsamXml('<ValueSet name="x"/>')).toThrow(/oid/);
    expect(() => parseTsamXml('<!DOCTYPE x><ValueSet oid="1.2"/>')).toThrow(/DOCTYPE/);
  });

  it.skipIf(!existsSync(TSAM_DIR))('imports the en-GB / nl-NL exports with the CLI into a folder the service loads', async () => {
    const sets = importTsamFolder(TSAM_DIR);
    expect(sets.length).toBeGreaterThan(60);
    const out = mkdtempSync(join(tmpdir(), 'tsam-'));
    const { runImportTsam } = await import('../src/cli/terminology.ts');
    const lines = runImportTsam(TSAM_DIR, out);
    expect(lines.join('\n')).toContain('nl-NL');
    expect(readdirSync(out).sort()).toEqual(['en-GB.ndjson', 'nl-NL.ndjson']);
    const nl = readFileSync(join(out, 'nl-NL.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CodeSystem);
    const gender = nl.find((c) => c.supplements === 'http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender')!;
    expect(gender.concept!.find((c) => c.code === 'F')!.designation![0]!.value).toBe('Vrouwelijk');
  });
});

describe('UCUM', () => {
  it('validates units and converts to canonical form', () => {
    expect(ucumValidate('mg/dL').valid).toBe(true);
    expect(ucumValidate('mg/dLx').valid).toBe(false);
    expect(ucumConvert(1, 'g', 'mg')).toBeCloseTo(1000);
    expect(ucumConvert(1, 'g', 'm')).toBeUndefined();
  });
  it('validates UCUM codes through $validate-code against the eHDSI units value set', async () => {
    const r = await t.http.get('/fhir/CodeSystem/$validate-code').query({ url: 'http://unitsofmeasure.org', code: 'mg/dL' });
    expect(param(r.body as Parameters, 'result')?.valueBoolean).toBe(true);
    const bad = await t.http.get('/fhir/CodeSystem/$validate-code').query({ url: 'http://unitsofmeasure.org', code: 'mg/dLx' });
    expect(param(bad.body as Parameters, 'result')?.valueBoolean).toBe(false);
  });
});

describe('in-process API', () => {
  it('validates against the static scope synchronously', () => {
    const scope = terminologyService().staticScope();
    const vs = scope.valueSet('urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.42.13')!;
    expect(vs).toBeDefined();
    expect(validateInValueSet(scope, vs, { system: SCT, code: '6736007' }, { displayLanguage: [], abstractAllowed: false, activeOnly: false }).result).toBe(true);
  });
});

/**
 * Cross-border Patient Summary (issue 7): LU PS Bundle <-> eHDSI pivot CDA L3.
 *
 * Uses ../shared (eHDSI samples, the official validator) when present; those tests skip with a message
 * otherwise. The official validator (XSD + eHDSI schematron 8.0.0, Java) runs once over a batch: by default the
 * example and a handful of round-tripped samples; CROSSBORDER_FULL=1 runs it over every sample's round trip
 * (about 7 minutes).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AllergyIntolerance, Binary, Bundle, CareTeam, Device, Composition, Condition, Medication, MedicationStatement, Observation, Organization, Patient, Practitioner, PractitionerRole, RelatedPerson, Resource } from 'fhir/r4';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
import { cdaToBundle } from '../src/crossborder/from-cda.ts';
import { parseXml, kids, attr, path as xpath, type Element } from '../src/crossborder/cda/xml.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import { validateFull } from '../src/validation/index.ts';
import { translateText } from '../src/cli/translate.ts';
import { codedContent, missing } from './crossborder-support.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const shared = resolve(root, '..', 'shared');
const samplesDir = join(shared, 'specs/ehdsi/samples/ps');
const validator = join(shared, 'tools/ehdsi-cda-validate');
const hasShared = existsSync(samplesDir);
const hasJava = spawnSync('java', ['-version']).status === 0;
const canValidate = hasShared && hasJava && existsSync(validator);
if (!hasShared) console.warn('crossborder.test: ../shared is absent: the sample and official-validator tests are skipped');
else if (!canValidate) console.warn('crossborder.test: Java or the validator is absent: the official-validator tests are skipped');

const example = JSON.parse(readFileSync(join(root, 'examples/05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;

/** Every L3 pivot sample (L1 documents carry a PDF and are not level 3; national Dutch batches are not CDA). */
function samples(): string[] {
  if (!hasShared) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.xml$/i.test(f) && !/national-source/.test(p) && !/-L1[._]|_L1_/.test(f)) out.push(p);
    }
  };
  walk(samplesDir);
  return out;
}

const ids = (el: Element, into: Set<string> = new Set()) => {
  const id = el.getAttribute('ID');
  if (id) into.add(id);
  for (const k of kids(el)) ids(k, into);
  return into;
};
const all = (el: Element, name: string, out: Element[] = []): Element[] => {
  for (const k of kids(el, undefined)) {
    if (k.localName === name) out.push(k);
    all(k, name, out);
  }
  return out;
};

describe('untrusted XML', () => {
  it('refuses a DOCTYPE with its position', () => {
    const xml = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>';
    try {
      cdaToBundle(xml);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(FhirError);
      expect((e as FhirError).status).toBe(400);
      expect((e as FhirError).message).toMatch(/DOCTYPE.*line 2, column 1/);
    }
  });
  it('reports malformed XML with line and column', () => {
    try {
      cdaToBundle('<ClinicalDocument xmlns="urn:hl7-org:v3">\n  <title>x</titel>\n</ClinicalDocument>');
      expect.unreachable();
    } catch (e) {
      expect((e as FhirError).status).toBe(400);
      expect((e as FhirError).message).toMatch(/line 2, column \d+/);
    }
  });
  it('enforces depth and size limits', () => {
    const deep = `<ClinicalDocument xmlns="urn:hl7-org:v3">${'<a>'.repeat(300)}${'</a>'.repeat(300)}</ClinicalDocument>`;
    expect(() => parseXml(deep)).toThrow(/nesting deeper than 200/);
    try {
      parseXml('<a/>'.padEnd(2000, ' '), { maxBytes: 1000 });
      expect.unreachable();
    } catch (e) {
      expect((e as FhirError).status).toBe(413);
    }
  });
  it('answers 422 for a well-formed document that is not a Patient Summary', () => {
    try {
      cdaToBundle('<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="57833-6" codeSystem="2.16.840.1.113883.6.1"/></ClinicalDocument>');
      expect.unreachable();
    } catch (e) {
      expect((e as FhirError).status).toBe(422);
    }
  });
});

describe('FHIR -> CDA (Claire Wagner example)', () => {
  let doc: Element;
  let xml: string;
  beforeAll(() => {
    xml = bundleToCda(example);
    doc = parseXml(xml);
  });

  it('writes the eHDSI header', () => {
    expect(kids(doc, 'templateId').map((t) => attr(t, 'root'))).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.1.3');
    const ids = kids(xpath(doc, 'recordTarget', 'patientRole'), 'id');
    expect(ids.map((i) => [attr(i, 'root'), attr(i, 'extension')])).toContainEqual(['1.3.182.4.4', '1958031490443']);
    expect(attr(xpath(doc, 'languageCode'), 'code')).toBe('fr-LU');
    expect(attr(xpath(doc, 'confidentialityCode'), 'code')).toBe('N');
    for (const part of ['author', 'custodian', 'legalAuthenticator', 'participant', 'documentationOf', 'relatedDocument']) expect(kid0(doc, part), part).toBeDefined();
    expect(attr(xpath(doc, 'relatedDocument', 'parentDocument', 'id'), 'root')).toBe('367F1B8F-0CC4-5F17-B753-6456F402E83E');
  });

  it('writes every section of the Bundle plus the five mandatory ones', () => {
    const codes = all(doc, 'section').map((s) => attr(xpath(s, 'code'), 'code'));
    for (const c of ['10160-0', '48765-2', '11450-4', '47519-4', '46264-8', '11369-6', '30954-2', '8716-3']) expect(codes).toContain(c);
    // Devices: none in the Bundle and no emptyReason -> "no information" entry.
    const dev = all(doc, 'section').find((s) => attr(xpath(s, 'code'), 'code') === '46264-8')!;
    expect(attr(all(dev, 'playingDevice')[0] && xpath(all(dev, 'playingDevice')[0], 'code'), 'code')).toBe('no-device-info');
  });

  it('transcodes to the MVC, keeps the Luxembourg code as translation, and uses OTH when the MVC has no code', () => {
    // Penicillin (SNOMED 764146007) is not in the MVC allergen value sets -> nullFlavor OTH + translation.
    const agent = all(doc, 'playingEntity').map((p) => xpath(p, 'code')!)[0]!;
    expect(attr(agent, 'nullFlavor')).toBe('OTH');
    expect(kids(agent, 'translation').map((t) => attr(t, 'code'))).toContain('764146007');
    expect(xpath(agent, 'originalText', 'reference')).toBeDefined();
    // Diabetes: ICD-10 E11.9 is the MVC code, SNOMED 44054006 travels as translation.
    const values = all(doc, 'value').filter((v) => attr(v, 'code') === 'E11.9');
    expect(values.length).toBeGreaterThan(0);
    expect(attr(values[0], 'codeSystem')).toBe('1.3.6.1.4.1.12559.11.10.1.3.1.44.2');
    expect(kids(values[0], 'translation').map((t) => attr(t, 'code'))).toContain('44054006');
    // Blood group: LOINC 34530-6 required by eHDSI, the original 882-1 as translation.
    const bg = all(doc, 'code').find((c) => attr(c, 'code') === '34530-6')!;
    expect(kids(bg, 'translation').map((t) => attr(t, 'code'))).toContain('882-1');
    // Every code carries a displayName (dtr1-1-CD.EPSOS).
    for (const c of [...all(doc, 'code'), ...all(doc, 'value'), ...all(doc, 'translation')]) if (attr(c, 'code') && attr(c, 'codeSystem')) expect(attr(c, 'displayName'), attr(c, 'code')).toBeDefined();
  });

  it('references narrative ids that exist, narrative in French', () => {
    const known = ids(doc);
    const refs = all(doc, 'reference').map((r) => attr(r, 'value')!).filter((v) => v.startsWith('#'));
    expect(refs.length).toBeGreaterThan(10);
    for (const r of refs) expect(known.has(r.slice(1)), r).toBe(true);
    expect(xml).toContain('Désignation');
  });

  it.skipIf(!canValidate)('passes the official eHDSI validator (XSD + schematron 8.0.0) with zero errors, also re-coded with Luxembourg codes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xb-'));
    const f = join(dir, 'claire.xml');
    writeFileSync(f, xml);
    const lu = join(dir, 'claire-lu-codes.xml');
    writeFileSync(lu, bundleToCda(luCodedExample()));
    const r = spawnSync(validator, ['--json', f, lu], { encoding: 'utf8', timeout: 600_000 });
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      const res = JSON.parse(line);
      expect(res.errors, `${res.file}: ${JSON.stringify(res.errors).slice(0, 2000)}`).toEqual([]);
      expect(res.xsdErrors).toBe(0);
      expect(res.ok).toBe(true);
    }
  }, 600_000);
});

/**
 * The example re-coded with Luxembourg national codes only (the code systems and ConceptMaps of terminology/lu,
 * seeded from the LU pivot sample): mapped codes become the MVC code with the national one in <translation>,
 * a national code no ConceptMap maps becomes nullFlavor OTH with originalText and the code in <translation>.
 */
export function luCodedExample(): Bundle {
  const b = structuredClone(example);
  const res = (b.entry ?? []).map((e) => e.resource!);
  const meds = res.filter((r): r is Medication => r.resourceType === 'Medication');
  const statements = res.filter((r): r is MedicationStatement => r.resourceType === 'MedicationStatement');
  const conditions = res.filter((r): r is Condition => r.resourceType === 'Condition');
  meds[0]!.form = { coding: [{ system: 'urn:oid:1.3.182.5.36', code: '59', display: 'cp' }], text: 'Comprimé' };
  meds[0]!.ingredient![0]!.itemCodeableConcept = { coding: [{ system: 'urn:oid:1.3.182.5.35', code: '18996', display: 'ténofovir disoproxil fumarate' }], text: 'Ténofovir' };
  statements[0]!.dosage![0]!.route = { coding: [{ system: 'urn:oid:1.3.182.5.31', code: '38', display: 'orale' }], text: 'Voie orale' };
  // VIDAL route 27 (intramusculaire) has no MVC pair in the LU ConceptMaps.
  statements[1]!.dosage![0]!.route = { coding: [{ system: 'urn:oid:1.3.182.5.31', code: '27', display: 'intramusculaire' }], text: 'Voie intramusculaire' };
  conditions[0]!.code = { coding: [{ system: 'urn:oid:1.3.182.5.29', code: 'B20', display: 'immunodéficience humaine virale [VIH]' }], text: 'VIH' };
  return b;
}

describe('FHIR -> CDA with Luxembourg codes (ConceptMaps of the terminology module)', () => {
  let doc: Element;
  let xml: string;
  beforeAll(() => {
    xml = bundleToCda(luCodedExample());
    doc = parseXml(xml);
  });
  const translations = (e: Element) => kids(e, 'translation').map((t) => `${attr(t, 'code')}|${attr(t, 'codeSystem')}`);

  it('maps a national code to its MVC code and keeps the national code in <translation>', () => {
    // The two medication routes (the immunization has its own, untouched).
    const routes = all(doc, 'routeCode').filter((r) => kids(r, 'translation').some((t) => attr(t, 'codeSystem') === '1.3.182.5.31'));
    expect(routes).toHaveLength(2);
    expect([attr(routes[0]!, 'code'), attr(routes[0]!, 'codeSystem')]).toEqual(['20053000', '0.4.0.127.0.16.1.1.2.1']);
    expect(translations(routes[0]!)).toEqual(['38|1.3.182.5.31']);
    const form = all(doc, 'formCode')[0]!;
    expect([attr(form, 'code'), attr(form, 'codeSystem')]).toEqual(['10219000', '0.4.0.127.0.16.1.1.2.1']);
    expect(translations(form)).toEqual(['59|1.3.182.5.36']);
    const substance = all(all(doc, 'ingredientSubstance')[0]!, 'code')[0]!;
    expect([attr(substance, 'code'), attr(substance, 'codeSystem')]).toEqual(['J05AF07', '2.16.840.1.113883.6.73']);
    expect(translations(substance)).toEqual(['18996|1.3.182.5.35']);
    const problem = all(doc, 'value').find((v) => kids(v, 'translation').some((t) => attr(t, 'codeSystem') === '1.3.182.5.29'))!;
    expect([attr(problem, 'code'), attr(problem, 'codeSystem')]).toEqual(['B20', '1.3.6.1.4.1.12559.11.10.1.3.1.44.2']);
    // Every code written carries a displayName (the MVC one from the map, the national one from the coding).
    for (const c of [routes[0]!, form, substance, problem]) for (const x of [c, ...kids(c, 'translation')]) expect(attr(x, 'displayName'), attr(x, 'code')).toBeTruthy();
  });

  it('writes a national code with no MVC equivalent as nullFlavor OTH with originalText and the code in <translation>', () => {
    const route = all(doc, 'routeCode').filter((r) => kids(r, 'translation').some((t) => attr(t, 'codeSystem') === '1.3.182.5.31'))[1]!;
    expect(attr(route, 'nullFlavor')).toBe('OTH');
    expect(attr(route, 'code')).toBeUndefined();
    expect(translations(route)).toEqual(['27|1.3.182.5.31']);
    const ref = attr(xpath(route, 'originalText', 'reference'), 'value')!;
    expect(ids(doc).has(ref.slice(1))).toBe(true);
  });

  it('comes back to FHIR with the MVC and the national codings', () => {
    const back = cdaToBundle(xml, { lang: 'fr' });
    const ms = back.entry!.filter((e) => e.resource?.resourceType === 'MedicationStatement').map((e) => e.resource as MedicationStatement);
    expect(ms[0]!.dosage![0]!.route!.coding!.map((c) => `${c.system}|${c.code}`)).toEqual(['http://standardterms.edqm.eu|20053000', 'urn:oid:1.3.182.5.31|38']);
    expect(ms[1]!.dosage![0]!.route!.coding!.map((c) => `${c.system}|${c.code}`)).toEqual(['urn:oid:1.3.182.5.31|27']);
  });
});

function kid0(el: Element, name: string): Element | undefined {
  return kids(el, name)[0];
}

describe('FHIR -> CDA -> FHIR (example)', () => {
  it('keeps the coded clinical content', () => {
    const back = cdaToBundle(bundleToCda(example), { lang: 'fr' });
    const codes = (b: Bundle, type: string, get: (r: never) => { coding?: { system?: string; code?: string }[] } | undefined) =>
      (b.entry ?? []).filter((e) => e.resource?.resourceType === type).flatMap((e) => get(e.resource as never)?.coding ?? []).map((c) => `${c.code}`).sort();
    expect(codes(back, 'Condition', (c: Condition) => c.code)).toEqual(expect.arrayContaining(['44054006', 'E11.9', '38341003', 'I10']));
    expect(codes(back, 'AllergyIntolerance', (a: AllergyIntolerance) => a.code)).toContain('764146007');
    expect((back.entry![0]!.resource as Composition).section!.length).toBeGreaterThanOrEqual(8);
    const ms = back.entry!.filter((e) => e.resource?.resourceType === 'MedicationStatement').map((e) => e.resource as MedicationStatement);
    expect(ms.length).toBe(2);
    expect(ms[0]!.effectivePeriod?.start).toBe('2019-05-02');
  });
});

/**
 * Round trips whose source lacks a datum the eHDSI 8.0.0 rules make mandatory and non-null: no valid CDA form can
 * carry its absence (the rule excludes every nullFlavor, TS and ENXP have no translation or originalText), and the
 * writer invents no birth date or given name. Each names the one rule the output still breaks, why, and a check
 * that the source has the defect; every other error fails the test. Fixed since the first measurement (44 of 50):
 * units written with the wrong case (`ml` -> `mL`, the original kept as a PQR translation), a health status outside
 * eHDSIResolutionOutcome (nullFlavor OTH with the original in translation), translations repeated under two ICD-10
 * OIDs (RIM-002, written once), then (issue 7, 48 of 50) a dose unit outside eHDSIUnit (`mg/2.5.ml` in 2-5678-W1:
 * doseQuantity nullFlavor OTH with the quantity as written in a UCUM PQR translation) and a patient identifier
 * whose root is an RUID (`PRT00000009` in RTD_W4_known_absence: `<id nullFlavor="OTH" extension="..."/>`, the
 * value kept, the forbidden root not written; dtr1-1-ANY allows an extension under OTH, dtr1-2-II no root).
 */
const SOURCE_DEFECTS: Record<string, { rule: RegExp; why: string; inSource: (doc: Element) => boolean }> = {
  '9999001M_L3_pivot.xml': {
    rule: /^\(eHDSILegalAuthenticator\): element hl7:given\[not\(@nullFlavor\)\] is mandatory/,
    why: 'the legal authenticator is the Maltese ministry itself: its name has the ministry as family and <given nullFlavor="UNK"/>; eHDSILegalAuthenticator wants a given name with no nullFlavor, and an empty <given/> would be an empty ST, not a name',
    inSource: (doc) => !all(xpath(doc, 'legalAuthenticator', 'assignedEntity', 'assignedPerson')!, 'given').some((g) => !attr(g, 'nullFlavor') && g.textContent?.trim()),
  },
  'test_cda_PS_SEH_of_AMBU_MIN_fixedDates-pivot.xml': {
    rule: /^\(eHDSIRecordTarget\): element hl7:birthTime\[not\(@nullFlavor\)\] is mandatory/,
    why: 'the patient has no birth date in the source; eHDSIRecordTarget wants a birthTime with no nullFlavor, and a TS without value and nullFlavor breaks dtr1-1-TS',
    inSource: (doc) => !attr(xpath(doc, 'recordTarget', 'patientRole', 'patient', 'birthTime'), 'value'),
  },
};

/**
 * Coded items of the 50 samples still lost by the round trip (docs/crossborder.md "Still lost"); measured 2026-11-22:
 * 43, then 28 with care team acts (3.48), guardians, language modes, medication authors (eHDSIAuthorPrescriber) and
 * allergy authors and informants carried, then 27 with device model codes, 26 with problem value qualifiers, 22 with
 * RTD_CCD_Martha's allergy-level severity (SEV, 371924009) and the interpretation codes S / N of both severities, 17
 * with the allergy values that repeat the agent (PT samples; the first value is an unbound CD in 8.0.0).
 */
const LOSS_PIN = 17;

describe.skipIf(!hasShared)('CDA -> FHIR -> CDA over the eHDSI samples', () => {
  const files = samples();
  const results = new Map<string, { bundle: Bundle; xml: string }>();
  beforeAll(() => {
    for (const f of files) {
      const bundle = cdaToBundle(readFileSync(f), { lang: 'fr' });
      results.set(f, { bundle, xml: bundleToCda(bundle) });
    }
  });

  it('converts every L3 sample into a document Bundle', () => {
    expect(files.length).toBeGreaterThan(40);
    for (const f of files) {
      const b = results.get(f)!.bundle;
      expect(b.type, f).toBe('document');
      expect(b.entry![0]!.resource!.resourceType).toBe('Composition');
      expect(b.entry!.some((e) => e.resource?.resourceType === 'Patient')).toBe(true);
    }
  });

  it('maps "no known" / "no information" entries to the IPS absent/unknown codes and back', () => {
    const f = files.find((x) => x.endsWith('2-5678-W8.xml'))!;
    const { bundle, xml } = results.get(f)!;
    const absent = bundle.entry!.flatMap((e) => JSON.stringify(e.resource).match(/no-known-[a-z]+/g) ?? []);
    expect(new Set(absent)).toEqual(new Set(['no-known-medications', 'no-known-allergies', 'no-known-procedures', 'no-known-problems', 'no-known-devices']));
    for (const c of ['no-known-medications', 'no-known-allergies', 'no-known-procedures', 'no-known-problems', 'no-known-devices']) expect(xml).toContain(`code="${c}"`);
  });

  /**
   * What the round trip does not carry, by design of the eHDSI 8.0.0 rules or of this module (docs/crossborder.md):
   * outcome-of-pregnancy and result organizers of older samples, vital signs other than blood pressure, codes of
   * absent/unknown entries of older waves, the header's confidentiality and participants' function codes, and
   * codes in entries whose 8.0.0 template forbids them. IHE instruction acts, packages, generic medicine classes,
   * comments and allergy-level severities are carried. The count treats the codes of one coded element (the CD
   * and its translations) as a set. The test pins the sample-wide loss so that a regression fails.
   */
  it('keeps codes, values, units and dates of the clinical entries (loss pinned per sample)', () => {
    let sourceCodes = 0;
    let lostCodes = 0;
    const report: string[] = [];
    for (const f of files) {
      const src = codedContent(readFileSync(f, 'utf8'));
      const out = codedContent(results.get(f)!.xml);
      const m = missing(src, out);
      for (const n of src.codes.values()) sourceCodes += n;
      const lost = m.codes.reduce((a, k) => a + Number(k.split(' x')[1]), 0);
      lostCodes += lost;
      if (lost || m.quantities.length || m.dates.length) report.push(`${f.slice(samplesDir.length + 1)}: ${JSON.stringify(m)}`);
    }
    // The full list is printed per sample; the assertion pins the measured figure (LOSS_PIN, issue 7; 196 of 2,559
    // before result organizers, pregnancy outcomes, absent/unknown entries of older waves, condition certainty,
    // allergy status and severity of CCD samples, reaction codes, medication comments, the IMMUNIZ code system and
    // the pharm namespace under another prefix were carried; 364 of 2,621 before instruction acts, packages,
    // generic classes, comments, severities of older waves and immunization sites, counted the old way).
    console.log(`round trip: ${lostCodes} of ${sourceCodes} coded items lost\n${report.join('\n')}`);
    expect(sourceCodes).toBeGreaterThan(2500);
    expect(lostCodes).toBeLessThanOrEqual(LOSS_PIN);
    // Samples written to the 8.0.0 rules lose nothing.
    for (const name of ['openncp-mock-W8/2-5678-W8.xml', 'openncp-mock-W1-W7/2-5678-W7.xml']) {
      const f = join(samplesDir, name);
      expect(missing(codedContent(readFileSync(f, 'utf8')), codedContent(results.get(f)!.xml))).toEqual({ codes: [], quantities: [], dates: [] });
    }
  });

  it.skipIf(!canValidate)('round-trip CDAs pass the official validator (batch)', () => {
    const pick = process.env.CROSSBORDER_FULL
      ? files
      : files.filter((f) => /2-1234-W8|2-5678-W8|LU_PS_L3|2-1234-W7\.xml|RTD_W2_known_absence|2-5678-W1\.xml|RTD_W4_known_absence|9999001M_L3_pivot|onlyAllergies-pivot|1972121434125-L3|RTD_CCD_Martha|PT_CDA_W3_898765392/.test(f));
    const dir = mkdtempSync(join(tmpdir(), 'xb-rt-'));
    const names = pick.map((f, i) => {
      const p = join(dir, `${String(i).padStart(3, '0')}-${f.split('/').pop()}`);
      writeFileSync(p, results.get(f)!.xml);
      return p;
    });
    const r = spawnSync(validator, ['--json', ...names], { encoding: 'utf8', timeout: 1_800_000 });
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; ok: boolean; xsdErrors: number; errors: { message: string; location?: string }[] });
    expect(lines.length).toBe(names.length);
    const failed: string[] = [];
    for (const l of lines) {
      expect(l.xsdErrors, l.file).toBe(0);
      const defect = Object.entries(SOURCE_DEFECTS).find(([name]) => l.file.endsWith(name))?.[1];
      // Errors a source defect explains are allowed, and only those: the defect is asserted on the source too.
      const unexplained = l.errors.filter((e) => !defect?.rule.test(e.message));
      if (unexplained.length) failed.push(`${l.file}: ${unexplained.map((e) => `${e.location}: ${e.message}`).join(' | ').slice(0, 800)}`);
    }
    expect(failed, failed.join('\n')).toEqual([]);
  }, 1_800_000);

  it('the source defects that explain the remaining validator errors are in the sources', () => {
    for (const [name, d] of Object.entries(SOURCE_DEFECTS)) {
      const f = files.find((x) => x.endsWith(name));
      expect(f, name).toBeDefined();
      expect(d.inSource(parseXml(readFileSync(f!, 'utf8'))), `${name}: ${d.why}`).toBe(true);
    }
  });
});

describe.skipIf(!hasShared)('documents that are not Patient Summary pivot CDAs', () => {
  /** The Dutch national sources next to the pivots are HL7 v3 batch messages (MCCI_IN200101), not CDA documents. */
  it('refuses the national HL7 v3 batch messages with 422, naming what they are', () => {
    const dir = join(samplesDir, 'nl-nictiz');
    const files = readdirSync(dir).filter((d) => d.startsWith('national-source')).flatMap((d) => readdirSync(join(dir, d)).map((f) => join(dir, d, f)));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      try {
        cdaToBundle(readFileSync(f));
        expect.unreachable(f);
      } catch (e) {
        expect(e, f).toBeInstanceOf(FhirError);
        expect((e as FhirError).status, f).toBe(422);
        expect((e as FhirError).message, f).toMatch(/<MCCI_IN200101> is an HL7 v3 batch message, not a CDA ClinicalDocument/);
      }
    }
  });
});

describe('raw application/xml bodies for $from-cda and $to-cda (HTTP)', () => {
  it('POST Bundle/$from-cda takes the CDA itself as application/xml; $to-cda answers the CDA text for Accept: application/xml', async () => {
    const { makeApp } = await import('./support/app.ts');
    const t = await makeApp();
    const cda = bundleToCda(example);
    const res = await t.http.post('/fhir/Bundle/$from-cda?lang=fr').set('content-type', 'application/xml').send(cda);
    expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
    const b = res.body as Bundle;
    expect(b.type).toBe('document');
    expect((b.entry![0]!.resource as Composition).type.coding![0]!.code).toBe('60591-5');
    const pat = b.entry!.find((e) => e.resource?.resourceType === 'Patient')!.resource as Patient;
    expect(pat.identifier!.some((i) => i.value === '1958031490443')).toBe(true);
    // $to-cda: the document itself, not a Binary, for Accept application/xml; FHIR types still get the Binary.
    const raw = await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').set('accept', 'application/xml').buffer(true).parse((r, cb) => {
      let d = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (d += c));
      r.on('end', () => cb(null, d));
    }).send(example);
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toMatch(/^application\/xml/);
    const text = raw.body as string;
    expect(text).toMatch(/^<\?xml/);
    const doc = parseXml(text);
    expect(doc.localName).toBe('ClinicalDocument');
    expect(kids(doc, 'templateId').map((x) => attr(x, 'root'))).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.1.3');
    const asFhirXml = await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').set('accept', 'application/fhir+xml').send(example);
    expect(asFhirXml.headers['content-type']).toMatch(/^application\/fhir\+xml/);
    expect(asFhirXml.text).toContain('<Binary xmlns="http://hl7.org/fhir">');
    const asJson = await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').send(example);
    expect((asJson.body as Binary).resourceType).toBe('Binary');
    // The raw answer round-trips through the raw body.
    const again = await t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/xml').send(text);
    expect(again.status).toBe(200);
    // A FHIR XML body (application/fhir+xml) is still a FHIR resource: a Binary holding the CDA.
    const binXml = `<Binary xmlns="http://hl7.org/fhir"><contentType value="application/xml"/><data value="${Buffer.from(cda).toString('base64')}"/></Binary>`;
    const viaFhirXml = await t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/fhir+xml').send(binXml);
    expect(viaFhirXml.status, viaFhirXml.text.slice(0, 300)).toBe(200);
  }, 120_000);

  it('refuses malformed XML (400, line and column), a DOCTYPE (400), a non-PS document (422) and an oversized body (413)', async () => {
    const { makeApp } = await import('./support/app.ts');
    const t = await makeApp();
    const post = (body: string) => t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/xml').send(body);
    const bad = await post('<ClinicalDocument xmlns="urn:hl7-org:v3">\n  <title>x</titel>\n</ClinicalDocument>');
    expect(bad.status).toBe(400);
    expect(bad.body.resourceType).toBe('OperationOutcome');
    expect(bad.body.issue[0].diagnostics).toMatch(/line 2, column \d+/);
    const dtd = await post('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>');
    expect(dtd.status).toBe(400);
    expect(dtd.body.issue[0].diagnostics).toMatch(/DOCTYPE.*line 2, column 1/);
    const deep = await post(`<ClinicalDocument xmlns="urn:hl7-org:v3">${'<a>'.repeat(300)}${'</a>'.repeat(300)}</ClinicalDocument>`);
    expect(deep.status).toBe(400);
    const other = await post('<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="57833-6" codeSystem="2.16.840.1.113883.6.1"/></ClinicalDocument>');
    expect(other.status).toBe(422);
    // A FHIR resource in XML posted as application/xml is not a CDA document.
    const fhir = await post('<Binary xmlns="http://hl7.org/fhir"><contentType value="application/xml"/></Binary>');
    expect(fhir.status).toBe(422);
    const empty = await t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/xml').send('');
    expect(empty.status).toBe(400);
    const small = await makeApp({ limits: { maxBodyBytes: 4096 } as never });
    const big = await small.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/xml').send(bundleToCda(example));
    expect(big.status).toBe(413);
    expect(big.body.resourceType).toBe('OperationOutcome');
    // Raw bodies are only for these operations: application/xml elsewhere is still FHIR XML.
    const elsewhere = await t.http.post('/fhir/Patient').set('content-type', 'application/xml').send('<ClinicalDocument xmlns="urn:hl7-org:v3"/>');
    expect(elsewhere.status).toBe(400);
  }, 120_000);
});

describe('interfaces', () => {
  it('translate --to cda / --to fhir (library entry of the CLI)', () => {
    const xml = translateText(JSON.stringify(example), { to: 'cda' });
    expect(xml).toMatch(/^<\?xml/);
    const json = JSON.parse(translateText(xml, { to: 'fhir', lang: 'fr' })) as Bundle;
    expect(json.type).toBe('document');
  });

  it('CLI runs on a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xb-cli-'));
    const out = join(dir, 'out.xml');
    execFileSync(join(root, 'node_modules/.bin/node'), [join(root, 'src/cli/main.ts'), 'translate', '--to', 'cda', join(root, 'examples/05-patient-summary-claire-wagner.json'), '-o', out], { stdio: 'pipe' });
    expect(readFileSync(out, 'utf8')).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.1.3');
  }, 60_000);

  it('Bundle/$to-cda and Bundle/$from-cda over HTTP', async () => {
    const { makeApp } = await import('./support/app.ts');
    const t = await makeApp();
    const res = await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').send(example);
    expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
    const bin = res.body as Binary;
    expect(bin.resourceType).toBe('Binary');
    expect(bin.contentType).toBe('application/xml');
    const xml = Buffer.from(bin.data!, 'base64').toString('utf8');
    expect(xml).toContain('ClinicalDocument');
    const back = await t.http.post('/fhir/Bundle/$from-cda?lang=fr').set('content-type', 'application/fhir+json').send(bin);
    expect(back.status, JSON.stringify(back.body).slice(0, 500)).toBe(200);
    expect((back.body as Bundle).type).toBe('document');
    const bad = await t.http.post('/fhir/Bundle/$from-cda').set('content-type', 'application/fhir+json').send({ resourceType: 'Binary', contentType: 'application/xml', data: Buffer.from('<!DOCTYPE x><x/>').toString('base64') });
    expect(bad.status).toBe(400);
    const cap = await t.http.get('/fhir/metadata');
    expect(JSON.stringify(cap.body)).toContain('to-cda');
  }, 120_000);
});

const LU_PS = 'http://dsp.lu/fhir/StructureDefinition/lu-patient-summary';
const errorsOf = (r: Resource, profile: string) => validateFull(r, { profiles: [profile] }).filter((i) => i.severity === 'error' || i.severity === 'fatal');

/**
 * Samples whose Bundle is right but whose remaining errors come from a validator defect (src/validation, not this
 * module), each with a check that the Bundle is otherwise clean. A fixed validator makes the allowance unused.
 */
/** Samples whose Bundle needs a closer look than "zero errors" (each still has to have zero errors). */
const SAMPLE_CHECKS: Record<string, { why: string; check: (b: Bundle) => void }> = {
  'test_cda_PS_SEH_of_AMBU_MIN_fixedDates-pivot.xml': {
    why: 'the source has no birthTime: the Patient carries _birthDate with data-absent-reason, which FHIR counts as present (the slice pre-check of src/validation/profile.ts honours it)',
    check: (b) => {
      const p = b.entry!.find((e) => e.resource?.resourceType === 'Patient')!.resource as Patient;
      expect(p.birthDate).toBeUndefined();
      expect(p._birthDate?.extension?.[0]?.valueCode).toBe('unknown');
      expect(errorsOf(p, 'http://dsp.lu/fhir/StructureDefinition/lu-patient').map((e) => e.diagnostics)).toEqual([]);
    },
  },
};

describe('LU PS profile validation of generated Bundles', () => {
  it('the example round trip validates against the LU PS profile with zero errors', () => {
    const b = cdaToBundle(bundleToCda(example), { lang: 'fr' });
    expect(errorsOf(b, LU_PS).map((e) => e.diagnostics.slice(0, 400))).toEqual([]);
  }, 120_000);

  /**
   * Issue 7: every Bundle generated from the 50 L3 pivot samples (all Patient Summary documents, LOINC 60591-5)
   * validates with zero errors. 29 of 50 did before the converter took these decisions (docs/crossborder.md):
   * non-OID code systems and RUID roots under https://dsp.lu/fhir/cda-uid/, allergy clinical status from the
   * concern, no Organization without name or identifier, no contact without details, no empty periods, a
   * section title from the section code, a missing birth date as data-absent-reason.
   */
  it.skipIf(!hasShared)('every Bundle generated from the samples validates against the LU PS profile with zero errors', () => {
    const files = samples();
    expect(files.length).toBe(50);
    const failed: string[] = [];
    for (const f of files) {
      const b = cdaToBundle(readFileSync(f), { lang: 'fr' });
      Object.entries(SAMPLE_CHECKS).find(([n]) => f.endsWith(n))?.[1].check(b);
      const errors = errorsOf(b, LU_PS);
      if (errors.length) failed.push(`${f.slice(samplesDir.length + 1)}: ${errors.map((e) => e.diagnostics.slice(0, 300)).join(' | ')}`);
    }
    expect(failed, failed.join('\n')).toEqual([]);
  }, 600_000);
});

describe.skipIf(!hasShared)('CDA -> FHIR decisions the LU PS profile needs (issue 7)', () => {
  const read = (name: string) => cdaToBundle(readFileSync(join(samplesDir, name)), { lang: 'fr' });
  const resources = (b: Bundle) => b.entry!.map((e) => e.resource!);

  it('a code system that is not an OID is kept under https://dsp.lu/fhir/cda-uid/ and written back as it came', () => {
    const name = 'dk-sds-examples/PT_CDA_W3_898765392_HipReplacement.xml';
    const b = read(name);
    const systems = new Set(JSON.stringify(b).match(/"system":"[^"]+"/g));
    expect(systems).toContain('"system":"https://dsp.lu/fhir/cda-uid/CNPEM"');
    expect([...systems].filter((s) => /urn:oid:(?![0-2](\.(0|[1-9][0-9]*))+")/.test(s))).toEqual([]);
    const back = parseXml(bundleToCda(b));
    const src = parseXml(readFileSync(join(samplesDir, name), 'utf8'));
    const cnpem = (d: Element) => [...all(d, 'code'), ...all(d, 'translation')].filter((c) => attr(c, 'codeSystem') === 'CNPEM').map((c) => attr(c, 'code')).sort();
    expect(cnpem(src).length).toBeGreaterThan(0);
    expect(cnpem(back)).toEqual(cnpem(src));
    // The RUID patient root of RTD_W4 becomes an identifier namespace of the same kind; a root may not be an RUID
    // (dtr1-10a-II), so the way back writes the identifier as nullFlavor OTH with its value.
    const rtd = read('dk-sds-examples/RTD_W4_known_absence.xml');
    const pat = resources(rtd).find((r) => r.resourceType === 'Patient') as Patient;
    expect(pat.identifier![0]!.system).toBe('https://dsp.lu/fhir/cda-uid/PRT00000009');
    const id = xpath(parseXml(bundleToCda(rtd)), 'recordTarget', 'patientRole', 'id')!;
    expect([attr(id, 'nullFlavor'), attr(id, 'extension'), attr(id, 'root')]).toEqual(['OTH', '2-5678-W4', undefined]);
  });

  it('an allergy entry without a status observation takes its clinical status from the concern act', () => {
    const b = read('nl-nictiz/converted-pivot-out-nec/gpk-nec-ni-pivot.xml');
    const a = resources(b).filter((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance');
    const noInfo = a.find((x) => x.code?.coding?.some((c) => c.code === 'no-allergy-info'))!;
    // The source concern: <statusCode code="active"/>, no allergy status observation.
    expect(noInfo.clinicalStatus?.coding?.[0]?.code).toBe('active');
    expect(noInfo.verificationStatus).toBeUndefined();
    for (const x of a) if (x.verificationStatus?.coding?.[0]?.code !== 'entered-in-error') expect(x.clinicalStatus, JSON.stringify(x.code)).toBeDefined();
  });

  it('an unknown organization (nullFlavor, or neither name nor id) is no Organization; a software author is named on the reference', () => {
    const b = read('nl-nictiz/converted-pivot-out-nec/onlyAllergies-pivot.xml');
    for (const o of resources(b).filter((r): r is Organization => r.resourceType === 'Organization')) expect(o.name ?? o.identifier, JSON.stringify(o)).toBeDefined();
    const comp = b.entry![0]!.resource as Composition;
    expect(comp.author).toEqual([{ display: 'AORTA Applicatie-id: 1' }]);
  });

  it('a participant with no name, telecom, address or organization is no Patient.contact (pat-1)', () => {
    const b = read('openncp-cda-display-tool/cda.xml');
    const p = resources(b).find((r) => r.resourceType === 'Patient') as Patient;
    expect(p.contact).toBeUndefined();
    const kept = resources(read('openncp-cda-display-tool/es_ps_pivot.xml')).find((r) => r.resourceType === 'Patient') as Patient;
    expect(kept.contact?.[0]?.name?.family).toBe('García Torres');
  });

  it('a section without a title is titled from its code; a period of nullFlavored bounds is no period', () => {
    const b = read('openncp-cda-display-tool/es_ps_pivot.xml');
    const sections = (b.entry![0]!.resource as Composition).section!;
    for (const s of sections) expect(s.title, JSON.stringify(s.code)).toBeTruthy();
    expect(sections.find((s) => s.code?.coding?.[0]?.code === '47519-4')!.title).toBe('Antécédents chirurgicaux et procédures');
    const c = read('nl-nictiz/converted-pivot-out-nec/20250619-123318-999990238-original-pivot.xml').entry![0]!.resource as Composition;
    for (const e of c.event ?? []) expect(Object.keys(e.period ?? { x: 1 }).length).toBeGreaterThan(0);
  });
});

describe('results other than the blood group (FHIR -> CDA -> FHIR)', () => {
  /** The example with a glucose result standing alone and a panel of two results in the results section. */
  function withResults(): Bundle {
    const b = structuredClone(example);
    const comp = b.entry![0]!.resource as Composition;
    const subject = comp.subject;
    const obs = (id: string, code: string, display: string, value: number, unit: string, extra: Partial<Observation> = {}): Observation => ({
      resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: 'http://loinc.org', code, display }] }, subject, effectiveDateTime: '2026-10-01', valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit }, ...extra,
    });
    const glucose = obs('5f0c7c2e-8d1a-4c55-9a3e-1f2b3c4d5e60', '2345-7', 'Glucose [Mass/volume] in Serum or Plasma', 1.3, 'g/L', {
      interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'H', display: 'High' }] }],
      referenceRange: [{ low: { value: 0.7, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' }, high: { value: 1.1, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' } }],
    });
    const na = obs('6a1d8d3f-9e2b-4d66-8b4f-2a3c4d5e6f70', '2951-2', 'Sodium [Moles/volume] in Serum or Plasma', 140, 'mmol/L');
    const k = obs('7b2e9e40-af3c-4e77-9c50-3b4d5e6f7a80', '2823-3', 'Potassium [Moles/volume] in Serum or Plasma', 4.1, 'mmol/L');
    const panel: Observation = { resourceType: 'Observation', id: '8c3fa051-b04d-4f88-8d61-4c5e6f7a8b90', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '24326-1', display: 'Electrolytes 1998 panel - Serum or Plasma' }] }, subject, effectiveDateTime: '2026-10-01', hasMember: [{ reference: `urn:uuid:${na.id}` }, { reference: `urn:uuid:${k.id}` }] };
    for (const r of [glucose, na, k, panel]) b.entry!.push({ fullUrl: `urn:uuid:${r.id}`, resource: r });
    let results = comp.section!.find((x) => x.code?.coding?.[0]?.code === '30954-2');
    if (!results) comp.section!.push((results = { title: 'Résultats', code: { coding: [{ system: 'http://loinc.org', code: '30954-2' }] }, text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Résultats</div>' } }));
    // The members are listed too (a common IPS layout): they are written once, inside the panel's organizer.
    results.entry = [...(results.entry ?? []), { reference: `urn:uuid:${glucose.id}` }, { reference: `urn:uuid:${panel.id}` }, { reference: `urn:uuid:${na.id}` }, { reference: `urn:uuid:${k.id}` }];
    delete results.emptyReason;
    return b;
  }

  it('writes eHDSI result organizers (a panel, and a result alone under an NI organizer) and reads them back as they were', () => {
    const xml = bundleToCda(withResults());
    const doc = parseXml(xml);
    const orgs = all(doc, 'organizer').filter((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.42'));
    // The panel keeps its code; a result standing alone (the glucose, and the example's own results) gets an NI organizer.
    const panel0 = orgs.find((o) => attr(kid0(o, 'code')!, 'code') === '24326-1')!;
    expect(kids(panel0, 'component').map((c) => attr(xpath(c, 'observation', 'code'), 'code')).sort()).toEqual(['2823-3', '2951-2']);
    const lone = orgs.find((o) => attr(xpath(o, 'component', 'observation', 'code'), 'code') === '2345-7')!;
    expect(attr(kid0(lone, 'code')!, 'nullFlavor')).toBe('NI');
    expect(kids(lone, 'component')).toHaveLength(1);
    const g = xpath(lone, 'component', 'observation')!;
    // One act, one id: the observation keeps the resource's id, the NI organizer around it has an id of its own.
    expect(attr(kid0(g, 'id')!, 'root')).toBe('5F0C7C2E-8D1A-4C55-9A3E-1F2B3C4D5E60');
    expect(attr(kid0(lone, 'id')!, 'root')).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
    expect(attr(kid0(lone, 'id')!, 'root')).not.toBe(attr(kid0(g, 'id')!, 'root'));
    // A member the section lists as well is written once, inside its panel: each id once, one narrative row each.
    const entryIds = all(doc, 'id').map((i) => attr(i, 'root'));
    for (const id of ['6A1D8D3F-9E2B-4D66-8B4F-2A3C4D5E6F70', '7B2E9E40-AF3C-4E77-9C50-3B4D5E6F7A80', '8C3FA051-B04D-4F88-8D61-4C5E6F7A8B90', '5F0C7C2E-8D1A-4C55-9A3E-1F2B3C4D5E60']) expect(entryIds.filter((x) => x === id), id).toHaveLength(1);
    const resultsText = xpath(all(doc, 'section').find((s) => attr(xpath(s, 'code'), 'code') === '30954-2')!, 'text')!;
    expect(all(resultsText, 'tr').filter((tr) => /Sodium/.test(tr.textContent ?? ''))).toHaveLength(1);
    expect(attr(kid0(g, 'interpretationCode')!, 'code')).toBe('H');
    const range = xpath(g, 'referenceRange', 'observationRange', 'value')!;
    expect([attr(kid0(range, 'low')!, 'value'), attr(kid0(range, 'high')!, 'value')]).toEqual(['0.7', '1.1']);
    const back = cdaToBundle(xml, { lang: 'fr' });
    const obs = back.entry!.map((e) => e.resource!).filter((r): r is Observation => r.resourceType === 'Observation');
    const results = (back.entry![0]!.resource as Composition).section!.find((x) => x.code?.coding?.[0]?.code === '30954-2')!;
    const listed = results.entry!.map((e) => obs.find((o) => `urn:uuid:${o.id}` === e.reference)!);
    const glucose = listed.find((o) => o.code.coding?.some((c) => c.code === '2345-7'))!;
    expect(glucose.hasMember).toBeUndefined();
    expect(glucose.valueQuantity).toMatchObject({ value: 1.3, code: 'g/L' });
    expect(glucose.referenceRange?.[0]).toMatchObject({ low: { value: 0.7 }, high: { value: 1.1 } });
    const panel = listed.find((o) => o.code.coding?.some((c) => c.code === '24326-1'))!;
    expect(panel.hasMember!.map((m) => obs.find((o) => `urn:uuid:${o.id}` === m.reference)!.code.coding![0]!.code).sort()).toEqual(['2823-3', '2951-2']);
    // One Observation per member on the way back.
    for (const code of ['2951-2', '2823-3']) expect(obs.filter((o) => o.code.coding?.some((c) => c.code === code)), code).toHaveLength(1);
    expect(errorsOf(back, LU_PS).map((e) => e.diagnostics.slice(0, 300))).toEqual([]);
  }, 120_000);
});

describe.skipIf(!hasShared)('lossless coded content: each carried item in its FHIR home and back (issue 7)', () => {
  const file = (name: string) => join(samplesDir, name);
  const read = (name: string) => cdaToBundle(readFileSync(file(name)), { lang: 'fr' });
  const resources = (b: Bundle) => b.entry!.map((e) => e.resource!);
  const codesOf = (cc: { coding?: { system?: string; code?: string }[] } | undefined) => (cc?.coding ?? []).map((c) => `${c.system}|${c.code}`);
  const tr = (e: Element | undefined) => kids(e, 'translation').map((t) => `${attr(t, 'code')}|${attr(t, 'codeSystem')}`);
  const withTemplate = (d: Element, root: string) => all(d, 'observation').concat(all(d, 'organizer')).filter((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === root));

  it('a result organizer is a panel Observation with hasMember; members keep interpretation, method, site, reference range and comment', () => {
    const b = read('openncp-mock-W8/2-1234-W8.xml');
    const obs = resources(b).filter((r): r is Observation => r.resourceType === 'Observation');
    const panel = obs.find((o) => codesOf(o.code).includes('http://loinc.org|18748-4'))!;
    expect(panel.hasMember).toHaveLength(1);
    const member = obs.find((o) => `urn:uuid:${o.id}` === panel.hasMember![0]!.reference)!;
    expect(codesOf(member.code)).toEqual(['urn:oid:1.2.3.999|LP6406-5']);
    expect(codesOf(member.interpretation?.[0])).toEqual(['http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation|N']);
    expect(codesOf(member.method)).toEqual(['urn:oid:1.2.3.999|...']);
    expect(codesOf(member.bodySite)).toEqual(['urn:oid:1.2.3.999|...']);
    expect(member.referenceRange?.[0]).toMatchObject({ low: { value: 1, code: '1' }, high: { value: 1, code: '1' } });
    expect(codesOf(member.referenceRange?.[0]?.type)).toEqual(['http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation|N']);
    expect(member.note?.[0]?.text).toBeTruthy();
    // The section lists the panel, not its members.
    const results = (b.entry![0]!.resource as Composition).section!.find((s) => s.code?.coding?.[0]?.code === '30954-2')!;
    expect(results.entry!.map((e) => e.reference)).toContain(`urn:uuid:${panel.id}`);
    expect(results.entry!.map((e) => e.reference)).not.toContain(`urn:uuid:${member.id}`);
    // Back to CDA: eHDSI result organizer (3.42) and result observation (3.43).
    const doc = parseXml(bundleToCda(b));
    const org = withTemplate(doc, '1.3.6.1.4.1.12559.11.10.1.3.1.3.42')[0]!;
    expect(attr(kid0(org, 'code')!, 'code')).toBe('18748-4');
    const o = withTemplate(org, '1.3.6.1.4.1.12559.11.10.1.3.1.3.43')[0]!;
    expect(attr(kid0(o, 'interpretationCode')!, 'code')).toBe('N');
    expect(attr(kid0(o, 'methodCode')!, 'code')).toBe('...');
    expect(attr(kid0(o, 'targetSiteCode')!, 'code')).toBe('...');
    const range = xpath(o, 'referenceRange', 'observationRange')!;
    expect([attr(kid0(range, 'value')!, 'value'), attr(kid0(range, 'value')!, 'unit')]).toEqual(['1', '1']);
    expect(attr(kid0(range, 'interpretationCode')!, 'code')).toBe('N');
    const comment = kids(o, 'entryRelationship').find((r) => attr(xpath(r, 'act', 'code'), 'code') === '48767-8')!;
    expect(attr(comment, 'typeCode')).toBe('COMP');
  });

  it('pregnancy outcomes and delivery dates are eHDSI 3.46 / 3.47 entries again', () => {
    const b = read('openncp-mock-W8/2-1234-W8.xml');
    const live = resources(b).find((r): r is Observation => r.resourceType === 'Observation' && codesOf((r as Observation).code).includes('http://snomed.info/sct|281050002'))!;
    expect(live.valueInteger).toBe(2);
    const doc = parseXml(bundleToCda(b));
    const outcomes = withTemplate(doc, '1.3.6.1.4.1.12559.11.10.1.3.1.3.46').map((o) => `${attr(kid0(o, 'code')!, 'code')}=${attr(kid0(o, 'value')!, 'value')}`);
    expect(outcomes.sort()).toEqual(['281050002=2', '57797005=1']);
    const deliveries = withTemplate(doc, '1.3.6.1.4.1.12559.11.10.1.3.1.3.47').map((o) => attr(kid0(o, 'value')!, 'value'));
    expect(deliveries.sort()).toEqual(['20200205', '20210908']);
  });

  it('older waves\' SNOMED CT absence codes become IPS absent/unknown codes, the SNOMED code kept as translation', () => {
    const b = read('dk-sds-examples/RTD_W2_no_information.xml');
    const ms = resources(b).find((r): r is MedicationStatement => r.resourceType === 'MedicationStatement')!;
    expect(codesOf(ms.medicationCodeableConcept)).toEqual(['http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips|no-medication-info', 'http://snomed.info/sct|182904002']);
    const code = xpath(all(parseXml(bundleToCda(b)), 'substanceAdministration')[0]!, 'code')!;
    expect(attr(code, 'code')).toBe('no-medication-info');
    expect(tr(code)).toEqual(['182904002|2.16.840.1.113883.6.96']);
    // A no-known-allergy statement: the observation's own type code (418038007, outside eHDSIAdverseEventType) and
    // the SNOMED value come back as translations of the eHDSI codes.
    const a = read('openncp-cda-display-tool/1972121434125-L3.xml');
    const allergy = resources(a).find((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance')!;
    expect(codesOf(allergy.code)[0]).toBe('http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips|no-known-allergies');
    const obs = all(parseXml(bundleToCda(a)), 'observation').find((o) => attr(kid0(o, 'value'), 'code') === 'no-known-allergies')!;
    expect(tr(kid0(obs, 'value'))).toEqual(['160244002|2.16.840.1.113883.6.96']);
    expect(attr(kid0(obs, 'code')!, 'code')).toBe('609328004');
    expect(tr(kid0(obs, 'code'))).toEqual(['418038007|2.16.840.1.113883.6.96']);
  });

  it('a dose unit outside eHDSIUnit is nullFlavor OTH with the quantity as written in a UCUM translation, and reads back', () => {
    const b = read('openncp-mock-W1-W7/2-5678-W1.xml');
    const doc = parseXml(bundleToCda(b));
    const dq = all(doc, 'doseQuantity').find((q) => kids(q, 'translation').some((t) => attr(t, 'code') === 'mg/2.5.ml'))!;
    expect(attr(dq, 'nullFlavor')).toBe('OTH');
    expect([attr(dq, 'value'), attr(dq, 'unit')]).toEqual([undefined, undefined]);
    const back = cdaToBundle(bundleToCda(b), { lang: 'fr' });
    const doses = resources(back).filter((r): r is MedicationStatement => r.resourceType === 'MedicationStatement').map((m) => m.dosage?.[0]?.doseAndRate?.[0]?.doseQuantity);
    expect(doses.some((q) => q?.code === 'mg/2.5.ml' && q.value !== undefined)).toBe(true);
  });

  it('a rare-disease care team act (3.48) is a CareTeam for the Condition, written back as eHDSICareTeamAct', () => {
    const b = read('gazelle-wave8-by-country/LU/LU_PS_L3_CELESTINA_DOE-CALLA_W8.1.0.xml');
    const teams = resources(b).filter((r): r is CareTeam => r.resourceType === 'CareTeam');
    expect(teams).toHaveLength(2);
    const conditions = resources(b).filter((r): r is Condition => r.resourceType === 'Condition');
    for (const t of teams) {
      expect(codesOf(t.category?.[0])).toEqual(['http://loinc.org|85847-2']);
      const c = conditions.find((x) => `urn:uuid:${x.id}` === t.reasonReference?.[0]?.reference);
      expect(c, 'reasonReference names a Condition of the Bundle').toBeDefined();
      const member = resources(b).find((r) => `urn:uuid:${r.id}` === t.participant?.[0]?.member?.reference) as Practitioner;
      expect(member.name?.[0]?.text).toBe('Dr. Laurent Vandenhove');
    }
    const doc = parseXml(bundleToCda(b));
    const acts = all(doc, 'act').filter((a) => kids(a, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.48'));
    expect(acts).toHaveLength(2);
    for (const a of acts) {
      expect([attr(a, 'classCode'), attr(kid0(a, 'code')!, 'code'), attr(kid0(a, 'code')!, 'codeSystem')]).toEqual(['PCPR', '85847-2', '2.16.840.1.113883.6.1']);
      // Under the problem observation (eHDSIProblem: REFR, not inverted), with its performer.
      expect([attr(a.parentNode as Element, 'typeCode'), attr(a.parentNode as Element, 'inversionInd')]).toEqual(['REFR', 'false']);
      expect(kids((a.parentNode as Element).parentNode as Element, 'templateId').map((t) => attr(t, 'root'))).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.3.7');
      expect(xpath(a, 'performer', 'assignedEntity', 'assignedPerson', 'name')?.textContent).toBe('Dr. Laurent Vandenhove');
    }
  });

  it('a device model (manufacturerModelName, SC) is Device.deviceName model-name with its code kept, and is written back', () => {
    const b = read('gazelle-wave8-by-country/LU/LU_PS_L3_CELESTINA_DOE-CALLA_W8.1.0.xml');
    const dev = resources(b).find((r): r is Device => r.resourceType === 'Device' && !!(r as Device).deviceName)!;
    expect(dev.deviceName).toEqual([{ name: 'GENOU ADAPTATEUR LEGION Implant Chrome-Cobalt décalé +2mm B/1 stér', type: 'model-name' }]);
    expect(JSON.stringify(dev.extension)).toContain('"system":"urn:oid:1.3.182.5.34","code":"71231130"');
    const model = all(parseXml(bundleToCda(b)), 'manufacturerModelName')[0]!;
    expect([attr(model, 'code'), attr(model, 'codeSystem'), model.textContent]).toEqual(['71231130', '1.3.182.5.34', 'GENOU ADAPTATEUR LEGION Implant Chrome-Cobalt décalé +2mm B/1 stér']);
    expect((model.parentNode as Element).localName).toBe('playingDevice');
  });

  it('a qualifier of a problem value (a stage) is kept in cda-code valueQualifier and written back inside the value', () => {
    const b = read('openncp-cda-display-tool/RTD_CCD_Martha_as_PS.xml');
    const c = resources(b).find((r): r is Condition => r.resourceType === 'Condition' && codesOf((r as Condition).code).some((k) => k.endsWith('|C50')))!;
    expect(JSON.stringify(c.extension)).toContain('"valueString":"valueQualifier"');
    expect(JSON.stringify(c.extension)).toContain('"code":"258219007"');
    const value = all(parseXml(bundleToCda(b)), 'value').find((v) => attr(v, 'code') === 'C50')!;
    const q = kid0(value, 'qualifier')!;
    expect([attr(kid0(q, 'value')!, 'code'), attr(kid0(q, 'value')!, 'codeSystem')]).toEqual(['258219007', '2.16.840.1.113883.19.6.96']);
    // CD order: originalText, qualifier, translation.
    expect(kids(value).map((k) => k.localName)).toEqual(['originalText', 'qualifier', 'translation']);
  });

  it('severity interpretation codes (S on the reaction\'s severity, N on the allergy-level one) are kept in cda-code and written back in their severity observations', () => {
    const b = read('openncp-cda-display-tool/RTD_CCD_Martha_as_PS.xml');
    const a = resources(b).find((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance' && codesOf((r as AllergyIntolerance).code).some((k) => k.endsWith('|314422')))!;
    const kept = (r: { extension?: { url: string; extension?: { url: string; valueString?: string; valueCodeableConcept?: { coding?: { system?: string; code?: string }[] } }[] }[] } | undefined, name: string) =>
      (r?.extension ?? []).filter((e) => e.extension?.some((x) => x.url === 'name' && x.valueString === name)).flatMap((e) => codesOf(e.extension!.find((x) => x.url === 'value')!.valueCodeableConcept));
    // The reaction's own severity (371924009 is outside mild / moderate / severe) and its interpretation S.
    expect(kept(a.reaction![0], 'severity')).toEqual(['http://snomed.info/sct|371924009']);
    expect(kept(a.reaction![0], 'severityInterpretation')).toEqual(['urn:oid:2.16.840.1.113883.1.11.78|S']);
    // The allergy-level (overall) severity, which R4 has no element for, and its interpretation N.
    expect(kept(a, 'severity')).toEqual(['http://snomed.info/sct|371924009']);
    expect(kept(a, 'severityInterpretation')).toEqual(['urn:oid:2.16.840.1.113883.1.11.78|N']);
    const doc = parseXml(bundleToCda(b));
    const allergyObs = all(doc, 'observation').find((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.17'))!;
    const sevOf = (o: Element) => kids(o, 'entryRelationship').map((r) => kid0(r, 'observation')).filter((x): x is Element => !!x && attr(kid0(x, 'code'), 'code') === 'SEV');
    const interp = (o: Element) => kids(o, 'interpretationCode').map((i) => `${attr(i, 'code')}|${attr(i, 'codeSystem')}`);
    const reaction = kids(allergyObs, 'entryRelationship').find((r) => attr(r, 'typeCode') === 'MFST')!;
    const reactionSev = sevOf(kid0(reaction, 'observation')!);
    expect(reactionSev).toHaveLength(1);
    expect(interp(reactionSev[0]!)).toEqual(['S|2.16.840.1.113883.1.11.78']);
    const overall = sevOf(allergyObs);
    expect(overall).toHaveLength(1);
    expect([attr(kid0(overall[0]!, 'value')!, 'code'), ...interp(overall[0]!)]).toEqual(['371924009', 'N|2.16.840.1.113883.1.11.78']);
    expect(kids(overall[0]!, 'templateId').map((t) => attr(t, 'root'))).toEqual(['1.3.6.1.4.1.19376.1.5.3.1.4.1', '2.16.840.1.113883.10.20.1.55']);
    // CDA element order: value, then interpretationCode.
    expect(kids(overall[0]!).map((k) => k.localName).slice(-2)).toEqual(['value', 'interpretationCode']);
    // Stable: a second trip reads the same places.
    const again = resources(cdaToBundle(bundleToCda(b), { lang: 'fr' })).find((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance' && codesOf((r as AllergyIntolerance).code).some((k) => k.endsWith('|314422')))!;
    expect([kept(again.reaction![0], 'severityInterpretation'), kept(again, 'severityInterpretation')]).toEqual([['urn:oid:2.16.840.1.113883.1.11.78|S'], ['urn:oid:2.16.840.1.113883.1.11.78|N']]);
    // No allergy-level severity is written where the source had none (the example).
    expect(all(parseXml(bundleToCda(example)), 'observation').filter((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.17')).flatMap(sevOf)).toEqual([]);
  });

  it('an allergy observation\'s value repeating the agent is kept in cda-code value and written back as the observation\'s first value (an unbound CD)', () => {
    const name = 'dk-sds-examples/PT_CDA_W3_898765392_HipReplacement.xml';
    const b = read(name);
    const a = resources(b).filter((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance');
    const values = a.map((x) => JSON.stringify(x.extension ?? []).includes('"valueString":"value"'));
    expect(values.filter(Boolean).length).toBeGreaterThanOrEqual(3);
    const doc = parseXml(bundleToCda(b));
    const obs = all(doc, 'observation').filter((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.17'));
    const written = obs.map((o) => kid0(o, 'value')).filter((v): v is Element => !!v).map((v) => `${attr(v, 'code')}|${attr(v, 'codeSystem')}|${attr(v, 'xsi:type')}`).sort();
    const src = all(parseXml(readFileSync(join(samplesDir, name), 'utf8')), 'observation').filter((o) => attr(kid0(o, 'code'), 'code') === '416098002' || attr(kid0(o, 'code'), 'code') === '414285001').map((o) => kid0(o, 'value')).filter((v): v is Element => !!v).map((v) => `${attr(v, 'code')}|${attr(v, 'codeSystem')}|CD`).sort();
    expect(src).toContain('N02BA01|2.16.840.1.113883.6.73|CD');
    expect(written).toEqual(src);
    // Each written value sits after effectiveTime, before the participant (CDA order), and equals the agent's code.
    for (const o of obs.filter((x) => kid0(x, 'value'))) {
      const names = kids(o).map((k) => k.localName);
      expect(names.indexOf('value')).toBe(names.indexOf('effectiveTime') + 1);
      const agent = xpath(o, 'participant', 'participantRole', 'playingEntity', 'code')!;
      expect([attr(agent, 'code'), ...tr(agent).map((t) => t.split('|')[0])]).toContain(attr(kid0(o, 'value')!, 'code'));
    }
    // No value is written where the source had none (the example).
    expect(all(parseXml(bundleToCda(example)), 'observation').filter((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.17')).map((o) => kid0(o, 'value'))).toEqual([undefined]);
  });

  it('a guardian is a Patient.contact (role class GUARD) and a guardian again; a language mode and an unknown gender code are kept', () => {
    const w1 = read('openncp-mock-W1-W7/2-5678-W1.xml');
    const p = resources(w1).find((r): r is Patient => r.resourceType === 'Patient')!;
    const g = p.contact!.find((c) => c.relationship?.some((r) => codesOf(r).includes('http://terminology.hl7.org/CodeSystem/v3-RoleClass|GUARD')))!;
    expect(g.name).toMatchObject({ family: 'Baptista', given: ['Joaquim'] });
    expect(codesOf(g.relationship![0])).toEqual(['http://terminology.hl7.org/CodeSystem/v3-RoleCode|GUARD']);
    const doc = parseXml(bundleToCda(w1));
    const patient = xpath(doc, 'recordTarget', 'patientRole', 'patient')!;
    const guardian = kid0(patient, 'guardian')!;
    expect(attr(guardian, 'classCode')).toBe('GUARD');
    // RoleCode GUARD is outside eHDSIPersonalRelationship: nullFlavor OTH, the code as translation.
    expect(attr(kid0(guardian, 'code')!, 'nullFlavor')).toBe('OTH');
    expect(tr(kid0(guardian, 'code'))).toEqual(['GUARD|2.16.840.1.113883.5.111']);
    expect(xpath(guardian, 'guardianPerson', 'name', 'family')?.textContent).toBe('Baptista');
    // The guardian is not a participant as well.
    expect(kids(doc, 'participant').some((x) => xpath(x, 'associatedEntity', 'associatedPerson', 'name', 'family')?.textContent === 'Baptista')).toBe(false);
    const mode = xpath(patient, 'languageCommunication', 'modeCode')!;
    expect([attr(mode, 'code'), attr(mode, 'codeSystem')]).toEqual(['NI', '2.16.840.1.113883.5.60']);
    // A code in eHDSIPersonalRelationship is the guardian's code itself (SIGOTHR).
    const sig = xpath(parseXml(bundleToCda(read('openncp-cda-display-tool/1972121434125-L3.xml'))), 'recordTarget', 'patientRole', 'patient', 'guardian', 'code')!;
    expect([attr(sig, 'code'), attr(sig, 'codeSystem')]).toEqual(['SIGOTHR', '2.16.840.1.113883.5.111']);
    // administrativeGenderCode MM (2-5678-W2): gender unknown, the code kept in FHIR (no 8.0.0 form: UNK in CDA).
    const w2 = resources(read('openncp-mock-W1-W7/2-5678-W2.xml')).find((r): r is Patient => r.resourceType === 'Patient')!;
    expect(w2.gender).toBe('unknown');
    expect(JSON.stringify(w2.extension)).toContain('"code":"MM"');
  });

  it('a medication author (eHDSIAuthorPrescriber) is the statement\'s informationSource PractitionerRole, written back with its function code and time', () => {
    const b = read('openncp-cda-display-tool/9999001M_L3_pivot.xml');
    const ms = resources(b).filter((r): r is MedicationStatement => r.resourceType === 'MedicationStatement');
    const withSource = ms.filter((m) => m.informationSource);
    expect(withSource).toHaveLength(3);
    const role = resources(b).find((r) => `urn:uuid:${r.id}` === withSource[0]!.informationSource!.reference) as PractitionerRole;
    expect(role.resourceType).toBe('PractitionerRole');
    expect(codesOf(role.code?.[0])).toEqual(['urn:oid:2.16.840.1.113883.2.9.6.2.7|221']);
    expect(withSource[0]!.dateAsserted).toBe('2018-02-12');
    const doc = parseXml(bundleToCda(b));
    const authors = all(doc, 'substanceAdministration').flatMap((sa) => kids(sa, 'author'));
    expect(authors).toHaveLength(3);
    for (const au of authors) {
      expect([attr(kid0(au, 'functionCode')!, 'code'), attr(kid0(au, 'functionCode')!, 'codeSystem'), attr(kid0(au, 'time')!, 'value')]).toEqual(['221', '2.16.840.1.113883.2.9.6.2.7', '20180212']);
      // The source's person has no name (family and given UNK): written as such, not invented.
      expect(kids(xpath(au, 'assignedAuthor', 'assignedPerson', 'name')!, 'family').map((f) => attr(f, 'nullFlavor'))).toEqual(['UNK']);
      expect(xpath(au, 'assignedAuthor', 'representedOrganization', 'name')?.textContent).toBe('Information Management Unit');
    }
    // The example's statements name a Practitioner (no role, no function code): no author is invented.
    expect(all(parseXml(bundleToCda(example)), 'substanceAdministration').flatMap((sa) => kids(sa, 'author'))).toEqual([]);
  });

  it('an allergy observation\'s author and informant are its recorder (role code in the qualification) and asserter (RelatedPerson) and come back', () => {
    const b = read('nl-nictiz/converted-pivot-out-nec/onlyAllergies-pivot.xml');
    const a = resources(b).find((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance' && !!(r as AllergyIntolerance).recorder)!;
    const recorder = resources(b).find((r) => `urn:uuid:${r.id}` === a.recorder!.reference) as Practitioner;
    expect(codesOf(recorder.qualification?.[0]?.code)).toEqual(['urn:oid:2.16.840.1.113883.2.4.15.111|01.000']);
    const asserter = resources(b).find((r) => `urn:uuid:${r.id}` === a.asserter!.reference) as RelatedPerson;
    expect(codesOf(asserter.relationship?.[0])).toEqual(['http://terminology.hl7.org/CodeSystem/v3-RoleCode|ONESELF']);
    const obs = all(parseXml(bundleToCda(b)), 'observation').find((o) => kids(o, 'author').length)!;
    expect(kids(obs, 'templateId').map((t) => attr(t, 'root'))).toContain('1.3.6.1.4.1.12559.11.10.1.3.1.3.17');
    expect(attr(xpath(obs, 'author', 'assignedAuthor', 'code'), 'code')).toBe('01.000');
    expect([attr(xpath(obs, 'informant', 'relatedEntity'), 'classCode'), attr(xpath(obs, 'informant', 'relatedEntity', 'code'), 'code')]).toEqual(['PAT', 'ONESELF']);
  });

  it('keeps the generic product of a pharm namespace under another prefix, the IMMUNIZ code system, a condition certainty', () => {
    const meds = resources(read('nl-nictiz/converted-pivot-out-nec/onlyMeds-pivot.xml')).filter((r): r is Medication => r.resourceType === 'Medication');
    expect(JSON.stringify(meds)).toContain('M01AE01');
    const im = parseXml(bundleToCda(read('openncp-cda-display-tool/epSOS_RTD_PS_EU_Pivot_CDA_Paolo.xml')));
    const act = all(im, 'substanceAdministration').map((s) => kid0(s, 'code')!).find((c) => attr(c, 'code') === 'IMMUNIZ')!;
    expect(tr(act)).toEqual(['IMMUNIZ|2.16.840.1.113883.5.4']);
    const conditions = resources(read('openncp-mock-W8/2-1234-W8.xml')).filter((r): r is Condition => r.resourceType === 'Condition');
    expect(conditions.some((c) => c.verificationStatus?.coding?.[0]?.code === 'confirmed')).toBe(true);
    // Translations nested in epsos: elements (older waves), and a device coded on the supply act too.
    const w1 = read('openncp-mock-W1-W7/2-5678-W1.xml');
    expect(JSON.stringify(resources(w1).filter((r) => r.resourceType === 'Medication'))).toContain('"code":"50086812"');
    const supply = all(parseXml(bundleToCda(w1)), 'supply').map((s) => kid0(s, 'code')).find((c) => c && (attr(c, 'code') === '72506001' || tr(c).includes('72506001|2.16.840.1.113883.6.96')));
    expect(supply).toBeDefined();
  });
});

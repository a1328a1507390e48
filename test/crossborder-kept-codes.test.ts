/**
 * Codes kept from a CDA source (cda-code extension) written back with the module's one CD attribute builder
 * (review 6, finding 4): the code system's version travels as codeSystemVersion, a coding without an OID is left
 * out, the others are translations. FHIR -> CDA over the project's own example; no ../shared needed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AllergyIntolerance, Bundle } from 'fhir/r4';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
import { EXT_CDA_CODE } from '../src/crossborder/from-cda.ts';
import { attr, kids, parseXml, type Element } from '../src/crossborder/cda/xml.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const example = JSON.parse(readFileSync(join(root, 'examples/05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;

const all = (el: Element, name: string, out: Element[] = []): Element[] => {
  for (const k of kids(el)) {
    if (k.localName === name) out.push(k);
    all(k, name, out);
  }
  return out;
};

describe('kept CDA codes (FHIR -> CDA)', () => {
  it("an allergy's kept value keeps the code system version, skips a coding without OID and translates the rest", () => {
    const b = structuredClone(example);
    const a = b.entry!.find((e) => e.resource?.resourceType === 'AllergyIntolerance')!.resource as AllergyIntolerance;
    const coding = [
      { system: 'urn:example:no-oid', code: 'X1', display: 'local' },
      { system: 'http://snomed.info/sct', version: 'http://snomed.info/sct/11000172109/version/20250515', code: '91936005', display: 'Allergy to penicillin' },
      { system: 'http://www.whocc.no/atc', code: 'J01CA04', display: 'amoxicillin' },
    ];
    a.extension = [...(a.extension ?? []), { url: EXT_CDA_CODE, extension: [{ url: 'name', valueString: 'value' }, { url: 'value', valueCodeableConcept: { coding } }] }];
    const doc = parseXml(bundleToCda(b));
    const value = all(doc, 'value').find((v) => attr(v, 'code') === '91936005')!;
    expect(value).toBeDefined();
    expect(attr(value, 'codeSystem')).toBe('2.16.840.1.113883.6.96');
    expect(attr(value, 'codeSystemVersion')).toBe('http://snomed.info/sct/11000172109/version/20250515');
    expect(attr(value, 'displayName')).toBe('Allergy to penicillin');
    expect(kids(value, 'translation').map((t) => `${attr(t, 'code')}|${attr(t, 'codeSystem')}`)).toEqual(['J01CA04|2.16.840.1.113883.6.73']);
  });
});

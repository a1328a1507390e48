/**
 * A past-illness entry coded with a SNOMED CT code that older waves used for "no current problems" (160245001) is a
 * condition of the history, not an absent-problem statement: only the problem list reads those codes as the IPS
 * absent/unknown code (review finding 8). Minimal CDA written here; no ../shared needed.
 */
import { describe, expect, it } from 'vitest';
import type { Composition, Condition } from 'fhir/r4';
import { cdaToBundle } from '../src/crossborder/from-cda.ts';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
import { attr, kids, parseXml, type Element } from '../src/crossborder/cda/xml.ts';

const problemAct = (value: string) => `
  <entry><act classCode="ACT" moodCode="EVN"><templateId root="1.3.6.1.4.1.12559.11.10.1.3.1.3.15"/><id root="2B1E3C4D-1111-4222-8333-944455566677"/>
    <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/><statusCode code="completed"/><effectiveTime><low value="20100101"/></effectiveTime>
    <entryRelationship typeCode="SUBJ" inversionInd="false"><observation classCode="OBS" moodCode="EVN"><templateId root="1.3.6.1.4.1.12559.11.10.1.3.1.3.7"/>
      <id root="3C2F4D5E-2222-4333-8444-A55566677788"/><code code="404684003" codeSystem="2.16.840.1.113883.6.96" displayName="Clinical finding"/>
      <statusCode code="completed"/><effectiveTime><low value="20100101"/></effectiveTime>
      ${value}
    </observation></entryRelationship></act></entry>`;

function cda(section: string, entry: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/><templateId root="1.3.6.1.4.1.12559.11.10.1.3.1.1.3"/>
  <id root="1C2D3E4F-0000-4111-8222-333344445555"/><code code="60591-5" codeSystem="2.16.840.1.113883.6.1"/>
  <title>PS</title><effectiveTime value="20261001120000+0200"/><confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/><languageCode code="en-GB"/>
  <recordTarget><patientRole><id root="1.3.182.4.4" extension="1958031490443"/><patient><name><given>Claire</given><family>Wagner</family></name>
    <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19580314"/></patient></patientRole></recordTarget>
  <component><structuredBody><component><section><code code="${section}" codeSystem="2.16.840.1.113883.6.1"/><title>S</title><text>x</text>${entry}</section></component></structuredBody></component>
</ClinicalDocument>`;
}

const noCurrentProblems = '<value xsi:type="CD" code="160245001" codeSystem="2.16.840.1.113883.6.96" displayName="No current problems or disability"/>';
const conditions = (xml: string) => cdaToBundle(xml, { lang: 'en' }).entry!.map((e) => e.resource!).filter((r): r is Condition => r.resourceType === 'Condition');
const all = (el: Element, name: string, out: Element[] = []): Element[] => {
  for (const k of kids(el)) {
    if (k.localName === name) out.push(k);
    all(k, name, out);
  }
  return out;
};

describe('SNOMED CT 160245001 in the problem list and in the past-illness section', () => {
  it('the problem list reads it as the IPS no-known-problems statement (older waves)', () => {
    const [c] = conditions(cda('11450-4', problemAct(noCurrentProblems)));
    expect(c!.code!.coding!.map((k) => k.code)).toEqual(['no-known-problems', '160245001']);
  });

  it('a past-illness entry keeps it as the condition it records, and writes it back as a past-illness problem entry', () => {
    const xml = cda('11348-0', problemAct(noCurrentProblems));
    const b = cdaToBundle(xml, { lang: 'en' });
    const cs = conditions(xml);
    expect(cs).toHaveLength(1);
    expect(cs[0]!.code!.coding!.map((k) => `${k.system}|${k.code}`)).toEqual(['http://snomed.info/sct|160245001']);
    const past = (b.entry![0]!.resource as Composition).section!.find((s) => s.code?.coding?.[0]?.code === '11348-0')!;
    expect(past.entry).toHaveLength(1);
    const back = parseXml(bundleToCda(b));
    const section = all(back, 'section').find((s) => attr(kids(s, 'code')[0], 'code') === '11348-0')!;
    // The problem value is bound to eHDSIIllnessandDisorders (ICD-10): the SNOMED CT code travels in the CD
    // (nullFlavor OTH) as translation.
    const values = all(section, 'value').flatMap((v) => [v, ...kids(v, 'translation')]).map((v) => `${attr(v, 'code')}|${attr(v, 'codeSystem')}`);
    expect(values).toContain('160245001|2.16.840.1.113883.6.96');
    expect(values.filter((v) => v.startsWith('no-known'))).toEqual([]);
  });
});

/**
 * eHDSI care team acts (3.48) written for a Condition's CareTeams (review 6, finding 1): the act's code is the
 * template's fixed LOINC 85847-2 with the team's category codings as translations, whatever order the category
 * lists them in; a team naming the same Condition twice is one act; a team entered in error is not written.
 * FHIR -> CDA over the project's own example; no ../shared needed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Bundle, CareTeam } from 'fhir/r4';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
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
const careTeamActs = (xml: string) => all(parseXml(xml), 'act').filter((a) => kids(a, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.48'));

function withTeam(team: Partial<CareTeam>, twice = false): Bundle {
  const b = structuredClone(example);
  const cond = b.entry!.find((e) => e.resource?.resourceType === 'Condition')!;
  const pract = b.entry!.find((e) => e.resource?.resourceType === 'Practitioner')!;
  const reasons = twice ? [{ reference: cond.fullUrl }, { reference: cond.fullUrl }] : [{ reference: cond.fullUrl }];
  b.entry!.push({
    fullUrl: 'urn:uuid:11111111-2222-4333-8444-555555555555',
    resource: { resourceType: 'CareTeam', status: 'active', participant: [{ member: { reference: pract.fullUrl } }], reasonReference: reasons, ...team } as CareTeam,
  });
  return b;
}

const category = [{ coding: [{ system: 'http://snomed.info/sct', code: '719285000', display: 'Rare disease care team' }, { system: 'http://loinc.org', code: '85847-2' }] }];

describe('eHDSI care team acts (FHIR -> CDA)', () => {
  it('writes code 85847-2 with the category codings as translations, whatever their order', () => {
    const [act, ...more] = careTeamActs(bundleToCda(withTeam({ category })));
    expect(more).toEqual([]);
    const code = kids(act!, 'code')[0]!;
    expect(`${attr(code, 'code')}|${attr(code, 'codeSystem')}`).toBe('85847-2|2.16.840.1.113883.6.1');
    // The LOINC coding is the code itself, not a translation of it; the SNOMED CT one travels as translation.
    expect(kids(code, 'translation').map((t) => `${attr(t, 'code')}|${attr(t, 'codeSystem')}`)).toEqual(['719285000|2.16.840.1.113883.6.96']);
  });

  it('writes the fixed code alone when the team has no category', () => {
    const [act] = careTeamActs(bundleToCda(withTeam({})));
    const code = kids(act!, 'code')[0]!;
    expect(attr(code, 'code')).toBe('85847-2');
    expect(kids(code, 'translation')).toEqual([]);
  });

  it('writes one act when the reasonReference names the same Condition twice', () => {
    expect(careTeamActs(bundleToCda(withTeam({ category }, true)))).toHaveLength(1);
  });

  it('does not write a team entered in error', () => {
    expect(careTeamActs(bundleToCda(withTeam({ category, status: 'entered-in-error' }, true)))).toEqual([]);
    expect(careTeamActs(bundleToCda(withTeam({ category, status: 'inactive' })))).toHaveLength(1);
  });
});

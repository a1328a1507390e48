/**
 * The author of an allergy observation from AllergyIntolerance.recorder (review 6, finding 8): a PractitionerRole's
 * organization is the author's representedOrganization, written as every other represented organization (id,
 * name, telecom, address). FHIR -> CDA over the project's own example; no ../shared needed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AllergyIntolerance, Bundle, Organization, Practitioner } from 'fhir/r4';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
import { attr, kids, parseXml, textOf, type Element } from '../src/crossborder/cda/xml.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const example = JSON.parse(readFileSync(join(root, 'examples/05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;

const all = (el: Element, name: string, out: Element[] = []): Element[] => {
  for (const k of kids(el)) {
    if (k.localName === name) out.push(k);
    all(k, name, out);
  }
  return out;
};

describe('allergy recorder (FHIR -> CDA)', () => {
  it("a PractitionerRole recorder's organization is the author's representedOrganization", () => {
    const b = structuredClone(example);
    const pract = b.entry!.find((e) => e.resource?.resourceType === 'Practitioner')!;
    const org: Organization = { resourceType: 'Organization', id: 'b0b0b0b0-1111-4222-8333-444455556666', name: 'Laboratoire Test Esch', telecom: [{ system: 'phone', value: '+352 11 22 33' }], address: [{ city: 'Esch-sur-Alzette', country: 'LU' }] };
    const roleUrl = 'urn:uuid:c0c0c0c0-1111-4222-8333-444455556666';
    b.entry!.push({ fullUrl: `urn:uuid:${org.id}`, resource: org }, { fullUrl: roleUrl, resource: { resourceType: 'PractitionerRole', practitioner: { reference: pract.fullUrl }, organization: { reference: `urn:uuid:${org.id}` } } });
    const a = b.entry!.find((e) => e.resource?.resourceType === 'AllergyIntolerance')!.resource as AllergyIntolerance;
    a.recorder = { reference: roleUrl };
    a.recordedDate = '2026-09-01';
    const doc = parseXml(bundleToCda(b));
    const allergyObs = all(doc, 'observation').find((o) => kids(o, 'templateId').some((t) => attr(t, 'root') === '1.3.6.1.4.1.12559.11.10.1.3.1.3.17'))!;
    expect(allergyObs).toBeDefined();
    const author = kids(allergyObs, 'author')[0]!;
    const assignedAuthor = kids(author, 'assignedAuthor')[0]!;
    expect(textOf(kids(kids(kids(assignedAuthor, 'assignedPerson')[0]!, 'name')[0]!, 'family')[0])).toBe(((pract.resource as Practitioner).name![0]!.family));
    const ro = kids(assignedAuthor, 'representedOrganization')[0]!;
    expect(ro).toBeDefined();
    expect(textOf(kids(ro, 'name')[0])).toBe('Laboratoire Test Esch');
    expect(attr(kids(ro, 'telecom')[0], 'value')).toBe('tel:+352112233');
    expect(textOf(kids(kids(ro, 'addr')[0]!, 'city')[0])).toBe('Esch-sur-Alzette');
  });
});

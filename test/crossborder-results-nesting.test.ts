/**
 * Result panels nested in panels, and a hasMember cycle (review 6, finding 2): the pivot has one organizer level,
 * so every result under a panel the section lists is written once, in the outermost panel's organizer, with its
 * narrative row. FHIR -> CDA -> FHIR over the project's own example; no ../shared needed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Bundle, Composition, Observation } from 'fhir/r4';
import { bundleToCda } from '../src/crossborder/to-cda.ts';
import { cdaToBundle } from '../src/crossborder/from-cda.ts';
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

const ids = { leaf: 'a1111111-1111-4111-8111-111111111111', inner: 'a2222222-2222-4222-8222-222222222222', outer: 'a3333333-3333-4333-8333-333333333333', cyA: 'a4444444-4444-4444-8444-444444444444', cyB: 'a5555555-5555-4555-8555-555555555555', leaf2: 'a6666666-6666-4666-8666-666666666666' };

function withPanels(order: (keyof typeof ids)[]): Bundle {
  const b = structuredClone(example);
  const comp = b.entry![0]!.resource as Composition;
  const o = (id: string, code: string, extra: Partial<Observation> = {}): Observation => ({ resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] }, subject: comp.subject, effectiveDateTime: '2026-10-01', ...extra });
  const q = (value: number, unit: string) => ({ valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit } });
  const ref = (id: string) => ({ reference: `urn:uuid:${id}` });
  const rs: Record<keyof typeof ids, Observation> = {
    leaf: o(ids.leaf, '2951-2', q(140, 'mmol/L')),
    leaf2: o(ids.leaf2, '2823-3', q(4.1, 'mmol/L')),
    inner: o(ids.inner, '24326-1', { hasMember: [ref(ids.leaf), ref(ids.leaf2)] }),
    outer: o(ids.outer, '24323-8', { hasMember: [ref(ids.inner)] }),
    cyA: o(ids.cyA, '2345-7', { ...q(1.3, 'g/L'), hasMember: [ref(ids.cyB)] }),
    cyB: o(ids.cyB, '2075-0', { ...q(101, 'mmol/L'), hasMember: [ref(ids.cyA)] }),
  };
  for (const r of Object.values(rs)) b.entry!.push({ fullUrl: `urn:uuid:${r.id}`, resource: r });
  let section = comp.section!.find((s) => s.code?.coding?.[0]?.code === '30954-2');
  if (!section) comp.section!.push((section = { title: 'Results', code: { coding: [{ system: 'http://loinc.org', code: '30954-2' }] }, text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Results</div>' } }));
  delete section.emptyReason;
  section.entry = [...(section.entry ?? []), ...order.map((k) => ref(ids[k]))];
  return b;
}

function check(order: (keyof typeof ids)[]) {
  const xml = bundleToCda(withPanels(order));
  const doc = parseXml(xml);
  const section = all(doc, 'section').find((s) => attr(kids(s, 'code')[0], 'code') === '30954-2')!;
  const narrativeIds = new Set<string>();
  const walkIds = (e: Element) => {
    const id = attr(e, 'ID');
    if (id) narrativeIds.add(id);
    for (const k of kids(e)) walkIds(k);
  };
  walkIds(kids(section, 'text')[0]!);
  const observations = all(section, 'observation');
  for (const leaf of ['leaf', 'leaf2', 'cyA', 'cyB'] as const) {
    const id = ids[leaf].toUpperCase();
    // Each result once in the whole document, as an observation of the results section ...
    expect(xml.split(id).length - 1, leaf).toBe(1);
    const obs = observations.filter((x) => kids(x, 'id').some((i) => attr(i, 'root') === id));
    expect(obs, leaf).toHaveLength(1);
    // ... whose text points at a row of the section narrative.
    const ref = attr(kids(kids(obs[0]!, 'text')[0]!, 'reference')[0], 'value')!;
    expect(narrativeIds.has(ref.slice(1)), `${leaf} row ${ref}`).toBe(true);
  }
  // The leaves of the nested panels are components of the outer panel's organizer.
  const outer = all(section, 'organizer').find((g) => attr(kids(g, 'code')[0], 'code') === '24323-8')!;
  expect(kids(outer, 'component').map((c) => attr(kids(kids(c, 'observation')[0]!, 'code')[0], 'code')).sort()).toEqual(['2823-3', '2951-2']);
  const back = JSON.stringify(cdaToBundle(xml, { lang: 'en' }));
  for (const v of ['"value":140', '"value":4.1', '"value":1.3', '"value":101']) expect(back).toContain(v);
}

describe('nested result panels and a hasMember cycle (FHIR -> CDA)', () => {
  it('writes every result of outer -> inner -> leaf and of a cycle once, with its narrative row (outer listed first)', () => check(['outer', 'inner', 'leaf', 'leaf2', 'cyA', 'cyB']));
  it('the same when the section lists the inner panel and the leaves before the outer panel', () => check(['leaf', 'inner', 'leaf2', 'cyB', 'outer', 'cyA']));
});

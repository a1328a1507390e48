/**
 * Union parameters in the indexer (src/search/indexer.ts, unionOf): a parameter whose expression is, term by term,
 * other parameters' expressions (Observation's combo-*) takes their values under its own code instead of
 * evaluating and converting the same nodes again. extractIndex gives exactly (same values, same order, same keys
 * in the same order) what it gives with every parameter evaluated on its own (`unions: false`): on hand-made
 * Observations that reach every branch (several codings, components with and without values, CodeableConcept
 * and Quantity values, data-absent reasons, repeats that dedupe removes) and on real Synthea data when
 * ../shared/data/synthea is there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, Observation, Resource } from 'fhir/r4';
import { describe, expect, it } from 'vitest';
import { extractIndex } from '../src/search/indexer.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SYNTHEA = join(ROOT, '..', 'shared', 'data', 'synthea');
const HAVE_DATA = existsSync(SYNTHEA);
if (!HAVE_DATA) console.warn(`search-index-union: ${SYNTHEA} is absent (a fresh clone): only the hand-made resources are compared`);

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const cc = (...codes: string[]) => ({ coding: codes.map((code) => ({ system: LOINC, code, display: `Display ${code}` })), text: `Display ${codes[0]}` });

const handMade: Observation[] = [
  {
    resourceType: 'Observation',
    id: 'bp',
    status: 'final',
    code: cc('85354-9', '55284-4'),
    subject: { reference: 'Patient/p1' },
    valueQuantity: { value: 120, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' },
    component: [
      { code: cc('8480-6'), valueQuantity: { value: 120, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      { code: cc('8462-4'), valueQuantity: { value: 80, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      // The same coding and value as the first component: dedupe removes the repeat from the combo values.
      { code: cc('8480-6'), valueQuantity: { value: 120, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      { code: cc('8867-4'), dataAbsentReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }] } },
      { code: cc('72166-2'), valueCodeableConcept: cc('LA18978-9', 'LA18979-7') },
      { code: { text: 'text only' }, valueQuantity: { value: 37.2, system: UCUM, code: 'Cel' } },
    ],
  },
  {
    resourceType: 'Observation',
    id: 'concept',
    status: 'final',
    code: cc('72166-2'),
    valueCodeableConcept: cc('LA18978-9'),
    component: [{ code: cc('72166-2'), valueCodeableConcept: cc('LA18978-9') }],
  },
  { resourceType: 'Observation', id: 'absent', status: 'final', code: cc('8302-2'), dataAbsentReason: { text: 'not asked' } },
  { resourceType: 'Observation', id: 'bare', status: 'final', code: { text: 'nothing else' } },
  { resourceType: 'Observation', id: 'range', status: 'final', code: cc('8302-2'), valueRange: { low: { value: 1, system: UCUM, code: 'cm' } }, component: [{ code: cc('8302-2') }] },
];

const same = (r: Resource) => {
  const derived = extractIndex(r);
  const direct = extractIndex(r, { unions: false });
  expect(JSON.stringify(derived), `${r.resourceType}/${r.id}`).toBe(JSON.stringify(direct));
  expect(derived, `${r.resourceType}/${r.id}`).toStrictEqual(direct);
  return derived;
};

describe('union parameters take the values of the parameters they unite', () => {
  it('gives the values every parameter gives on its own (hand-made Observations)', () => {
    for (const r of handMade) same(r);
    const bp = same(handMade[0]!);
    const codes = (param: string) => bp.filter((v) => v.param === param).map((v) => (v.type === 'token' ? v.code : v.type));
    // Code and component codes, the repeated component coding once, the text-only code as a text value.
    expect(codes('combo-code')).toEqual(['85354-9', '55284-4', '8480-6', '8462-4', '8867-4', '72166-2', undefined]);
    expect(bp.filter((v) => v.param === 'combo-value-quantity').map((v) => (v.type === 'quantity' ? v.value : undefined))).toEqual([120, 80, 37.2]);
    const composites = bp.filter((v) => v.param === 'combo-code-value-quantity');
    expect(composites.length).toBeGreaterThanOrEqual(4);
    for (const c of composites) if (c.type === 'composite') expect(c.components.map((x) => x.param)).toEqual(['combo-code', 'combo-value-quantity']);
    expect(bp.some((v) => v.param === 'combo-data-absent-reason')).toBe(true);
    expect(bp.some((v) => v.param === 'combo-code-value-concept')).toBe(true);
  });

  it.skipIf(!HAVE_DATA)('gives the same values on Synthea Bundles', () => {
    const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json.bz2')).sort().slice(0, 6);
    let observations = 0;
    for (const f of files) {
      const bundle = JSON.parse(execFileSync('bzip2', ['-dc', join(SYNTHEA, f)], { maxBuffer: 1 << 30 }).toString('utf8')) as Bundle;
      for (const e of bundle.entry ?? []) {
        if (!e.resource) continue;
        same(e.resource);
        if (e.resource.resourceType === 'Observation') observations++;
      }
    }
    expect(observations).toBeGreaterThan(500);
  }, 120_000);
});

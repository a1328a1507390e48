// POST Bundle/$to-cda with a posted Bundle whose entries are malformed: refused with the structure issues
// (assertValidResource), not a 500 from inside the converter.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Bundle, OperationOutcome, Resource } from 'fhir/r4';
import { makeApp } from './support/app.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const example = JSON.parse(readFileSync(join(root, 'examples/05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;

function spoil(type: string, change: (r: Record<string, unknown>) => void): Bundle {
  const b = structuredClone(example);
  const entry = b.entry!.find((e) => e.resource?.resourceType === type);
  expect(entry, `the example has a ${type}`).toBeDefined();
  change(entry!.resource as unknown as Record<string, unknown>);
  return b;
}

describe('POST Bundle/$to-cda with malformed entries', () => {
  it('answers 400 with an OperationOutcome, not a 500', async () => {
    const t = await makeApp();
    const cases: [string, Bundle][] = [
      ['AllergyIntolerance.note as a string', spoil('AllergyIntolerance', (r) => (r.note = 'x'))],
      ['Condition.severity.coding as a string', spoil('Condition', (r) => (r.severity = { coding: 'x' }))],
    ];
    for (const [name, bundle] of cases) {
      for (const body of [bundle, { resourceType: 'Parameters', parameter: [{ name: 'document', resource: bundle as Resource }] }]) {
        const res = await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').send(body);
        expect(res.status, `${name} (${body.resourceType}): ${JSON.stringify(res.body).slice(0, 500)}`).toBe(400);
        const oo = res.body as OperationOutcome;
        expect(oo.resourceType).toBe('OperationOutcome');
        expect(oo.issue.some((i) => i.severity === 'error')).toBe(true);
      }
    }
    // The well-formed example is still converted.
    expect((await t.http.post('/fhir/Bundle/$to-cda').set('content-type', 'application/fhir+json').send(example)).status).toBe(200);
  }, 60_000);
});

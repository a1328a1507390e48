/**
 * Review fixes of the validator: one date parser (impossible calendar dates refused, never compared with a
 * limit); Coding displays through the terminology engine's lookup (supplements under an aliased system);
 * validation options reachable from $validate and the CLI; ImplementationGuide global profiles independent of
 * the order packages were loaded and read in.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Issue } from '../src/fhir/outcome.ts';
import { packageRegistry, type ConformanceResource } from '../src/packages/registry.ts';
import { validateFull, validateResource } from '../src/validation/index.ts';
import { checkLimit } from '../src/validation/limits.ts';

const BASE = 'http://example.org/fhir/StructureDefinition/';
const CORE = 'http://hl7.org/fhir/StructureDefinition/';
const narrative = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' };
const show = (issues: Issue[]) => issues.map((i) => `${i.severity} ${i.expression?.[0]}: ${i.diagnostics}`).join('\n');
const at = (issues: Issue[], path: string) => issues.filter((i) => i.expression?.[0] === path);

describe('dates: one parser, impossible calendar dates refused', () => {
  beforeAll(() => {
    packageRegistry().add({
      resourceType: 'StructureDefinition',
      url: BASE + 'leap-observation',
      name: 'LeapObservation',
      status: 'draft',
      kind: 'resource',
      abstract: false,
      type: 'Observation',
      baseDefinition: CORE + 'Observation',
      derivation: 'constraint',
      differential: { element: [{ id: 'Observation', path: 'Observation' }, { id: 'Observation.effective[x]', path: 'Observation.effective[x]', maxValueDateTime: '2024-02-29T23:59:59Z' }] },
    } as ConformanceResource);
  });

  it('a date, dateTime and instant of 2024-02-30 are refused at their element paths', () => {
    const p = validateResource({ resourceType: 'Patient', birthDate: '2024-02-30' });
    expect(at(p, 'Patient.birthDate').map((i) => i.diagnostics), show(p)).toEqual([expect.stringMatching(/not a valid date/)]);
    const o = validateResource({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, effectiveDateTime: '2024-02-30T10:00:00Z', issued: '2024-02-30T10:00:00.000Z' });
    expect(at(o, 'Observation.effective.ofType(dateTime)').map((i) => i.diagnostics), show(o)).toEqual([expect.stringMatching(/not a valid dateTime/)]);
    expect(at(o, 'Observation.issued').map((i) => i.diagnostics), show(o)).toEqual([expect.stringMatching(/not a valid instant/)]);
    // 2024 is a leap year, 2023 is not.
    expect(validateResource({ resourceType: 'Patient', birthDate: '2024-02-29' })).toEqual([]);
    expect(at(validateResource({ resourceType: 'Patient', birthDate: '2023-02-29' }), 'Patient.birthDate')).toHaveLength(1);
  });

  it('an impossible date is not read as another day by the limit checks', () => {
    // 2024-02-30 would roll over to 1 March, after the profile's maximum; the only error is the format one.
    const r = { resourceType: 'Observation', meta: { profile: [BASE + 'leap-observation'] }, text: narrative, status: 'final', code: { text: 'x' }, effectiveDateTime: '2024-02-30T10:00:00Z' };
    const issues = validateFull(r);
    const here = at(issues, 'Observation.effective.ofType(dateTime)');
    expect(here.map((i) => i.diagnostics), show(issues)).toEqual([expect.stringMatching(/not a valid dateTime/)]);
    expect(checkLimit('max', 'dateTime', '2024-02-30T10:00:00Z', 'DateTime', '2024-02-29T23:59:59Z')).toBeUndefined();
    expect(checkLimit('max', 'date', '2023-02-29', 'Date', '2023-02-28')).toBeUndefined();
    // Valid values are still compared, at their earliest instant.
    expect(checkLimit('max', 'dateTime', '2024-03-01T00:00:00Z', 'DateTime', '2024-02-29T23:59:59Z')?.message).toMatch(/greater than the maximum/);
    expect(checkLimit('max', 'dateTime', '2024-02-29T23:00:00-01:00', 'DateTime', '2024-02-29T23:59:59Z')?.message).toMatch(/greater than the maximum/);
    expect(checkLimit('max', 'date', '2024-02-29', 'DateTime', '2024-02-29T23:59:59Z')).toBeUndefined();
    const ok = validateFull({ ...r, effectiveDateTime: '2024-02-29T10:00:00Z' });
    expect(at(ok, 'Observation.effective.ofType(dateTime)'), show(ok)).toEqual([]);
  });
});

/**
 * Rule families of the profile layer added for issue 4: minValue/maxValue, maxLength, Coding displays,
 * QuestionnaireResponse against its Questionnaire, Bundle rules, narrative (txt-1), Coding.system, urn:uuid
 * format, attachment size, corrected invariants (que-12, per-1 with mixed precisions), invariants that evaluate to empty (vs-1 on a Period),
 * ImplementationGuide global profiles.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Issue } from '../src/fhir/outcome.ts';
import { packageRegistry, type ConformanceResource } from '../src/packages/registry.ts';
import { validateFull } from '../src/validation/index.ts';
import { useNativeInvariants } from '../src/validation/invariants.ts';
import { checkLimit } from '../src/validation/limits.ts';
import { xhtmlProblems } from '../src/validation/profile.ts';

const BASE = 'http://example.org/fhir/StructureDefinition/';
const CORE = 'http://hl7.org/fhir/StructureDefinition/';
const UCUM = 'http://unitsofmeasure.org';
const narrative = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' };

const profiles: ConformanceResource[] = [
  {
    resourceType: 'StructureDefinition',
    url: BASE + 'limits-observation',
    name: 'LimitsObservation',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Observation',
    baseDefinition: CORE + 'Observation',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Observation', path: 'Observation' },
        { id: 'Observation.value[x]', path: 'Observation.value[x]', minValueQuantity: { value: 0, system: UCUM, code: 'kg' }, maxValueQuantity: { value: 200, system: UCUM, code: 'kg' } },
        { id: 'Observation.effective[x]', path: 'Observation.effective[x]', minValueDateTime: '2020-01-01T00:00:00Z' },
        { id: 'Observation.component.value[x]', path: 'Observation.component.value[x]', minValueInteger: 1, maxValueInteger: 10 },
        { id: 'Observation.note.text', path: 'Observation.note.text', maxLength: 10 },
      ],
    },
  },
  {
    resourceType: 'StructureDefinition',
    url: BASE + 'limits-patient',
    name: 'LimitsPatient',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Patient',
    baseDefinition: CORE + 'Patient',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Patient', path: 'Patient' },
        { id: 'Patient.birthDate', path: 'Patient.birthDate', minValueDate: '1900-01-01', maxValueDuration: { value: 0, system: UCUM, code: 'd' } },
      ],
    },
  },
  {
    resourceType: 'Questionnaire',
    url: 'http://example.org/fhir/Questionnaire/q1',
    status: 'active',
    item: [
      { linkId: 'age', type: 'integer', required: true, extension: [{ url: CORE + 'minValue', valueInteger: 18 }, { url: CORE + 'maxValue', valueInteger: 120 }] },
      { linkId: 'name', type: 'string', maxLength: 5, extension: [{ url: CORE + 'regex', valueString: '[A-Z][a-z]*' }] },
      { linkId: 'colour', type: 'choice', repeats: true, answerOption: [{ valueCoding: { system: 'http://example.org/c', code: 'red' } }, { valueCoding: { system: 'http://example.org/c', code: 'none' }, extension: [{ url: CORE + 'questionnaire-optionExclusive', valueBoolean: true }] }] },
      { linkId: 'weight', type: 'quantity', extension: [{ url: 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-maxQuantity', valueQuantity: { value: 2, system: UCUM, code: 'kg' } }] },
      { linkId: 'note', type: 'display', text: 'Thank you' },
      { linkId: 'grp', type: 'group', item: [{ linkId: 'grp.q', type: 'boolean' }] },
    ],
  } as ConformanceResource,
];

beforeAll(() => {
  const reg = packageRegistry();
  for (const p of profiles) reg.add(p);
}, 120_000);

const errorsOf = (issues: Issue[]) => issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
const show = (issues: Issue[]) => issues.map((i) => `${i.severity} ${i.code} ${i.diagnostics}`).join('\n');
function expectIssue(issues: Issue[], severity: string, expression: string, pattern: RegExp): void {
  const hit = issues.find((i) => i.severity === severity && i.expression?.[0] === expression && pattern.test(i.diagnostics));
  expect(hit, `no ${severity} at ${expression} matching ${pattern}; got:\n${show(issues)}`).toBeDefined();
}

const obs = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'Observation',
  meta: { profile: [BASE + 'limits-observation'] },
  text: narrative,
  status: 'final',
  code: { text: 'weight' },
  ...extra,
});

describe('minValue / maxValue / maxLength', () => {
  it('values inside every limit pass', () => {
    const o = obs({ valueQuantity: { value: 70000, system: UCUM, code: 'g' }, effectiveDateTime: '2024-05-01', component: [{ code: { text: 'c' }, valueInteger: 5 }], note: [{ text: 'short' }] });
    const issues = validateFull(o);
    expect(errorsOf(issues), show(issues)).toEqual([]);
  });
  it('a Quantity below the minimum and above the maximum after UCUM conversion', () => {
    expectIssue(validateFull(obs({ valueQuantity: { value: -1, system: UCUM, code: 'g' } })), 'error', 'Observation.value.ofType(Quantity)', /less than the minimum/);
    expectIssue(validateFull(obs({ valueQuantity: { value: 201000, system: UCUM, code: 'g' } })), 'error', 'Observation.value.ofType(Quantity)', /greater than the maximum/);
  });
  it('a Quantity in units that cannot be compared is an error', () => {
    expectIssue(validateFull(obs({ valueQuantity: { value: 1, system: UCUM, code: 'm' } })), 'error', 'Observation.value.ofType(Quantity)', /cannot be compared/);
  });
  it('integer, dateTime and maxLength limits', () => {
    const issues = validateFull(obs({ effectiveDateTime: '2019-12-31', component: [{ code: { text: 'c' }, valueInteger: 11 }], note: [{ text: 'far too long a note' }] }));
    expectIssue(issues, 'error', 'Observation.effective.ofType(dateTime)', /2019-12-31 is less than the minimum/);
    expectIssue(issues, 'error', 'Observation.component[0].value.ofType(integer)', /greater than the maximum value 10/);
    expectIssue(issues, 'error', 'Observation.note[0].text', /longer than the maximum length 10/);
  });
  it('minValueDate and maxValueDuration on a date (no birth date in the future)', () => {
    const p = { resourceType: 'Patient', meta: { profile: [BASE + 'limits-patient'] }, text: narrative, birthDate: '1970-03-01' };
    expect(errorsOf(validateFull(p)), show(validateFull(p))).toEqual([]);
    expectIssue(validateFull({ ...p, birthDate: '1850' }), 'error', 'Patient.birthDate', /less than the minimum value 1900-01-01/);
    expectIssue(validateFull({ ...p, birthDate: `${new Date().getUTCFullYear() + 2}-01-01` }), 'error', 'Patient.birthDate', /later than 0 d after now/);
  });
  it('limit arithmetic: dates by their earliest instant, times, decimals', () => {
    // 01:00+01:00 is midnight UTC: equal to the limit, not below it; one second earlier is below.
    expect(checkLimit('min', 'dateTime', '2024-01-01T01:00:00+01:00', 'Instant', '2024-01-01T00:00:00Z')).toBeUndefined();
    expect(checkLimit('min', 'dateTime', '2024-01-01T00:59:59+01:00', 'Instant', '2024-01-01T00:00:00Z')?.severity).toBe('error');
    expect(checkLimit('max', 'date', '2022-06-30', 'DateTime', '2022-06')?.severity).toBe('error');
    expect(checkLimit('max', 'date', '2022-06', 'DateTime', '2022-06')).toBeUndefined();
    expect(checkLimit('min', 'time', '08:59:59', 'Time', '09:00:00')?.severity).toBe('error');
    expect(checkLimit('min', 'decimal', 0.5, 'Decimal', 0.5)).toBeUndefined();
  });
});

describe('Coding displays', () => {
  const patient = (display: string) => ({
    resourceType: 'Patient',
    text: narrative,
    maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M', display }] },
  });
  it('a display the code system gives (case and spacing aside) passes', () => {
    const issues = validateFull(patient('married'));
    expect(issues.filter((i) => /display/.test(i.diagnostics)), show(issues)).toEqual([]);
  });
  it('another display is a warning by default, an error when asked', () => {
    expectIssue(validateFull(patient('Verheiratet')), 'warning', 'Patient.maritalStatus.coding[0].display', /wrong display 'Verheiratet'.*'Married'/);
    expectIssue(validateFull(patient('Verheiratet'), { displayMismatch: 'error' }), 'error', 'Patient.maritalStatus.coding[0].display', /wrong display/);
  });
  it('codes of systems not available here are not judged', () => {
    const p = { resourceType: 'Patient', text: narrative, maritalStatus: { coding: [{ system: 'http://snomed.info/sct', code: '87915002', display: 'anything' }] } };
    expect(validateFull(p).filter((i) => /display/.test(i.diagnostics))).toEqual([]);
  });
});

describe('QuestionnaireResponse against its Questionnaire', () => {
  const qr = (item: unknown[]) => ({ resourceType: 'QuestionnaireResponse', text: narrative, questionnaire: 'http://example.org/fhir/Questionnaire/q1', status: 'completed', item });
  it('conforming answers pass', () => {
    const r = qr([
      { linkId: 'age', answer: [{ valueInteger: 40 }] },
      { linkId: 'name', answer: [{ valueString: 'Anne' }] },
      { linkId: 'colour', answer: [{ valueCoding: { system: 'http://example.org/c', code: 'red' } }] },
      { linkId: 'weight', answer: [{ valueQuantity: { value: 1500, system: UCUM, code: 'g' } }] },
      { linkId: 'grp', item: [{ linkId: 'grp.q', answer: [{ valueBoolean: true }] }] },
    ]);
    const issues = validateFull(r);
    expect(errorsOf(issues), show(issues)).toEqual([]);
  });
  it('required item, unknown linkId, answer type, limits, length, regex, options, exclusive option, quantity, display item', () => {
    const issues = validateFull(
      qr([
        { linkId: 'nope', answer: [{ valueString: 'x' }] },
        { linkId: 'name', answer: [{ valueString: 'annabelle' }] },
        { linkId: 'colour', answer: [{ valueCoding: { system: 'http://example.org/c', code: 'blue' } }, { valueCoding: { system: 'http://example.org/c', code: 'none' } }] },
        { linkId: 'weight', answer: [{ valueQuantity: { value: 3, system: UCUM, code: 'kg' } }] },
        { linkId: 'note', answer: [{ valueString: 'x' }] },
      ]),
    );
    expectIssue(issues, 'error', 'QuestionnaireResponse', /required item 'age'/);
    expectIssue(issues, 'error', 'QuestionnaireResponse', /linkId 'nope'/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[1].answer[0].value.ofType(string)', /longer than the maximum length 5/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[1].answer[0].value.ofType(string)', /regular expression/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[2].answer[0].value.ofType(Coding)', /not one of the answer options/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[2].answer[1]', /exclusive option/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[3].answer[0].value.ofType(Quantity)', /greater than the maximum/);
    expectIssue(issues, 'error', 'QuestionnaireResponse.item[4]', /'display' cannot have answers/);
    const wrongType = validateFull(qr([{ linkId: 'age', answer: [{ valueString: '40' }] }]));
    expectIssue(wrongType, 'error', 'QuestionnaireResponse.item[0].answer[0].value.ofType(string)', /must be of type integer/);
    const tooYoung = validateFull(qr([{ linkId: 'age', answer: [{ valueInteger: 3 }, { valueInteger: 40 }] }]));
    expectIssue(tooYoung, 'error', 'QuestionnaireResponse.item[0].answer[0].value.ofType(integer)', /less than the minimum value 18/);
    expectIssue(tooYoung, 'error', 'QuestionnaireResponse.item[0]', /only one answer is allowed/);
  });
  it('an unknown questionnaire is a warning', () => {
    const r = { ...qr([]), questionnaire: 'http://example.org/fhir/Questionnaire/unknown' };
    expectIssue(validateFull(r), 'warning', 'QuestionnaireResponse', /not known here/);
  });
});

describe('Bundle, narrative and value rules', () => {
  it('Bundle: relative fullUrl, repeated links, search results without ids', () => {
    const b = {
      resourceType: 'Bundle',
      type: 'searchset',
      link: [
        { relation: 'self', url: 'http://x/Patient' },
        { relation: 'self', url: 'http://x/Patient?x' },
      ],
      entry: [{ fullUrl: 'Patient/1', resource: { resourceType: 'Patient', text: narrative }, search: { mode: 'match' } }],
    };
    const issues = validateFull(b);
    expectIssue(issues, 'error', 'Bundle.link[1]', /only once/);
    expectIssue(issues, 'error', 'Bundle.entry[0]', /absolute URL/);
    expectIssue(issues, 'error', 'Bundle.entry[0].resource', /must have ids/);
  });
  it('narrative: script elements and event handlers break txt-1', () => {
    expect(xhtmlProblems('<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">ok</p><table><tr><td>1</td></tr></table></div>')).toEqual([]);
    expect(xhtmlProblems('<div><script>alert(1)</script></div>')[0]).toMatch(/<script>/);
    expect(xhtmlProblems('<div><a href="#" onclick="x()">a</a></div>')[0]).toMatch(/onclick/);
    const p = { resourceType: 'Patient', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>' } };
    expectIssue(validateFull(p), 'error', 'Patient.text.div', /txt-1/);
  });
  it('Coding.system must be absolute; urn:uuid values must be lower-case UUIDs', () => {
    const p = { resourceType: 'Patient', text: narrative, maritalStatus: { coding: [{ system: 'local-codes', code: 'x' }] }, identifier: [{ system: 'urn:uuid:ABC', value: '1' }] };
    const issues = validateFull(p);
    expectIssue(issues, 'error', 'Patient.maritalStatus.coding[0].system', /absolute URI/);
    expectIssue(issues, 'error', 'Patient.identifier[0].system', /not a valid urn:uuid/);
  });
  it('an attachment whose size does not match its data', () => {
    const d = { resourceType: 'DocumentReference', text: narrative, status: 'current', content: [{ attachment: { contentType: 'text/plain', data: 'aGVsbG8=', size: 6 } }] };
    expectIssue(validateFull(d), 'error', 'DocumentReference.content[0].attachment', /size 6 does not match the size of its data \(5 bytes\)/);
    d.content[0]!.attachment.size = 5;
    expect(errorsOf(validateFull(d)), show(validateFull(d))).toEqual([]);
  });
  it('que-12 as corrected (two enableWhen need enableBehavior); an invariant that evaluates to empty passes (vs-1 on a Period)', () => {
    const q = {
      resourceType: 'Questionnaire',
      text: narrative,
      status: 'active',
      item: [
        { linkId: 'a', type: 'boolean' },
        { linkId: 'b', type: 'string', enableWhen: [{ question: 'a', operator: '=', answerBoolean: true }, { question: 'a', operator: 'exists', answerBoolean: true }] },
      ],
    };
    expectIssue(validateFull(q), 'error', 'Questionnaire.item[1]', /que-12/);
    const hr = {
      resourceType: 'Observation',
      meta: { profile: [CORE + 'heartrate'] },
      text: narrative,
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      subject: { reference: 'Patient/1' },
      effectivePeriod: { start: '2024-01-01T10:00:00Z', end: '2024-01-01T11:00:00Z' },
      valueQuantity: { value: 60, unit: '/min', system: UCUM, code: '/min' },
    };
    expect(errorsOf(validateFull(hr)), show(validateFull(hr))).toEqual([]);
    const { effectivePeriod: _p, ...rest } = hr;
    expectIssue(validateFull({ ...rest, effectiveDateTime: '2024-01' }), 'error', 'Observation.effective.ofType(dateTime)', /vs-1/);
  });
  it('per-1: start after end, or the same day at different precisions, fails (as HL7); ordered periods pass', () => {
    const enc = (period: { start: string; end?: string }) => ({ resourceType: 'Encounter', text: narrative, status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, period });
    for (const ok of [{ start: '2023-06-21', end: '2023-06-22T06:20:00Z' }, { start: '2023-06-21T08:00:00+02:00', end: '2023-06-21T06:20:00Z' }, { start: '2023-06', end: '2023-06' }, { start: '2023-06-21' }]) {
      const issues = validateFull(enc(ok));
      expect(issues.filter((i) => /per-1/.test(i.diagnostics)), JSON.stringify(ok)).toEqual([]);
    }
    expectIssue(validateFull(enc({ start: '2023-06-21', end: '2023-06-21T06:20:00Z' })), 'error', 'Encounter.period', /per-1/);
    expectIssue(validateFull(enc({ start: '2023-06-22T00:00:00Z', end: '2023-06-21T23:00:00Z' })), 'error', 'Encounter.period', /per-1/);
  });
  it('an ImplementationGuide global profile applies to every resource of its type', () => {
    const reg = packageRegistry();
    reg.add({ resourceType: 'ImplementationGuide', url: 'http://example.org/fhir/ImplementationGuide/ig', status: 'active', global: [{ type: 'Patient', profile: BASE + 'limits-patient' }] } as ConformanceResource);
    try {
      expectIssue(validateFull({ resourceType: 'Patient', text: narrative, birthDate: '1850' }), 'error', 'Patient.birthDate', /less than the minimum value 1900-01-01/);
    } finally {
      reg.clearAdded();
      for (const p of profiles) reg.add(p);
    }
  });
});

describe('native invariant evaluation', () => {
  it('gives the same invariant outcomes as fhirpath.js on the IPS examples', () => {
    const key = (issues: Issue[]) => issues.filter((i) => /Constraint failed|could not be evaluated/.test(i.diagnostics)).map((i) => `${i.severity} ${i.diagnostics}`).sort();
    const examples = packageRegistry().examplesOf('hl7.fhir.uv.ips');
    expect(examples.length).toBeGreaterThan(40);
    // Broken copies too, so that failing outcomes are compared as well as passing ones.
    const broken = examples.map((e) => JSON.parse(JSON.stringify(e.resource).replace(/"system":"[^"]*"/g, '"unit":"x"').replace(/"resource":\{/g, '"resource":{"text":{"status":"generated"},')) as unknown);
    try {
      for (const r of [...examples.map((e) => e.resource), ...broken]) {
        useNativeInvariants(true);
        const native = key(validateFull(r));
        useNativeInvariants(false);
        const reference = key(validateFull(r));
        expect(native).toEqual(reference);
      }
    } finally {
      useNativeInvariants(true);
    }
  }, 120_000);
});

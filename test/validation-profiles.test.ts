import { beforeAll, describe, expect, it } from 'vitest';
import type { Issue } from '../src/fhir/outcome.ts';
import { packageRegistry, type ConformanceResource } from '../src/packages/registry.ts';
import { validateFull, validateOnWrite } from '../src/validation/index.ts';
import { FhirError } from '../src/fhir/outcome.ts';

const BASE = 'http://example.org/fhir/StructureDefinition/';
const CORE = 'http://hl7.org/fhir/StructureDefinition/';

/** Test profiles, authored as differentials: their snapshots come from our generator. */
const testProfiles: ConformanceResource[] = [
  {
    resourceType: 'StructureDefinition',
    url: BASE + 'test-patient',
    name: 'TestPatient',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Patient',
    baseDefinition: CORE + 'Patient',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Patient', path: 'Patient' },
        { id: 'Patient.extension', path: 'Patient.extension', slicing: { discriminator: [{ type: 'value', path: 'url' }], rules: 'open' } },
        { id: 'Patient.extension:birthPlace', path: 'Patient.extension', sliceName: 'birthPlace', min: 0, max: '1', type: [{ code: 'Extension', profile: [CORE + 'patient-birthPlace'] }] },
        { id: 'Patient.identifier', path: 'Patient.identifier', min: 1, slicing: { discriminator: [{ type: 'value', path: 'system' }], rules: 'closed' } },
        { id: 'Patient.identifier:national', path: 'Patient.identifier', sliceName: 'national', min: 1, max: '1' },
        { id: 'Patient.identifier:national.system', path: 'Patient.identifier.system', min: 1, fixedUri: 'urn:oid:1.2.3' },
        { id: 'Patient.identifier:national.value', path: 'Patient.identifier.value', min: 1 },
        { id: 'Patient.identifier:local', path: 'Patient.identifier', sliceName: 'local', min: 0, max: '*' },
        { id: 'Patient.identifier:local.system', path: 'Patient.identifier.system', min: 1, fixedUri: 'urn:oid:1.2.9' },
        { id: 'Patient.name', path: 'Patient.name', min: 1 },
        { id: 'Patient.name.family', path: 'Patient.name.family', min: 1 },
        { id: 'Patient.maritalStatus', path: 'Patient.maritalStatus', binding: { strength: 'required', valueSet: 'http://hl7.org/fhir/ValueSet/marital-status' } },
        { id: 'Patient.communication.language', path: 'Patient.communication.language', binding: { strength: 'extensible', valueSet: 'http://hl7.org/fhir/ValueSet/marital-status' } },
      ],
    },
  },
  {
    resourceType: 'StructureDefinition',
    url: BASE + 'test-bp',
    name: 'TestBloodPressure',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Observation',
    baseDefinition: CORE + 'Observation',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Observation', path: 'Observation' },
        { id: 'Observation.code', path: 'Observation.code', patternCodeableConcept: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] } },
        { id: 'Observation.subject', path: 'Observation.subject', min: 1, type: [{ code: 'Reference', targetProfile: [CORE + 'Patient'] }] },
        { id: 'Observation.value[x]', path: 'Observation.value[x]', max: '0' },
        { id: 'Observation.component', path: 'Observation.component', min: 2, slicing: { discriminator: [{ type: 'pattern', path: 'code' }], rules: 'open' } },
        { id: 'Observation.component:systolic', path: 'Observation.component', sliceName: 'systolic', min: 1, max: '1' },
        { id: 'Observation.component:systolic.code', path: 'Observation.component.code', patternCodeableConcept: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] } },
        { id: 'Observation.component:systolic.value[x]', path: 'Observation.component.value[x]', type: [{ code: 'Quantity' }] },
        { id: 'Observation.component:systolic.extension', path: 'Observation.component.extension', slicing: { discriminator: [{ type: 'exists', path: 'value' }], rules: 'open' } },
        { id: 'Observation.component:diastolic', path: 'Observation.component', sliceName: 'diastolic', min: 1, max: '1' },
        { id: 'Observation.component:diastolic.code', path: 'Observation.component.code', patternCodeableConcept: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] } },
        { id: 'Observation.component:diastolic.valueQuantity', path: 'Observation.component.valueQuantity', min: 1 },
      ],
    },
  },
];

beforeAll(() => {
  const reg = packageRegistry();
  for (const p of testProfiles) reg.add(p);
}, 120_000);

const errorsOf = (issues: Issue[]) => issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
const show = (issues: Issue[]) => issues.map((i) => `${i.severity} ${i.code} ${i.diagnostics}`).join('\n');
const narrative = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' };

const goodPatient = () => ({
  resourceType: 'Patient',
  id: 'p1',
  meta: { profile: [BASE + 'test-patient'] },
  text: narrative,
  identifier: [
    { system: 'urn:oid:1.2.3', value: '42' },
    { system: 'urn:oid:1.2.9', value: 'a' },
  ],
  name: [{ family: 'Muller', given: ['Jean'] }],
  birthDate: '1970-01-01',
});

const bp = () => ({
  resourceType: 'Observation',
  meta: { profile: [BASE + 'test-bp'] },
  text: narrative,
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'BP' }] },
  subject: { reference: 'Patient/p1' },
  component: [
    { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
    { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
  ],
});

function expectError(issues: Issue[], expression: string, pattern: RegExp): void {
  const hit = errorsOf(issues).find((i) => i.expression?.[0] === expression && pattern.test(i.diagnostics));
  expect(hit, `no error at ${expression} matching ${pattern}; got:\n${show(issues)}`).toBeDefined();
}

describe('IPS 2.0.0 examples', () => {
  const examples = packageRegistry().examplesOf('hl7.fhir.uv.ips');
  it('ships 44 examples', () => expect(examples).toHaveLength(44));
  it.each(examples.map((e) => [e.file, e.resource] as const))('%s validates against its declared profiles with no errors', (_file, resource) => {
    const issues = validateFull(resource);
    expect(errorsOf(issues), show(errorsOf(issues))).toEqual([]);
  });
  it('an IPS Patient without a name or birth date is rejected by the IPS profile', () => {
    const p = structuredClone(examples.find((e) => e.file === 'Patient-66033.json')!.resource);
    delete p.birthDate;
    const issues = validateFull(p);
    expectError(issues, 'Patient.birthDate', /at least 1/);
  });
  it('an IPS Bundle without its Composition fails the composition slice', () => {
    const b = structuredClone(examples.find((e) => e.file === 'Bundle-bundle-minimal.json')!.resource) as { entry: unknown[] };
    b.entry = b.entry.slice(1);
    const issues = validateFull(b);
    expect(errorsOf(issues).some((i) => /slice 'composition'/.test(i.diagnostics)), show(issues)).toBe(true);
  });
}, 120_000);

describe('cardinality, fixed values and slicing', () => {
  it('a conforming patient has no errors (snapshot generated from the differential)', () => {
    const issues = validateFull(goodPatient());
    expect(errorsOf(issues), show(issues)).toEqual([]);
  });
  it('profile minimum cardinality', () => {
    const p = goodPatient() as Record<string, unknown>;
    delete p.name;
    expectError(validateFull(p), 'Patient.name', /at least 1/);
  });
  it('cardinality inside a slice and a missing required slice', () => {
    const p = goodPatient();
    delete (p.identifier[0] as { value?: string }).value;
    expectError(validateFull(p), 'Patient.identifier[0].value', /at least 1/);
    p.identifier = [{ system: 'urn:oid:1.2.9', value: 'b' }];
    expectError(validateFull(p), 'Patient.identifier', /slice 'national'.*at least 1/);
  });
  it('closed slicing rejects an identifier in no slice', () => {
    const p = goodPatient();
    p.identifier.push({ system: 'urn:other', value: 'x' });
    expectError(validateFull(p), 'Patient.identifier[2]', /none of the slices.*closed/);
  });
  it('slice maximum', () => {
    const p = goodPatient();
    p.identifier.push({ system: 'urn:oid:1.2.3', value: '43' });
    expectError(validateFull(p), 'Patient.identifier', /slice 'national'.*at most 1/);
  });
  it('pattern on a CodeableConcept, nested component slices and prohibited choice', () => {
    expect(errorsOf(validateFull(bp())), show(validateFull(bp()))).toEqual([]);
    const o = bp() as ReturnType<typeof bp> & { valueString?: string };
    o.code.coding[0]!.code = '1234-5';
    o.valueString = 'high';
    const issues = validateFull(o);
    expectError(issues, 'Observation.code', /does not match the pattern/);
    expectError(issues, 'Observation.value', /at most 0/);
  });
  it('type restriction on a choice inside a slice', () => {
    const o = bp();
    (o.component[0] as Record<string, unknown>).valueString = '120';
    delete (o.component[0] as Record<string, unknown>).valueQuantity;
    expectError(validateFull(o), 'Observation.component[0].value', /type String is not allowed/);
    const d = bp();
    delete (d.component[1] as Record<string, unknown>).valueQuantity;
    expectError(validateFull(d), 'Observation.component[1].value', /at least 1/);
  });
});

describe('bindings', () => {
  it('required binding: a code outside the value set is an error, inside is fine', () => {
    const p = goodPatient() as Record<string, unknown>;
    p.maritalStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M' }] };
    expect(errorsOf(validateFull(p)), show(validateFull(p))).toEqual([]);
    p.maritalStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'ZZ' }] };
    expectError(validateFull(p), 'Patient.maritalStatus', /not in the value set.*required/);
  });
  it('extensible binding: a warning', () => {
    const p = goodPatient() as Record<string, unknown>;
    p.communication = [{ language: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'ZZ' }] } }];
    const issues = validateFull(p);
    expect(errorsOf(issues)).toEqual([]);
    expect(issues.some((i) => i.severity === 'warning' && i.code === 'code-invalid' && i.expression?.[0] === 'Patient.communication[0].language'), show(issues)).toBe(true);
  });
  it('codes from systems not available here (SNOMED CT) are not judged', () => {
    const o = { resourceType: 'Condition', text: narrative, subject: { reference: 'Patient/1' }, code: { coding: [{ system: 'http://snomed.info/sct', code: '999999999' }] } };
    expect(errorsOf(validateFull(o)), show(validateFull(o))).toEqual([]);
  });
});

describe('invariants', () => {
  it('a core invariant (pat-1) fails on a contact with no details', () => {
    const p = { resourceType: 'Patient', text: narrative, contact: [{ gender: 'male' }] };
    expectError(validateFull(p), 'Patient.contact[0]', /pat-1/);
  });
  it('%resource in an invariant (bdl-3: request only in batch/transaction)', () => {
    const b = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: 'urn:uuid:5d0a2d0f-4a4b-4f4e-9d7e-0c2a4a1b7e01', resource: { resourceType: 'Basic', text: narrative, code: { text: 'x' } }, request: { method: 'POST', url: 'Basic' } }] };
    expectError(validateFull(b), 'Bundle', /bdl-3/);
  });
  it('con-3 is the corrected expression: a Condition with clinicalStatus passes', () => {
    const c = { resourceType: 'Condition', text: narrative, subject: { reference: 'Patient/1' }, clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] }, category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item' }] }] };
    expect(validateFull(c).filter((i) => /con-3/.test(i.diagnostics))).toEqual([]);
    const bad = { ...c, clinicalStatus: undefined };
    delete bad.clinicalStatus;
    expect(validateFull(bad).some((i) => /con-3/.test(i.diagnostics))).toBe(true);
  });
});

describe('extensions', () => {
  it('a known extension in its context, on a primitive too', () => {
    const p = goodPatient() as Record<string, unknown>;
    p.extension = [{ url: CORE + 'patient-birthPlace', valueAddress: { city: 'Esch-sur-Alzette' } }];
    p._birthDate = { extension: [{ url: CORE + 'patient-birthTime', valueDateTime: '1970-01-01T10:15:00+01:00' }] };
    expect(errorsOf(validateFull(p)), show(validateFull(p))).toEqual([]);
  });
  it('wrong value type and wrong context', () => {
    const p = goodPatient() as Record<string, unknown>;
    p.extension = [{ url: CORE + 'patient-birthPlace', valueString: 'Esch' }];
    expectError(validateFull(p), 'Patient.extension[0].value', /type String is not allowed/);
    const q = goodPatient() as Record<string, unknown>;
    q._gender = { extension: [{ url: CORE + 'patient-birthTime', valueDateTime: '1970-01-01T10:15:00+01:00' }] };
    q.gender = 'male';
    expectError(validateFull(q), 'Patient.gender.extension[0]', /not allowed here.*Patient.birthDate/);
  });
  it('unknown extensions and unknown modifier extensions are errors (as in HL7 validator); ext-1', () => {
    const p = goodPatient() as Record<string, unknown>;
    p.extension = [{ url: 'http://example.org/unknown', valueString: 'x' }, { url: 'http://example.org/both', valueString: 'x', extension: [{ url: 'a', valueString: 'y' }] }];
    p.modifierExtension = [{ url: 'http://example.org/unknown-modifier', valueBoolean: true }];
    const issues = validateFull(p);
    expectError(issues, 'Patient.extension[0]', /not known to this server/);
    expectError(issues, 'Patient.modifierExtension[0]', /unknown modifier/);
    expectError(issues, 'Patient.extension[1]', /ext-1/);
  });
});

describe('references and contained resources', () => {
  it('target type not allowed by the profile', () => {
    const o = bp();
    o.subject.reference = 'Medication/m1';
    expectError(validateFull(o), 'Observation.subject.reference', /Medication, which is not allowed/);
  });
  it('contained references resolve; a dangling one and an orphan contained resource are errors', () => {
    const o = { ...bp(), contained: [{ resourceType: 'Patient', id: 'pat' }], subject: { reference: '#pat' } };
    expect(errorsOf(validateFull(o)), show(validateFull(o))).toEqual([]);
    const dangling = { ...o, subject: { reference: '#nope' } };
    const issues = validateFull(dangling);
    expectError(issues, 'Observation.subject.reference', /no contained resource/);
    expectError(issues, 'Observation.contained[0]', /dom-3/);
  });
  it('a contained resource of the wrong type for the reference', () => {
    const o = { ...bp(), contained: [{ resourceType: 'Medication', id: 'm' }], subject: { reference: '#m' } };
    expectError(validateFull(o), 'Observation.subject.reference', /Medication, which is not allowed/);
  });
  it('inside a document, urn:uuid references must resolve to an entry (a warning in other Bundles) and resolved targets are type-checked', () => {
    const obs = { ...bp(), subject: { reference: 'urn:uuid:00000000-0000-4000-8000-000000000001' } };
    const b = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: 'urn:uuid:00000000-0000-4000-8000-000000000002', resource: obs }] };
    const collection = validateFull(b);
    expect(errorsOf(collection), show(collection)).toEqual([]);
    expect(collection.some((i) => i.severity === 'warning' && /does not resolve/.test(i.diagnostics)), show(collection)).toBe(true);
    b.type = 'document';
    expectError(validateFull(b), 'Bundle.entry[0].resource.subject.reference', /does not resolve/);
    b.entry.push({ fullUrl: 'urn:uuid:00000000-0000-4000-8000-000000000001', resource: { resourceType: 'Device', text: narrative } as never });
    expectError(validateFull(b), 'Bundle.entry[0].resource.subject.reference', /Device, which is not allowed/);
  });
});

describe('declared profiles and write modes', () => {
  it('an unknown declared profile is a warning', () => {
    const p = { resourceType: 'Patient', text: narrative, meta: { profile: ['http://example.org/none'] } };
    const issues = validateFull(p);
    expect(errorsOf(issues)).toEqual([]);
    expect(issues.some((i) => i.severity === 'warning' && i.expression?.[0] === 'Patient.meta.profile[0]')).toBe(true);
  });
  it('a profile asked for explicitly', () => {
    const p = { resourceType: 'Patient', text: narrative };
    expectError(validateFull(p, { profiles: [BASE + 'test-patient'] }), 'Patient.name', /at least 1/);
  });
  it('validateOnWrite: off, warn, reject', () => {
    const p = goodPatient() as Record<string, unknown>;
    delete p.name;
    expect(validateOnWrite(p, 'off')).toEqual([]);
    expect(errorsOf(validateOnWrite(p, 'warn')).length).toBeGreaterThan(0);
    expect(() => validateOnWrite(p, 'reject')).toThrow(FhirError);
    expect(validateOnWrite(goodPatient(), 'reject')).toEqual([]);
    expect(validateOnWrite({ resourceType: 'Patient' }, 'reject')).toEqual([]);
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { FhirError, type Issue } from '../src/fhir/outcome.ts';
import { assertValidResource, validateResource, warmUpValidation } from '../src/validation/index.ts';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
const syntheaDir = join(projectRoot, '..', 'shared', 'data', 'synthea');

beforeAll(() => warmUpValidation(['Patient', 'Observation', 'Bundle', 'Questionnaire']), 120_000);

const errors = (r: unknown): Issue[] => validateResource(r).filter((i) => i.severity === 'error');
const describeIssues = (issues: Issue[]) => issues.map((i) => `${i.code} ${i.diagnostics}`).join('\n');

/** Exactly one error, at `expression`, with `code`. */
function expectOneError(resource: unknown, expression: string, code: Issue['code']): Issue {
  const found = errors(resource);
  expect(found, describeIssues(found)).toHaveLength(1);
  expect(found[0]!.expression).toEqual([expression]);
  expect(found[0]!.code).toBe(code);
  return found[0]!;
}

const patient = () => ({
  resourceType: 'Patient',
  id: 'p-1',
  meta: { versionId: '1', lastUpdated: '2024-05-01T10:00:00.123+02:00', profile: ['http://hl7.org/fhir/StructureDefinition/Patient'] },
  text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Jean Muller</div>' },
  contained: [{ resourceType: 'Organization', id: 'org1', name: 'Centre Hospitalier de Luxembourg' }],
  extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace', valueAddress: { city: 'Esch-sur-Alzette', country: 'LU' } }],
  identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: '1970010112345' }],
  active: true,
  name: [
    {
      use: 'official',
      family: 'Muller',
      given: ['Jean', null, 'Pierre'],
      _given: [null, { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'masked' }] }, null],
      prefix: ['M.'],
    },
  ],
  telecom: [{ system: 'phone', value: '+352 4411 1' }],
  gender: 'male',
  birthDate: '1970-01-01',
  _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1970-01-01T08:30:00+01:00' }] },
  deceasedBoolean: false,
  address: [{ line: ['1, rue de l’Hôpital'], city: 'Luxembourg', postalCode: 'L-1210', country: 'LU', period: { start: '2000' } }],
  multipleBirthInteger: 2,
  photo: [{ contentType: 'image/png', data: 'iVBORw0KGgo=' }],
  communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'fr-LU' }] }, preferred: true }],
  managingOrganization: { reference: '#org1' },
});

const observation = () => ({
  resourceType: 'Observation',
  id: 'bp',
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
  code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel' }] },
  subject: { reference: 'Patient/p-1' },
  effectiveDateTime: '2024-05-01T10:00:00+02:00',
  issued: '2024-05-01T10:05:00Z',
  valueQuantity: { value: 72.5, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
  interpretation: [{ text: 'normal' }],
  referenceRange: [{ low: { value: 50, unit: 'kg' }, high: { value: 90, unit: 'kg' } }],
  component: [
    {
      code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] },
      valueQuantity: { value: 120, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
    },
    {
      code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] },
      valueQuantity: { value: 80, comparator: '<', unit: 'mm[Hg]' },
      interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' }] }],
    },
    { code: { text: 'comment' }, valueString: 'assis, bras gauche' },
  ],
});

const transaction = () => ({
  resourceType: 'Bundle',
  type: 'transaction',
  entry: [
    { fullUrl: 'urn:uuid:6f0a2a3c-1b7e-4c55-9d1a-3f7e2a1b0c11', resource: patient(), request: { method: 'POST', url: 'Patient' } },
    {
      fullUrl: 'urn:uuid:0d9c8b7a-6e5f-4a3b-8c2d-1e0f9a8b7c6d',
      resource: { ...observation(), subject: { reference: 'urn:uuid:6f0a2a3c-1b7e-4c55-9d1a-3f7e2a1b0c11' } },
      request: { method: 'POST', url: 'Observation' },
    },
    { request: { method: 'DELETE', url: 'Observation?code=1234' } },
  ],
});

const questionnaire = () => ({
  resourceType: 'Questionnaire',
  id: 'q1',
  url: 'http://example.lu/Questionnaire/q1',
  status: 'active',
  item: [
    {
      linkId: '1',
      text: 'Habitudes',
      type: 'group',
      item: [
        { linkId: '1.1', text: 'Fumeur ?', type: 'boolean', required: true },
        {
          linkId: '1.2',
          text: 'Combien par jour ?',
          type: 'integer',
          enableWhen: [{ question: '1.1', operator: '=', answerBoolean: true }],
          initial: [{ valueInteger: 10 }],
          item: [
            {
              linkId: '1.2.1',
              type: 'choice',
              text: 'Type',
              answerOption: [{ valueCoding: { code: 'cig', display: 'Cigarettes' } }, { valueString: 'autre' }],
              item: [{ linkId: '1.2.1.1', type: 'display', text: 'Précisez' }],
            },
          ],
        },
      ],
    },
  ],
});

describe('valid resources', () => {
  it('accepts a Patient using contained resources, extensions and aligned _given nulls', () => {
    expect(describeIssues(errors(patient()))).toBe('');
  });
  it('accepts an Observation with valueQuantity and components', () => {
    expect(describeIssues(errors(observation()))).toBe('');
  });
  it('accepts a transaction Bundle', () => {
    expect(describeIssues(errors(transaction()))).toBe('');
  });
  it('accepts a Questionnaire with nested items (contentReference)', () => {
    expect(describeIssues(errors(questionnaire()))).toBe('');
  });
  it('accepts a resource with only a resourceType, and non-breaking spaces in strings', () => {
    expect(errors({ resourceType: 'Patient' })).toEqual([]);
    expect(errors({ resourceType: 'Patient', name: [{ text: 'M.\u00a0Muller\u202f: test' }] })).toEqual([]);
  });
  it('does not raise extensible bindings that the JSON schema enumerates (Expression.language)', () => {
    const measure = {
      resourceType: 'Measure',
      status: 'draft',
      group: [{ population: [{ criteria: { language: 'text/cql.identifier', expression: 'Initial Population' } }] }],
    };
    expect(describeIssues(errors(measure))).toBe('');
  });
  it('assertValidResource does not throw for a valid resource', () => {
    expect(() => assertValidResource(transaction())).not.toThrow();
  });
});

describe('invalid resources: one precise issue per fault, with its FHIRPath', () => {
  it('unknown element at depth', () => {
    const r = { ...patient(), contact: [{ name: { family: 'Muller', nickname: 'JM' } }] };
    const issue = expectOneError(r, 'Patient.contact[0].name.nickname', 'structure');
    expect(issue.diagnostics).toContain('nickname');
  });
  it('unknown element inside a choice-typed value and inside a primitive extension object', () => {
    expectOneError({ ...observation(), valueQuantity: { value: 1, units: 'kg' } }, 'Observation.value.ofType(Quantity).units', 'structure');
    expectOneError({ resourceType: 'Patient', _birthDate: { value: '1970' } }, 'Patient.birthDate.value', 'structure');
  });
  it('`_x` on a non-primitive element', () => {
    expectOneError({ resourceType: 'Patient', _name: [{ id: 'a' }] }, 'Patient._name', 'structure');
  });
  it('wrong JSON type', () => {
    expectOneError({ resourceType: 'Patient', active: 'true' }, 'Patient.active', 'structure');
    expectOneError({ resourceType: 'Patient', multipleBirthInteger: '2' }, 'Patient.multipleBirth.ofType(integer)', 'structure');
    expectOneError({ ...observation(), valueQuantity: { value: '72.5' } }, 'Observation.value.ofType(Quantity).value', 'structure');
    expectOneError({ resourceType: 'Patient', maritalStatus: 'M' }, 'Patient.maritalStatus', 'structure');
    expectOneError({ resourceType: 'Patient', meta: null }, 'Patient.meta', 'structure');
  });
  it('bad dates and other primitive formats', () => {
    expectOneError({ resourceType: 'Patient', birthDate: '1970-13-01' }, 'Patient.birthDate', 'value');
    expectOneError({ resourceType: 'Patient', birthDate: '2023-02-29' }, 'Patient.birthDate', 'value');
    expect(errors({ resourceType: 'Patient', birthDate: '2024-02-29' })).toEqual([]);
    expectOneError({ resourceType: 'Patient', birthDate: '01/02/1970' }, 'Patient.birthDate', 'value');
    expectOneError({ resourceType: 'Patient', deceasedDateTime: '2020-03-25T17:39:15' }, 'Patient.deceased.ofType(dateTime)', 'value');
    expectOneError({ ...observation(), issued: '2024-05-01' }, 'Observation.issued', 'value');
    expectOneError({ ...observation(), valueTime: '25:00:00', valueQuantity: undefined }, 'Observation.value.ofType(time)', 'value');
    expectOneError({ resourceType: 'Patient', multipleBirthInteger: 1.5 }, 'Patient.multipleBirth.ofType(integer)', 'value');
    expectOneError({ resourceType: 'Patient', multipleBirthInteger: 2 ** 31 }, 'Patient.multipleBirth.ofType(integer)', 'value');
    expectOneError({ resourceType: 'Patient', implicitRules: 'http://example.lu/a rule' }, 'Patient.implicitRules', 'value');
    expectOneError({ resourceType: 'Patient', language: 'fr  LU' }, 'Patient.language', 'value');
    // Identifier.system is a uri, so an odd OID there is fine; an oid-typed value is checked.
    expect(errors({ resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.02.3' }] })).toEqual([]);
    expectOneError({ resourceType: 'Patient', extension: [{ url: 'http://x.lu/e', valueOid: 'urn:oid:1.02.3' }] }, 'Patient.extension[0].value.ofType(oid)', 'value');
    expectOneError({ resourceType: 'Patient', extension: [{ url: 'http://x.lu/e', valueUuid: 'urn:uuid:6F0A2A3C-1B7E-4C55-9D1A-3F7E2A1B0C11' }] }, 'Patient.extension[0].value.ofType(uuid)', 'value');
    expectOneError({ resourceType: 'Patient', photo: [{ data: 'abc' }] }, 'Patient.photo[0].data', 'value');
    expectOneError({ resourceType: 'Patient', photo: [{ size: -1 }] }, 'Patient.photo[0].size', 'value');
    expectOneError({ resourceType: 'Patient', text: { status: 'generated', div: 'Jean Muller' } }, 'Patient.text.div', 'value');
    expectOneError({ resourceType: 'Patient', name: [{ text: 'a\u0001b' }] }, 'Patient.name[0].text', 'value');
  });
  it('two variants of a choice element', () => {
    const issue = expectOneError({ ...observation(), valueString: 'high' }, 'Observation.value', 'structure');
    expect(issue.diagnostics).toMatch(/valueQuantity.*valueString|valueString.*valueQuantity/);
  });
  it('missing required elements (Observation.status, Extension.url, Narrative.div)', () => {
    const { status: _status, ...noStatus } = observation();
    expectOneError(noStatus, 'Observation.status', 'required');
    expectOneError({ resourceType: 'Patient', extension: [{ valueString: 'x' }] }, 'Patient.extension[0].url', 'required');
    expectOneError({ resourceType: 'Patient', text: { status: 'generated' } }, 'Patient.text.div', 'required');
    // A required primitive present only through its extension object counts as present.
    const { status: _s, ...rest } = observation();
    const extOnly = { ...rest, _status: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } };
    expect(describeIssues(errors(extOnly))).toBe('');
  });
  it('array where a single value is expected, and a single value where an array is expected', () => {
    expectOneError({ resourceType: 'Patient', birthDate: ['1970-01-01'] }, 'Patient.birthDate', 'structure');
    expectOneError({ resourceType: 'Patient', name: { family: 'Muller' } }, 'Patient.name', 'structure');
    expectOneError({ resourceType: 'Patient', name: [{ given: 'Jean' }] }, 'Patient.name[0].given', 'structure');
  });
  it('empty strings, objects and arrays', () => {
    expectOneError({ resourceType: 'Patient', name: [{ family: '' }] }, 'Patient.name[0].family', 'value');
    expectOneError({ resourceType: 'Patient', maritalStatus: {} }, 'Patient.maritalStatus', 'structure');
    expectOneError({ resourceType: 'Patient', name: [] }, 'Patient.name', 'structure');
    expectOneError({ resourceType: 'Patient', name: [{ family: 'M', given: ['a', ''] }] }, 'Patient.name[0].given[1]', 'value');
  });
  it('invalid id', () => {
    expectOneError({ resourceType: 'Patient', id: 'bad_id' }, 'Patient.id', 'value');
    expectOneError({ resourceType: 'Patient', id: 'x'.repeat(65) }, 'Patient.id', 'value');
  });
  it('unknown or missing resourceType, and a body that is not an object', () => {
    const unknown = errors({ resourceType: 'Patientt', name: [] });
    expect(unknown).toHaveLength(1);
    expect(unknown[0]!.code).toBe('not-supported');
    expect(errors({ resourceType: 'DomainResource' })[0]!.code).toBe('not-supported');
    expect(errors({ name: [] })[0]!.code).toBe('required');
    for (const body of [null, 'Patient', 42, [], [{ resourceType: 'Patient' }]]) {
      const found = errors(body);
      expect(found).toHaveLength(1);
      expect(found[0]!.code).toBe('structure');
    }
  });
  it('invalid contained resources are validated with their own type', () => {
    const r = { ...patient(), contained: [{ resourceType: 'Organization', id: 'org1', name: 42 }] };
    expectOneError(r, 'Patient.contained[0].name', 'structure');
    expectOneError({ ...patient(), contained: [{ resourceType: 'Organisation', id: 'org1' }] }, 'Patient.contained[0]', 'not-supported');
    expectOneError({ ...patient(), contained: [{ id: 'org1' }] }, 'Patient.contained[0]', 'required');
    expectOneError({ ...patient(), contained: [{ resourceType: 'Organization', id: 'org1', active: 'yes' }] }, 'Patient.contained[0].active', 'structure');
  });
  it('resources nested in Bundle entries and Parameters are validated with their own type', () => {
    const b = transaction();
    (b.entry[1]!.resource as Record<string, unknown>).status = undefined;
    delete (b.entry[1]!.resource as Record<string, unknown>).status;
    expectOneError(b, 'Bundle.entry[1].resource.status', 'required');
    const params = { resourceType: 'Parameters', parameter: [{ name: 'p', resource: { resourceType: 'Patient', birthDate: '1970-02-30' } }] };
    expectOneError(params, 'Parameters.parameter[0].resource.birthDate', 'value');
  });
  it('bad `_given` alignment', () => {
    const misaligned = { resourceType: 'Patient', name: [{ given: ['Jean', 'Pierre'], _given: [null] }] };
    const issue = expectOneError(misaligned, 'Patient.name[0].given', 'structure');
    expect(issue.diagnostics).toContain('aligned');
    expectOneError({ resourceType: 'Patient', name: [{ given: ['Jean', null] }] }, 'Patient.name[0].given[1]', 'structure');
    expectOneError({ resourceType: 'Patient', name: [{ given: ['Jean', null], _given: [null, null] }] }, 'Patient.name[0].given[1]', 'structure');
    expectOneError({ resourceType: 'Patient', name: [{ given: ['Jean'], _given: [{}] }] }, 'Patient.name[0].given[0]', 'structure');
    expectOneError({ resourceType: 'Patient', name: [{ given: ['Jean'], _given: { id: 'x' } }] }, 'Patient.name[0].given', 'structure');
    expectOneError({ resourceType: 'Patient', birthDate: null }, 'Patient.birthDate', 'structure');
  });
  it('required bindings enumerated by the R4 JSON schema', () => {
    const issue = expectOneError({ resourceType: 'Patient', gender: 'males' }, 'Patient.gender', 'code-invalid');
    expect(issue.diagnostics).toContain('administrative-gender');
    expectOneError({ ...transaction(), type: 'transactions' }, 'Bundle.type', 'code-invalid');
  });
  it('reports every fault of a resource, each once', () => {
    const r = { resourceType: 'Patient', id: 'bad id', active: 'yes', name: [{ family: '', foo: 1 }], gender: 'x' };
    const found = errors(r);
    expect(found.map((i) => i.expression![0]).sort()).toEqual(['Patient.active', 'Patient.gender', 'Patient.id', 'Patient.name[0].family', 'Patient.name[0].foo']);
  });
});

describe('assertValidResource', () => {
  it('throws a FhirError 400 carrying every error issue', () => {
    let thrown: unknown;
    try {
      assertValidResource({ resourceType: 'Observation', code: { text: 'x' }, valueQuantity: { value: 'a' } });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(FhirError);
    const err = thrown as FhirError;
    expect(err.status).toBe(400);
    expect(err.issues.map((i) => i.expression![0]).sort()).toEqual(['Observation.status', 'Observation.value.ofType(Quantity).value']);
    const oo = err.toOperationOutcome();
    expect(oo.issue.every((i) => i.severity === 'error' && i.expression?.length === 1)).toBe(true);
  });
  it('throws 400 for a body that is not a JSON object or has an unknown resourceType', () => {
    for (const body of [undefined, 'x', [], { resourceType: 'Nope' }, {}]) {
      expect(() => assertValidResource(body)).toThrow(FhirError);
      try {
        assertValidResource(body);
      } catch (e) {
        expect((e as FhirError).status).toBe(400);
      }
    }
  });
});

describe('Synthea bundles', () => {
  const files = existsSync(syntheaDir) ? readdirSync(syntheaDir).filter((f) => /^[0-9a-f]{8}-.*\.json\.bz2$/.test(f)).sort().slice(0, 2) : [];
  if (files.length === 0) {
    it.skip(`skipped: no Synthea bundles in ${syntheaDir} (../shared is absent in a fresh clone)`, () => {});
    return;
  }
  for (const file of files) {
    it(`every resource of ${file}, and the bundle itself, give zero errors`, () => {
      const bundle = JSON.parse(execFileSync('bzip2', ['-dc', join(syntheaDir, file)], { maxBuffer: 1 << 30 }).toString('utf8')) as {
        entry: { resource: { resourceType: string } }[];
      };
      expect(bundle.entry.length).toBeGreaterThan(0);
      const types = new Set<string>();
      const failures: string[] = [];
      for (const [i, e] of bundle.entry.entries()) {
        types.add(e.resource.resourceType);
        for (const issue of errors(e.resource)) failures.push(`entry ${i}: ${issue.diagnostics}`);
      }
      expect(failures.slice(0, 10)).toEqual([]);
      expect(describeIssues(errors(bundle))).toBe('');
      expect(types.size).toBeGreaterThan(5);
    }, 120_000);
  }
});

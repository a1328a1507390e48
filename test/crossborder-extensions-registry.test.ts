// Runs in its own module context: no CDA has been converted when the Bundle is validated, so the
// cross-border extension definitions must come with the package registry itself.
import { describe, expect, it } from 'vitest';
import { validateFull } from '../src/validation/index.ts';

describe('cross-border extensions', () => {
  it('are known to the validator before any CDA conversion ran', () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        {
          fullUrl: 'urn:uuid:6f0b6c4e-2a52-4b1e-9a3e-0f6f1d3c2b11',
          resource: {
            resourceType: 'AllergyIntolerance',
            clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
            code: { extension: [{ url: 'http://dsp.lu/fhir/StructureDefinition/cda-nullflavor', valueCode: 'UNK' }] },
            patient: { reference: 'urn:uuid:6f0b6c4e-2a52-4b1e-9a3e-0f6f1d3c2b12' },
          },
        },
        { fullUrl: 'urn:uuid:6f0b6c4e-2a52-4b1e-9a3e-0f6f1d3c2b12', resource: { resourceType: 'Patient' } },
      ],
    };
    const issues = validateFull(bundle);
    expect(issues.filter((i) => /not known|cda-nullflavor/.test(i.diagnostics ?? ''))).toEqual([]);
    expect(issues.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
  });
});

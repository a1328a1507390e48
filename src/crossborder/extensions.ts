/**
 * StructureDefinitions of the extensions the cross-border reader writes (CDA content FHIR has no element for),
 * indexed by the package registry (src/packages/registry.ts packageRegistry()) with our own profiles, so that
 * Bundles carrying them validate in any process, whether or not a CDA was converted first.
 */
import type { StructureDefinition } from 'fhir/r4';

const BASE = 'http://dsp.lu/fhir/StructureDefinition/';

function simple(id: string, title: string, description: string, valueType: string, contexts: string[]): StructureDefinition {
  return {
    resourceType: 'StructureDefinition',
    id,
    url: `${BASE}${id}`,
    version: '0.1.0',
    name: id.replace(/(^|-)([a-z])/g, (_m, _d, c: string) => c.toUpperCase()),
    title,
    status: 'draft',
    description,
    fhirVersion: '4.0.1',
    kind: 'complex-type',
    abstract: false,
    context: contexts.map((expression) => ({ type: 'element', expression })),
    type: 'Extension',
    baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Extension',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Extension', path: 'Extension', short: title, definition: description, max: '1' },
        { id: 'Extension.extension', path: 'Extension.extension', max: '0' },
        { id: 'Extension.url', path: 'Extension.url', fixedUri: `${BASE}${id}` },
        { id: 'Extension.value[x]', path: 'Extension.value[x]', min: 1, type: [{ code: valueType }] },
      ],
    },
  };
}

export const CROSSBORDER_EXTENSIONS: StructureDefinition[] = [
  simple('cda-nullflavor', 'CDA nullFlavor', 'The nullFlavor of the CDA coded element or value this element was read from.', 'code', ['Element']),
  simple('represented-organization', 'Represented organization', 'The organization a professional acted for in the source CDA (assignedEntity/representedOrganization).', 'Reference', ['Practitioner']),
  {
    resourceType: 'StructureDefinition',
    id: 'cda-code',
    url: `${BASE}cda-code`,
    version: '0.1.0',
    name: 'CdaCode',
    title: 'CDA code kept for the way back',
    status: 'draft',
    description: 'A coded element of the source CDA that FHIR has no element for (allergy type, also of a no-known-allergy statement; problem type, status and health status; severity outside the FHIR codes; an allergy-level severity beside the reaction\'s; the interpretation codes of a severity observation; reaction observation code; vital signs organizer; generic product; package form; administration unit; an immunization act code under another code system; a patient gender code outside M / F / UN; a language mode; a device model code; a qualifier of a problem value), with its name.',
    fhirVersion: '4.0.1',
    kind: 'complex-type',
    abstract: false,
    context: [{ type: 'element', expression: 'Element' }],
    type: 'Extension',
    baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Extension',
    derivation: 'constraint',
    differential: {
      element: [
        { id: 'Extension', path: 'Extension', short: 'CDA code kept for the way back', definition: 'A CDA coded element with its name.' },
        { id: 'Extension.extension', path: 'Extension.extension', slicing: { discriminator: [{ type: 'value', path: 'url' }], rules: 'closed' }, min: 2 },
        { id: 'Extension.extension:name', path: 'Extension.extension', sliceName: 'name', min: 1, max: '1' },
        { id: 'Extension.extension:name.url', path: 'Extension.extension.url', fixedUri: 'name' },
        { id: 'Extension.extension:name.value[x]', path: 'Extension.extension.value[x]', min: 1, type: [{ code: 'string' }] },
        { id: 'Extension.extension:value', path: 'Extension.extension', sliceName: 'value', min: 1, max: '1' },
        { id: 'Extension.extension:value.url', path: 'Extension.extension.url', fixedUri: 'value' },
        { id: 'Extension.extension:value.value[x]', path: 'Extension.extension.value[x]', min: 1, type: [{ code: 'CodeableConcept' }] },
        { id: 'Extension.url', path: 'Extension.url', fixedUri: `${BASE}cda-code` },
        { id: 'Extension.value[x]', path: 'Extension.value[x]', max: '0' },
      ],
    },
  },
];

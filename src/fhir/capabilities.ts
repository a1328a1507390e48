/**
 * The CapabilityStatement, generated at request time from what the server actually runs: the resource types
 * of the type model, the interactions the router implements, the search parameters the search registry
 * knows (including SearchParameter resources added at run time), the registered operations and the formats
 * the HTTP layer negotiates. Nothing here is maintained by hand.
 */
import type { CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4';
import type { Context } from './interactions.ts';
import type { FhirRequest } from './request.ts';
import { fhirModel } from './model.ts';
import { operationRegistry } from '../operations/index.ts';
import { searchParamsFor } from '../search/registry.ts';
import { SUPPORTED_FORMATS } from '../formats/negotiate.ts';
import { VERSION } from '../version.ts';

/** Interactions implemented by the router for every resource type. */
export const TYPE_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'] as const;
export const SYSTEM_INTERACTIONS = ['transaction', 'batch', 'search-system', 'history-system'] as const;

export function capabilityStatement(ctx: Context, req: FhirRequest): CapabilityStatement {
  const model = fhirModel();
  const ops = operationRegistry.list();
  const resource: CapabilityStatementRestResource[] = model.resourceTypes.map((type) => ({
    type,
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    interaction: TYPE_INTERACTIONS.map((code) => ({ code })),
    versioning: 'versioned-update',
    readHistory: true,
    updateCreate: true,
    conditionalCreate: true,
    conditionalRead: 'full-support',
    conditionalUpdate: true,
    conditionalDelete: 'single',
    referencePolicy: ['literal', 'logical', 'local'],
    searchParam: searchParamsFor(type).map((p) => ({
      name: p.code,
      type: p.type,
      ...(p.url ? { definition: p.url } : {}),
    })),
    operation: ops
      .filter((o) => o.levels.some((l) => l !== 'system') && (o.resourceTypes.length === 0 || o.resourceTypes.includes(type)))
      .map((o) => ({ name: o.name, definition: o.definition })),
  }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'dsp-fhir-server',
    kind: 'instance',
    software: { name: 'dsp-fhir-server', version: VERSION },
    implementation: { description: `DSP FHIR server (${ctx.store.kind} store)`, url: req.baseUrl },
    fhirVersion: '4.0.1',
    format: [...SUPPORTED_FORMATS],
    patchFormat: ['application/json-patch+json', 'application/fhir+json', 'application/fhir+xml'],
    rest: [
      {
        mode: 'server',
        resource,
        interaction: SYSTEM_INTERACTIONS.map((code) => ({ code })),
        operation: ops.filter((o) => o.levels.includes('system')).map((o) => ({ name: o.name, definition: o.definition })),
      },
    ],
  };
}

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
import { onRegistryChange, searchParamsFor } from '../search/registry.ts';
import { SUPPORTED_FORMATS } from '../formats/negotiate.ts';
import { VERSION } from '../version.ts';

/** Interactions implemented by the router for every resource type. */
export const TYPE_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'] as const;
export const SYSTEM_INTERACTIONS = ['transaction', 'batch', 'search-system', 'history-system'] as const;

/**
 * The per-type part (about 150 types with their search parameters and operations) is built once and kept until
 * the search registry changes (a SearchParameter written) or the registered operations differ: rebuilding it
 * allocated ~1.4 MB per `GET metadata`, whose garbage collection landed on the requests that followed. It is
 * frozen: every answer shares it.
 */
let cachedResources: { key: string; resource: readonly CapabilityStatementRestResource[] } | undefined;
onRegistryChange(() => {
  cachedResources = undefined;
});

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export function capabilityStatement(ctx: Context, req: FhirRequest): CapabilityStatement {
  const ops = operationRegistry.list();
  const key = ops.map((o) => `${o.name} ${o.definition ?? ''} ${o.levels.join(',')} ${o.resourceTypes.join(',')}`).join('|');
  if (cachedResources?.key !== key) cachedResources = { key, resource: deepFreeze(typeResources(ops)) };
  const resource = cachedResources.resource as CapabilityStatementRestResource[];
  return capabilityStatementWith(ctx, req, ops, resource);
}

function typeResources(ops: ReturnType<typeof operationRegistry.list>): CapabilityStatementRestResource[] {
  const model = fhirModel();
  return model.resourceTypes.map((type) => ({
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
}

function capabilityStatementWith(ctx: Context, req: FhirRequest, ops: ReturnType<typeof operationRegistry.list>, resource: CapabilityStatementRestResource[]): CapabilityStatement {
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

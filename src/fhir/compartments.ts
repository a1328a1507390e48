/**
 * Compartments (R4 compartmentdefinition.html) from the R4 CompartmentDefinition resources: which reference
 * parameters of each resource type put it in a Patient / Encounter / Practitioner / RelatedPerson / Device
 * compartment.
 */
import type { CompartmentDefinition } from 'fhir/r4';
import type { Filter } from '../search/types.ts';
import { readDefinitionBundle } from './model.ts';

let compartments: Map<string, Record<string, string[]>> | undefined;

function load(): Map<string, Record<string, string[]>> {
  if (!compartments) {
    compartments = new Map();
    for (const { resource } of readDefinitionBundle<CompartmentDefinition>('profiles-resources.json').entry) {
      if (resource.resourceType !== 'CompartmentDefinition') continue;
      const byType: Record<string, string[]> = {};
      for (const r of resource.resource ?? []) {
        // `{def}` names the compartment's own resource; it is not a reference parameter.
        const params = (r.param ?? []).filter((p) => p !== '{def}');
        if (params.length) byType[r.code] = params;
      }
      compartments.set(resource.code, byType);
    }
  }
  return compartments;
}

export function isCompartment(type: string): boolean {
  return load().has(type);
}

/** Resource types that can belong to the compartment. */
export function compartmentTypes(compartment: string): string[] {
  return Object.keys(load().get(compartment) ?? {});
}

/** The filter selecting members of `compartment/id` (optionally only some types). */
export function compartmentFilter(compartment: string, id: string, types?: string[]): Filter {
  const all = load().get(compartment) ?? {};
  const paramsByType: Record<string, string[]> = {};
  for (const [t, params] of Object.entries(all)) if (!types || types.includes(t)) paramsByType[t] = params;
  return { kind: 'compartment', targetType: compartment, targetId: id, paramsByType };
}

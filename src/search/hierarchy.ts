/**
 * Reference `:above` / `:below` over strict hierarchies (R4 search.html#recursive): the types whose resources
 * point to a parent of the same type, and the resolution of a start node into the node and its descendants
 * (`:below`) or ancestors (`:above`), through any store's search. The result is a plain reference list that
 * both stores match with their ordinary reference conditions.
 */
import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { extractReferences } from './indexer.ts';
import type { Filter, SearchRequest } from './types.ts';

/** The R4 parameter of each type that names its parent (a reference to the same type). */
export const HIERARCHY_PARAMS: Record<string, string> = {
  Location: 'partof',
  Organization: 'partof',
  Encounter: 'part-of',
  CarePlan: 'part-of',
  Task: 'part-of',
  ResearchStudy: 'partof',
  Specimen: 'parent',
  DeviceDefinition: 'parent',
};

/** Nodes above which a hierarchy search is refused rather than turned into a huge reference list. */
export const MAX_HIERARCHY_NODES = 5_000;

/** Every live resource matching a request (all pages). */
export type SearchAll = (request: SearchRequest) => Promise<Resource[]>;

function request(type: string, filters: Filter[]): SearchRequest {
  return { resourceTypes: [type], filters, sort: [], count: 1000, total: 'none', include: [] };
}

/** The parent references (`Type/id`) of a resource through its hierarchy parameter. */
function parentsOf(resource: Resource, param: string): string[] {
  const out: string[] = [];
  for (const v of extractReferences(resource, new Set([param]))) {
    if (v.param === param && v.type === 'reference' && v.targetType === resource.resourceType && v.targetId) out.push(`${v.targetType}/${v.targetId}`);
  }
  return out;
}

/**
 * `Type/id` of the start node and of every node below it (`below`) or above it (`above`), as far as the
 * stored resources link them (cycles are cut). 400 when the hierarchy is larger than MAX_HIERARCHY_NODES.
 */
export async function hierarchyNodes(searchAll: SearchAll, type: string, id: string, direction: 'above' | 'below', key: string): Promise<string[]> {
  const param = HIERARCHY_PARAMS[type];
  if (!param) throw new FhirError(400, `${key}: ${type} has no strict hierarchy`, 'not-supported');
  const seen = new Set<string>([`${type}/${id}`]);
  let frontier = [id];
  while (frontier.length) {
    let found: string[];
    if (direction === 'below') {
      const children = await searchAll(
        request(type, [{ kind: 'param', param, type: 'reference', anyOf: frontier.map((f) => ({ type: 'reference', reference: `${type}/${f}`, targetType: type, targetId: f })) }]),
      );
      found = children.map((r) => `${type}/${r.id}`);
    } else {
      const nodes = await searchAll(request(type, [{ kind: 'id', ids: frontier }]));
      found = nodes.flatMap((r) => parentsOf(r, param));
    }
    frontier = [];
    for (const k of found) {
      if (seen.has(k)) continue;
      seen.add(k);
      frontier.push(k.slice(type.length + 1));
    }
    if (seen.size > MAX_HIERARCHY_NODES)
      throw new FhirError(400, `${key}: the ${type} hierarchy has more than ${MAX_HIERARCHY_NODES} nodes; narrow the search`, 'too-costly');
  }
  return [...seen];
}

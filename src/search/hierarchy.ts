/**
 * Reference `:above` / `:below` over strict hierarchies (R4 search.html#recursive): the types whose resources
 * point to a parent of the same type, and the resolution of a start node into the node and its descendants
 * (`:below`) or ancestors (`:above`), through any store's search. The result is a plain reference list that
 * both stores match with their ordinary reference conditions.
 */
import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { extractReferences } from './indexer.ts';
import type { StoreSession } from '../store/port.ts';
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

/**
 * Where the hierarchy is read from. Preferably the store session of the request (inside a transaction, the
 * transaction's own session, so that its uncommitted writes are part of the hierarchy), read page by page so
 * that the node limit is checked as the pages arrive. A function returning every match of a request (all
 * pages) is still accepted; it cannot stop early, so a wide level is read in full before it is refused.
 */
export type SearchAll = ((request: SearchRequest) => Promise<Resource[]>) | Pick<StoreSession, 'search'>;

const PAGE = 1000;

function request(type: string, filters: Filter[], count = PAGE): SearchRequest {
  return { resourceTypes: [type], filters, sort: [], count, total: 'none', include: [] };
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
 * stored resources link them (cycles are cut). 400 as soon as more than MAX_HIERARCHY_NODES nodes are found:
 * with a session, pages are requested no larger than what is left of the limit (plus one), so no more than
 * MAX_HIERARCHY_NODES + 1 resources are read before the refusal, however wide a level is.
 */
export async function hierarchyNodes(source: SearchAll, type: string, id: string, direction: 'above' | 'below', key: string, limit = MAX_HIERARCHY_NODES): Promise<string[]> {
  const param = HIERARCHY_PARAMS[type];
  if (!param) throw new FhirError(400, `${key}: ${type} has no strict hierarchy`, 'not-supported');
  const seen = new Set<string>([`${type}/${id}`]);
  let frontier = [id];
  const next: string[] = [];
  /** Records the nodes of one fetched page; refuses once the hierarchy is larger than the limit. */
  const take = (resources: Resource[]) => {
    for (const r of resources) {
      for (const k of direction === 'below' ? [`${type}/${r.id}`] : parentsOf(r, param)) {
        if (seen.has(k)) continue;
        seen.add(k);
        next.push(k.slice(type.length + 1));
      }
    }
    if (seen.size > limit) throw new FhirError(400, `${key}: the ${type} hierarchy has more than ${limit} nodes; narrow the search`, 'too-costly');
  };
  while (frontier.length) {
    const filters: Filter[] =
      direction === 'below'
        ? [{ kind: 'param', param, type: 'reference', anyOf: frontier.map((f) => ({ type: 'reference', reference: `${type}/${f}`, targetType: type, targetId: f })) }]
        : [{ kind: 'id', ids: frontier }];
    if (typeof source === 'function') take(await source(request(type, filters)));
    else {
      let cursor: string | undefined;
      do {
        const page = await source.search({ ...request(type, filters, Math.min(PAGE, limit - seen.size + 1)), cursor });
        take(page.resources);
        cursor = page.next;
      } while (cursor);
    }
    frontier = next.splice(0);
  }
  return [...seen];
}

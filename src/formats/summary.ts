/**
 * `_summary` and `_elements` (R4 search.html#summary, #elements): subsets of a resource chosen from the
 * type model's summary flags and the mandatory elements. Subsetted resources carry the SUBSETTED tag.
 */
import type { Bundle, FhirResource, Resource } from 'fhir/r4';
import { badRequest } from '../fhir/outcome.ts';
import { type ElementInfo, fhirModel } from '../fhir/model.ts';

export type SummaryMode = 'true' | 'text' | 'data' | 'count' | 'false';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };

export function parseSummary(value: string | undefined): SummaryMode | undefined {
  if (value === undefined) return undefined;
  if (['true', 'text', 'data', 'count', 'false'].includes(value)) return value as SummaryMode;
  throw badRequest(`_summary must be one of true, text, data, count, false (got "${value}")`, ['_summary']);
}

function markSubsetted(resource: Record<string, unknown>): void {
  const meta = { ...((resource.meta as Record<string, unknown>) ?? {}) };
  const tags = [...((meta.tag as unknown[]) ?? [])];
  if (!tags.some((t) => (t as { code?: string }).code === 'SUBSETTED')) tags.push(SUBSETTED);
  meta.tag = tags;
  resource.meta = meta;
}

/** Whether a JSON key (or its `_key` twin) belongs to an element accepted by `keep`. */
function filterObject(
  obj: Record<string, unknown>,
  children: Map<string, ElementInfo>,
  keep: (e: ElementInfo) => boolean,
  recurse: boolean,
): Record<string, unknown> {
  const model = fhirModel();
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'resourceType') {
      out[key] = value;
      continue;
    }
    const name = key.startsWith('_') ? key.slice(1) : key;
    const prop = model.resolveProperty(children, name);
    if (!prop || !keep(prop.element)) continue;
    if (recurse && prop.element.children && value && typeof value === 'object') {
      const sub = prop.element.children;
      out[key] = Array.isArray(value)
        ? value.map((v) => (v && typeof v === 'object' ? filterObject(v as Record<string, unknown>, sub, keep, true) : v))
        : filterObject(value as Record<string, unknown>, sub, keep, true);
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** Applies `_summary` to one resource. */
export function summarize(resource: Resource, mode: SummaryMode): Resource {
  if (mode === 'false' || mode === 'count') return resource;
  const children = fhirModel().childrenOfType(resource.resourceType);
  if (!children) return resource;
  const obj = resource as unknown as Record<string, unknown>;
  let out: Record<string, unknown>;
  if (mode === 'data') {
    out = { ...obj };
    delete out.text;
  } else if (mode === 'text') {
    out = filterObject(obj, children, (e) => e.name === 'id' || e.name === 'meta' || e.name === 'text' || e.min > 0, false);
  } else {
    out = filterObject(obj, children, (e) => e.isSummary || e.name === 'id' || e.name === 'meta', true);
  }
  markSubsetted(out);
  return out as unknown as Resource;
}

/** Applies `_elements` (a comma-separated list of top-level element names) to one resource. */
export function selectElements(resource: Resource, elements: string[]): Resource {
  const children = fhirModel().childrenOfType(resource.resourceType);
  if (!children) return resource;
  const wanted = new Set(elements.map((e) => e.trim()).filter(Boolean).map((e) => e.replace(/^[A-Z][A-Za-z]+\./, '')));
  const out = filterObject(
    resource as unknown as Record<string, unknown>,
    children,
    (e) => e.name === 'id' || e.name === 'meta' || e.min > 0 || wanted.has(e.name) || (e.isChoice && wanted.has(e.name.slice(0, -3))),
    false,
  );
  markSubsetted(out);
  return out as unknown as Resource;
}

/** Applies `_summary` / `_elements` to a read result or to the matches of a search Bundle. */
export function applySubsetting(body: Resource, summary: SummaryMode | undefined, elements: string | undefined): Resource {
  if (!summary && !elements) return body;
  const one = (r: Resource) => (summary && summary !== 'false' ? summarize(r, summary) : elements ? selectElements(r, elements.split(',')) : r);
  if (body.resourceType === 'Bundle' && (body as Bundle).type === 'searchset') {
    const bundle = body as Bundle;
    if (summary === 'count') {
      const { entry: _entry, ...rest } = bundle;
      return rest as unknown as Resource;
    }
    return {
      ...bundle,
      entry: bundle.entry?.map((e) => (e.resource && e.search?.mode !== 'outcome' ? { ...e, resource: one(e.resource) as FhirResource } : e)),
    } as Bundle;
  }
  return one(body);
}

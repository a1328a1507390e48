/**
 * Search values that need other data before the store query runs, filled in here (nested chains and `_has`
 * included), so that both stores only ever see plain code and reference lists:
 *
 * - token `:in` / `:not-in` (R4 search.html#token): the value set's codes, from the terminology module (the MVC
 *   content, packages and ValueSets stored on the server);
 * - token `:below` / `:above` (subsumption): the code and its descendants / ancestors in a CodeSystem held
 *   with its hierarchy (`content = complete`); a system not held, or held only as a fragment, is a 400;
 * - reference `:below` / `:above` on a strict hierarchy (R4 search.html#recursive, src/search/hierarchy.ts): the
 *   start node and the nodes below / above it in the store.
 */
import { FhirError, badRequest } from '../fhir/outcome.ts';
import { fullExpansion } from '../terminology/engine.ts';
import type { Scope } from '../terminology/registry.ts';
import { hierarchyNodes, type SearchAll } from './hierarchy.ts';
import type { Filter, Predicate, SearchRequest } from './types.ts';

/** Expansions above this size are refused rather than turned into one huge SQL IN list. */
export const MAX_VALUESET_CODES = 10_000;

type TokenPredicate = Extract<Predicate, { type: 'token' }>;
type ReferencePredicate = Extract<Predicate, { type: 'reference' }>;

interface Pending {
  tokens: { p: TokenPredicate; param: string }[];
  references: { p: ReferencePredicate; param: string }[];
}

function collect(filters: Filter[], out: Pending): void {
  for (const f of filters) {
    if (f.kind === 'param') {
      for (const p of f.anyOf) {
        if (p.type === 'token' && p.modifier && ['in', 'not-in', 'above', 'below'].includes(p.modifier) && !p.valueSetCodes) out.tokens.push({ p, param: f.param });
        if (p.type === 'reference' && (p.modifier === 'above' || p.modifier === 'below') && !p.references) out.references.push({ p, param: f.param });
      }
    } else if (f.kind === 'chain' || f.kind === 'has') collect(f.where, out);
  }
}

/** The code and its descendants (`below`) or ancestors (`above`) in a CodeSystem held with its hierarchy. */
export function subsumptionCodes(scope: Scope, system: string, code: string, direction: 'above' | 'below', key: string): { system?: string; code: string }[] {
  const cs = scope.codeSystem(system);
  if (!cs) throw badRequest(`${key}: the code system ${system} is not known to this server, so subsumption cannot be tested`);
  if (cs.content !== 'complete' || cs.synthetic)
    throw badRequest(`${key}: the code system ${system} is held here as a ${cs.synthetic ? 'fragment built from value sets' : cs.content} without its hierarchy, so subsumption cannot be tested`);
  const codes = new Set<string>([code]);
  const start = cs.get(code)?.code;
  if (start) {
    codes.add(start);
    if (direction === 'below') for (const d of cs.descendants(start)) codes.add(d);
    else {
      const stack = [start];
      while (stack.length) {
        for (const p of cs.get(stack.pop()!)?.parents ?? []) {
          if (codes.has(p)) continue;
          codes.add(p);
          stack.push(p);
        }
      }
    }
  }
  if (codes.size > MAX_VALUESET_CODES) throw new FhirError(400, `${key}: ${system}|${code} has ${codes.size} codes ${direction} it; the limit is ${MAX_VALUESET_CODES}`, 'too-costly');
  const systems = [...new Set([system, cs.url].filter(Boolean))];
  return systems.flatMap((s) => [...codes].map((c) => ({ system: s, code: c })));
}

/**
 * Fills in `valueSetCodes` (token `:in`, `:not-in`, `:above`, `:below`) and `references` (reference `:above`,
 * `:below`) with the terminology `scope` and a search over the stored resources.
 */
export async function expandSearchFilters(request: SearchRequest, scope: () => Promise<Scope>, searchAll: SearchAll): Promise<void> {
  const pending: Pending = { tokens: [], references: [] };
  collect(request.filters, pending);
  if (pending.tokens.length) {
    const s = await scope();
    for (const { p, param } of pending.tokens) {
      if (p.modifier === 'above' || p.modifier === 'below') {
        p.valueSetCodes = subsumptionCodes(s, p.system!, p.code!, p.modifier, `${param}:${p.modifier}`);
        continue;
      }
      const ref = p.valueSet ?? '';
      const [url, version] = ref.split('|');
      const vs = s.valueSet(url!, version);
      if (!vs) throw badRequest(`:in / :not-in: the value set ${ref} is not known to this server`);
      const expansion = fullExpansion(s, vs);
      if (expansion.items.size > MAX_VALUESET_CODES) {
        throw new FhirError(400, `:in / :not-in: ${ref} has ${expansion.items.size} codes; the limit is ${MAX_VALUESET_CODES}`, 'too-costly');
      }
      p.valueSetCodes = [...expansion.items.values()].map((i) => ({ system: i.system, code: i.code }));
    }
  }
  for (const { p, param } of pending.references) {
    if (!p.targetType || !p.targetId) throw badRequest(`${param}:${p.modifier}: no start node`);
    p.references = await hierarchyNodes(searchAll, p.targetType, p.targetId, p.modifier as 'above' | 'below', `${param}:${p.modifier}`);
  }
}

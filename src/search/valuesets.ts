/**
 * `:in` / `:not-in` (R4 search.html#token): the parser names the value set; before the store compiles the
 * request, its codes are filled in from the terminology module (the MVC content, packages and ValueSets stored
 * on the server), nested chains and `_has` included.
 */
import type { Store } from '../store/port.ts';
import { FhirError, badRequest } from '../fhir/outcome.ts';
import { terminologyService } from '../terminology/service.ts';
import { fullExpansion } from '../terminology/engine.ts';
import type { Filter, SearchRequest } from './types.ts';

/** Expansions above this size are refused rather than turned into one huge SQL IN list. */
export const MAX_VALUESET_CODES = 10_000;

function tokenPredicatesNeedingCodes(filters: Filter[], out: { valueSet?: string; valueSetCodes?: { system?: string; code: string }[] }[]): void {
  for (const f of filters) {
    if (f.kind === 'param') {
      for (const p of f.anyOf) if (p.type === 'token' && (p.modifier === 'in' || p.modifier === 'not-in') && !p.valueSetCodes) out.push(p);
    } else if (f.kind === 'chain' || f.kind === 'has') tokenPredicatesNeedingCodes(f.where, out);
  }
}

export async function expandValueSetFilters(store: Store, request: SearchRequest): Promise<void> {
  const pending: { valueSet?: string; valueSetCodes?: { system?: string; code: string }[] }[] = [];
  tokenPredicatesNeedingCodes(request.filters, pending);
  if (!pending.length) return;
  const scope = await terminologyService().scope(store);
  for (const p of pending) {
    const ref = p.valueSet ?? '';
    const [url, version] = ref.split('|');
    const vs = scope.valueSet(url, version);
    if (!vs) throw badRequest(`:in / :not-in: the value set ${ref} is not known to this server`);
    const expansion = fullExpansion(scope, vs);
    if (expansion.items.size > MAX_VALUESET_CODES) {
      throw new FhirError(400, `:in / :not-in: ${ref} has ${expansion.items.size} codes; the limit is ${MAX_VALUESET_CODES}`, 'too-costly');
    }
    p.valueSetCodes = [...expansion.items.values()].map((i) => ({ system: i.system, code: i.code }));
  }
}

/**
 * Business rules checked on write beyond structural validation (422 when broken): things the server must be
 * able to use, such as a SearchParameter whose expression it can compile.
 */
import type { Resource, SearchParameter } from 'fhir/r4';
import { FhirError } from './outcome.ts';
import fhirpath from 'fhirpath';
import { compileExpression } from '../search/indexer.ts';
import { fhirModel } from './model.ts';

const SEARCH_TYPES = new Set(['number', 'date', 'string', 'token', 'reference', 'composite', 'quantity', 'uri', 'special']);

export function checkBusinessRules(resource: Resource): void {
  if (resource.resourceType === 'SearchParameter') checkSearchParameter(resource as SearchParameter);
}

function fail(diagnostics: string, expression: string): never {
  throw new FhirError(422, [{ severity: 'error', code: 'business-rule', diagnostics, expression: [expression] }]);
}

function checkSearchParameter(sp: SearchParameter): void {
  if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(sp.code)) fail(`SearchParameter.code "${sp.code}" is not a usable parameter name`, 'SearchParameter.code');
  if (!SEARCH_TYPES.has(sp.type)) fail(`SearchParameter.type "${sp.type}" is unknown`, 'SearchParameter.type');
  const model = fhirModel();
  for (const [i, base] of (sp.base ?? []).entries()) {
    if (base !== 'Resource' && base !== 'DomainResource' && !model.isResourceType(base)) {
      fail(`SearchParameter.base "${base}" is not a resource type`, `SearchParameter.base[${i}]`);
    }
  }
  if (sp.type !== 'special' && sp.type !== 'composite' && !sp.expression) {
    fail('A SearchParameter needs an expression for the server to index it', 'SearchParameter.expression');
  }
  if (sp.expression) {
    try {
      // The syntax check first (the indexer compiles lazily), then the indexer's own compilation.
      fhirpath.parse(sp.expression);
      compileExpression(sp.expression, sp.base?.[0]);
    } catch (err) {
      fail(`SearchParameter.expression does not compile: ${(err as Error).message}`, 'SearchParameter.expression');
    }
  }
}

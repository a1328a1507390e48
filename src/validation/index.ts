/**
 * The server's one validator. This slice: base R4 structure, run on every write.
 *
 * - `validateResource(resource)` returns every issue found;
 * - `assertValidResource(resource)` throws a FhirError 400 carrying the error issues.
 *
 * Two layers (see docs/validation.md): the definition-driven walker always runs and is the authority for
 * structure, cardinality and primitive formats; the R4 JSON schema (ajv, discriminator on resourceType) runs
 * as well and contributes what the walker does not check (required-binding code enumerations) plus a safety
 * net; its errors at, above or below a location the walker already reported are dropped as duplicates.
 */
import { FhirError, type Issue } from '../fhir/outcome.ts';
import { schemaIssues, schemaValidator } from './schema.ts';
import { baseWalker, type VisitedResource } from './walker.ts';

export type { Issue } from '../fhir/outcome.ts';

/** True when `a` and `b` are the same location or one contains the other. */
function related(a: string, b: string): boolean {
  if (a.length === b.length) return a === b;
  const [short, long] = a.length < b.length ? [a, b] : [b, a];
  if (!long.startsWith(short)) return false;
  const next = long.charCodeAt(short.length);
  return next === 46 /* . */ || next === 91 /* [ */;
}

export function validateResource(resource: unknown): Issue[] {
  const walker = baseWalker();
  const issues: Issue[] = [];
  const visited: VisitedResource[] = [];
  walker.validate(resource, issues, visited);
  let fromSchema: Issue[] | undefined;
  for (const v of visited) {
    const found = schemaIssues(v.resource, v.resourceType, (pointer) => {
      const at = walker.locate(v.resource, pointer);
      return { expression: v.expression + at.expression.slice(v.resourceType.length), element: at.element };
    });
    if (found.length) (fromSchema ??= []).push(...found);
  }
  if (!fromSchema) return issues;
  const seen = issues.flatMap((i) => i.expression ?? []);
  for (const issue of fromSchema) {
    const expr = issue.expression?.[0] ?? '';
    if (!seen.some((s) => related(s, expr))) issues.push(issue);
  }
  return issues;
}

export function assertValidResource(resource: unknown): void {
  const errors = validateResource(resource).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length > 0) throw new FhirError(400, errors);
}

/**
 * Loads the model and compiles the schema validators of the given resource types ahead of the first write
 * (optional: both happen lazily otherwise).
 */
export function warmUpValidation(resourceTypes: readonly string[] = ['Patient', 'Bundle']): void {
  baseWalker();
  for (const rt of resourceTypes) schemaValidator(rt);
}

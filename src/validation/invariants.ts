/**
 * Invariants (ElementDefinition.constraint): FHIRPath expressions compiled once per (base path, expression)
 * with fhirpath 5.2.0 and the R4 model, evaluated with %resource and %rootResource.
 *
 * Core invariants whose published R4 expressions are wrong (or use functions fhirpath.js lacks) are
 * rewritten or checked in code, as HL7's Java validator does:
 * - ele-1 (every element has a value or children): checked by the structural walker (empty objects/strings);
 * - ext-1 (extension or value[x], not both): checked in code by the profile walker;
 * - dom-3 (contained resources are referenced): checked in code (profile.ts), the published expression is
 *   slow and misses `#` back-references inside contained resources;
 * - dom-6 (narrative, a best-practice warning): checked in code (`div` is a FHIRPath keyword fhirpath.js rejects);
 * - ref-1, bld-8, con-3: rewritten below;
 * - txt-1, txt-2 (htmlChecks), eld-19, eld-20, sdf-0 (regular expressions the published text gets wrong):
 *   not evaluated (the xhtml rules are the walker's `<div` check).
 */
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';

const REWRITES: Record<string, string> = {
  // R4 says `> 2`; the rule's text (and R5) mean more than one enableWhen.
  'que-12': 'enableWhen.count() > 1 implies enableBehavior.exists()',
  'ref-1': "reference.exists() implies (reference.startsWith('#').not() or reference = '#' or (reference.substring(1) in %rootResource.contained.id))",
  'bld-8': "fullUrl.exists() implies fullUrl.contains('/_history/').not()",
  'con-3':
    "clinicalStatus.exists() or verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' and code = 'entered-in-error').exists() or category.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-category' and code='problem-list-item').empty()",
};

const SKIPPED = new Set(['ele-1', 'ext-1', 'dom-3', 'dom-6', 'txt-1', 'txt-2', 'eld-19', 'eld-20', 'sdf-0']);

export type Compiled = (data: unknown, env: Record<string, unknown>) => unknown[];

const cache = new Map<string, Compiled | Error>();

/** Expression actually evaluated for a constraint, or undefined when it is skipped. */
export function effectiveExpression(key: string, expression: string): string | undefined {
  if (SKIPPED.has(key)) return undefined;
  return REWRITES[key] ?? expression;
}

/** Compiles (once) an expression evaluated on a node at `base` (an element path such as `Bundle.entry`). */
export function compileInvariant(base: string, expression: string): Compiled | Error {
  const key = base + '\u0000' + expression;
  let c = cache.get(key);
  if (!c) {
    try {
      const fn = fhirpath.compile({ base, expression }, r4model, { resolveInternalTypes: true, traceFn: () => undefined });
      c = (data, env) => fn(data as object, env as Record<string, never>) as unknown[];
    } catch (err) {
      c = err instanceof Error ? err : new Error(String(err));
    }
    cache.set(key, c);
  }
  return c;
}

/** True / false, or an Error when the expression fails to compile or evaluate. */
export function evaluateInvariant(base: string, expression: string, data: unknown, resource: unknown, rootResource: unknown): boolean | Error {
  const fn = compileInvariant(base, expression);
  if (fn instanceof Error) return fn;
  try {
    const out = fn(data, { resource, rootResource });
    // Empty: the rule does not apply (vs-1 on an effectivePeriod, for instance: `($this as dateTime)` is empty).
    if (out.length === 0) return true;
    return out.every((v) => v === true);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

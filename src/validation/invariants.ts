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
 * - ref-1, bdl-8, con-3, que-12: rewritten below;
 * - txt-1, txt-2 (htmlChecks), eld-19, eld-20, sdf-0 (regular expressions the published text gets wrong):
 *   not evaluated (the xhtml rules are the walker's `<div` check).
 */
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';

const REWRITES: Record<string, string> = {
  // R4 says `> 2`; the rule's text (and R5) mean more than one enableWhen.
  'que-12': 'enableWhen.count() > 1 implies enableBehavior.exists()',
  'ref-1': "reference.exists() implies (reference.startsWith('#').not() or reference = '#' or (reference.substring(1) in %rootResource.contained.id))",
  'bdl-8': "fullUrl.exists() implies fullUrl.contains('/_history/').not()",
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

// ---- native evaluation of the commonest invariant shapes ----
//
// Most core invariants are boolean combinations of `path.exists()` / `path.empty()` over plain member paths
// (qty-3 `code.empty() or system.exists()`, obs-6, bdl-5, cmp-1...). fhirpath.js costs 10 to 20 µs per
// evaluation (a context, node wrappers); these shapes are compiled here into closures over the JSON that give
// the same answer in well under a microsecond. Anything else (functions, comparisons, %variables other than
// the rewritten ref-1) goes to fhirpath.js.

type Native = (data: unknown, env: { resource?: unknown; rootResource?: unknown }) => boolean;

/** Type suffixes of choice elements in JSON (`valueQuantity`), to find `value` without mistaking `codeFilter` for `code`. */
const CHOICE_SUFFIXES = new Set(
  'Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Markdown Oid PositiveInt String Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment CodeableConcept Coding ContactPoint Count Distance Duration HumanName Identifier Money Period Quantity Range Ratio Reference SampledData Signature Timing ContactDetail Contributor DataRequirement Expression ParameterDefinition RelatedArtifact TriggerDefinition UsageContext Dosage Meta'.split(' '),
);

function members(v: unknown, name: string, out: unknown[]): void {
  if (Array.isArray(v)) {
    for (const x of v) members(x, name, out);
    return;
  }
  if (v === null || typeof v !== 'object') return;
  const o = v as Record<string, unknown>;
  const direct = o[name];
  if (direct !== undefined && direct !== null) {
    if (Array.isArray(direct)) {
      for (const x of direct) if (x !== null && x !== undefined) out.push(x);
    } else out.push(direct);
    return;
  }
  if (o['_' + name] !== undefined) {
    out.push(o['_' + name]); // a primitive known only by its extensions still exists
    return;
  }
  for (const k in o) {
    if (k.length > name.length && k.startsWith(name) && CHOICE_SUFFIXES.has(k.slice(name.length))) {
      out.push(o[k]);
      return;
    }
  }
}

function pathExists(data: unknown, steps: string[]): boolean {
  let cur: unknown[] = [data];
  for (const st of steps) {
    const next: unknown[] = [];
    for (const c of cur) members(c, st, next);
    if (next.length === 0) return false;
    cur = next;
  }
  return cur.length > 0;
}

/** Recursive descent over: or/xor < and < implies is lowest; terms: (expr), path.exists(), path.empty(), term.not(). */
function compileNative(expression: string): Native | undefined {
  const tokens = expression.match(/\(|\)|[A-Za-z_][A-Za-z0-9_]*|\.|\S/g);
  if (!tokens) return undefined;
  let i = 0;
  const peek = () => tokens[i];
  const fail = () => {
    throw new Error('not native');
  };
  const term = (): Native => {
    let t: Native;
    if (peek() === '(') {
      i++;
      t = implies();
      if (tokens[i++] !== ')') fail();
    } else {
      const path: string[] = [];
      let fn: string | undefined;
      for (;;) {
        const id = tokens[i++];
        if (!id || !/^[a-z][A-Za-z0-9_]*$/.test(id)) fail();
        if (tokens[i] === '(' && tokens[i + 1] === ')') {
          fn = id;
          i += 2;
          break;
        }
        path.push(id!);
        if (tokens[i++] !== '.') fail();
      }
      if (!path.length) fail();
      if (fn === 'exists') t = (d) => pathExists(d, path);
      else if (fn === 'empty') t = (d) => !pathExists(d, path);
      else return fail();
    }
    while (peek() === '.' && tokens[i + 1] === 'not' && tokens[i + 2] === '(' && tokens[i + 3] === ')') {
      const inner = t;
      t = (d, e) => !inner(d, e);
      i += 4;
    }
    return t;
  };
  const and = (): Native => {
    let l = term();
    while (peek() === 'and') {
      i++;
      const a = l;
      const b = term();
      l = (d, e) => a(d, e) && b(d, e);
    }
    return l;
  };
  const or = (): Native => {
    let l = and();
    while (peek() === 'or' || peek() === 'xor') {
      const op = tokens[i++];
      const a = l;
      const b = and();
      l = op === 'or' ? (d, e) => a(d, e) || b(d, e) : (d, e) => a(d, e) !== b(d, e);
    }
    return l;
  };
  const implies = (): Native => {
    let l = or();
    while (peek() === 'implies') {
      i++;
      const a = l;
      const b = or();
      l = (d, e) => !a(d, e) || b(d, e);
    }
    return l;
  };
  try {
    const fn = implies();
    return i === tokens.length ? fn : undefined;
  } catch {
    return undefined;
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Hand-written equivalents of frequent invariants that are not plain exists/empty combinations. */
const HAND_WRITTEN: Record<string, Native> = {
  // ref-1 as rewritten above: a local reference must point to a contained resource of the root.
  [REWRITES['ref-1']!]: (d, e) => {
    const ref = isObj(d) ? d.reference : undefined;
    if (typeof ref !== 'string' || !ref.startsWith('#') || ref === '#') return true;
    const root = e.rootResource;
    const contained = isObj(root) && Array.isArray(root.contained) ? root.contained : [];
    const id = ref.slice(1);
    return contained.some((c) => isObj(c) && c.id === id);
  },
  // bdl-8 (rewritten above; the published text is equivalent).
  [REWRITES['bdl-8']!]: (d) => !(isObj(d) && typeof d.fullUrl === 'string' && d.fullUrl.includes('/_history/')),
  "fullUrl.contains('/_history/').not()": (d) => !(isObj(d) && typeof d.fullUrl === 'string' && d.fullUrl.includes('/_history/')),
  // per-1: start <= end. Values of different precisions are compared at the shorter one; when they are equal
  // there the order is uncertain and the rule fails, as in HL7's validator (FHIRPath gives empty there).
  'start.hasValue().not() or end.hasValue().not() or (start <= end)': (d) => {
    if (!isObj(d) || typeof d.start !== 'string' || typeof d.end !== 'string') return true;
    const a = d.start;
    const b = d.end;
    const timeA = a.length > 10;
    const timeB = b.length > 10;
    if (timeA && timeB) {
      const ta = Date.parse(a);
      const tb = Date.parse(b);
      return Number.isNaN(ta) || Number.isNaN(tb) || ta <= tb;
    }
    // A date (YYYY, YYYY-MM, YYYY-MM-DD) on either side: compare at the shorter precision.
    const n = Math.min(timeA ? 10 : a.length, timeB ? 10 : b.length);
    const pa = a.slice(0, n);
    const pb = b.slice(0, n);
    if (pa !== pb) return pa < pb;
    return a.length === b.length; // the same date on both sides passes; a different precision is uncertain
  },
  // vs-1 (vital signs): a dateTime effective value is precise to the day; other types are not concerned.
  "($this as dateTime).toString().length() >= 8": (d) => typeof d !== 'string' || d.length >= 8,
  // obs-7: a component code may not repeat the Observation's own code when the Observation has a value.
  'value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()': (d, e) => {
    if (!isObj(d) || !pathExists(d, ['value'])) return true;
    const res = isObj(e.resource) ? e.resource : d;
    const own = isObj(res.code) && Array.isArray(res.code.coding) ? res.code.coding : [];
    if (!own.length || !Array.isArray(d.component)) return true;
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    return !d.component.some((c) => isObj(c) && isObj(c.code) && Array.isArray(c.code.coding) && c.code.coding.some((x) => own.some((y) => same(x, y))));
  },
};

const natives = new Map<string, Native | null>();
let nativesOn = true;

/** Turns the native evaluators off or on (tests compare both paths; results must be the same). */
export function useNativeInvariants(on: boolean): void {
  nativesOn = on;
}

/** A native evaluator for an expression, or undefined (fhirpath.js is used). */
export function nativeInvariant(expression: string): Native | undefined {
  let n = natives.get(expression);
  if (n === undefined) {
    n = HAND_WRITTEN[expression] ?? compileNative(expression) ?? null;
    natives.set(expression, n);
  }
  return n ?? undefined;
}

/** True / false, or an Error when the expression fails to compile or evaluate. */
export function evaluateInvariant(base: string, expression: string, data: unknown, resource: unknown, rootResource: unknown): boolean | Error {
  const native = nativesOn ? nativeInvariant(expression) : undefined;
  if (native) return native(data, { resource, rootResource });
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

/**
 * Search indexing: the values of every search parameter of a resource, normalised (src/search/types.ts).
 *
 * Each parameter's expression is compiled once per resource type. Plain paths (`Patient.name.family`,
 * `Observation.value.ofType(Quantity)`, `(Observation.value as Quantity)`, `.where(resolve() is Patient)`,
 * `.where(system='email')`, `[0]`) are walked directly over the JSON with the type model; any other
 * expression falls back to the `fhirpath` library. `resolve()` never fetches: a reference "is" the type
 * written in its literal reference.
 *
 * `_id` and `_lastUpdated` are not indexed: the stores answer them from their own columns.
 */
import type { Resource } from 'fhir/r4';
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';
import { FhirModel, fhirModel, type ElementInfo } from '../fhir/model.ts';
import {
  MAX_DATE,
  MIN_DATE,
  UCUM,
  dateRange as dateRangeOf,
  fold as foldText,
  normalizeReference as normalizeReferenceOf,
  numberRangeOf,
  ucumCanonical,
} from './normalize.ts';
import { onRegistryChange, searchParamsFor, splitUnion, stripOuterParens, unionTerms, type SearchParamDef } from './registry.ts';
import type { IndexValue } from './types.ts';
import { specialIndexValues } from './text.ts';

/** A value reached by an expression: its JSON and its FHIR type. */
export interface Node {
  value: unknown;
  type: string;
  element?: ElementInfo;
}

type Evaluator = (input: Node[]) => Node[];

type Step =
  | { kind: 'child'; name: string }
  | { kind: 'ofType'; type: string }
  | { kind: 'resolveIs'; type: string }
  | { kind: 'whereEq'; field: string; value: string }
  | { kind: 'index'; index: number };

const IDENT = '[A-Za-z_][A-Za-z0-9_]*';
const STEP_RES: [RegExp, (m: RegExpExecArray) => Step][] = [
  [new RegExp(`^\\.(?:ofType|as)\\((${IDENT})\\)`), (m) => ({ kind: 'ofType', type: m[1]! })],
  [new RegExp(`^\\s+as\\s+(${IDENT})`), (m) => ({ kind: 'ofType', type: m[1]! })],
  [new RegExp(`^\\.where\\(\\s*resolve\\(\\)\\s+is\\s+(${IDENT})\\s*\\)`), (m) => ({ kind: 'resolveIs', type: m[1]! })],
  [new RegExp(`^\\.where\\(\\s*(${IDENT})\\s*=\\s*'([^'\\\\]*)'\\s*\\)`), (m) => ({ kind: 'whereEq', field: m[1]!, value: m[2]! })],
  [/^\[(\d+)\]/, (m) => ({ kind: 'index', index: Number(m[1]) })],
  [new RegExp(`^\\.(${IDENT})(?![A-Za-z0-9_(])`), (m) => ({ kind: 'child', name: m[1]! })],
];

/** Parses a plain path term into steps, or undefined when it needs full FHIRPath. */
function parseSteps(term: string): Step[] | undefined {
  let t = stripOuterParens(term);
  // `(A.b as X).c` style: unwrap a parenthesised prefix.
  const paren = /^\(([^()]*(?:\([^()]*\)[^()]*)*)\)(.*)$/.exec(t);
  if (paren) t = paren[1]! + paren[2]!;
  const steps: Step[] = [];
  let rest = '.' + t;
  while (rest.length) {
    let matched = false;
    for (const [re, make] of STEP_RES) {
      const m = re.exec(rest);
      if (m) {
        steps.push(make(m));
        rest = rest.slice(m[0].length);
        matched = true;
        break;
      }
    }
    if (!matched) return undefined;
  }
  return steps;
}

function sameType(a: string, b: string): boolean {
  return a === b || (a.length === b.length && a.toLowerCase() === b.toLowerCase());
}

/**
 * Navigation results of the extraction in progress (parameters share paths such as Patient.address): per
 * JSON object, per child name, the nodes and the type they were computed for (one object is nearly always
 * seen with one type; another type is computed without the cache).
 */
let memo: Map<object, Map<string, { type: string; nodes: Node[] }>> | undefined;

function childNodes(model: FhirModel, node: Node, name: string): Node[] {
  const v = node.value;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return [];
  if (memo) {
    let m = memo.get(v);
    if (!m) memo.set(v, (m = new Map()));
    const hit = m.get(name);
    if (hit) return hit.type === node.type ? hit.nodes : childNodesUncached(model, node, name);
    const nodes = childNodesUncached(model, node, name);
    m.set(name, { type: node.type, nodes });
    return nodes;
  }
  return childNodesUncached(model, node, name);
}

function childNodesUncached(model: FhirModel, node: Node, name: string): Node[] {
  const children = node.element?.children ?? model.childrenOfType(node.type);
  if (!children) return [];
  const slot = slotOf(children, name);
  if (!slot) return [];
  const obj = node.value as Record<string, unknown>;
  const out: Node[] = [];
  for (let i = 0; i < slot.keys.length; i++) {
    const val = obj[slot.keys[i]!];
    if (val === undefined || val === null) continue;
    const type = slot.types[i]!;
    if (Array.isArray(val)) {
      for (const item of val) if (item !== null && item !== undefined) out.push(nodeOf(item, type, slot.element));
    } else out.push(nodeOf(val, type, slot.element));
  }
  return out;
}

/** A child name resolved among an element's children: the element, and its JSON keys with the type of each. */
interface ChildSlot {
  element: ElementInfo;
  keys: string[];
  types: string[];
}
/**
 * Child names resolved once per children map (`value` -> `value[x]` and its `valueQuantity`, `valueString`...
 * keys): resolving them on every visit built every choice name again (a string per type per visit).
 */
const slots = new WeakMap<Map<string, ElementInfo>, Map<string, ChildSlot | null>>();

function slotOf(children: Map<string, ElementInfo>, name: string): ChildSlot | null {
  let byName = slots.get(children);
  if (!byName) slots.set(children, (byName = new Map()));
  let slot = byName.get(name);
  if (slot === undefined) {
    const element = children.get(name) ?? children.get(name + '[x]');
    if (!element) slot = null;
    else if (element.isChoice) slot = { element, keys: element.types.map((t) => FhirModel.choiceName(element, t)), types: [...element.types] };
    else slot = { element, keys: [name], types: [element.types[0] ?? 'Element'] };
    byName.set(name, slot);
  }
  return slot;
}

function nodeOf(value: unknown, type: string, element: ElementInfo): Node {
  if (type === 'Resource' && value && typeof value === 'object') {
    const rt = (value as { resourceType?: string }).resourceType;
    return { value, type: rt ?? 'Resource' };
  }
  return { value, type, element: element.children ? element : undefined };
}

/**
 * One operation per step, built once (no closure per evaluation); the walk stops at the first step that
 * leaves nothing (most parameters of a resource end at an absent element).
 */
function compileSteps(steps: Step[]): Evaluator {
  const model = fhirModel();
  const ops = steps.map((step): ((nodes: Node[]) => Node[]) => {
    switch (step.kind) {
      case 'child': {
        const name = step.name;
        return (nodes) => {
          if (nodes.length === 1) return childNodes(model, nodes[0]!, name);
          const next: Node[] = [];
          for (const n of nodes) for (const c of childNodes(model, n, name)) next.push(c);
          return next;
        };
      }
      case 'ofType': {
        const type = step.type;
        return (nodes) => {
          const next: Node[] = [];
          for (const n of nodes) if (sameType(n.type, type)) next.push(n);
          return next;
        };
      }
      case 'resolveIs': {
        const type = step.type;
        return (nodes) =>
          nodes.filter((n) => {
            const ref = (n.value as { reference?: string }).reference;
            if (typeof ref !== 'string') return false;
            return normalizeReference(ref).targetType === type;
          });
      }
      case 'whereEq': {
        const { field, value } = step;
        return (nodes) => nodes.filter((n) => (n.value as Record<string, unknown>)[field] === value);
      }
      case 'index': {
        const index = step.index;
        return (nodes) => (nodes.length > index ? [nodes[index]!] : []);
      }
    }
  });
  return (input) => {
    let nodes = input;
    for (let i = 0; i < ops.length && nodes.length > 0; i++) nodes = ops[i]!(nodes);
    return nodes;
  };
}

interface FpNode {
  data?: unknown;
  fhirNodeDataType?: string;
}

/** FHIRPath fallback: resolve() replaced by a test on the literal reference, so nothing is ever fetched. */
function compileFhirpath(expression: string, base?: string): Evaluator {
  const rewritten = expression.replace(
    /resolve\(\)\s+is\s+([A-Za-z]+)/g,
    (_m, t: string) => `(reference.startsWith('${t}/') or reference.contains('/${t}/'))`,
  );
  let fn: (r: unknown) => unknown[];
  try {
    fn = fhirpath.compile(base ? { base, expression: rewritten } : rewritten, r4model, {
      resolveInternalTypes: false,
    }) as unknown as (r: unknown) => unknown[];
  } catch {
    return () => [];
  }
  return (input) => {
    const out: Node[] = [];
    for (const n of input) {
      let res: unknown[];
      try {
        res = fn(n.value);
      } catch {
        continue;
      }
      for (const r of res) {
        if (r && typeof r === 'object' && 'data' in (r as object)) {
          const fp = r as FpNode;
          out.push({ value: fp.data, type: fp.fhirNodeDataType ?? jsType(fp.data) });
        } else out.push({ value: r, type: jsType(r) });
      }
    }
    return out;
  };
}

function jsType(v: unknown): string {
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return 'decimal';
  return 'string';
}

const fallbackTerms = new Set<string>();
/** Expression terms compiled so far that needed the FHIRPath library (diagnostics and benchmarks). */
export function fhirpathFallbacks(): string[] {
  return [...fallbackTerms];
}

/**
 * The first child names of every term of a resource-level expression (`Observation.value.ofType(Quantity) |
 * Observation.component.value` -> value, component), or undefined when a term is not a plain path (then the
 * expression may yield values without any of them, e.g. `X.exists() and X != false`).
 */
function firstNames(expression: string): string[] | undefined {
  if (/^([A-Za-z.]+)\.exists\(\) and \1 != false$/.test(expression.trim())) return undefined;
  const names: string[] = [];
  for (const term of splitUnion(expression)) {
    const steps = parseSteps(stripOuterParens(term));
    const root = steps?.[0];
    const first = steps?.[1];
    if (!root || root.kind !== 'child' || !/^[A-Z]/.test(root.name) || !first || first.kind !== 'child') return undefined;
    names.push(first.name);
  }
  return names;
}

/** Compiles a (possibly union) expression; `rootType` is set for composite components (relative paths). */
export function compileExpression(expression: string, rootType?: string): Evaluator {
  // `X.exists() and X != false` (Patient.deceased): a boolean token, true when X is present and not false.
  const exists = /^([A-Za-z.]+)\.exists\(\) and \1 != false$/.exec(expression.trim());
  if (exists) {
    const inner = compileExpression(exists[1]!, rootType);
    return (input) => {
      const nodes = inner(input);
      return [{ value: nodes.length > 0 && nodes.every((n) => n.value !== false), type: 'boolean' }];
    };
  }
  const parts = splitUnion(expression).map((term) => {
    const stripped = stripOuterParens(term);
    let steps = parseSteps(stripped);
    if (steps && rootType) {
      // Relative component expressions have no root; absolute ones start with the type name.
      const first = steps[0];
      if (first?.kind === 'child' && /^[A-Z]/.test(first.name)) steps = steps.slice(1);
    } else if (steps) {
      const first = steps[0];
      if (first?.kind === 'child' && /^[A-Z]/.test(first.name)) steps = steps.slice(1);
      else steps = undefined;
    }
    if (!steps) fallbackTerms.add(rootType ? `${rootType}: ${term}` : term);
    return steps ? compileSteps(steps) : compileFhirpath(term, rootType);
  });
  if (parts.length === 1) return parts[0]!;
  return (input) => parts.flatMap((p) => p(input));
}

// Value conversion ----------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

/** fold() with a cache: displays and texts repeat across resources ("Body Height", code system names...). */
const folded = new Map<string, string>();
function fold(text: string): string {
  let f = folded.get(text);
  if (f === undefined) {
    if (folded.size >= 50_000) folded.clear();
    folded.set(text, (f = foldText(text)));
  }
  return f;
}
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/**
 * dateRange() and normalizeReference() with a cache: a Bundle's resources repeat the same instants (every
 * Observation of an encounter) and the same references (subject, encounter, performer). The cached results
 * are only read or spread into new values, never changed.
 */
const dateRanges = new Map<string, { low: string; high: string } | null>();
function dateRange(text: string): { low: string; high: string } | undefined {
  let r = dateRanges.get(text);
  if (r === undefined) {
    if (dateRanges.size >= 50_000) dateRanges.clear();
    dateRanges.set(text, (r = dateRangeOf(text) ?? null));
  }
  return r ?? undefined;
}
type NormalizedReference = ReturnType<typeof normalizeReferenceOf>;
const normalizedReferences = new Map<string, NormalizedReference>();
const isType = (t: string) => fhirModel().isResourceType(t);
function normalizeReference(ref: string): NormalizedReference {
  let n = normalizedReferences.get(ref);
  if (n === undefined) {
    if (normalizedReferences.size >= 50_000) normalizedReferences.clear();
    normalizedReferences.set(ref, (n = normalizeReferenceOf(ref, isType)));
  }
  return n;
}

function stringValues(param: string, node: Node, out: IndexValue[]): void {
  const add = (s: unknown) => {
    if (typeof s === 'string' && s.trim()) out.push({ param, type: 'string', value: fold(s), exact: s });
  };
  const v = node.value;
  if (typeof v === 'string') return add(v);
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  switch (node.type) {
    case 'HumanName':
      add(o.text);
      add(o.family);
      for (const k of ['given', 'prefix', 'suffix']) for (const s of (o[k] as unknown[]) ?? []) add(s);
      return;
    case 'Address':
      add(o.text);
      for (const s of (o.line as unknown[]) ?? []) add(s);
      for (const k of ['city', 'district', 'state', 'postalCode', 'country']) add(o[k]);
      return;
    default:
      for (const val of Object.values(o)) if (typeof val === 'string') add(val);
  }
}

function tokenValues(param: string, node: Node, out: IndexValue[]): void {
  const v = node.value;
  if (typeof v === 'string' || typeof v === 'number') {
    out.push({ param, type: 'token', code: String(v) });
    return;
  }
  if (typeof v === 'boolean') {
    out.push({ param, type: 'token', code: v ? 'true' : 'false' });
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  switch (node.type) {
    case 'Coding':
      if (str(o.code) || str(o.system) || str(o.display))
        out.push({ param, type: 'token', system: str(o.system), code: str(o.code), text: str(o.display) && fold(o.display as string) });
      return;
    case 'CodeableConcept': {
      let text = str(o.text) && fold(o.text as string);
      for (const c of (o.coding as Obj[]) ?? []) {
        if (str(c.code) || str(c.system)) {
          const display = str(c.display) && fold(c.display as string);
          out.push({ param, type: 'token', system: str(c.system), code: str(c.code), text: display });
          // A text equal to a coding's display adds nothing: `:text` and `:missing` find the coding's value
          // (Synthea repeats the display as the text: one index row less per CodeableConcept).
          if (display === text) text = undefined;
        }
      }
      if (text) out.push({ param, type: 'token', text });
      return;
    }
    case 'Identifier': {
      const system = str(o.system);
      const code = str(o.value);
      const type = o.type as Obj | undefined;
      const typeText = type && str(type.text) ? fold(type.text as string) : undefined;
      if (!system && !code) return;
      out.push({ param, type: 'token', system, code, text: typeText });
      for (const c of ((type?.coding as Obj[]) ?? [])) {
        if (str(c.code) && code) out.push({ param, type: 'token', system, code, ofType: `${str(c.system) ?? ''}|${c.code}|${code}` });
      }
      return;
    }
    case 'ContactPoint':
      if (str(o.value)) out.push({ param, type: 'token', system: str(o.system), code: o.value as string });
      return;
    case 'Quantity':
    case 'Age':
    case 'Duration':
    case 'Distance':
    case 'Count':
      if (str(o.code)) out.push({ param, type: 'token', system: str(o.system), code: o.code as string });
      return;
    case 'Reference': {
      const id = o.identifier as Obj | undefined;
      if (id) tokenValues(param, { value: id, type: 'Identifier' }, out);
      return;
    }
  }
}

function referenceValues(param: string, node: Node, out: IndexValue[]): void {
  const v = node.value;
  if (typeof v === 'string') {
    // canonical / uri used as a reference: strip a `|version` tail.
    const url = v.split('|')[0]!;
    const n = normalizeReference(url);
    out.push({ param, type: 'reference', ...n });
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  const ref = str(o.reference);
  const id = o.identifier as Obj | undefined;
  const idFields = id && (str(id.system) || str(id.value)) ? { identifierSystem: str(id.system), identifierValue: str(id.value) } : {};
  if (ref) out.push({ param, type: 'reference', ...normalizeReference(ref), ...idFields });
  else if (id && (idFields.identifierSystem || idFields.identifierValue))
    out.push({ param, type: 'reference', reference: '', ...idFields });
}

function dateValues(param: string, node: Node, out: IndexValue[]): void {
  const v = node.value;
  const add = (low?: string, high?: string) => {
    if (low !== undefined || high !== undefined) out.push({ param, type: 'date', low: low ?? MIN_DATE, high: high ?? MAX_DATE });
  };
  if (typeof v === 'string') {
    const r = dateRange(v);
    if (r) add(r.low, r.high);
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  if (node.type === 'Period') {
    const s = typeof o.start === 'string' ? dateRange(o.start) : undefined;
    const e = typeof o.end === 'string' ? dateRange(o.end) : undefined;
    if (s || e) add(s?.low ?? MIN_DATE, e?.high ?? MAX_DATE);
  } else if (node.type === 'Timing') {
    for (const ev of (o.event as unknown[]) ?? []) if (typeof ev === 'string') dateValues(param, { value: ev, type: 'dateTime' }, out);
    const b = (o.repeat as Obj | undefined)?.boundsPeriod;
    if (b) dateValues(param, { value: b, type: 'Period' }, out);
  }
}

function quantityOf(param: string, o: Obj, currencyAsCode = false): IndexValue | undefined {
  if (typeof o.value !== 'number') return undefined;
  const r = numberRangeOf(o.value);
  const system = currencyAsCode ? 'urn:iso:std:iso:4217' : str(o.system);
  const code = currencyAsCode ? str(o.currency) : str(o.code);
  const q: IndexValue = { param, type: 'quantity', value: r.value, low: r.low, high: r.high, system, code, unit: str(o.unit) };
  if (system === UCUM && code) {
    const c = ucumCanonical(code, r.value);
    if (c) {
      q.canonicalValue = c.value;
      q.canonicalCode = c.code;
    }
  }
  return q;
}

function quantityValues(param: string, node: Node, out: IndexValue[]): void {
  const v = node.value;
  if (typeof v === 'number') {
    const r = numberRangeOf(v);
    out.push({ param, type: 'quantity', ...r });
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  if (node.type === 'Range') {
    const lo = o.low as Obj | undefined;
    const hi = o.high as Obj | undefined;
    const ql = lo && quantityOf(param, lo);
    const qh = hi && quantityOf(param, hi);
    const first = ql ?? qh;
    if (first && first.type === 'quantity') {
      out.push({ ...first, low: ql && ql.type === 'quantity' ? ql.value : -Infinity, high: qh && qh.type === 'quantity' ? qh.value : Infinity });
    }
    return;
  }
  const q = quantityOf(param, o, node.type === 'Money');
  if (q) out.push(q);
}

function numberValues(param: string, node: Node, out: IndexValue[]): void {
  const v = node.value;
  if (typeof v === 'number') out.push({ param, type: 'number', ...numberRangeOf(v) });
  else if (v && typeof v === 'object' && typeof (v as Obj).value === 'number')
    out.push({ param, type: 'number', ...numberRangeOf((v as Obj).value as number) });
}

function uriValues(param: string, node: Node, out: IndexValue[]): void {
  if (typeof node.value === 'string' && node.value) out.push({ param, type: 'uri', value: node.value });
}

/** The index values of one node per parameter type (exported for src/audit/index-values.ts). */
export const CONVERTERS: Partial<Record<IndexValue['type'], (param: string, node: Node, out: IndexValue[]) => void>> = {
  string: stringValues,
  token: tokenValues,
  reference: referenceValues,
  date: dateValues,
  quantity: quantityValues,
  number: numberValues,
  uri: uriValues,
};

// Compiled per type ---------------------------------------------------------------------------------------

interface CompiledParam {
  def: SearchParamDef;
  evaluate: Evaluator;
  /**
   * JSON keys of the resource that the expression starts from (choice names expanded): when the resource has
   * none of them, the parameter has no value and is skipped without evaluation. Undefined: always evaluate.
   */
  keys?: string[];
  components?: { code: string; type: IndexValue['type']; evaluate: Evaluator }[];
  /**
   * The parameters whose values, in this order, are this one's (unionOf): its values are theirs under its own
   * code, taken from them instead of being evaluated and converted again.
   */
  union?: CompiledParam[];
  /** Some other parameter's union takes this one's values. */
  inUnion?: boolean;
}

const compiledByType = new Map<string, CompiledParam[]>();
onRegistryChange(() => compiledByType.clear());

function compiledFor(resourceType: string): CompiledParam[] {
  let list = compiledByType.get(resourceType);
  if (list) return list;
  list = [];
  for (const def of searchParamsFor(resourceType)) {
    if (!def.expression || def.code === '_id' || def.code === '_lastUpdated' || def.type === 'special') continue;
    const entry: CompiledParam = { def, evaluate: compileExpression(def.expression), keys: jsonKeys(resourceType, def.expression) };
    if (def.type === 'composite') {
      if (!def.components?.length || def.components.some((c) => !c.type || !c.code)) continue;
      entry.components = def.components.map((c) => ({
        code: c.code!,
        type: c.type as IndexValue['type'],
        evaluate: compileExpression(c.expression, resourceType),
      }));
    }
    list.push(entry);
  }
  for (const p of list) p.union = unionOf(p, list);
  for (const p of list) for (const q of p.union ?? []) q.inUnion = true;
  compiledByType.set(resourceType, list);
  return list;
}

/** A term the plain-path walker compiles from the resource's root (no FHIRPath fallback: it never throws). */
function plainTerm(term: string): boolean {
  const steps = parseSteps(term);
  return !!steps && steps[0]?.kind === 'child' && /^[A-Z]/.test(steps[0].name);
}

/**
 * The parameters of the same type whose terms, one after the other, are exactly `p`'s (Observation's `combo-code`
 * = `code` | `component-code`; the composite `combo-code-value-quantity` = `code-value-quantity` |
 * `component-code-value-quantity`, whose components have the same expressions and types). Evaluating a union
 * yields the nodes of each term in turn and a node converts the same way under any parameter code, so `p`'s values
 * are theirs in order (before dedupe), renamed. Only plain-path terms (the walker, which never throws).
 */
function unionOf(p: CompiledParam, list: CompiledParam[]): CompiledParam[] | undefined {
  const terms = unionTerms(p.def.expression);
  if (terms.length < 2 || !terms.every(plainTerm)) return undefined;
  const from: CompiledParam[] = [];
  for (let at = 0; at < terms.length; ) {
    const q = list.find((q) => {
      if (q === p || q.def.type !== p.def.type || !sameComponents(p, q)) return false;
      const own = unionTerms(q.def.expression);
      return own.length < terms.length && own.every((t, k) => terms[at + k] === t);
    });
    if (!q) return undefined;
    from.push(q);
    at += unionTerms(q.def.expression).length;
  }
  return from;
}

function sameComponents(p: CompiledParam, q: CompiledParam): boolean {
  const a = p.def.components ?? [];
  const b = q.def.components ?? [];
  if (!p.components !== !q.components || a.length !== b.length) return false;
  return a.every((c, i) => c.type === b[i]!.type && c.expression === b[i]!.expression);
}

function jsonKeys(resourceType: string, expression: string): string[] | undefined {
  const names = firstNames(expression);
  const children = names && fhirModel().childrenOfType(resourceType);
  if (!names || !children) return undefined;
  const keys: string[] = [];
  for (const name of names) {
    const element = children.get(name) ?? children.get(name + '[x]');
    // An unknown element yields nothing from a plain path either: no key to look for.
    if (!element) continue;
    if (element.isChoice) for (const type of element.types) keys.push(FhirModel.choiceName(element, type));
    else keys.push(name);
  }
  return keys;
}

/** Every index value of `resource` (resource-level `_tag`, `_profile`, `_security`, `_source` included). */
export function extractIndex(resource: Resource, options?: { unions?: boolean }): IndexValue[] {
  memo = new Map();
  try {
    // `unions: false` (tests): every parameter evaluated on its own, none taken from the others (unionOf).
    const values = extractWithMemo(resource, options?.unions !== false);
    // `_text`, `_content` and `near` have no FHIRPath expression to evaluate (src/search/text.ts).
    for (const v of specialIndexValues(resource)) values.push(v);
    return values;
  } finally {
    memo = undefined;
  }
}

/**
 * Only the reference values of a resource (`Type/id` targets per parameter), optionally of the named
 * parameters only: what access decisions need (compartment membership, authors) without the cost of
 * the other parameters, the text words and the positions.
 */
export function extractReferences(resource: Resource, params?: ReadonlySet<string>): IndexValue[] {
  memo = new Map();
  try {
    const out: IndexValue[] = [];
    const root: Node[] = [{ value: resource, type: resource.resourceType }];
    const obj = resource as unknown as Record<string, unknown>;
    const convert = CONVERTERS.reference!;
    for (const p of compiledFor(resource.resourceType)) {
      if (p.def.type !== 'reference' || p.components || (params && !params.has(p.def.code))) continue;
      for (const n of nodesOf(p, root, obj)) convert(p.def.code, n, out);
    }
    return out;
  } finally {
    memo = undefined;
  }
}

function extractWithMemo(resource: Resource, unions: boolean): IndexValue[] {
  const out: IndexValue[] = [];
  const root: Node[] = [{ value: resource, type: resource.resourceType }];
  const obj = resource as unknown as Record<string, unknown>;
  // The values of the parameters some union takes (unionOf), computed once: for the union and for themselves.
  let taken: Map<CompiledParam, IndexValue[]> | undefined;
  const valuesFor = (q: CompiledParam) => {
    let values = taken?.get(q);
    if (!values) (taken ??= new Map()).set(q, (values = valuesOf(q, root, obj)));
    return values;
  };
  for (const p of compiledFor(resource.resourceType)) {
    if (!unions) appendValues(p, root, obj, out);
    else if (p.union) for (const q of p.union) for (const v of valuesFor(q)) out.push(renamed(v, p));
    else if (p.inUnion) for (const v of valuesFor(p)) out.push(v);
    else appendValues(p, root, obj, out);
  }
  return dedupe(out);
}

/** A parameter's values (before dedupe). */
function valuesOf(p: CompiledParam, root: Node[], obj: Record<string, unknown>): IndexValue[] {
  const out: IndexValue[] = [];
  appendValues(p, root, obj, out);
  return out;
}

function appendValues(p: CompiledParam, root: Node[], obj: Record<string, unknown>, out: IndexValue[]): void {
  const nodes = nodesOf(p, root, obj);
  if (!nodes.length) return;
  if (p.components) {
    extractComposite(p, nodes, out);
    return;
  }
  const convert = CONVERTERS[p.def.type as IndexValue['type']];
  if (!convert) return;
  for (const n of nodes) convert(p.def.code, n, out);
}

/** A value of a parameter of `p`'s union, as `p`'s own (its code; a composite's components under `p`'s codes). */
function renamed(v: IndexValue, p: CompiledParam): IndexValue {
  if (v.type !== 'composite') return { ...v, param: p.def.code };
  const codes = p.components!;
  return { ...v, param: p.def.code, components: v.components.map((c, i) => (c.param === codes[i]!.code ? c : { ...c, param: codes[i]!.code })) };
}

/** A parameter's nodes in a resource; none when its first path step is absent or the expression fails. */
function nodesOf(p: CompiledParam, root: Node[], obj: Record<string, unknown>): Node[] {
  if (p.keys && !p.keys.some((k) => obj[k] !== undefined && obj[k] !== null)) return [];
  try {
    return p.evaluate(root);
  } catch {
    return [];
  }
}

function extractComposite(p: CompiledParam, nodes: Node[], out: IndexValue[]): void {
  for (const n of nodes) {
    const perComponent: IndexValue[][] = [];
    for (const c of p.components!) {
      const vals: IndexValue[] = [];
      const convert = CONVERTERS[c.type];
      if (convert) for (const cn of c.evaluate([n])) convert(c.code, cn, vals);
      perComponent.push(vals);
    }
    // A token component without system and code (a CodeableConcept's text) can never match a composite
    // search (component values take no modifier, and a token value always names a system or a code).
    for (let i = 0; i < perComponent.length; i++) {
      if (p.components![i]!.type === 'token') perComponent[i] = perComponent[i]!.filter((v) => v.type !== 'token' || v.system !== undefined || v.code !== undefined);
    }
    if (perComponent.some((v) => v.length === 0)) continue;
    let combos: IndexValue[][] = [[]];
    for (const vals of perComponent) combos = combos.flatMap((prefix) => vals.map((v) => [...prefix, v]));
    for (const components of combos.slice(0, 100)) out.push({ param: p.def.code, type: 'composite', components });
  }
}

/**
 * Drops repeated values (same key as `dedupeAll`). A value's key starts with its parameter, and the values of
 * one parameter are contiguous: keys are only computed within runs of one parameter longer than one value.
 */
export function dedupe(values: IndexValue[]): IndexValue[] {
  const out: IndexValue[] = [];
  const params = new Set<string>();
  for (let i = 0; i < values.length; ) {
    const param = values[i]!.param;
    if (params.has(param)) return dedupeAll(values);
    params.add(param);
    let j = i + 1;
    while (j < values.length && values[j]!.param === param) j++;
    if (j === i + 1) out.push(values[i]!);
    else if (values[i]!.type === 'composite' && j - i <= 32) {
      // Composites compared as their JSON would be (JSON.stringify is most of the cost otherwise).
      const kept = out.length;
      for (let k = i; k < j; k++) {
        const v = values[k]!;
        let dup = false;
        for (let m = kept; m < out.length && !dup; m++) dup = sameJson(out[m]!, v);
        if (!dup) out.push(v);
      }
    } else if (values[i]!.type !== 'composite' && j - i <= 8) {
      // Short runs (a name's parts, a resource's identifiers): compared pairwise, no key strings built; each
      // value's elements are listed once.
      const keptValues: unknown[][] = [];
      for (let k = i; k < j; k++) {
        const v = values[k]!;
        const elements = Object.values(v) as unknown[];
        let dup = false;
        for (let m = 0; m < keptValues.length && !dup; m++) dup = sameKey(keptValues[m]!, elements);
        if (!dup) {
          out.push(v);
          keptValues.push(elements);
        }
      }
    } else {
      const seen = new Set<string>();
      for (let k = i; k < j; k++) {
        const v = values[k]!;
        const key = v.type === 'composite' ? JSON.stringify(v) : Object.values(v).join('\u0000');
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(v);
      }
    }
    i = j;
  }
  return out;
}

/**
 * `x.join('\u0000') === y.join('\u0000')` for the `Object.values` of two flat values (the key of dedupeAll), without
 * building the strings: element by element, null and undefined as ''. When no element holds a NUL the two joins
 * split back into the same elements, so the element comparison is exact; otherwise the joins decide.
 */
function sameKey(x: unknown[], y: unknown[]): boolean {
  if (x.length === y.length) {
    let k = 0;
    while (k < x.length && (x[k] === y[k] || joinPart(x[k]) === joinPart(y[k]))) k++;
    if (k === x.length) return true;
  }
  return hasNul(x) || hasNul(y) ? x.join('\u0000') === y.join('\u0000') : false;
}

function joinPart(v: unknown): string {
  return v === undefined || v === null ? '' : String(v);
}

function hasNul(values: unknown[]): boolean {
  for (const v of values) if (typeof v === 'string' && v.includes('\u0000')) return true;
  return false;
}

/** JSON.stringify(a) === JSON.stringify(b) for index values (flat, or composite of flat components). */
function sameJson(a: IndexValue, b: IndexValue): boolean {
  if (a.type === 'composite' || b.type === 'composite') {
    if (a.type !== 'composite' || b.type !== 'composite' || a.param !== b.param) return false;
    if (a.components.length !== b.components.length) return false;
    for (let i = 0; i < a.components.length; i++) if (!sameJson(a.components[i]!, b.components[i]!)) return false;
    return Object.keys(a).length === 3 && Object.keys(b).length === 3;
  }
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  const kx = Object.keys(x);
  const ky = Object.keys(y);
  let i = 0;
  let j = 0;
  for (;;) {
    // JSON drops undefined properties.
    while (i < kx.length && x[kx[i]!] === undefined) i++;
    while (j < ky.length && y[ky[j]!] === undefined) j++;
    if (i === kx.length || j === ky.length) return i === kx.length && j === ky.length;
    if (kx[i] !== ky[j] || !sameJsonScalar(x[kx[i]!], y[ky[j]!])) return false;
    i++;
    j++;
  }
}

function sameJsonScalar(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // null, NaN and ±Infinity all serialise as null.
  const nullish = (v: unknown) => v === null || (typeof v === 'number' && !Number.isFinite(v));
  if (nullish(a) && nullish(b)) return true;
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') return JSON.stringify(a) === JSON.stringify(b);
  return false;
}

function dedupeAll(values: IndexValue[]): IndexValue[] {
  const seen = new Set<string>();
  const out: IndexValue[] = [];
  for (const v of values) {
    const k = v.type === 'composite' ? JSON.stringify(v) : Object.values(v).join('\u0000');
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(v);
  }
  return out;
}

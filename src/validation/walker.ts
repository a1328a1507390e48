/**
 * The structural walker: one pass over a resource's JSON, driven by element definitions (the R4 base
 * StructureDefinition snapshots through the type model). It checks what a JSON schema cannot express:
 * unknown elements, the JSON kind and lexical form of every primitive, min/max cardinality (primitives
 * included), arrays versus single values, one variant per choice element, `_x` primitive extension objects
 * and their alignment with value arrays, empty objects / arrays / strings, and nested resources with their
 * own type.
 *
 * Definitions are compiled lazily into plans (one per children map): a JSON key lookup table with choice
 * variants and `_x` keys pre-resolved, and the list of required elements. A profile's snapshot turned into the
 * same `ElementInfo` maps compiles into plans the same way; per-element checks (bindings, fixed values,
 * slicing, invariants) hang off `ElementPlan` in later slices.
 */
import { FhirModel, fhirModel, type ElementInfo } from '../fhir/model.ts';
import type { Issue, IssueCode } from '../fhir/outcome.ts';
import { primitiveRule, type PrimitiveRule } from './primitives.ts';

/** Where definitions come from: the base R4 model today, a profile-aware source later. */
export interface DefinitionSource {
  childrenOfType(type: string): Map<string, ElementInfo> | undefined;
  isResourceType(type: string): boolean;
}

export interface ElementPlan {
  readonly element: ElementInfo;
  /** FHIRPath name (`value` for `value[x]`). */
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly isArray: boolean;
  readonly isChoice: boolean;
  /** JSON keys that make the element present (`x`, and `_x` for primitive types; every variant of a choice). */
  readonly presenceKeys: readonly string[];
  /** For the first 30 required elements of a node, a bit of `NodePlan.requiredMask`; 0 otherwise. */
  readonly requiredBit: number;
}

export interface KeyPlan {
  readonly el: ElementPlan;
  /** The concrete type for this JSON key (for choice elements, the one its suffix names). */
  readonly type: string;
  /** The JSON key naming this element/type, without underscore. */
  readonly key: string;
  readonly extKey: string;
  /** FHIRPath step, e.g. `.name` or `.value.ofType(Quantity)`. */
  readonly step: string;
  readonly primitive: PrimitiveRule | undefined;
  readonly isResource: boolean;
  /** Children for complex values (or the id/extension of a primitive's `_x` object), compiled on first use. */
  readonly childMap: Map<string, ElementInfo> | undefined;
  childPlan: NodePlan | undefined;
}

export interface NodePlan {
  /** What the object is, for messages: a type name or a backbone element path. */
  readonly label: string;
  readonly byKey: ReadonlyMap<string, KeyPlan>;
  readonly required: readonly ElementPlan[];
  /** Bits of the required elements tracked by bit; `requiredOverflow` when some are not (more than 30). */
  readonly requiredMask: number;
  readonly requiredOverflow: boolean;
}

const upperFirst = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

type Segment = string | number;

/** A resource met during a walk (the root and every nested one), with its FHIRPath location. */
export interface VisitedResource {
  readonly resource: Record<string, unknown>;
  readonly resourceType: string;
  /** `Patient` for the root, `Bundle.entry[3].resource` for a nested one. */
  readonly expression: string;
}

export class StructureWalker {
  private readonly source: DefinitionSource;
  private readonly plans = new WeakMap<Map<string, ElementInfo>, NodePlan>();
  private readonly resourcePlans = new Map<string, NodePlan>();

  constructor(source: DefinitionSource) {
    this.source = source;
  }

  // ---- plans ----

  planFor(children: Map<string, ElementInfo>, label: string): NodePlan {
    let plan = this.plans.get(children);
    if (plan) return plan;
    const byKey = new Map<string, KeyPlan>();
    const required: ElementPlan[] = [];
    for (const element of children.values()) {
      const name = element.isChoice ? element.name.slice(0, -3) : element.name;
      const presenceKeys: string[] = [];
      const el: ElementPlan = {
        element,
        name,
        min: element.min,
        max: element.max,
        isArray: element.isArray,
        isChoice: element.isChoice,
        presenceKeys,
        requiredBit: element.min > 0 && required.length < 30 ? 1 << required.length : 0,
      };
      for (const type of element.types) {
        const key = element.isChoice ? name + upperFirst(type) : name;
        const primitive = primitiveRule(type);
        const isResource = type === 'Resource' && !element.children;
        const childMap = primitive || isResource ? (primitive ? this.source.childrenOfType(type) : undefined) : element.children ?? this.source.childrenOfType(type);
        byKey.set(key, {
          el,
          type,
          key,
          extKey: '_' + key,
          step: element.isChoice ? `.${name}.ofType(${type})` : '.' + name,
          primitive,
          isResource,
          childMap,
          childPlan: undefined,
        });
        presenceKeys.push(key);
        if (primitive) presenceKeys.push('_' + key);
        if (!element.isChoice) break;
      }
      if (element.min > 0) required.push(el);
    }
    let requiredMask = 0;
    for (const el of required) requiredMask |= el.requiredBit;
    plan = { label, byKey, required, requiredMask, requiredOverflow: required.some((el) => el.requiredBit === 0) };
    this.plans.set(children, plan);
    return plan;
  }

  resourcePlan(resourceType: string): NodePlan | undefined {
    let plan = this.resourcePlans.get(resourceType);
    if (!plan && this.source.isResourceType(resourceType)) {
      const children = this.source.childrenOfType(resourceType);
      if (children) {
        plan = this.planFor(children, resourceType);
        this.resourcePlans.set(resourceType, plan);
      }
    }
    return plan;
  }

  private childPlanOf(kp: KeyPlan): NodePlan | undefined {
    if (kp.childPlan) return kp.childPlan;
    if (!kp.childMap) return undefined;
    kp.childPlan = this.planFor(kp.childMap, kp.el.element.children ? kp.el.element.path : kp.type);
    return kp.childPlan;
  }

  // ---- walking ----

  /**
   * Validates a resource (any JSON value); issues are appended to `issues`. When `visited` is given, every
   * resource of a known type (root and nested) is appended to it.
   */
  validate(resource: unknown, issues: Issue[], visited?: VisitedResource[]): void {
    new Walk(this, issues, visited).resource(resource, true);
  }

  /**
   * Turns a JSON pointer into `resource` (as ajv reports it) into a FHIRPath expression, with the element
   * definition the pointer ends on when it names a defined element.
   */
  locate(resource: unknown, pointer: string): { expression: string; element?: ElementInfo } {
    const r = resource as Record<string, unknown>;
    let path = String(r.resourceType);
    let plan = this.resourcePlan(path);
    let data: unknown = resource;
    let kp: KeyPlan | undefined;
    let viaExt = false;
    const tokens = pointer === '' ? [] : pointer.slice(1).split('/');
    for (const raw of tokens) {
      const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (Array.isArray(data)) {
        path += `[${token}]`;
        data = data[Number(token)];
        plan = kp ? this.descend(kp, data, viaExt) : undefined;
        continue;
      }
      const ext = token.charCodeAt(0) === 95;
      const base = ext ? token.slice(1) : token;
      kp = plan?.byKey.get(base);
      viaExt = ext;
      path += kp ? kp.step : '.' + token;
      data = data !== null && typeof data === 'object' ? (data as Record<string, unknown>)[token] : undefined;
      plan = kp && !Array.isArray(data) ? this.descend(kp, data, ext) : undefined;
    }
    return { expression: path, element: kp?.el.element };
  }

  private descend(kp: KeyPlan, data: unknown, viaExt: boolean): NodePlan | undefined {
    if (kp.isResource) {
      const rt = (data as Record<string, unknown> | null)?.resourceType;
      return typeof rt === 'string' ? this.resourcePlan(rt) : undefined;
    }
    if (kp.primitive && !viaExt) return undefined;
    return this.childPlanOf(kp);
  }

  /** @internal */
  planOfChild(kp: KeyPlan): NodePlan | undefined {
    return this.childPlanOf(kp);
  }
}

/** One validation run: the issue list and the current location as a stack of FHIRPath steps and indexes. */
class Walk {
  private readonly walker: StructureWalker;
  private readonly issues: Issue[];
  private readonly visited: VisitedResource[] | undefined;
  private readonly segs: Segment[] = [];

  constructor(walker: StructureWalker, issues: Issue[], visited: VisitedResource[] | undefined) {
    this.walker = walker;
    this.issues = issues;
    this.visited = visited;
  }

  private expression(extra?: string): string {
    let s = '';
    for (const seg of this.segs) s += typeof seg === 'number' ? `[${seg}]` : seg;
    return extra ? s + extra : s;
  }

  private issue(code: IssueCode, message: string, extra?: string): void {
    const expression = this.expression(extra);
    this.issues.push({ severity: 'error', code, diagnostics: expression ? `${expression}: ${message}` : message, expression: expression ? [expression] : undefined });
  }

  resource(value: unknown, root: boolean): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.issue('structure', `a resource must be a JSON object, found ${describeJson(value)}`);
      return;
    }
    const obj = value as Record<string, unknown>;
    const rt = obj.resourceType;
    if (rt === undefined) {
      this.issue('required', 'missing resourceType');
      return;
    }
    if (typeof rt !== 'string' || rt.length === 0) {
      this.issue('structure', `resourceType must be a non-empty string, found ${describeJson(rt)}`);
      return;
    }
    const plan = this.walker.resourcePlan(rt);
    if (!plan) {
      this.issue('not-supported', `unknown resource type ${show(rt)} (not an R4 resource type)`);
      return;
    }
    if (root) this.segs.push(rt);
    this.visited?.push({ resource: obj, resourceType: rt, expression: this.expression() });
    this.object(obj, plan, true);
    if (root) this.segs.pop();
  }

  private object(obj: Record<string, unknown>, plan: NodePlan, isResource: boolean): void {
    // Keys holding `undefined` (possible in objects built in code, never in parsed JSON) count as absent.
    let keys = Object.keys(obj);
    for (let i = 0; i < keys.length; i++) {
      if (obj[keys[i]!] === undefined) {
        keys = keys.filter((k) => obj[k] !== undefined);
        break;
      }
    }
    const n = keys.length;
    if (n === 0) {
      this.issue('structure', 'empty object: objects must have some content (R4 json.html)');
      return;
    }
    let hasExt = false;
    for (let i = 0; i < n; i++) {
      if (keys[i]!.charCodeAt(0) === 95) {
        hasExt = true;
        break;
      }
    }
    let seen = 0;
    let choices: KeyPlan[] | undefined;
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      if (isResource && key === 'resourceType') continue;
      const isExt = hasExt && key.charCodeAt(0) === 95;
      const kp = plan.byKey.get(isExt ? key.slice(1) : key);
      if (!kp || (isExt && !kp.primitive)) {
        this.issue(
          'structure',
          kp ? `'${key}' is not allowed: ${kp.key} is not a primitive element` : `unknown element '${key}' (not defined for ${plan.label})`,
          '.' + key,
        );
        continue;
      }
      const el = kp.el;
      seen |= el.requiredBit;
      if (el.isChoice) {
        if (!choices) choices = [kp];
        else {
          const other = choices.find((c) => c.el === el);
          if (other && other.type !== kp.type) {
            this.issue('structure', `only one of ${el.element.name} may be present: found both '${other.key}' and '${kp.key}'`, '.' + el.name);
            continue;
          }
          if (!other) choices.push(kp);
        }
      }
      if (isExt) {
        if (obj[kp.key] === undefined) this.element(kp, undefined, obj[key]);
      } else {
        this.element(kp, obj[key], hasExt ? obj[kp.extKey] : undefined);
      }
    }
    if (seen !== plan.requiredMask || plan.requiredOverflow) {
      for (const el of plan.required) {
        if (el.requiredBit !== 0) {
          if (seen & el.requiredBit) continue;
        } else if (el.presenceKeys.some((k) => obj[k] !== undefined)) continue;
        this.issue('required', `missing required element ${el.element.name} (minimum cardinality ${el.min})`, '.' + el.name);
      }
    }
  }

  private element(kp: KeyPlan, value: unknown, ext: unknown): void {
    const el = kp.el;
    this.segs.push(kp.step);
    if (el.isArray) this.repeating(kp, value, ext);
    else this.single(kp, value, ext);
    this.segs.pop();
  }

  private repeating(kp: KeyPlan, value: unknown, ext: unknown): void {
    const el = kp.el;
    let count = 0;
    let values: unknown[] | undefined;
    if (value !== undefined) {
      if (!Array.isArray(value)) {
        this.issue('structure', `'${kp.key}' must be a JSON array (the element repeats), found ${describeJson(value)}`);
        return;
      }
      values = value;
      if (values.length === 0) this.issue('structure', `empty array '${kp.key}': arrays must have some content (R4 json.html)`);
      count = values.length;
    }
    let exts: unknown[] | undefined;
    if (ext !== undefined) {
      if (!Array.isArray(ext)) {
        this.issue('structure', `'${kp.extKey}' must be a JSON array aligned with '${kp.key}', found ${describeJson(ext)}`);
      } else {
        exts = ext;
        if (exts.length === 0) this.issue('structure', `empty array '${kp.extKey}': arrays must have some content (R4 json.html)`);
        else if (values && values.length !== exts.length) {
          this.issue('structure', `'${kp.extKey}' has ${exts.length} item(s) but '${kp.key}' has ${values.length}: the arrays must be aligned, with null where one side is absent`);
        }
        if (exts.length > count) count = exts.length;
      }
    }
    const segs = this.segs;
    if (values) {
      for (let i = 0; i < values.length; i++) {
        const item = values[i];
        segs.push(i);
        if (kp.primitive) {
          if (item === null) {
            if (exts?.[i] == null) this.issue('structure', `null in '${kp.key}' without a matching extension object in '${kp.extKey}'`);
          } else this.primitive(kp, item);
        } else this.complex(kp, item);
        segs.pop();
      }
    }
    if (exts) {
      for (let i = 0; i < exts.length; i++) {
        const item = exts[i];
        segs.push(i);
        if (item === null) {
          if (!values) this.issue('structure', `null in '${kp.extKey}' without a value in '${kp.key}'`);
        } else this.extensionObject(kp, item);
        segs.pop();
      }
    }
    if (count > kp.el.max) this.issue('structure', `${el.element.name} has ${count} item(s), more than the maximum cardinality ${kp.el.max}`);
    else if (count > 0 && count < el.min) this.issue('required', `${el.element.name} has ${count} item(s), fewer than the minimum cardinality ${el.min}`);
  }

  private single(kp: KeyPlan, value: unknown, ext: unknown): void {
    if (value !== undefined) {
      if (Array.isArray(value)) {
        this.issue('structure', `'${kp.key}' must be a single value, not a JSON array (the element does not repeat)`);
      } else if (kp.primitive) {
        if (value === null) {
          if (ext == null) this.issue('structure', `'${kp.key}' is null: null is only allowed inside arrays aligned with '${kp.extKey}'`);
        } else this.primitive(kp, value);
      } else this.complex(kp, value);
    }
    if (ext !== undefined) {
      if (Array.isArray(ext) || ext === null) this.issue('structure', `'${kp.extKey}' must be a JSON object, found ${describeJson(ext)}`);
      else this.extensionObject(kp, ext);
    }
    if (kp.el.max === 0) this.issue('structure', `${kp.el.element.name} is not allowed here (maximum cardinality 0)`);
  }

  private primitive(kp: KeyPlan, value: unknown): void {
    const rule = kp.primitive!;
    if (!rule.kindOk(value)) {
      this.issue('structure', `'${kp.key}' (${rule.type}) must be a JSON ${rule.jsonKind}, found ${describeJson(value)}`);
      return;
    }
    const problem = rule.format(value);
    if (problem) this.issue('value', `invalid ${rule.type} ${show(value)}: ${problem}`);
  }

  private complex(kp: KeyPlan, value: unknown): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.issue('structure', `'${kp.key}' (${kp.isResource ? 'Resource' : kp.type}) must be a JSON object, found ${describeJson(value)}`);
      return;
    }
    if (kp.isResource) {
      this.resource(value, false);
      return;
    }
    const plan = this.walker.planOfChild(kp);
    if (plan) this.object(value as Record<string, unknown>, plan, false);
  }

  /** A primitive's `_x` object: id and extension only. */
  private extensionObject(kp: KeyPlan, value: unknown): void {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.issue('structure', `'${kp.extKey}' items must be JSON objects (id, extension), found ${describeJson(value)}`);
      return;
    }
    const plan = this.walker.planOfChild(kp);
    if (plan) this.object(value as Record<string, unknown>, plan, false);
  }
}

let shared: StructureWalker | undefined;

/** The walker over the R4 base definitions, built once. */
export function baseWalker(): StructureWalker {
  if (!shared) shared = new StructureWalker(fhirModel() satisfies FhirModel);
  return shared;
}

/**
 * The bodies of the FHIR R4 `patch` interaction (http.html#patch): JSON Patch (RFC 6902) and FHIRPath Patch
 * (fhirpatch.html). Both work on a deep copy and never mutate the resource they are given.
 *
 * Error classes, for both formats:
 * - 400 `invalid`: the patch document itself is malformed (not an array / not a Parameters, unknown operation,
 *   missing or mistyped parts, an unparsable FHIRPath expression), or it tries to change the resource's
 *   `resourceType` or `id`.
 * - 422 `processing`: a well-formed patch that cannot be applied to this resource (a failing JSON Patch `test`,
 *   a path that does not resolve, a FHIRPath that matches nothing or too much, an index out of range, an element
 *   name unknown for the type the path resolved to, a value of the wrong type).
 *
 * Why a change of `id`/`resourceType` is a 400: a patch is applied and then stored as an update of the resource
 * named by the URL, and FHIR's update answers 400 when the body's id does not match the URL (http.html#update).
 * A patch that changes them produces exactly such a body, whatever the data it met, so it is treated as an
 * invalid request rather than as a failure to apply.
 */
import type { Parameters, ParametersParameter, Resource } from 'fhir/r4';
import * as jsonPatchModule from 'fast-json-patch';
import type { Operation as JsonPatchOperation } from 'fast-json-patch';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { FhirError } from './outcome.ts';
import { fhirModel, type ElementInfo } from './model.ts';

// fast-json-patch is CommonJS whose exports Node cannot name statically: the namespace then only has `default`.
// Bundlers that pick its `module` build give named exports instead. Take whichever is there.
const jsonpatch = ((jsonPatchModule as unknown as { default?: typeof jsonPatchModule.default }).default ??
  jsonPatchModule) as typeof jsonPatchModule.default;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const invalid = (msg: string, expression?: string[]) =>
  new FhirError(400, [{ severity: 'error', code: 'invalid', diagnostics: msg, expression }]);
const unprocessable = (msg: string, expression?: string[]) =>
  new FhirError(422, [{ severity: 'error', code: 'processing', diagnostics: msg, expression }]);

function identityChange(before: Resource, after: unknown, what: string): FhirError | undefined {
  const a = isObject(after) ? after : {};
  if (a.resourceType !== before.resourceType) {
    return invalid(`${what} may not change the resource type (${String(before.resourceType)} -> ${String(a.resourceType)})`);
  }
  if (a.id !== before.id) {
    return invalid(`${what} may not change the resource id (${String(before.id)} -> ${String(a.id)})`, [`${before.resourceType}.id`]);
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------------------
// JSON Patch

/** JsonPatchError names that describe the document itself rather than its meeting with this resource. */
const MALFORMED_JSON_PATCH = new Set([
  'SEQUENCE_NOT_AN_ARRAY',
  'OPERATION_NOT_AN_OBJECT',
  'OPERATION_OP_INVALID',
  'OPERATION_PATH_INVALID',
  'OPERATION_FROM_REQUIRED',
  'OPERATION_VALUE_REQUIRED',
  'OPERATION_VALUE_CANNOT_CONTAIN_UNDEFINED',
  'OPERATION_PATH_ILLEGAL_ARRAY_INDEX',
]);

function jsonPatchFailure(e: unknown, index?: number): FhirError {
  if (e instanceof jsonpatch.JsonPatchError) {
    const op = e.operation as { op?: unknown; path?: unknown } | undefined;
    const at = index ?? e.index;
    const where = at !== undefined ? `operation ${at}` : 'patch document';
    const what = op && typeof op.op === 'string' ? ` (${op.op} ${String(op.path)})` : '';
    const msg = `JSON Patch ${where}${what}: ${e.message} [${e.name}]`;
    return MALFORMED_JSON_PATCH.has(e.name) ? invalid(msg) : unprocessable(msg);
  }
  // The library throws a plain TypeError/Error for prototype pollution attempts (`__proto__` paths).
  return invalid(`JSON Patch${index !== undefined ? ` operation ${index}` : ''}: ${e instanceof Error ? e.message : String(e)}`);
}

/**
 * Applies an RFC 6902 JSON Patch document to a copy of `resource`. `operations` is the parsed request body.
 */
export function applyJsonPatch(resource: Resource, operations: unknown): Resource {
  if (!Array.isArray(operations)) throw invalid('JSON Patch: the patch document must be a JSON array of operations');
  // Copy the operations too: `add`/`replace` values would otherwise be shared between request and result.
  const ops = structuredClone(operations) as JsonPatchOperation[];
  const syntax = jsonpatch.validate(ops);
  if (syntax) throw jsonPatchFailure(syntax);
  let result: unknown = structuredClone(resource);
  // One operation at a time: the library's errors do not always carry the index of the failing operation.
  ops.forEach((operation, index) => {
    try {
      result = jsonpatch.applyOperation(result, operation, true, true, true, index).newDocument;
    } catch (e) {
      throw jsonPatchFailure(e, index);
    }
  });
  const refused = identityChange(resource, result, 'JSON Patch');
  if (refused) throw refused;
  return result as Resource;
}

// ------------------------------------------------------------------------------------------------------------
// FHIRPath Patch

/** The parts of fhirpath's ResourceNode (src/types.js) this module relies on. */
interface ResNode {
  parentResNode: ResNode | null;
  /** Type name (`HumanName`), or element path for backbone elements (`Patient.contact`). */
  path: string | null;
  data: unknown;
  _data: Json | null;
  fhirNodeDataType: string | null;
  /** Property used to reach the node; for choice elements the bare name (`deceased`) when so written. */
  propName: string | null;
  index: number | null;
}

function isResNode(v: unknown): v is ResNode {
  return isObject(v) && 'parentResNode' in v && 'propName' in v && 'data' in v && 'fhirNodeDataType' in v;
}

type Evaluator = (resource: unknown, env?: Record<string, unknown>) => unknown;
const compiled = new Map<string, Evaluator>();

/**
 * FHIRPath keywords that are also FHIR element names. `div` is a keyword (the integer division operator), so
 * `Patient.text.div` does not parse as written; the spec's own patch tests write it so, and after a `.` it can
 * only be the element: quote it as `` `div` `` there, outside string literals.
 */
const KEYWORD_ELEMENTS = /^(div|mod)(?![A-Za-z0-9_])/;

function quoteKeywordElements(expr: string): string {
  let out = '';
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (quote) {
      out += ch;
      if (ch === '\\') out += expr[++i] ?? '';
      else if (ch === quote) quote = undefined;
      continue;
    }
    if (ch === "'" || ch === '`') quote = ch;
    out += ch;
    if (ch === '.') {
      const m = KEYWORD_ELEMENTS.exec(expr.slice(i + 1));
      if (m) {
        out += `\`${m[1]}\``;
        i += m[1]!.length;
      }
    }
  }
  return out;
}

function compilePath(expr: string, fail: (msg: string) => FhirError): Evaluator {
  let fn = compiled.get(expr);
  if (!fn) {
    const compile = (text: string) => fhirpath.compile(text, r4Model, { resolveInternalTypes: false }) as unknown as Evaluator;
    try {
      fn = compile(expr);
    } catch (e) {
      const quoted = quoteKeywordElements(expr);
      try {
        if (quoted === expr) throw e;
        fn = compile(quoted);
      } catch {
        throw fail(`invalid FHIRPath expression '${expr}': ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (compiled.size >= 1000) compiled.clear();
    compiled.set(expr, fn);
  }
  return fn;
}

const OPERATION_TYPES = ['add', 'insert', 'delete', 'replace', 'move'] as const;
type OperationType = (typeof OPERATION_TYPES)[number];

/** A value to write: the JSON value and, for primitives, its `_` sibling (id/extensions). */
interface NewValue {
  value?: unknown;
  ext?: unknown;
  /** FHIR type when known: `date`, `CodeableConcept`...; undefined for values built from parts. */
  type?: string;
  primitive: boolean;
}

interface PatchOperation {
  index: number;
  type: OperationType;
  path: string;
  name?: string;
  value?: ParametersParameter;
  position?: number;
  source?: number;
  destination?: number;
}

/** Where a value lives: `container[key]` or `container[key][index]`. */
interface Slot {
  container: Json;
  key: string;
  index?: number;
  /** The node whose data (or `_` sibling, side 'ext') is `container`; null for the resource root. */
  owner: ResNode | null;
  side: 'data' | 'ext';
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
const upperFirst = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** Quantity profiles that R4 lists as types of their own in choice elements. */
const QUANTITY_PROFILES = new Set(['Age', 'Count', 'Distance', 'Duration', 'MoneyQuantity', 'SimpleQuantity']);

class FhirPathPatcher {
  private readonly model = fhirModel();
  private readonly root: Json;
  private readonly op: PatchOperation;

  constructor(root: Json, op: PatchOperation) {
    this.root = root;
    this.op = op;
  }

  private label(): string {
    return `FHIRPath Patch operation ${this.op.index} (${this.op.type} ${this.op.path})`;
  }
  private expr(): string[] {
    return [`Parameters.parameter[${this.op.index}]`];
  }
  private bad(msg: string): FhirError {
    return invalid(`${this.label()}: ${msg}`, this.expr());
  }
  private fail(msg: string): FhirError {
    return unprocessable(`${this.label()}: ${msg}`, this.expr());
  }

  private evaluate(expr: string): unknown[] {
    const fn = compilePath(expr, (m) => this.bad(m));
    let result: unknown;
    try {
      result = fn(this.root, {});
    } catch (e) {
      throw this.bad(`cannot evaluate '${expr}': ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!Array.isArray(result)) throw this.bad(`'${expr}' uses asynchronous functions, which a patch cannot use`);
    return result;
  }

  /** Evaluates the operation's path; every match must be an element of the resource. */
  private targets(expr = this.op.path): ResNode[] {
    const result = this.evaluate(expr);
    for (const n of result) {
      if (!isResNode(n)) throw this.fail(`'${expr}' evaluates to a computed value, not to an element of the resource`);
    }
    return result as ResNode[];
  }

  private single(kind: string): ResNode {
    const nodes = this.targets();
    if (nodes.length === 0) throw this.fail(`No content found at ${this.op.path} when ${kind}`);
    if (nodes.length > 1) throw this.fail(`${this.op.path} matches ${nodes.length} elements; ${kind} needs exactly one`);
    return nodes[0]!;
  }

  // -- locating ----------------------------------------------------------------------------------------------

  private slotOf(node: ResNode): Slot {
    const parent = node.parentResNode;
    const prop = node.propName;
    if (!parent || !prop) throw this.bad(`${this.op.path} is the resource itself, which a patch cannot ${this.op.type}`);
    const index = node.index ?? undefined;
    let slot: Slot | undefined;
    if (isObject(parent.data)) {
      const data = parent.data;
      let key: string | undefined;
      if (prop in data || `_${prop}` in data) key = prop;
      else {
        // A choice element reached by its bare name (`deceased`): the JSON key carries the type.
        const suffix = node.fhirNodeDataType ? upperFirst(node.fhirNodeDataType) : undefined;
        if (suffix && (prop + suffix in data || `_${prop}${suffix}` in data)) key = prop + suffix;
        else key = Object.keys(data).find((k) => k.startsWith(prop) && /^[A-Z]/.test(k.slice(prop.length)));
      }
      if (key) slot = { container: data, key, index, owner: parent, side: 'data' };
    } else if (parent._data && prop in parent._data) {
      // id/extension of a primitive: they live in the `_name` sibling object.
      slot = { container: parent._data, key: prop, index, owner: parent, side: 'ext' };
    }
    if (!slot) throw new Error(`patch: cannot locate '${prop}' of ${parent.path ?? '?'} in the resource`);
    // The node's object must be the one we found: anything else means the model and the data disagree.
    if (isObject(node.data) && this.read(slot) !== node.data) {
      throw new Error(`patch: located '${slot.key}' does not hold the matched element`);
    }
    if (slot.owner && slot.owner.parentResNode === null && slot.side === 'data' && slot.owner.data === this.root && (slot.key === 'id' || slot.key === 'resourceType')) {
      throw this.bad(`a patch may not change the resource ${slot.key}`);
    }
    return slot;
  }

  private read(slot: Slot): unknown {
    const v = slot.container[slot.key];
    return slot.index === undefined ? v : Array.isArray(v) ? v[slot.index] : undefined;
  }

  /** Element definition and concrete type of a node, from the R4 model. */
  private typeOfNode(node: ResNode): { children?: Map<string, ElementInfo>; type?: string } {
    const path = node.path ?? node.fhirNodeDataType ?? undefined;
    if (!path) return {};
    if (path.includes('.')) {
      const el = this.model.elementAt(path);
      return { children: el?.children, type: el?.types[0] };
    }
    return { children: this.model.childrenOfType(path), type: path };
  }

  /** An element by JSON name (`deceasedBoolean`) or by definition name without `[x]` (`deceased`). */
  private elementNamed(children: Map<string, ElementInfo>, name: string): ElementInfo | undefined {
    const direct = children.get(name);
    if (direct && !direct.isChoice) return direct;
    return children.get(`${name}[x]`) ?? this.model.resolveProperty(children, name)?.element;
  }

  // -- values ------------------------------------------------------------------------------------------------

  private typeFromSuffix(suffix: string): { type: string; primitive: boolean } {
    const lower = lowerFirst(suffix);
    if (this.model.isPrimitive(lower)) return { type: lower, primitive: true };
    return { type: suffix, primitive: false };
  }

  /** Reads a `value` part (or a nested part): value[x], a resource, or nested parts building a complex value. */
  private readValue(part: ParametersParameter, children: Map<string, ElementInfo> | undefined, where: string): NewValue {
    const p = part as unknown as Json;
    const valueKeys = Object.keys(p).filter((k) => /^value[A-Z]/.test(k));
    const extKeys = Object.keys(p).filter((k) => /^_value[A-Z]/.test(k));
    if (valueKeys.length + extKeys.length > 0) {
      const key = valueKeys[0] ?? extKeys[0]!.slice(1);
      if (valueKeys.length > 1 || extKeys.some((k) => k !== `_${key}`)) throw this.bad(`${where} has more than one value[x]`);
      if (part.part?.length || part.resource) throw this.bad(`${where} has both a value[x] and parts or a resource`);
      const { type, primitive } = this.typeFromSuffix(key.slice('value'.length));
      return { value: p[key], ext: p[`_${key}`], type, primitive };
    }
    if (part.resource) {
      if (part.part?.length) throw this.bad(`${where} has both a resource and parts`);
      return { value: structuredClone(part.resource), type: part.resource.resourceType, primitive: false };
    }
    if (part.part?.length) return { value: this.buildFromParts(part.part, children, where), primitive: false };
    throw this.bad(`${where} has no value (value[x], resource or parts)`);
  }

  /** Builds an object (e.g. an anonymous backbone element) from parts named after its elements. */
  private buildFromParts(parts: ParametersParameter[], children: Map<string, ElementInfo> | undefined, where: string): Json {
    const out: Json = {};
    parts.forEach((sub, i) => {
      const name = sub.name;
      const at = `${where}.part[${i}]`;
      if (typeof name !== 'string' || !name) throw this.bad(`${at} has no name`);
      const element = children ? this.elementNamed(children, name) : undefined;
      if (children && !element) throw this.fail(`${at}: '${name}' is not an element here`);
      const subChildren = element ? this.model.childrenOf(element, element.types[0] ?? 'Element') : undefined;
      const v = this.readValue(sub, element?.isChoice ? undefined : subChildren, at);
      const key = element ? this.keyFor(element, name, v, at) : name;
      const repeats = element ? element.isArray : key in out || `_${key}` in out;
      this.put(out, key, v, repeats, at);
    });
    return out;
  }

  /**
   * The JSON key for writing `v` into `element` named `name`, checking that the value's type fits:
   * for a choice element the value's type picks the key (`deceased` + boolean -> `deceasedBoolean`).
   */
  private keyFor(element: ElementInfo, name: string, v: NewValue, where: string): string {
    if (element.isChoice) {
      const prefix = element.name.slice(0, -3);
      if (name !== prefix) {
        // Named with its type already (`deceasedBoolean`): the value must be of that type.
        if (v.type && lowerFirst(name.slice(prefix.length)) !== lowerFirst(v.type)) {
          throw this.fail(`${where}: a ${v.type} value cannot be written to '${name}'`);
        }
        return name;
      }
      if (!v.type) throw this.fail(`${where}: '${name}' is a choice element; its value must be a value[x]`);
      const type = element.types.find((t) => lowerFirst(t) === lowerFirst(v.type!));
      if (!type) throw this.fail(`${where}: ${name}[x] does not allow the type ${v.type} (allowed: ${element.types.join(', ')})`);
      return prefix + upperFirst(type);
    }
    this.checkType(element, v, where);
    return name;
  }

  private checkType(element: ElementInfo, v: NewValue, where: string): void {
    if (!v.type || element.types.length === 0) return;
    const declared = element.types;
    const declaredPrimitive = declared.every((t) => this.model.isPrimitive(t));
    if (declaredPrimitive !== v.primitive) {
      throw this.fail(`${where}: a ${v.type} value cannot be written to ${element.path} (${declared.join('|')})`);
    }
    // Primitives are compared on their JSON form only (an xhtml div may be given as a valueString).
    if (v.primitive) return;
    const ok = declared.some(
      (t) => t === v.type || t === 'Resource' || t === 'Element' || (t === 'Quantity' && QUANTITY_PROFILES.has(v.type!)),
    );
    if (!ok) throw this.fail(`${where}: a ${v.type} value cannot be written to ${element.path} (${declared.join('|')})`);
  }

  /** Writes a value under `key`, appending when the element repeats; keeps `_key` aligned for primitives. */
  private put(obj: Json, key: string, v: NewValue, repeats: boolean, where: string): void {
    if (!repeats) {
      if (obj[key] !== undefined || obj[`_${key}`] !== undefined) throw this.fail(`${where}: '${key}' already has a value`);
      if (v.value !== undefined) obj[key] = v.value;
      if (v.ext !== undefined) obj[`_${key}`] = v.ext;
      return;
    }
    this.insertAt(obj, key, this.listLength(obj, key), v);
  }

  // -- array surgery keeping `name` and `_name` aligned --------------------------------------------------------

  private insertAt(obj: Json, key: string, at: number, v: NewValue): void {
    const list = Array.isArray(obj[key]) ? (obj[key] as unknown[]) : [];
    let extList = Array.isArray(obj[`_${key}`]) ? (obj[`_${key}`] as unknown[]) : undefined;
    const length = Math.max(list.length, extList?.length ?? 0);
    while (list.length < length) list.push(null);
    if (v.ext !== undefined && !extList) extList = new Array<unknown>(length).fill(null);
    if (extList) while (extList.length < length) extList.push(null);
    list.splice(at, 0, v.value ?? null);
    extList?.splice(at, 0, v.ext ?? null);
    obj[key] = list;
    if (extList) obj[`_${key}`] = extList;
    this.tidyArrays(obj, key);
  }

  private removeAt(obj: Json, key: string, at: number): NewValue {
    const list = Array.isArray(obj[key]) ? (obj[key] as unknown[]) : undefined;
    const extList = Array.isArray(obj[`_${key}`]) ? (obj[`_${key}`] as unknown[]) : undefined;
    const removed: NewValue = { value: list?.[at] ?? undefined, ext: extList?.[at] ?? undefined, primitive: false };
    if (list && at < list.length) list.splice(at, 1);
    if (extList && at < extList.length) extList.splice(at, 1);
    this.tidyArrays(obj, key);
    return removed;
  }

  /** Drops `_key` when it holds nothing, and `key` when empty (or only nulls with no `_key` left). */
  private tidyArrays(obj: Json, key: string): void {
    const ext = obj[`_${key}`];
    if (Array.isArray(ext) && ext.every((e) => e === null || e === undefined)) delete obj[`_${key}`];
    const list = obj[key];
    if (Array.isArray(list)) {
      const hasExt = Array.isArray(obj[`_${key}`]);
      if (list.length === 0 || (!hasExt && list.every((e) => e === null || e === undefined))) delete obj[key];
      else if (!hasExt) return;
      else {
        // Trailing nulls of the value list are only padding when `_key` is longer; JSON keeps lists aligned.
        const extLen = (obj[`_${key}`] as unknown[]).length;
        while (list.length < extLen) list.push(null);
      }
    }
  }

  /** Removes the value in a slot (the whole element: value and `_` sibling), then prunes emptied parents. */
  private removeSlot(slot: Slot): void {
    const { container, key } = slot;
    if (slot.index === undefined) {
      delete container[key];
      delete container[`_${key}`];
    } else {
      this.removeAt(container, key, slot.index);
    }
    this.pruneUp(slot.owner, slot.side);
  }

  private pruneUp(owner: ResNode | null, side: 'data' | 'ext'): void {
    if (!owner || !owner.parentResNode) return;
    const obj = side === 'data' ? owner.data : owner._data;
    if (!isObject(obj) || Object.keys(obj).length > 0) return;
    const slot = this.slotOf(owner);
    if (side === 'data') return this.removeSlot(slot);
    // The `_name` object of a primitive emptied: drop it, and the item too if it has no value either.
    const { container, key, index } = slot;
    if (index === undefined) {
      delete container[`_${key}`];
      if (container[key] === undefined || container[key] === null) this.removeSlot(slot);
      return;
    }
    const ext = container[`_${key}`];
    if (Array.isArray(ext)) ext[index] = null;
    const list = container[key];
    if (!Array.isArray(list) || list[index] === null || list[index] === undefined) this.removeSlot(slot);
    else this.tidyArrays(container, key);
  }

  // -- operations --------------------------------------------------------------------------------------------

  apply(): void {
    switch (this.op.type) {
      case 'add':
        return this.add();
      case 'insert':
        return this.insert();
      case 'delete':
        return this.delete();
      case 'replace':
        return this.replace();
      case 'move':
        return this.move();
    }
  }

  private add(): void {
    const target = this.single('adding');
    const name = this.op.name!;
    const { children } = this.typeOfNode(target);
    const element = children ? this.elementNamed(children, name) : undefined;
    if (children && !element) throw this.fail(`'${name}' is not an element of ${target.path ?? 'the target'}`);
    const subChildren = element && !element.isChoice ? this.model.childrenOf(element, element.types[0] ?? 'Element') : undefined;
    const v = this.readValue(this.op.value!, subChildren, 'value');
    const key = element ? this.keyFor(element, name, v, 'value') : name;
    let obj: Json;
    if (isObject(target.data)) {
      obj = target.data;
    } else {
      // Adding an id or extension to a primitive: it goes into the `_name` sibling, created on demand.
      const slot = this.slotOf(target);
      if (slot.index === undefined) {
        const ext = slot.container[`_${slot.key}`];
        obj = isObject(ext) ? ext : (slot.container[`_${slot.key}`] = {});
      } else {
        const length = this.listLength(slot.container, slot.key);
        let extList = slot.container[`_${slot.key}`] as unknown[] | undefined;
        if (!Array.isArray(extList)) extList = slot.container[`_${slot.key}`] = new Array<unknown>(length).fill(null);
        while (extList.length <= slot.index) extList.push(null);
        const cur = extList[slot.index];
        obj = isObject(cur) ? cur : (extList[slot.index] = {});
      }
    }
    if (obj === this.root && (key === 'id' || key === 'resourceType')) throw this.bad(`a patch may not change the resource ${key}`);
    if (element?.isChoice && !element.isArray) {
      // Only one type of a choice at a time: `deceasedDateTime` blocks adding `deceasedBoolean`.
      const prefix = element.name.slice(0, -3);
      const taken = Object.keys(obj).find((k) => k.replace(/^_/, '').startsWith(prefix) && /^[A-Z]/.test(k.replace(/^_/, '').slice(prefix.length)));
      if (taken) throw this.fail(`value for '${name}': ${prefix}[x] already has a value (${taken.replace(/^_/, '')})`);
    }
    const repeats = element ? element.isArray : Array.isArray(obj[key]);
    this.put(obj, key, v, repeats, `value for '${name}'`);
  }

  /** The list a path names: its items must all be one property of one parent. */
  private list(kind: string): { obj: Json; key: string; owner: ResNode | null; length: number } {
    const nodes = this.targets();
    if (nodes.length > 0) {
      const slots = nodes.map((n) => this.slotOf(n));
      const first = slots[0]!;
      if (slots.some((s) => s.container !== first.container || s.key !== first.key || s.index === undefined)) {
        if (slots.every((s) => s.container === first.container && s.key === first.key)) {
          throw this.fail(`${this.op.path} is not a repeating element; ${kind} needs a list`);
        }
        throw this.fail(`${this.op.path} matches elements of more than one list; ${kind} needs exactly one list`);
      }
      return { obj: first.container, key: first.key, owner: first.owner, length: this.listLength(first.container, first.key) };
    }
    // Nothing matched: an empty list `X.name` is still addressable through its parent `X`.
    const m = /^(.*\S)\s*\.\s*([A-Za-z][A-Za-z0-9_]*)$/.exec(this.op.path);
    if (m) {
      const parents = this.targets(m[1]!);
      if (parents.length === 1 && isObject(parents[0]!.data)) {
        const parent = parents[0]!;
        const { children } = this.typeOfNode(parent);
        const element = children?.get(m[2]!);
        if (element?.isArray) return { obj: parent.data as Json, key: m[2]!, owner: parent, length: 0 };
      }
    }
    throw this.fail(`No list found at ${this.op.path} when ${kind}`);
  }

  private listLength(obj: Json, key: string): number {
    const a = Array.isArray(obj[key]) ? (obj[key] as unknown[]).length : 0;
    const b = Array.isArray(obj[`_${key}`]) ? (obj[`_${key}`] as unknown[]).length : 0;
    return Math.max(a, b);
  }

  private insert(): void {
    const { obj, key, owner, length } = this.list('inserting');
    const at = this.op.position!;
    if (at > length) throw this.fail(`index ${at} is outside the list (${length} items; allowed 0..${length})`);
    let children: Map<string, ElementInfo> | undefined;
    let element: ElementInfo | undefined;
    if (owner) {
      children = this.typeOfNode(owner).children;
      element = children ? this.model.resolveProperty(children, key)?.element : undefined;
    }
    const subChildren = element ? this.model.childrenOf(element, element.types[0] ?? 'Element') : undefined;
    const v = this.readValue(this.op.value!, subChildren, 'value');
    if (element) this.checkType(element, v, 'value');
    this.insertAt(obj, key, at, v);
  }

  private move(): void {
    const { obj, key, length } = this.list('moving');
    const { source, destination } = this.op as Required<PatchOperation>;
    if (source >= length) throw this.fail(`source ${source} is outside the list (${length} items)`);
    if (destination >= length) throw this.fail(`destination ${destination} is outside the list (${length} items)`);
    const item = this.removeAt(obj, key, source);
    this.insertAt(obj, key, destination, item);
  }

  private delete(): void {
    const nodes = this.targets();
    if (nodes.length === 0) return;
    if (nodes.length > 1) throw this.fail(`${this.op.path} matches ${nodes.length} elements; delete needs at most one`);
    this.removeSlot(this.slotOf(nodes[0]!));
  }

  private replace(): void {
    const target = this.single('replacing');
    const slot = this.slotOf(target);
    const parentType = target.parentResNode ? this.typeOfNode(target.parentResNode) : {};
    const resolved = parentType.children ? this.model.resolveProperty(parentType.children, slot.key) : undefined;
    const element = resolved?.element;
    const subChildren = element && !element.isChoice ? this.model.childrenOf(element, element.types[0] ?? 'Element') : undefined;
    const v = this.readValue(this.op.value!, subChildren, 'value');
    let key = slot.key;
    if (element?.isChoice) {
      const prefix = element.name.slice(0, -3);
      key = this.keyFor(element, prefix, v, 'value');
    } else if (element) {
      this.checkType(element, v, 'value');
    }
    const { container, index } = slot;
    if (index === undefined) {
      delete container[slot.key];
      delete container[`_${slot.key}`];
      if (v.value !== undefined) container[key] = v.value;
      if (v.ext !== undefined) container[`_${key}`] = v.ext;
      return;
    }
    // The list may be absent when every item carries only an id/extensions (`_given` without `given`).
    const list = Array.isArray(container[slot.key]) ? (container[slot.key] as unknown[]) : (container[slot.key] = []);
    while (list.length <= index) list.push(null);
    list[index] = v.value ?? null;
    let extList = container[`_${slot.key}`] as unknown[] | undefined;
    if (v.ext !== undefined && !Array.isArray(extList)) extList = container[`_${slot.key}`] = new Array<unknown>(list.length).fill(null);
    if (Array.isArray(extList)) {
      while (extList.length <= index) extList.push(null);
      extList[index] = v.ext ?? null;
    }
    this.tidyArrays(container, slot.key);
  }
}

// -- reading the Parameters --------------------------------------------------------------------------------------

function readOperations(parameters: Parameters): PatchOperation[] {
  if (!isObject(parameters) || parameters.resourceType !== 'Parameters') {
    throw invalid('FHIRPath Patch: the body must be a Parameters resource');
  }
  const list = parameters.parameter ?? [];
  if (!Array.isArray(list)) throw invalid('FHIRPath Patch: Parameters.parameter must be a list');
  return list.map((param, index) => readOperation(param, index));
}

function readOperation(param: ParametersParameter, index: number): PatchOperation {
  const expression = [`Parameters.parameter[${index}]`];
  const bad = (msg: string) => invalid(`FHIRPath Patch operation ${index}: ${msg}`, expression);
  if (!isObject(param)) throw bad('not an object');
  if (param.name !== 'operation') throw bad(`parameter name must be 'operation' (found '${String(param.name)}')`);
  const parts = new Map<string, ParametersParameter[]>();
  for (const part of param.part ?? []) {
    if (!isObject(part) || typeof part.name !== 'string') throw bad('every part needs a name');
    if (!['type', 'path', 'name', 'value', 'index', 'source', 'destination'].includes(part.name)) {
      throw bad(`unknown part '${part.name}'`);
    }
    parts.set(part.name, [...(parts.get(part.name) ?? []), part]);
  }
  const one = (name: string): ParametersParameter | undefined => {
    const found = parts.get(name);
    if (found && found.length > 1) throw bad(`part '${name}' appears ${found.length} times`);
    return found?.[0];
  };
  const text = (name: string): string | undefined => {
    const p = one(name);
    if (!p) return undefined;
    const v = p.valueString ?? p.valueCode ?? p.valueUri;
    if (typeof v !== 'string' || v.trim() === '') throw bad(`part '${name}' must have a non-empty valueString`);
    return v;
  };
  const integer = (name: string): number | undefined => {
    const p = one(name);
    if (!p) return undefined;
    const v = p.valueInteger ?? p.valueUnsignedInt ?? p.valuePositiveInt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`part '${name}' must be a valueInteger >= 0`);
    return v;
  };
  const type = text('type');
  if (!type) throw bad("missing part 'type'");
  if (!(OPERATION_TYPES as readonly string[]).includes(type)) {
    throw bad(`unknown operation type '${type}' (expected ${OPERATION_TYPES.join(', ')})`);
  }
  const path = text('path');
  if (!path) throw bad("missing part 'path'");
  const op: PatchOperation = {
    index,
    type: type as OperationType,
    path,
    name: text('name'),
    value: one('value'),
    position: integer('index'),
    source: integer('source'),
    destination: integer('destination'),
  };
  const need: Record<OperationType, string[]> = {
    add: ['name', 'value'],
    insert: ['index', 'value'],
    delete: [],
    replace: ['value'],
    move: ['source', 'destination'],
  };
  for (const n of need[op.type]) if (!parts.has(n)) throw bad(`${op.type} needs a part '${n}'`);
  const allowed = new Set(['type', 'path', ...need[op.type]]);
  for (const n of parts.keys()) if (!allowed.has(n)) throw bad(`${op.type} does not take a part '${n}'`);
  return op;
}

/**
 * Applies a FHIRPath Patch (a Parameters of `operation`s) to a copy of `resource`, operations in order.
 */
export function applyFhirPathPatch(resource: Resource, parameters: Parameters): Resource {
  // Read every operation first: a malformed one fails the whole patch before anything is evaluated.
  const ops = readOperations(parameters);
  const result = structuredClone(resource) as unknown as Json;
  for (const op of ops) new FhirPathPatcher(result, op).apply();
  const refused = identityChange(resource, result, 'FHIRPath Patch');
  if (refused) throw refused;
  return result as unknown as Resource;
}

/**
 * Lossless conversion between FHIR R4 JSON and FHIR R4 XML (R4 spec xml.html and json.html), driven entirely by
 * the type model in src/fhir/model.ts: there is no per-resource code.
 *
 * Mapping rules implemented here:
 * - primitive values live in a `value` attribute; their `id` and `extension` (JSON `_name`) become the `id`
 *   attribute and `<extension>` children of the same element. Repeating primitives use parallel JSON arrays
 *   (`given` / `_given`) with `null` where an item has no value or no id/extension.
 * - children are written in StructureDefinition order, whatever the JSON key order was.
 * - choice elements keep their type suffix (`valueQuantity`) as the element name.
 * - elements flagged xmlAttr (Element.id, Extension.url) are XML attributes; Resource.id is an element.
 * - elements typed as a resource (contained, Bundle.entry.resource, Parameters.parameter.resource...) wrap an
 *   element named after the resource type.
 * - Narrative.div (xhtml) is XHTML in the XHTML namespace. In JSON it is a string holding the div's XML: it is
 *   written verbatim and, when parsing, the div's exact source text is taken back, so a JSON -> XML -> JSON
 *   round trip returns the identical string.
 *
 * Known limits of losslessness (inherent in the formats, not in this code):
 * - decimals become JSON numbers: `1.50` in XML reads as 1.5 (JSON.parse has the same loss), so trailing zeros
 *   and the exact written precision of a decimal do not survive XML -> JSON. JSON -> XML -> JSON is exact.
 * - XML normalises line ends: a carriage return written raw inside a narrative div reads back as a line feed.
 *   (Carriage returns in primitive values are escaped as `&#xD;` and survive.)
 * - XML 1.0 cannot carry U+0000 at all; other C0 controls are written as character references.
 */
import { createRequire } from 'node:module';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { Element as XmlElement, Node as XmlNode } from '@xmldom/xmldom';
import type { Resource } from 'fhir/r4';
import { fhirModel, PRIMITIVE_JSON_KIND } from '../fhir/model.ts';
import type { ElementInfo, FhirModel, ResolvedProperty } from '../fhir/model.ts';
import { FhirError } from '../fhir/outcome.ts';
import type { IssueCode } from '../fhir/outcome.ts';

export const FHIR_NS = 'http://hl7.org/fhir';
export const XHTML_NS = 'http://www.w3.org/1999/xhtml';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';
const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';
const DEFAULT_MAX_DEPTH = 128;
/** Guards the recursive writer against pathological JSON (a stack overflow would surface as a 500). */
const MAX_WRITE_DEPTH = 1000;

type JsonObject = Record<string, unknown>;
type Children = Map<string, ElementInfo>;

// ---------------------------------------------------------------------------------------------------------------
// Model lookups, cached per children map (the model's maps are shared and immutable once built).

type SlotKind = 'primitive' | 'xhtml' | 'resource' | 'complex';

interface Slot {
  /** Element / JSON property name (choice elements: with the type suffix). */
  readonly key: string;
  readonly element: ElementInfo;
  readonly type: string;
  readonly kind: SlotKind;
  /** Position of the element in definition order. */
  readonly order: number;
  /** `_` + key: the JSON property holding a primitive's id and extensions. */
  readonly extKey: string;
  /** JSON representation of a primitive's value. */
  readonly jsonKind?: 'string' | 'number' | 'boolean';
  /** Children of a complex value, or of a primitive (id, extension). */
  readonly children?: Children;
}

interface SlotTable {
  readonly byKey: Map<string, Slot | null>;
  readonly order: Map<ElementInfo, number>;
}

/**
 * xmldom 0.9 builds a fresh RegExp (from a very long Unicode name pattern) for every end tag it reads through
 * its grammar's `reg` helper; that alone costs about a third to a half of its parse time. The helper is pure
 * (the same parts give the same, flag-free and therefore stateless expression), so a memoised version is
 * installed once. Behaviour is unchanged for every xmldom user in the process; only the compilation is shared.
 */
function memoiseXmldomGrammar(): void {
  try {
    const grammar = createRequire(import.meta.url)('@xmldom/xmldom/lib/grammar.js') as { reg?: RegFn & { memoised?: true } };
    const original = grammar.reg;
    if (typeof original !== 'function' || original.memoised) return;
    const cache = new Map<string, RegExp>();
    const ids = new WeakMap<RegExp, number>();
    let nextId = 0;
    const memoised = function (this: unknown, ...parts: (string | RegExp)[]): RegExp {
      let key = '';
      for (const p of parts) {
        if (typeof p === 'string') key += `s${p}\u0000`;
        else {
          let id = ids.get(p);
          if (id === undefined) ids.set(p, (id = ++nextId));
          key += `r${id}\u0000`;
        }
      }
      let re = cache.get(key);
      if (!re) {
        re = original.apply(this, parts);
        if (re.global || re.sticky) return re; // stateful expressions are never shared
        if (cache.size < 1000) cache.set(key, re);
      }
      return re;
    } as RegFn & { memoised?: true };
    memoised.memoised = true;
    grammar.reg = memoised;
  } catch {
    // A different xmldom layout: parse unpatched.
  }
}
type RegFn = (this: unknown, ...parts: (string | RegExp)[]) => RegExp;
memoiseXmldomGrammar();

let model: FhirModel | undefined;
const tables = new WeakMap<Children, SlotTable>();

function getModel(): FhirModel {
  if (!model) model = fhirModel();
  return model;
}

function slotFor(children: Children, key: string): Slot | undefined {
  let table = tables.get(children);
  if (!table) {
    const order = new Map<ElementInfo, number>();
    let i = 0;
    for (const e of children.values()) order.set(e, i++);
    table = { byKey: new Map(), order };
    tables.set(children, table);
  }
  const cached = table.byKey.get(key);
  if (cached !== undefined) return cached ?? undefined;
  const m = getModel();
  const prop: ResolvedProperty | undefined = m.resolveProperty(children, key);
  let slot: Slot | null = null;
  if (prop) {
    const { element, type } = prop;
    const order = table.order.get(element) ?? 0;
    const extKey = `_${key}`;
    const info = m.types.get(type);
    if (type === 'xhtml') {
      slot = { key, extKey, element, type, kind: 'xhtml', order, jsonKind: 'string' };
    } else if (info?.kind === 'primitive-type') {
      slot = { key, extKey, element, type, kind: 'primitive', order, jsonKind: PRIMITIVE_JSON_KIND[type] ?? 'string', children: m.childrenOfType(type) };
    } else if (info?.kind === 'resource') {
      slot = { key, extKey, element, type, kind: 'resource', order };
    } else {
      slot = { key, extKey, element, type, kind: 'complex', order, children: m.childrenOf(element, type) ?? new Map() };
    }
  }
  table.byKey.set(key, slot);
  return slot ?? undefined;
}

function resourceChildren(type: string): Children {
  const children = getModel().childrenOfType(type);
  if (!children) throw new Error(`no definition for resource type ${type}`);
  return children;
}

function fail(code: IssueCode, message: string, path?: string): never {
  throw new FhirError(400, [{ severity: 'error', code, diagnostics: message, expression: path ? [path] : undefined }]);
}

// ---------------------------------------------------------------------------------------------------------------
// Primitive value syntax (the JSON kind decides how an XML value attribute is read).

const INTEGER_RE = /^-?(0|[1-9][0-9]*)$/;
const UNSIGNED_RE = /^(0|[1-9][0-9]*)$/;
const POSITIVE_RE = /^\+?[1-9][0-9]*$/;
const DECIMAL_RE = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const INT32_MAX = 2147483647;
const INT32_MIN = -2147483648;

function readPrimitiveValue(raw: string, slot: Slot, path: string, node: XmlNode): string | number | boolean {
  switch (slot.jsonKind) {
    case 'boolean':
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      return fail('invalid', `Invalid ${slot.type} value "${raw}" at ${path}${at(node)}: expected "true" or "false"`, path);
    case 'number': {
      let ok: boolean;
      let n: number;
      switch (slot.type) {
        case 'integer':
          ok = INTEGER_RE.test(raw);
          n = Number(raw);
          ok &&= n >= INT32_MIN && n <= INT32_MAX;
          break;
        case 'unsignedInt':
          ok = UNSIGNED_RE.test(raw);
          n = Number(raw);
          ok &&= n <= INT32_MAX;
          break;
        case 'positiveInt':
          ok = POSITIVE_RE.test(raw);
          n = Number(raw);
          ok &&= n <= INT32_MAX;
          break;
        default:
          // decimal: precision such as 1.50 cannot survive as a JSON number (1.5); the value itself is kept.
          ok = DECIMAL_RE.test(raw);
          n = Number(raw);
          ok &&= Number.isFinite(n);
      }
      if (!ok) return fail('invalid', `Invalid ${slot.type} value "${raw}" at ${path}${at(node)}`, path);
      return n;
    }
    default:
      return raw;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// XML -> JSON

interface ParseContext {
  readonly text: string;
  readonly maxDepth: number;
  lineStarts?: number[];
}

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_SECTION_NODE = 4;

function at(node: XmlNode): string {
  return node.lineNumber ? ` (line ${node.lineNumber}, column ${node.columnNumber ?? 0})` : '';
}

/**
 * Parses a FHIR R4 XML resource into its JSON form. Throws FhirError 400 for malformed XML, DOCTYPEs, elements or
 * attributes the definitions do not know, invalid primitive values and nesting deeper than `maxDepth` elements.
 */
export function parseFhirXml(text: string, limits?: { maxDepth?: number }): Resource {
  const maxDepth = limits?.maxDepth ?? DEFAULT_MAX_DEPTH;
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  // No DTDs, hence no entity declarations of any kind: refused before the parser sees them.
  const doctype = /<!(DOCTYPE|ENTITY)/i.exec(text);
  if (doctype) {
    const { line, column } = lineColumn(text, doctype.index);
    fail('structure', `XML with a DOCTYPE or ENTITY declaration is refused (line ${line}, column ${column}): DTDs and entities are not allowed`);
  }
  // XML 1.0 line-end normalisation, done here so that element positions are offsets into `text` itself.
  if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');

  let firstError: string | undefined;
  const parser = new DOMParser({
    locator: true,
    normalizeLineEndings: (s: string) => s,
    onError: (level, message, context: { locator?: { lineNumber?: number; columnNumber?: number } }) => {
      // A replacement character may be genuine content; everything else xmldom reports is not well-formed XML.
      if (level === 'warning' && message.startsWith('Unicode replacement character')) return;
      if (firstError === undefined) {
        const loc = context?.locator;
        firstError = `Malformed XML at line ${Math.max(1, loc?.lineNumber ?? 1)}, column ${Math.max(1, loc?.columnNumber ?? 1)}: ${message}`;
      }
      throw new Error(message);
    },
  });
  let root: XmlElement | null;
  try {
    root = parser.parseFromString(text, 'text/xml').documentElement;
  } catch (e) {
    fail('structure', firstError ?? `Malformed XML: ${(e as Error).message}`);
  }
  if (!root) fail('structure', 'Malformed XML: no root element');
  if (root.namespaceURI !== FHIR_NS) {
    fail('structure', `The root element <${root.tagName}> is not in the FHIR namespace ${FHIR_NS} (namespace: ${root.namespaceURI ?? 'none'})`);
  }
  const ctx: ParseContext = { text, maxDepth };
  return readResource(ctx, root, '', 1) as unknown as Resource;
}

function readResource(ctx: ParseContext, el: XmlElement, parentPath: string, depth: number): JsonObject {
  const type = el.localName ?? el.tagName;
  const path = parentPath ? `${parentPath}` : type;
  if (el.namespaceURI !== FHIR_NS) fail('structure', `Element <${el.tagName}> at ${path}${at(el)} is not in the FHIR namespace`, path);
  if (!getModel().isResourceType(type)) fail('structure', `Unknown resource type '${type}' at ${path}${at(el)}`, path);
  checkDepth(ctx, depth, path, el);
  const attrs = el.attributes;
  for (let i = 0; i < attrs.length; i++) {
    const a = attrs.item(i)!;
    if (!isIgnorableAttribute(a.namespaceURI, a.name)) fail('structure', `Unknown attribute '${a.name}' on resource ${type} at ${path}${at(el)}`, path);
  }
  const obj: JsonObject = { resourceType: type };
  readChildren(ctx, el, resourceChildren(type), obj, path, depth);
  return obj;
}

function isIgnorableAttribute(ns: string | null, name: string): boolean {
  return ns === XMLNS_NS || name === 'xmlns' || name.startsWith('xmlns:') || ns === XSI_NS;
}

function checkDepth(ctx: ParseContext, depth: number, path: string, node: XmlNode): void {
  if (depth > ctx.maxDepth) fail('structure', `XML nesting deeper than ${ctx.maxDepth} elements at ${path}${at(node)}`, path);
}

/** Reads the attributes (xmlAttr elements) and child elements of `el` into `obj`. */
function readChildren(ctx: ParseContext, el: XmlElement, children: Children, obj: JsonObject, path: string, depth: number, primitiveOf?: Slot): void {
  // Attributes first: xmlAttr elements (Element.id, Extension.url) and, for primitives, `value`.
  const attrs = el.attributes;
  for (let i = 0; i < attrs.length; i++) {
    const a = attrs.item(i)!;
    const name = a.name;
    if (isIgnorableAttribute(a.namespaceURI, name)) continue;
    if (primitiveOf && name === 'value') continue; // handled by the caller
    const slot = a.namespaceURI ? undefined : slotFor(children, name);
    if (!slot || !slot.element.xmlAttr) fail('structure', `Unknown attribute '${name}' at ${path}${at(el)}`, path);
    obj[name] = a.value;
  }
  let arrays: Slot[] | undefined;
  for (let child = el.firstChild; child; child = child.nextSibling) {
    const nodeType = child.nodeType;
    if (nodeType === TEXT_NODE || nodeType === CDATA_SECTION_NODE) {
      const data = (child as unknown as { data: string }).data;
      if (!/^\s*$/.test(data)) fail('structure', `Unexpected text content "${truncate(data.trim())}" in ${path}${at(child)}`, path);
      continue;
    }
    if (nodeType !== ELEMENT_NODE) continue; // comments and processing instructions carry no FHIR content
    const ce = child as XmlElement;
    const localName = ce.localName ?? ce.tagName;
    const slot = slotFor(children, localName);
    const name = slot ? slot.key : localName; // the cached key: an internalised string, cheap as a property name
    const extKey = slot ? slot.extKey : `_${localName}`;
    if (!slot || slot.element.xmlAttr) fail('structure', `Unknown element '${name}' at ${path}.${name}${at(ce)}`, `${path}.${name}`);
    const expectedNs = slot.kind === 'xhtml' ? XHTML_NS : FHIR_NS;
    if (ce.namespaceURI !== expectedNs) {
      fail('structure', `Element '${name}' at ${path}.${name}${at(ce)} must be in namespace ${expectedNs} (found ${ce.namespaceURI ?? 'none'})`, `${path}.${name}`);
    }
    const isArray = slot.element.isArray;
    let index = -1;
    if (isArray) {
      const existing = (slot.kind === 'primitive' ? obj[extKey] : obj[name]) as unknown[] | undefined;
      index = existing ? existing.length : 0;
    } else if (obj[name] !== undefined || obj[extKey] !== undefined) {
      fail('structure', `Element '${name}' repeats at ${path}.${name}${at(ce)} but allows at most one`, `${path}.${name}`);
    } else if (slot.element.isChoice) {
      for (const k of Object.keys(obj)) {
        const other = slotFor(children, k.startsWith('_') ? k.slice(1) : k);
        if (other && other.element === slot.element) {
          fail('structure', `Choice element ${slot.element.name} appears twice (${k} and ${name}) at ${path}${at(ce)}`, `${path}.${name}`);
        }
      }
    }
    const childPath = isArray ? `${path}.${name}[${index}]` : `${path}.${name}`;
    checkDepth(ctx, depth + 1, childPath, ce);
    switch (slot.kind) {
      case 'primitive': {
        const ext: JsonObject = {};
        readChildren(ctx, ce, slot.children!, ext, childPath, depth + 1, slot);
        const raw = ce.getAttributeNode('value');
        const value = raw ? readPrimitiveValue(raw.value, slot, childPath, ce) : null;
        const hasExt = ext.id !== undefined || ext.extension !== undefined;
        if (value === null && !hasExt) fail('invalid', `Primitive element at ${childPath}${at(ce)} has neither a value nor extensions`, childPath);
        if (isArray) {
          let values = obj[name] as unknown[] | undefined;
          if (!values) {
            obj[name] = values = [];
            obj[extKey] = [];
            (arrays ??= []).push(slot);
          }
          values.push(value);
          (obj[extKey] as unknown[]).push(hasExt ? ext : null);
        } else {
          if (value !== null) obj[name] = value;
          if (hasExt) obj[extKey] = ext;
        }
        break;
      }
      case 'xhtml': {
        obj[name] = xhtmlSource(ctx, ce, childPath, depth + 1);
        break;
      }
      case 'resource': {
        let inner: XmlElement | undefined;
        for (let n = ce.firstChild; n; n = n.nextSibling) {
          if (n.nodeType === ELEMENT_NODE) {
            if (inner) fail('structure', `Element '${name}' at ${childPath}${at(n)} must contain exactly one resource`, childPath);
            inner = n as XmlElement;
          } else if ((n.nodeType === TEXT_NODE || n.nodeType === CDATA_SECTION_NODE) && !/^\s*$/.test((n as unknown as { data: string }).data)) {
            fail('structure', `Unexpected text content in ${childPath}${at(n)}`, childPath);
          }
        }
        if (!inner) fail('structure', `Element '${name}' at ${childPath}${at(ce)} contains no resource`, childPath);
        for (let i = 0; i < ce.attributes.length; i++) {
          const a = ce.attributes.item(i)!;
          if (!isIgnorableAttribute(a.namespaceURI, a.name)) fail('structure', `Unknown attribute '${a.name}' at ${childPath}${at(ce)}`, childPath);
        }
        const resource = readResource(ctx, inner, childPath, depth + 2);
        const wanted = slot.type;
        if (wanted !== 'Resource' && wanted !== 'DomainResource' && resource.resourceType !== wanted) {
          fail('structure', `Element '${name}' at ${childPath}${at(inner)} must hold a ${wanted}, not a ${String(resource.resourceType)}`, childPath);
        }
        if (isArray) ((obj[name] ??= []) as unknown[]).push(resource);
        else obj[name] = resource;
        break;
      }
      default: {
        const value: JsonObject = {};
        readChildren(ctx, ce, slot.children!, value, childPath, depth + 1);
        if (isArray) ((obj[name] ??= []) as unknown[]).push(value);
        else obj[name] = value;
      }
    }
  }
  if (arrays) {
    // Parallel arrays: drop `_name` when no item had an id or extension.
    for (const slot of arrays) {
      const ext = obj[slot.extKey] as unknown[];
      if (ext.every((x) => x === null)) delete obj[slot.extKey];
    }
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

function offsetOf(ctx: ParseContext, node: XmlNode): number {
  if (!ctx.lineStarts) {
    const starts = [0];
    const t = ctx.text;
    for (let i = t.indexOf('\n'); i !== -1; i = t.indexOf('\n', i + 1)) starts.push(i + 1);
    ctx.lineStarts = starts;
  }
  return ctx.lineStarts[(node.lineNumber ?? 1) - 1] + (node.columnNumber ?? 1) - 1;
}

/**
 * The JSON value of a narrative div: its exact source text when the div declares the XHTML namespace itself
 * (which FHIR requires, and what this module writes), otherwise a namespace-complete serialisation of it.
 */
function xhtmlSource(ctx: ParseContext, el: XmlElement, path: string, depth: number): string {
  const text = ctx.text;
  const start = offsetOf(ctx, el);
  if (el.localName !== 'div') fail('structure', `The narrative at ${path}${at(el)} must be an XHTML <div>, not <${el.tagName}>`, path);
  if (el.prefix || text.charCodeAt(start) !== 60 /* < */ || !text.startsWith('div', start + 1)) {
    return serializeDiv(ctx, el, path, depth);
  }
  // The document is well-formed (the parser checked it), so a tag-level scan finds the matching end tag.
  let level = 0;
  let i = start;
  let startTagEnd = -1;
  for (;;) {
    const lt = text.indexOf('<', i);
    if (lt < 0) return serializeDiv(ctx, el, path, depth);
    const c = text.charCodeAt(lt + 1);
    if (c === 33 /* ! */) {
      const close = text.startsWith('<!--', lt) ? '-->' : ']]>';
      i = text.indexOf(close, lt) + close.length;
      continue;
    }
    if (c === 63 /* ? */) {
      i = text.indexOf('?>', lt) + 2;
      continue;
    }
    if (c === 47 /* / */) {
      i = text.indexOf('>', lt) + 1;
      level--;
      if (level === 0) break;
      continue;
    }
    // Start tag: find its '>' outside quoted attribute values.
    let j = lt + 1;
    let quote = 0;
    for (; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (quote) {
        if (d === quote) quote = 0;
      } else if (d === 34 || d === 39) quote = d;
      else if (d === 62 /* > */) break;
    }
    if (startTagEnd < 0) startTagEnd = j;
    i = j + 1;
    if (text.charCodeAt(j - 1) !== 47 /* / */) {
      level++;
      if (depth + level - 1 > ctx.maxDepth) fail('structure', `XML nesting deeper than ${ctx.maxDepth} elements inside the narrative at ${path}${at(el)}`, path);
    } else if (level === 0) break;
  }
  const startTag = text.slice(start, startTagEnd + 1);
  if (!/\sxmlns\s*=\s*("http:\/\/www\.w3\.org\/1999\/xhtml"|'http:\/\/www\.w3\.org\/1999\/xhtml')/.test(startTag)) {
    return serializeDiv(ctx, el, path, depth);
  }
  return text.slice(start, i);
}

function serializeDiv(ctx: ParseContext, el: XmlElement, path: string, depth: number): string {
  const measure = (n: XmlNode, d: number): void => {
    if (d > ctx.maxDepth) fail('structure', `XML nesting deeper than ${ctx.maxDepth} elements inside the narrative at ${path}${at(el)}`, path);
    for (let c = n.firstChild; c; c = c.nextSibling) if (c.nodeType === ELEMENT_NODE) measure(c, d + 1);
  };
  measure(el, depth);
  return new XMLSerializer().serializeToString(el);
}

// ---------------------------------------------------------------------------------------------------------------
// JSON -> XML

const ATTR_ESCAPE_RE = /[&<>"\u0000-\u001f]/;
const ATTR_ESCAPE_RE_G = /[&<>"\u0000-\u001f]/g;

function escapeChar(c: string): string {
  switch (c) {
    case '&':
      return '&amp;';
    case '<':
      return '&lt;';
    case '>':
      return '&gt;';
    case '"':
      return '&quot;';
    default:
      return `&#x${c.charCodeAt(0).toString(16).toUpperCase()};`;
  }
}

function escapeAttr(s: string, path: string): string {
  if (!ATTR_ESCAPE_RE.test(s)) return s;
  if (s.includes('\u0000')) fail('invalid', `The value at ${path} contains U+0000, which XML cannot represent`, path);
  return s.replace(ATTR_ESCAPE_RE_G, escapeChar);
}

interface Entry {
  slot: Slot;
  value: unknown;
  ext: unknown;
}

class Writer {
  out = '';
  readonly pretty: boolean;
  private readonly indents: string[] = [];

  constructor(pretty: boolean) {
    this.pretty = pretty;
  }

  indent(level: number): string {
    if (!this.pretty) return '';
    let s = this.indents[level];
    if (s === undefined) s = this.indents[level] = `\n${'  '.repeat(level)}`;
    return s;
  }
}

/** Serialises a FHIR R4 resource (JSON form) as FHIR XML. Throws FhirError 400 for content XML cannot carry. */
export function toFhirXml(resource: Resource, options?: { pretty?: boolean }): string {
  const w = new Writer(options?.pretty === true);
  w.out = XML_DECLARATION;
  writeResource(w, resource as unknown as JsonObject, '', 0, true);
  if (w.pretty) w.out += '\n';
  return w.out;
}

function writeResource(w: Writer, res: JsonObject, parentPath: string, level: number, root: boolean): void {
  const type = res.resourceType;
  const path = parentPath || String(type);
  if (typeof type !== 'string' || !getModel().isResourceType(type)) {
    fail('structure', `Unknown or missing resourceType ${JSON.stringify(type)} at ${path}`, path);
  }
  writeObject(w, type, res, resourceChildren(type), path, level, root ? ` xmlns="${FHIR_NS}"` : '', true);
}

/**
 * Writes `<tag ...>children</tag>` for a JSON object. `attrs` is pre-rendered attribute text (xmlns, value).
 */
function writeObject(w: Writer, tag: string, obj: JsonObject, children: Children, path: string, level: number, attrs: string, isResource: boolean): void {
  if (level > MAX_WRITE_DEPTH) fail('structure', `Content nested deeper than ${MAX_WRITE_DEPTH} elements at ${path}`, path);
  const entries: Entry[] = [];
  let sorted = true;
  let lastOrder = -1;
  let xmlAttrs = '';
  for (const key in obj) {
    const value = obj[key];
    if (value === undefined) continue;
    if (isResource && key === 'resourceType') continue;
    const isExt = key.charCodeAt(0) === 95; /* _ */
    const name = isExt ? key.slice(1) : key;
    const slot = slotFor(children, name);
    if (!slot) fail('structure', `Unknown property '${key}' at ${path}`, `${path}.${key}`);
    if (isExt && slot.kind !== 'primitive') fail('structure', `Property '${key}' at ${path} is only allowed for primitive elements`, `${path}.${key}`);
    if (slot.element.xmlAttr) {
      if (isExt) fail('structure', `'${key}' at ${path}: ${name} is an XML attribute and cannot carry an id or extensions`, `${path}.${key}`);
      if (typeof value !== 'string') fail('invalid', `'${key}' at ${path} must be a string`, `${path}.${key}`);
      xmlAttrs += ` ${name}="${escapeAttr(value, `${path}.${key}`)}"`;
      continue;
    }
    let entry: Entry | undefined;
    if (slot.kind === 'primitive') {
      for (const e of entries) {
        if (e.slot === slot) {
          entry = e;
          break;
        }
      }
    }
    if (!entry) {
      entry = { slot, value: undefined, ext: undefined };
      if (slot.order < lastOrder) sorted = false;
      else if (slot.order === lastOrder && entries[entries.length - 1]?.slot.element === slot.element && slot.element.isChoice) {
        fail('structure', `Choice element ${slot.element.name} has more than one value at ${path}`, `${path}.${name}`);
      }
      lastOrder = slot.order;
      entries.push(entry);
    }
    if (isExt) entry.ext = value;
    else entry.value = value;
  }
  if (!sorted) {
    entries.sort((a, b) => a.slot.order - b.slot.order);
    for (let i = 1; i < entries.length; i++) {
      const a = entries[i - 1].slot;
      const b = entries[i].slot;
      if (a.element === b.element && a.element.isChoice) fail('structure', `Choice element ${a.element.name} has more than one value at ${path}`, `${path}.${b.key}`);
    }
  }
  w.out += `${w.indent(level)}<${tag}${xmlAttrs}${attrs}`;
  if (entries.length === 0) {
    w.out += '/>';
    return;
  }
  w.out += '>';
  for (const e of entries) writeEntry(w, e, path, level + 1);
  w.out += `${w.indent(level)}</${tag}>`;
}

function writeEntry(w: Writer, e: Entry, path: string, level: number): void {
  const { slot } = e;
  const name = slot.key;
  const childPath = `${path}.${name}`;
  if (slot.element.isArray) {
    if (slot.kind === 'primitive') {
      const values = e.value;
      const exts = e.ext;
      if (values !== undefined && !Array.isArray(values)) fail('structure', `${childPath} must be an array`, childPath);
      if (exts !== undefined && !Array.isArray(exts)) fail('structure', `${path}._${name} must be an array`, `${path}._${name}`);
      const vs = values as unknown[] | undefined;
      const xs = exts as unknown[] | undefined;
      if (vs && xs && vs.length !== xs.length) {
        fail('structure', `${childPath} and ${path}._${name} must have the same number of items (${vs.length} and ${xs.length})`, childPath);
      }
      const n = vs ? vs.length : xs!.length;
      for (let i = 0; i < n; i++) writePrimitive(w, slot, vs ? vs[i] : null, xs ? xs[i] : null, `${childPath}[${i}]`, level);
      return;
    }
    if (!Array.isArray(e.value)) fail('structure', `${childPath} must be an array`, childPath);
    const items = e.value as unknown[];
    for (let i = 0; i < items.length; i++) writeSingle(w, slot, items[i], `${childPath}[${i}]`, level);
    return;
  }
  if (Array.isArray(e.value) || Array.isArray(e.ext)) fail('structure', `${childPath} must not be an array`, childPath);
  if (slot.kind === 'primitive') writePrimitive(w, slot, e.value ?? null, e.ext ?? null, childPath, level);
  else writeSingle(w, slot, e.value, childPath, level);
}

function writeSingle(w: Writer, slot: Slot, value: unknown, path: string, level: number): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    if (slot.kind === 'xhtml' && typeof value === 'string') {
      writeXhtml(w, value, path, level);
      return;
    }
    fail('structure', `${path} must be ${slot.kind === 'xhtml' ? 'a string' : 'an object'}`, path);
  }
  const obj = value as JsonObject;
  if (slot.kind === 'resource') {
    w.out += `${w.indent(level)}<${slot.key}>`;
    writeResource(w, obj, path, level + 1, false);
    w.out += `${w.indent(level)}</${slot.key}>`;
    return;
  }
  writeObject(w, slot.key, obj, slot.children!, path, level, '', false);
}

const XHTML_NS_DECL = /^<div(\s[^>]*)?\sxmlns\s*=\s*("http:\/\/www\.w3\.org\/1999\/xhtml"|'http:\/\/www\.w3\.org\/1999\/xhtml')/;

const START_TAG_RE = /^<([A-Za-z_][\w.:-]*)(?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*(\/?)>$/;
const REFERENCE_RE = /^&(?:#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/;

/**
 * A light well-formedness check of a narrative before it is copied into the output: one root element, start
 * and end tags balanced and matching, quoted attributes, no stray `<` and only XML's predefined entity
 * references. It keeps a broken div from breaking the whole XML document; full XHTML rules are validation's job.
 */
function xhtmlProblem(div: string): string | undefined {
  const stack: string[] = [];
  let i = 0;
  for (;;) {
    const lt = div.indexOf('<', i);
    const textEnd = lt < 0 ? div.length : lt;
    for (let amp = div.indexOf('&', i); amp !== -1 && amp < textEnd; amp = div.indexOf('&', amp + 1)) {
      if (!REFERENCE_RE.test(div.slice(amp, amp + 12))) return `unknown or unterminated entity reference at offset ${amp}`;
    }
    if (lt < 0) break;
    if (stack.length === 0 && lt > 0 && i === 0) return 'content before the div';
    if (stack.length === 0 && i > 0) return `content after the end of the div at offset ${lt}`;
    if (div.startsWith('<!--', lt)) {
      const end = div.indexOf('-->', lt + 4);
      if (end < 0) return 'unterminated comment';
      i = end + 3;
      continue;
    }
    if (div.startsWith('<![CDATA[', lt)) {
      const end = div.indexOf(']]>', lt);
      if (end < 0) return 'unterminated CDATA section';
      i = end + 3;
      continue;
    }
    if (div.charCodeAt(lt + 1) === 47 /* / */) {
      const end = div.indexOf('>', lt);
      const name = end < 0 ? '' : div.slice(lt + 2, end).trimEnd();
      if (!name || stack.pop() !== name) return `unexpected end tag at offset ${lt}`;
      i = end + 1;
      continue;
    }
    let j = lt + 1;
    for (let quote = 0; j < div.length; j++) {
      const c = div.charCodeAt(j);
      if (quote) {
        if (c === quote) quote = 0;
      } else if (c === 34 || c === 39) quote = c;
      else if (c === 62 /* > */ || c === 60 /* < */) break;
    }
    const m = START_TAG_RE.exec(div.slice(lt, j + 1));
    if (!m) return `malformed tag at offset ${lt}`;
    if (!m[2]) stack.push(m[1]);
    else if (stack.length === 0) {
      i = j + 1;
      if (i < div.length && div.slice(i).trim()) return 'content after the end of the div';
      break;
    }
    i = j + 1;
  }
  if (stack.length) return `unclosed <${stack[stack.length - 1]}>`;
  if (div.slice(i).trim()) return 'content after the end of the div';
  return undefined;
}

function writeXhtml(w: Writer, div: string, path: string, level: number): void {
  if (!/^<div[\s/>]/.test(div)) fail('invalid', `The narrative at ${path} must be an XHTML <div> element`, path);
  const problem = xhtmlProblem(div);
  if (problem) fail('invalid', `The narrative at ${path} is not well-formed XHTML: ${problem}`, path);
  // The div must carry the XHTML namespace itself, or it would fall into the FHIR default namespace.
  if (!XHTML_NS_DECL.test(div)) div = `<div xmlns="${XHTML_NS}"${div.slice(4)}`;
  w.out += `${w.indent(level)}${div}`;
}

function writePrimitive(w: Writer, slot: Slot, value: unknown, ext: unknown, path: string, level: number): void {
  let valueAttr = '';
  if (value !== null && value !== undefined) {
    switch (slot.jsonKind) {
      case 'boolean':
        if (typeof value !== 'boolean') fail('invalid', `${path} must be a JSON boolean (${slot.type})`, path);
        valueAttr = value ? ' value="true"' : ' value="false"';
        break;
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value) || (slot.type !== 'decimal' && !Number.isInteger(value))) {
          fail('invalid', `${path} must be a JSON ${slot.type === 'decimal' ? 'number' : 'integer'} (${slot.type})`, path);
        }
        valueAttr = ` value="${String(value)}"`;
        break;
      default:
        if (typeof value !== 'string') fail('invalid', `${path} must be a JSON string (${slot.type})`, path);
        valueAttr = ` value="${escapeAttr(value, path)}"`;
    }
  }
  if (ext === null || ext === undefined) {
    if (!valueAttr) fail('invalid', `${path} has neither a value nor an id or extensions`, path);
    w.out += `${w.indent(level)}<${slot.key}${valueAttr}/>`;
    return;
  }
  if (typeof ext !== 'object' || Array.isArray(ext)) fail('structure', `The id/extension object of ${path} must be an object`, path);
  writeObject(w, slot.key, ext as JsonObject, slot.children!, path, level, valueAttr, false);
}

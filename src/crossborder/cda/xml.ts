/**
 * XML for the cross-border module: a guarded parser for untrusted CDA documents (@xmldom/xmldom) and a small
 * element tree with a serializer for the CDA we write.
 *
 * Parsing refuses DOCTYPE and ENTITY declarations before the parser runs, enforces a size limit and a nesting
 * depth limit (checked by a tag scan, before the DOM is built), and reports malformed XML as FhirError 400 with
 * the line and column of the first problem.
 */
import { DOMParser } from '@xmldom/xmldom';
import type { Element as XElement, Node as XNode } from '@xmldom/xmldom';
import { FhirError } from '../../fhir/outcome.ts';

export const CDA_NS = 'urn:hl7-org:v3';
export const PHARM_NS = 'urn:hl7-org:pharm';
export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';

export type Element = XElement;

export interface XmlLimits {
  /** Largest accepted document, in characters (default 10 MB). */
  maxBytes?: number;
  /** Deepest accepted element nesting (default 200). */
  maxDepth?: number;
}

export const DEFAULT_XML_LIMITS: Required<XmlLimits> = { maxBytes: 10 * 1024 * 1024, maxDepth: 200 };

function lineColumn(text: string, index: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) { line++; last = i; }
  return { line, column: index - last };
}

function structureError(status: number, msg: string): FhirError {
  return new FhirError(status, [{ severity: 'error', code: 'structure', diagnostics: msg }]);
}

/** Nesting depth by a scan of tags (comments, CDATA, processing instructions skipped). */
function checkDepth(text: string, maxDepth: number): void {
  let depth = 0;
  const re = /<(!--[\s\S]*?-->|!\[CDATA\[[\s\S]*?\]\]>|\?[\s\S]*?\?>|\/?[A-Za-z_][^>]*>)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    const t = m[1]!;
    if (t.startsWith('!') || t.startsWith('?')) continue;
    if (t.startsWith('/')) depth--;
    else if (!t.endsWith('/>')) {
      depth++;
      if (depth > maxDepth) {
        const { line, column } = lineColumn(text, m.index);
        throw structureError(400, `XML nesting deeper than ${maxDepth} elements (line ${line}, column ${column})`);
      }
    }
  }
}

/** Parses untrusted XML into its document element. Throws FhirError 400 (413 when too large). */
export function parseXml(input: string | Buffer, limits: XmlLimits = {}): Element {
  const maxBytes = limits.maxBytes ?? DEFAULT_XML_LIMITS.maxBytes;
  const maxDepth = limits.maxDepth ?? DEFAULT_XML_LIMITS.maxDepth;
  if (input.length > maxBytes) throw new FhirError(413, `XML document of ${input.length} bytes is larger than the limit of ${maxBytes}`, 'too-costly');
  let text = typeof input === 'string' ? input : input.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const dt = /<!(DOCTYPE|ENTITY)/i.exec(text);
  if (dt) {
    const { line, column } = lineColumn(text, dt.index);
    throw structureError(400, `XML with a DOCTYPE or ENTITY declaration is refused (line ${line}, column ${column}): DTDs and entities are not allowed`);
  }
  if (!text.trim()) throw structureError(400, 'Malformed XML at line 1, column 1: empty document');
  checkDepth(text, maxDepth);
  let firstError: string | undefined;
  const parser = new DOMParser({
    locator: true,
    onError: (level, message, context: { locator?: { lineNumber?: number; columnNumber?: number } }) => {
      if (level === 'warning' && message.startsWith('Unicode replacement character')) return;
      if (firstError === undefined) {
        const loc = context?.locator;
        firstError = `Malformed XML at line ${Math.max(1, loc?.lineNumber ?? 1)}, column ${Math.max(1, loc?.columnNumber ?? 1)}: ${message.trim()}`;
      }
      throw new Error(message);
    },
  });
  let root: Element | null;
  try {
    root = parser.parseFromString(text, 'text/xml').documentElement;
  } catch (e) {
    throw structureError(400, firstError ?? `Malformed XML: ${(e as Error).message}`);
  }
  if (!root) throw structureError(400, 'Malformed XML: no root element');
  return root;
}

/** Where an element is, for messages: " (line L, column C)" or "". */
export function at(node: XNode): string {
  const n = node as XNode & { lineNumber?: number; columnNumber?: number };
  return n.lineNumber ? ` (line ${n.lineNumber}, column ${n.columnNumber ?? 1})` : '';
}

// -- DOM helpers (namespace-aware: CDA elements are in urn:hl7-org:v3, pharm: in urn:hl7-org:pharm) ------------

export function kids(el: Element | undefined, name?: string, ns: string = CDA_NS): Element[] {
  const out: Element[] = [];
  if (!el) return out;
  for (let c = el.firstChild; c; c = c.nextSibling) {
    if (c.nodeType !== 1) continue;
    const e = c as Element;
    if (name === undefined || (e.localName === name && (e.namespaceURI ?? CDA_NS) === ns)) out.push(e);
  }
  return out;
}

export function kid(el: Element | undefined, name: string, ns: string = CDA_NS): Element | undefined {
  if (!el) return undefined;
  for (let c = el.firstChild; c; c = c.nextSibling) {
    if (c.nodeType !== 1) continue;
    const e = c as Element;
    if (e.localName === name && (e.namespaceURI ?? CDA_NS) === ns) return e;
  }
  return undefined;
}

/** Follows a path of child names: path(el, 'a', 'b') = first b under first a. */
export function path(el: Element | undefined, ...names: string[]): Element | undefined {
  let cur = el;
  for (const n of names) {
    if (!cur) return undefined;
    const [ns, local] = n.startsWith('pharm:') ? [PHARM_NS, n.slice(6)] : n.startsWith('epsos:') ? ['urn:epsos-org:ep:medication', n.slice(6)] : [CDA_NS, n];
    cur = kid(cur, local!, ns);
  }
  return cur;
}

export function attr(el: Element | undefined, name: string): string | undefined {
  if (!el) return undefined;
  const v = el.getAttribute(name);
  return v === null || v === '' ? undefined : v;
}

export function xsiType(el: Element | undefined): string | undefined {
  if (!el) return undefined;
  const v = el.getAttributeNS(XSI_NS, 'type') || el.getAttribute('xsi:type');
  if (!v) return undefined;
  const i = v.indexOf(':');
  return i >= 0 ? v.slice(i + 1) : v;
}

export function textOf(el: Element | undefined): string | undefined {
  if (!el) return undefined;
  const t = (el.textContent ?? '').replace(/\s+/g, ' ').trim();
  return t || undefined;
}

export function templateIds(el: Element | undefined): string[] {
  return kids(el, 'templateId').map((t) => attr(t, 'root') ?? '');
}

export function hasTemplate(el: Element | undefined, root: string): boolean {
  return kids(el, 'templateId').some((t) => attr(t, 'root') === root);
}

// -- writing ------------------------------------------------------------------------------------------------------

/** An element to write: name, attributes (undefined ones are dropped), children (elements or text). */
export interface X {
  n: string;
  a?: Record<string, string | number | boolean | undefined>;
  c?: (X | string | undefined | false | null)[];
}

export function x(n: string, a?: X['a'], ...c: X['c'] & unknown[]): X {
  return { n, ...(a ? { a } : {}), ...(c.length ? { c } : {}) };
}

const escText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const escAttr = (s: string) => escText(s).replace(/"/g, '&quot;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
// XML 1.0 forbids most C0 controls: drop them from content.
// eslint-disable-next-line no-control-regex
const clean = (s: string) => s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '');

/** Serializes a tree. Pretty printing indents element-only content and leaves mixed content as it is. */
export function serialize(root: X, pretty = true): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>\n'];
  const write = (e: X, ind: string) => {
    out.push(`${pretty ? ind : ''}<${e.n}`);
    for (const [k, v] of Object.entries(e.a ?? {})) if (v !== undefined) out.push(` ${k}="${escAttr(clean(String(v)))}"`);
    const children = (e.c ?? []).filter((c): c is X | string => c !== undefined && c !== null && c !== false && c !== '');
    if (!children.length) {
      out.push(pretty ? '/>\n' : '/>');
      return;
    }
    const mixed = children.some((c) => typeof c === 'string');
    if (mixed) {
      out.push('>');
      for (const c of children) if (typeof c === 'string') out.push(escText(clean(c)));
      else writeInline(c);
      out.push(`</${e.n}>${pretty ? '\n' : ''}`);
      return;
    }
    out.push(pretty ? '>\n' : '>');
    for (const c of children) write(c as X, ind + '  ');
    out.push(`${pretty ? ind : ''}</${e.n}>${pretty ? '\n' : ''}`);
  };
  const writeInline = (e: X) => {
    out.push(`<${e.n}`);
    for (const [k, v] of Object.entries(e.a ?? {})) if (v !== undefined) out.push(` ${k}="${escAttr(clean(String(v)))}"`);
    const children = (e.c ?? []).filter((c): c is X | string => c !== undefined && c !== null && c !== false && c !== '');
    if (!children.length) {
      out.push('/>');
      return;
    }
    out.push('>');
    for (const c of children) if (typeof c === 'string') out.push(escText(clean(c)));
    else writeInline(c);
    out.push(`</${e.n}>`);
  };
  write(root, '');
  return out.join('');
}

/**
 * Content negotiation for FHIR JSON and XML: which format a request body is in, which format the client
 * wants back (Accept, `_format`), and parsing bodies safely (size and nesting limits enforced before the
 * parser can run away).
 */
import type { Resource } from 'fhir/r4';
import type { FhirResponse } from '../fhir/request.ts';
import type { VersionRecord } from '../store/port.ts';
import { FhirError, badRequest } from '../fhir/outcome.ts';
import { parseFhirXml, toFhirXml } from './xml.ts';

export type Format = 'json' | 'xml';

export const SUPPORTED_FORMATS = ['application/fhir+json', 'application/fhir+xml', 'json', 'xml'] as const;

const JSON_TYPES = new Set(['application/fhir+json', 'application/json', 'application/json+fhir', 'text/json']);
const XML_TYPES = new Set(['application/fhir+xml', 'application/xml', 'application/xml+fhir', 'text/xml']);

export function mediaType(contentType: string | undefined): string | undefined {
  return contentType?.split(';')[0].trim().toLowerCase() || undefined;
}

/** Format named by a `_format` value or a media type; undefined when unknown. */
export function formatOf(value: string): Format | undefined {
  const v = value.split(';')[0].trim().toLowerCase();
  if (v === 'json' || JSON_TYPES.has(v)) return 'json';
  if (v === 'xml' || XML_TYPES.has(v)) return 'xml';
  return undefined;
}

/** The media ranges of an Accept header, most preferred first (highest q, then header order); q=0 dropped. */
export function acceptRanges(accept: string): { type: string; q: number }[] {
  return accept
    .split(',')
    .map((part, i) => {
      const [type, ...params] = part.split(';').map((s) => s.trim());
      const q = params.find((p) => p.startsWith('q='));
      return { type: (type ?? '').toLowerCase(), q: q ? Number(q.slice(2)) : 1, i };
    })
    .filter((r) => r.q > 0)
    .sort((x, y) => y.q - x.q || x.i - y.i)
    .map(({ type, q }) => ({ type, q }));
}

/** A content type with `; charset=utf-8` appended, unless it already names a charset. */
export function withUtf8Charset(contentType: string): string {
  return /;\s*charset\s*=/i.test(contentType) ? contentType : `${contentType}; charset=utf-8`;
}

/** The response format: `_format` wins over Accept; JSON by default. */
export function responseFormat(formatParam: string | undefined, accept: string | undefined): Format {
  if (formatParam) {
    const f = formatOf(formatParam);
    if (!f) throw new FhirError(406, `_format "${formatParam}" is not supported; use json or xml`, 'not-supported');
    return f;
  }
  if (!accept) return 'json';
  // Highest q first; the first FHIR-capable type decides. */* or unknown types fall back to JSON.
  const ranges = acceptRanges(accept);
  for (const r of ranges) {
    const f = formatOf(r.type);
    if (f) return f;
    if (r.type === '*/*' || r.type === 'application/*') return 'json';
  }
  if (ranges.length && !ranges.some((r) => r.type.includes('*') || r.type.startsWith('text/html'))) {
    throw new FhirError(406, `None of the accepted media types (${accept}) is supported; use application/fhir+json or application/fhir+xml`, 'not-supported');
  }
  return 'json';
}

export function contentTypeOf(format: Format): string {
  return format === 'xml' ? 'application/fhir+xml; charset=utf-8' : 'application/fhir+json; charset=utf-8';
}

/**
 * Checks JSON nesting depth without parsing (strings skipped), so that a hostile body is refused before
 * JSON.parse builds it.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/**
 * Checks XML element nesting depth by scanning tags (comments, CDATA, processing instructions and quoted
 * attribute values skipped), so that a hostile body is refused before a DOM is built.
 */
export function xmlDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let i = text.indexOf('<');
  while (i >= 0 && i < text.length) {
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) return false;
      i = text.indexOf('<', end + 3);
      continue;
    }
    if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i + 9);
      if (end < 0) return false;
      i = text.indexOf('<', end + 3);
      continue;
    }
    const next = text.charCodeAt(i + 1);
    // Find the end of the tag, skipping quoted attribute values.
    let j = i + 1;
    let quote = 0;
    for (; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (quote) {
        if (c === quote) quote = 0;
      } else if (c === 34 || c === 39) quote = c;
      else if (c === 62 /* > */) break;
    }
    if (next === 47 /* / */) depth--;
    else if (next !== 63 /* ? */ && next !== 33 /* ! */ && text.charCodeAt(j - 1) !== 47) {
      if (++depth > max) return true;
    }
    i = text.indexOf('<', j + 1);
  }
  return false;
}

export interface BodyLimits {
  maxDepth: number;
}

/**
 * Parses a request body by its media type. JSON Patch bodies stay plain JSON; FHIR JSON and XML become a
 * resource. Returns undefined for an empty body.
 */
export function parseBody(raw: Buffer | string | undefined, contentType: string | undefined, limits: BodyLimits): unknown {
  if (raw === undefined || raw.length === 0) return undefined;
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  const type = mediaType(contentType);
  if (type === 'application/json-patch+json' || type === undefined || JSON_TYPES.has(type)) {
    if (jsonDepthExceeds(text, limits.maxDepth)) {
      throw badRequest(`The JSON body nests deeper than the limit of ${limits.maxDepth} levels`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new FhirError(400, `The body is not valid JSON: ${(err as Error).message}`, 'structure');
    }
  }
  if (XML_TYPES.has(type)) {
    if (xmlDepthExceeds(text, limits.maxDepth)) {
      throw badRequest(`The XML body nests deeper than the limit of ${limits.maxDepth} elements`);
    }
    return parseFhirXml(text, { maxDepth: limits.maxDepth });
  }
  throw new FhirError(415, `Content-Type ${type} is not supported; use application/fhir+json or application/fhir+xml`, 'not-supported');
}

/** Responses whose body is, byte for byte, a stored JSON text (see `storedResponse`): the record, and whether the body was replaced. */
const STORED_JSON = new WeakMap<FhirResponse, { json: string; record: VersionRecord; replaced: boolean }>();

/**
 * A response whose body is a stored resource, remembering the record's stored text: while the body is that
 * record's resource, `storedJson` hands the HTTP layer the text, which is exactly what
 * `serialize(body, 'json', false)` would produce (no serialisation for a plain JSON read). With a stored text
 * the body is read from the record when first asked for (an accessor: the record parses its text then), so a
 * read whose access decision and audit need no parsed resource (src/access/decision.ts, stored access facts)
 * never parses it; assigning `body` replaces it as on a plain object.
 */
export function storedResponse(status: number, headers: Record<string, string>, record: VersionRecord): FhirResponse {
  const res: FhirResponse = { status, headers, summarizable: true };
  if (record.json === undefined) {
    res.body = record.resource;
    return res;
  }
  const stored = { json: record.json, record, replaced: false };
  let body: Resource | undefined;
  Object.defineProperty(res, 'body', {
    enumerable: true,
    configurable: true,
    get: () => (stored.replaced ? body : record.resource),
    set: (value: Resource | undefined) => {
      stored.replaced = true;
      body = value;
    },
  });
  STORED_JSON.set(res, stored);
  return res;
}

/** The stored JSON text that is this response's body, unless the body has been replaced since. */
export function storedJson(res: FhirResponse): string | undefined {
  const stored = STORED_JSON.get(res);
  return stored && !stored.replaced && stored.record.json === stored.json ? stored.json : undefined;
}

/** The stored record whose resource is this response's body (unless the body has been replaced since). */
export function storedRecord(res: FhirResponse): VersionRecord | undefined {
  const stored = STORED_JSON.get(res);
  return stored && !stored.replaced && stored.record.json === stored.json ? stored.record : undefined;
}

export function serialize(resource: Resource, format: Format, pretty: boolean): string {
  if (format === 'xml') return toFhirXml(resource, { pretty });
  return pretty ? JSON.stringify(resource, null, 2) : JSON.stringify(resource);
}

/**
 * The HTTP layer: an express application that turns HTTP requests into FhirRequests, hands them to the
 * router, and writes FhirResponses back in the negotiated format. Every failure leaves as an
 * OperationOutcome with the right status; internals never reach the client.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Binary, Resource } from 'fhir/r4';
import type { Logger } from 'pino';
import type { Context } from '../fhir/interactions.ts';
import { dispatch } from '../fhir/router.ts';
import { FhirError, operationOutcome } from '../fhir/outcome.ts';
import type { FhirRequest, FhirResponse, HttpMethod } from '../fhir/request.ts';
import type { Principal } from '../access/principal.ts';
import { type Format, acceptRanges, contentTypeOf, formatOf, mediaType, parseBody, responseFormat, serialize, storedJson, withUtf8Charset } from '../formats/negotiate.ts';
import { applySubsetting, parseSummary } from '../formats/summary.ts';
import { authenticate, flushAudit, registerAuthRoutes } from '../access/http.ts';
import { accessRuntime } from '../access/service.ts';
import { operationRegistry, type Operation } from '../operations/registry.ts';

export const FHIR_BASE_PATH = '/fhir';

export interface AppOptions {
  ctx: Context;
  logger?: Logger;
}

interface Negotiated {
  format: Format;
  pretty: boolean;
}

/** The query parameters of a request target, in order (what `new URL(...).searchParams` gives, without building a URL). */
function queryOf(target: string): [string, string][] {
  const q = target.indexOf('?');
  if (q < 0) return [];
  const hash = target.indexOf('#', q);
  return [...new URLSearchParams(hash < 0 ? target.slice(q + 1) : target.slice(q + 1, hash))];
}

function firstQuery(query: [string, string][], name: string): string | undefined {
  return query.find(([k]) => k === name)?.[1];
}

function send(res: Response, neg: Negotiated, status: number, headers: Record<string, string>, body: Resource | undefined, head: boolean): void {
  res.status(status);
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (body === undefined || status === 304) {
    res.end();
    return;
  }
  const text = serialize(body, neg.format, neg.pretty);
  res.setHeader('Content-Type', contentTypeOf(neg.format));
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(head ? undefined : text);
}

const JSON_CONTENT_TYPE = contentTypeOf('json');

function sendText(res: Response, status: number, headers: Record<string, string>, text: string, head: boolean): void {
  // One writeHead with every header: Node writes them as given, without keeping each in the response's header map
  // first (what setHeader does); headers set earlier, if any, are merged in by writeHead.
  const out: Record<string, string | number> = {};
  for (const k in headers) out[k] = headers[k];
  out['Content-Type'] = JSON_CONTENT_TYPE;
  out['Content-Length'] = Buffer.byteLength(text);
  res.writeHead(status, out);
  res.end(head ? undefined : text);
}

function sendError(res: Response, neg: Negotiated, err: unknown, logger?: Logger): void {
  if (err instanceof FhirError) {
    send(res, neg, err.status, err.headers, err.toOperationOutcome(), false);
    return;
  }
  // Body-parser errors carry an HTTP status (413 too large, 400 bad encoding).
  const status = (err as { status?: number; type?: string }).status;
  if (status === 413) {
    send(res, neg, 413, {}, operationOutcome([{ severity: 'error', code: 'too-costly', diagnostics: 'The request body exceeds the configured size limit' }]), false);
    return;
  }
  if (status && status >= 400 && status < 500) {
    send(res, neg, status, {}, operationOutcome([{ severity: 'error', code: 'invalid', diagnostics: 'The request body could not be read' }]), false);
    return;
  }
  // Never leak internals (or health data) to the client; log the error itself only.
  logger?.error({ err: { message: (err as Error)?.message, stack: (err as Error)?.stack } }, 'unhandled error');
  send(res, neg, 500, {}, operationOutcome([{ severity: 'fatal', code: 'exception', diagnostics: 'Internal server error' }]), false);
}

export function createApp({ ctx, logger }: AppOptions): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  const raw = express.raw({ type: () => true, limit: ctx.config.limits.maxBodyBytes });
  // The signing key and audit store open on first use; startServer opens them before listening (src/server.ts).
  // SMART discovery and the Backend Services token endpoint (src/access/http.ts).
  registerAuthRoutes(app, ctx, FHIR_BASE_PATH);

  // The request log costs a listener and a clock read per request: only installed when it is written.
  if (logger?.isLevelEnabled('info')) {
    app.use(FHIR_BASE_PATH, (req: Request, res: Response, next: NextFunction) => {
      const started = process.hrtime.bigint();
      res.on('finish', () => {
        // Paths and statuses only: query strings and bodies may carry health data.
        logger.info({ method: req.method, path: req.baseUrl + req.path, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request');
      });
      next();
    });
  }

  app.use(FHIR_BASE_PATH, (req: Request, res: Response, next: NextFunction) => {
    const query = queryOf(req.originalUrl);
    let neg: Negotiated = { format: 'json', pretty: false };
    if (wantsRawBinary(req, query)) {
      // No token, no data: authentication comes first on every path (src/access/http.ts).
      authenticate(ctx, req)
        .then((principal) => sendRawBinary(ctx, req, res, query, principal))
        .catch((e: unknown) => sendError(res, neg, e, logger));
      return;
    }
    try {
      neg = {
        format: responseFormat(firstQuery(query, '_format'), req.get('accept')),
        pretty: firstQuery(query, '_pretty') === 'true',
      };
    } catch (err) {
      sendError(res, neg, err, logger);
      return;
    }
    raw(req, res, (err?: unknown) => {
      if (err) {
        sendError(res, neg, err, logger);
        return;
      }
      authenticate(ctx, req)
        .then((principal) => handle(ctx, req, res, neg, query, principal))
        .catch((e: unknown) => sendError(res, neg, e, logger));
    });
    void next;
  });

  app.use((req: Request, res: Response) => {
    send(res, { format: 'json', pretty: false }, 404, {}, operationOutcome([{ severity: 'error', code: 'not-found', diagnostics: `Nothing at ${req.path}; the FHIR endpoint is ${FHIR_BASE_PATH}` }]), false);
  });
  return app;
}

/**
 * A Binary read whose Accept names a non-FHIR type (application/pdf...) gets the raw content
 * (R4 binary.html#rest); FHIR media types, a wildcard or `_format` get the Binary resource.
 */
function wantsRawBinary(req: Request, query: [string, string][]): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (!/^\/Binary\/[^/]+(\/_history\/[^/]+)?\/?$/.test(req.path)) return false;
  if (firstQuery(query, '_format')) return false;
  const accept = req.get('accept');
  if (!accept) return false;
  return !accept.split(',').some((part) => {
    const type = part.split(';')[0].trim().toLowerCase();
    return type === '*/*' || formatOf(type) !== undefined;
  });
}

/** The registered operation of a `$name` path that takes or answers raw (non-FHIR) XML. */
function rawXmlOperation(path: string): Operation | undefined {
  const m = /\/\$([A-Za-z][A-Za-z0-9-]*)\/?$/.exec(path);
  const op = m ? operationRegistry.get(m[1]!) : undefined;
  return op?.rawXml ? op : undefined;
}

/**
 * Accept names application/xml itself (not application/fhir+xml, not a wildcard) as the most preferred type
 * and no `_format` is given: the client wants the XML document, not a FHIR resource.
 */
function wantsRawXml(req: Request, query: [string, string][]): boolean {
  if (firstQuery(query, '_format')) return false;
  const accept = req.get('accept');
  return !!accept && acceptRanges(accept)[0]?.type === 'application/xml';
}

/** The status, the result's headers, then a Binary's bytes as the body with `contentType` (no Binary: no body). */
function sendBinaryBytes(res: Response, status: number, headers: Record<string, string>, binary: Binary | undefined, contentType: string | undefined, head: boolean): void {
  res.status(status);
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (!binary) {
    res.end();
    return;
  }
  const bytes = Buffer.from(binary.data ?? '', 'base64');
  if (contentType) res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', bytes.length);
  res.end(head ? undefined : bytes);
}

async function sendRawBinary(ctx: Context, req: Request, res: Response, query: [string, string][], principal: Principal): Promise<void> {
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const result = await flushAudit(ctx, dispatch(ctx, {
    method: 'GET',
    path: req.path.replace(/^\/+/, ''),
    query,
    headers,
    baseUrl: ctx.config.baseUrl ?? `${req.protocol}://${req.get('host')}${FHIR_BASE_PATH}`,
    principal,
  }));
  const binary = result.status === 304 ? undefined : (result.body as Binary | undefined);
  sendBinaryBytes(res, result.status, result.headers, binary, binary?.contentType, req.method === 'HEAD');
}

async function handle(ctx: Context, req: Request, res: Response, neg: Negotiated, query: [string, string][], principal: Principal): Promise<void> {
  const method = req.method.toUpperCase() as HttpMethod;
  if (!['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    throw new FhirError(405, `HTTP method ${req.method} is not supported`, 'not-supported');
  }
  const contentType = mediaType(req.get('content-type'));
  const rawBody = Buffer.isBuffer(req.body) && req.body.length ? (req.body as Buffer) : undefined;
  const rawOp = rawXmlOperation(req.path);
  let body: unknown;
  let params = query;
  if (contentType === 'application/x-www-form-urlencoded') {
    // POST _search: form parameters join the URL's.
    params = [...query, ...new URLSearchParams(rawBody?.toString('utf8') ?? '')];
  } else if (rawOp?.rawXml?.body && contentType === 'application/xml') {
    // A non-FHIR XML document for an operation that reads one (the CDA of $from-cda): its text, unparsed; the
    // operation parses it with its guarded parser (DOCTYPE refused, depth and size limits). The size limit of
    // every body (413) applied when it was read.
    body = rawBody?.toString('utf8');
  } else {
    body = parseBody(rawBody, contentType, { maxDepth: ctx.config.limits.maxDepth });
  }
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const baseUrl = ctx.config.baseUrl ?? `${req.protocol}://${req.get('host')}${FHIR_BASE_PATH}`;
  const fhirReq: FhirRequest = {
    method,
    path: req.path.replace(/^\/+/, ''),
    query: params,
    body,
    contentType,
    headers,
    baseUrl,
    principal,
  };
  const summary = parseSummary(firstQuery(query, '_summary'));
  const elements = firstQuery(query, '_elements');
  // The audit trail of the request is written before the answer leaves (src/access/http.ts).
  const result: FhirResponse = await flushAudit(ctx, dispatch(ctx, fhirReq), fhirReq);
  // The document itself, not a Binary, for an operation answering a non-FHIR XML document (the CDA of $to-cda)
  // when the client asks for application/xml by name.
  if (rawOp?.rawXml?.response && result.status === 200 && result.body?.resourceType === 'Binary' && wantsRawXml(req, query)) {
    const binary = result.body as Binary;
    sendBinaryBytes(res, 200, result.headers, binary, withUtf8Charset(binary.contentType ?? 'application/xml'), method === 'HEAD');
    return;
  }
  // A plain JSON read: the stored text is the body as it is (no parse, no serialisation).
  const stored = neg.format === 'json' && !neg.pretty && !summary && elements === undefined ? storedJson(result) : undefined;
  if (stored !== undefined) {
    sendText(res, result.status, result.headers, stored, method === 'HEAD');
    return;
  }
  const out = result.body && result.summarizable ? applySubsetting(result.body, summary, elements) : result.body;
  send(res, neg, result.status, result.headers, out, method === 'HEAD');
}

/**
 * Maps a FhirRequest to its interaction. The router knows nothing about HTTP or storage: the HTTP layer and
 * the batch/transaction processor both call `dispatch`.
 */
import type { StoreSession } from '../store/port.ts';
import { FhirError, badRequest } from './outcome.ts';
import type { FhirRequest, FhirResponse } from './request.ts';
import * as I from './interactions.ts';
import { processBundle } from './bundle.ts';
import { syncSearchParameters } from '../search/reindex.ts';
import { capabilityStatement } from './capabilities.ts';
import { operationRegistry } from '../operations/index.ts';
import { enforce } from '../access/enforce.ts';

export type { Context } from './interactions.ts';

function methodNotAllowed(req: FhirRequest): FhirError {
  return new FhirError(405, `${req.method} is not allowed on /${req.path}`, 'not-supported');
}

/**
 * Dispatches one request. `session` is the transaction a transaction Bundle runs in; without one, each write
 * gets its own store transaction.
 */
export async function dispatch(ctx: I.Context, req: FhirRequest, session?: StoreSession): Promise<FhirResponse> {
  // Every request, HTTP or batch/transaction entry, passes the access decision point (src/access/enforce.ts)
  // before any store query runs; it calls `route` once the request is allowed.
  return enforce(ctx, req, session, route);
}

async function route(ctx: I.Context, req: FhirRequest, session?: StoreSession): Promise<FhirResponse> {
  const parts = req.path.split('/').filter((p) => p.length > 0).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      throw badRequest(`The path segment "${p}" is not valid percent-encoding`);
    }
  });
  const reads: StoreSession = session ?? ctx.store;
  const write = async <T>(work: (s: StoreSession) => Promise<T>): Promise<T> => {
    if (session) return work(session);
    const result = await ctx.store.transaction(work);
    // A SearchParameter written on the server changes what is indexed: bring the registry in step (and
    // re-index in the background) once the write has committed.
    if (parts[0] === 'SearchParameter') await syncSearchParameters(ctx.store);
    return result;
  };
  const m = req.method === 'HEAD' ? 'GET' : req.method;
  const [a, b, c, d, e] = parts;

  if (parts.length > 0 && parts[parts.length - 1].startsWith('$')) {
    return operationRegistry.invoke(ctx, req, parts, session);
  }

  // System level
  if (parts.length === 0) {
    if (m === 'POST') return processBundle(ctx, req);
    if (m === 'GET') return I.search(ctx, reads, req, undefined, req.query, { path: '' });
    throw methodNotAllowed(req);
  }
  if (a === 'metadata' && parts.length === 1) {
    if (m !== 'GET') throw methodNotAllowed(req);
    return { status: 200, headers: {}, body: capabilityStatement(ctx, req) };
  }
  if (a === '_history' && parts.length === 1) {
    if (m !== 'GET') throw methodNotAllowed(req);
    return I.history(ctx, req);
  }
  if (a === '_search' && parts.length === 1) {
    if (m !== 'POST') throw methodNotAllowed(req);
    return I.search(ctx, reads, req, undefined, req.query, { path: '' });
  }

  I.assertResourceType(a);
  // Type level
  if (parts.length === 1) {
    switch (m) {
      case 'GET':
        return I.search(ctx, reads, req, a, req.query);
      case 'POST':
        return write((s) => I.create(ctx, s, req, a));
      case 'PUT':
        return write((s) => I.conditionalUpdate(ctx, s, req, a));
      case 'DELETE':
        return write((s) => I.conditionalDelete(ctx, s, req, a));
      case 'PATCH':
        return write((s) => I.conditionalPatch(ctx, s, req, a));
    }
  }
  if (parts.length === 2 && b === '_search') {
    if (m !== 'POST') throw methodNotAllowed(req);
    return I.search(ctx, reads, req, a, req.query, { path: `${a}/_search` });
  }
  if (parts.length === 2 && b === '_history') {
    if (m !== 'GET') throw methodNotAllowed(req);
    return I.history(ctx, req, a);
  }
  // Instance level
  if (parts.length === 2) {
    switch (m) {
      case 'GET':
        return I.read(reads, req, a, b);
      case 'PUT':
        return write((s) => I.update(ctx, s, req, a, b));
      case 'DELETE':
        return write((s) => I.remove(ctx, s, req, a, b));
      case 'PATCH':
        return write((s) => I.patch(ctx, s, req, a, b));
      default:
        throw methodNotAllowed(req);
    }
  }
  if (c === '_history') {
    if (m !== 'GET') throw methodNotAllowed(req);
    if (parts.length === 3) return I.history(ctx, req, a, b);
    if (parts.length === 4) return I.vread(reads, req, a, b, d);
  }
  if (parts.length === 3 && m === 'GET') return I.compartmentSearch(ctx, reads, req, a, b, c);
  void e;
  throw new FhirError(404, `No FHIR interaction at /${req.path}`, 'not-found');
}

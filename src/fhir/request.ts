/**
 * Transport-neutral request and response of one FHIR interaction. The HTTP layer builds a FhirRequest from
 * an HTTP request; batch and transaction entries build one from `Bundle.entry.request`. Both go through the
 * same router, so an interaction behaves the same whichever way it arrives.
 */
import type { Resource } from 'fhir/r4';
import type { Principal } from '../access/principal.ts';
import type { SearchRequest } from '../search/types.ts';
import type { CurrentRecord, StoreSession } from '../store/port.ts';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface FhirRequest {
  method: HttpMethod;
  /** Path below the FHIR base, without leading slash or query: `Patient/123/_history/2`. */
  path: string;
  /** Query parameters in order (repeats kept). */
  query: [string, string][];
  /** Parsed body: a resource, or for JSON Patch the operation array. */
  body?: unknown;
  /** Media type of the body without parameters (`application/fhir+json`, `application/json-patch+json`). */
  contentType?: string;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  /** Absolute base URL of the FHIR endpoint, without trailing slash (`http://host/fhir`). */
  baseUrl: string;
  /**
   * Who is asking (src/access). The HTTP layer always sets it (or answers 401); in-process callers (example
   * loading, CLI tools) leave it out and act as the internal principal.
   */
  principal?: Principal;
  /** Set by dispatch(): the access decision point's hooks used inside search and writes (src/access/decision.ts). */
  access?: SearchGuard & WriteGuard;
  /** The body already passed base validation (a transaction validates every entry first). */
  validated?: boolean;
  /**
   * Set by the access decision point: the request read shared, non-patient data only, so its answer need not
   * wait for its audit entry's commit (the entry is written by the same group commit all the same).
   */
  auditNoWait?: boolean;
}

/** What search() asks the access decision point: narrowing before the query, include checks, sealed cursors. */
export interface SearchGuard {
  narrow(request: SearchRequest): Promise<void>;
  filterIncluded(resources: Resource[]): Promise<Resource[]>;
  sealCursor(cursor: string): string;
  openCursor(sealed: string): string;
}

/**
 * What update, patch and delete ask the access decision point, inside their store transaction and on the
 * records they read there (so that the decision and the write see the same state).
 */
export interface WriteGuard {
  /** The target as read in the transaction must be visible to the caller (else the same 404 as a missing one). */
  checkWriteTarget(session: StoreSession, type: string, id: string, current: CurrentRecord | undefined): Promise<void>;
  /** May the caller turn `before` into `after` (create: no `before`; delete: no `after`)? 403 / 404 when not. */
  checkWrite(interaction: 'create' | 'update' | 'patch' | 'delete', before: Resource | undefined, after: Resource | undefined, session: StoreSession): Promise<void>;
}

export interface FhirResponse {
  status: number;
  /** Body: a resource (Bundle, OperationOutcome...) or nothing. */
  body?: Resource;
  /** ETag, Location, Last-Modified and others. */
  headers: Record<string, string>;
  /** True when the body is a whole resource read from the store (so _summary / _elements apply). */
  summarizable?: boolean;
}

export function header(req: FhirRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return v === undefined || v === '' ? undefined : v;
}

export function queryValue(req: FhirRequest, name: string): string | undefined {
  for (const [k, v] of req.query) if (k === name) return v;
  return undefined;
}

/** `Prefer: return=minimal|representation|OperationOutcome` and `handling=strict|lenient`. */
export function prefer(req: FhirRequest): { return?: string; handling?: string } {
  const out: { return?: string; handling?: string } = {};
  const raw = header(req, 'prefer');
  if (!raw) return out;
  for (const part of raw.split(/[;,]/)) {
    const [k, v] = part.trim().split('=').map((x) => x?.trim().replace(/^"|"$/g, ''));
    if (k === 'return' && v) out.return = v;
    if (k === 'handling' && v) out.handling = v;
  }
  return out;
}

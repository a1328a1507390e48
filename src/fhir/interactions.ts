/**
 * The FHIR RESTful interactions (R4 http.html), written once against the store port.
 * Every write runs inside a store transaction, so a read-check-write (If-Match, conditional create,
 * conditional update, patch) is atomic on every adapter.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, BundleLink, FhirResource, OperationOutcome, Parameters, Resource } from 'fhir/r4';
import type { Config } from '../config.ts';
import type { HistoryQuery, Store, StoreSession, VersionRecord, WriteMethod } from '../store/port.ts';
import type { SearchRequest } from '../search/types.ts';
import { extractIndex } from '../search/indexer.ts';
import { parseSearch } from '../search/parse.ts';
import { expandSearchFilters } from '../search/valuesets.ts';
import { terminologyService } from '../terminology/service.ts';
import { assertValidResource, validateOnWrite } from '../validation/index.ts';
import { applyFhirPathPatch, applyJsonPatch } from './patch.ts';
import { ID_PATTERN, fhirModel } from './model.ts';
import { checkBusinessRules } from './rules.ts';
import { compartmentFilter, compartmentTypes, isCompartment } from './compartments.ts';
import {
  FhirError,
  badRequest,
  gone,
  notFound,
  operationOutcome,
  preconditionFailed,
  type Issue,
} from './outcome.ts';
import { type FhirRequest, type FhirResponse, header, prefer, queryValue } from './request.ts';
import { storedResponse } from '../formats/negotiate.ts';

export interface Context {
  store: Store;
  config: Config;
}

// -- helpers -------------------------------------------------------------------------------------------------

export function etag(versionId: number | string): string {
  return `W/"${versionId}"`;
}

/** Parses If-Match: `W/"3"` or `"3"` (or a bare 3). */
export function parseETag(value: string): number {
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(value.trim());
  if (!m) throw badRequest(`Invalid ETag "${value}": expected W/"<versionId>"`);
  return Number(m[1]);
}

/** HTTP dates of the stored instants, by their second (`YYYY-MM-DDTHH:MM:SS`); bounded. */
const httpDates = new Map<string, string>();

export function httpDate(iso: string): string {
  // An HTTP date has second precision: the versions written in one second (a whole Bundle, often) share it, so
  // the store's instants (`YYYY-MM-DDTHH:MM:SS.sssZ`) are formatted once per second; anything else as it is.
  if (iso.length !== 24 || iso.charCodeAt(23) !== 90 /* Z */) return new Date(iso).toUTCString();
  const second = iso.slice(0, 19);
  let date = httpDates.get(second);
  if (date === undefined) {
    date = new Date(iso).toUTCString();
    if (httpDates.size >= 10_000) httpDates.clear();
    httpDates.set(second, date);
  }
  return date;
}

function versionHeaders(record: VersionRecord, baseUrl: string, withLocation: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    ETag: etag(record.versionId),
    'Last-Modified': httpDate(record.lastUpdated),
  };
  if (withLocation) {
    headers.Location = `${baseUrl}/${record.resourceType}/${record.id}/_history/${record.versionId}`;
  }
  return headers;
}

export function assertResourceType(type: string): void {
  if (!fhirModel().isResourceType(type)) throw new FhirError(404, `Unknown resource type "${type}"`, 'not-supported');
}

export function assertId(id: string): void {
  if (!ID_PATTERN.test(id)) throw badRequest(`Invalid resource id "${id}": ids are 1 to 64 characters of A-Z a-z 0-9 - .`);
}

/**
 * Body checks shared by create and update: a resource of the URL's type, structurally valid, meeting the
 * business rules, and — when it declares profiles — conforming to them (DSP_PROFILE_VALIDATION: off, warn
 * (issues returned with Prefer: return=OperationOutcome), reject (422)).
 */
function checkBody(ctx: Context, body: unknown, type: string, validated = false): { resource: Resource; issues: Issue[] } {
  if (body === undefined || body === null) throw badRequest('A resource body is required');
  if (!validated) assertValidResource(body);
  const resource = body as Resource;
  if (resource.resourceType !== type) {
    throw badRequest(`The body is a ${resource.resourceType} but the URL is for ${type}`, ['resourceType']);
  }
  checkBusinessRules(resource);
  return { resource, issues: validateOnWrite(resource, ctx.config.profileValidation) };
}

/** Response of a successful write, shaped by Prefer: return=. */
function writeResponse(req: FhirRequest, record: VersionRecord, status: number, created: boolean, issues: Issue[] = []): FhirResponse {
  const headers = versionHeaders(record, req.baseUrl, true);
  const want = prefer(req).return ?? 'representation';
  if (want === 'minimal') return { status, headers };
  if (want === 'OperationOutcome') {
    return {
      status,
      headers,
      body: operationOutcome([
        {
          severity: 'information',
          code: 'informational',
          diagnostics: `${created ? 'Created' : record.deleted ? 'Deleted' : 'Updated'} ${record.resourceType}/${record.id} version ${record.versionId}`,
        },
        ...issues,
      ]),
    };
  }
  return { status, headers, body: record.resource };
}

async function indexAndPut(
  session: StoreSession,
  resource: Resource,
  method: WriteMethod,
  expectedVersion?: number,
): Promise<VersionRecord> {
  return session.put(resource, { method, expectedVersion, index: extractIndex(resource) });
}

/** Drops client-supplied versioning metadata: the server owns meta.versionId and meta.lastUpdated. */
export function withoutServerMeta(resource: Resource): Resource {
  if (!resource.meta) return resource;
  const { versionId: _v, lastUpdated: _l, ...rest } = resource.meta;
  const copy = { ...resource } as Resource;
  if (Object.keys(rest).length) copy.meta = rest;
  else delete copy.meta;
  return copy;
}

/** Runs a search with the given parameters for a conditional interaction; strict about unknown parameters. */
export async function conditionalMatches(
  session: StoreSession,
  ctx: Context,
  type: string,
  query: [string, string][] | string,
  limit = 2,
): Promise<Resource[]> {
  const params = typeof query === 'string' ? [...new URLSearchParams(query)] : query;
  if (!params.length) throw badRequest('A conditional interaction needs at least one search parameter');
  const { request } = parseSearch(type, params, {
    strict: true,
    defaultCount: limit,
    maxCount: ctx.config.limits.maxCount,
  });
  // Hierarchies (reference :above / :below) are read through the session: inside a transaction they include its own writes.
  await expandSearchFilters(request, () => terminologyService().scope(ctx.store), session);
  const result = await session.search({ ...request, count: limit, total: 'none', include: [], sort: [] });
  return result.resources;
}

// -- read ------------------------------------------------------------------------------------------------------

export async function read(session: StoreSession, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  assertResourceType(type);
  assertId(id);
  const record = await session.current(type, id);
  if (!record) throw notFound(`${type}/${id} is not known`);
  if (record.deleted) {
    throw new FhirError(410, `${type}/${id} was deleted`, 'deleted', { ETag: etag(record.versionId) });
  }
  const headers = versionHeaders(record, req.baseUrl, false);
  const ifNoneMatch = header(req, 'if-none-match');
  if (ifNoneMatch && ifNoneMatch.split(',').some((t) => t.trim() === '*' || safeETag(t) === record.versionId)) {
    return { status: 304, headers };
  }
  const ifModifiedSince = header(req, 'if-modified-since');
  if (ifModifiedSince && !ifNoneMatch) {
    const since = Date.parse(ifModifiedSince);
    // HTTP dates have second precision: compare at that precision.
    if (Number.isFinite(since) && Math.floor(Date.parse(record.lastUpdated) / 1000) * 1000 <= since) {
      return { status: 304, headers };
    }
  }
  return storedResponse(200, headers, record);
}

function safeETag(value: string): number | undefined {
  try {
    return parseETag(value);
  } catch {
    return undefined;
  }
}

export async function vread(session: StoreSession, req: FhirRequest, type: string, id: string, vid: string): Promise<FhirResponse> {
  assertResourceType(type);
  assertId(id);
  if (!/^\d+$/.test(vid)) throw notFound(`Version "${vid}" of ${type}/${id} is not known`);
  const record = await session.version(type, id, Number(vid));
  if (!record) throw notFound(`Version ${vid} of ${type}/${id} is not known`);
  if (record.deleted) {
    throw new FhirError(410, `Version ${vid} of ${type}/${id} is a deletion`, 'deleted', { ETag: etag(record.versionId) });
  }
  return storedResponse(200, versionHeaders(record, req.baseUrl, false), record);
}

// -- create / update / delete ------------------------------------------------------------------------------

export async function create(ctx: Context, session: StoreSession, req: FhirRequest, type: string, presetId?: string): Promise<FhirResponse> {
  assertResourceType(type);
  const checked = checkBody(ctx, req.body, type, req.validated);
  const resource = withoutServerMeta(checked.resource);
  const ifNoneExist = header(req, 'if-none-exist');
  if (ifNoneExist) {
    const matches = await conditionalMatches(session, ctx, type, ifNoneExist.replace(/^[^?]*\?/, ''));
    if (matches.length > 1) throw preconditionFailed(`If-None-Exist matched ${matches.length} or more ${type} resources`);
    if (matches.length === 1) {
      const existing = matches[0];
      const record = await session.current(type, existing.id!);
      return { ...writeResponse(req, record!, 200, false), status: 200 };
    }
  }
  // create ignores any id in the body (R4 http.html#create); transactions may preset one for urn:uuid entries.
  const id = presetId ?? randomUUID();
  const stored = { ...resource, id } as Resource;
  // Access hook (src/access): decided on this transaction's state (the record's policy as it is now), on the
  // resource as it will be stored.
  await req.access?.checkWrite('create', undefined, stored, session);
  const record = await indexAndPut(session, stored, 'POST');
  return writeResponse(req, record, 201, true, checked.issues);
}

export async function update(ctx: Context, session: StoreSession, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  assertResourceType(type);
  assertId(id);
  const checked = checkBody(ctx, req.body, type, req.validated);
  const resource = withoutServerMeta(checked.resource);
  if (resource.id === undefined) throw badRequest('The resource in an update must have an id', [`${type}.id`]);
  if (resource.id !== id) throw badRequest(`The id in the body (${resource.id}) differs from the URL (${id})`, [`${type}.id`]);
  const ifMatch = header(req, 'if-match');
  const expected = ifMatch ? parseETag(ifMatch) : undefined;
  const before = await session.current(type, id);
  // Access hook (src/access): decided on the record this transaction read, so nothing can change in between.
  if (req.access) {
    if (before) await req.access.checkWriteTarget(session, type, id, before);
    await req.access.checkWrite(before && !before.deleted ? 'update' : 'create', before?.deleted ? undefined : before?.resource, resource, session);
  }
  if (expected !== undefined && (!before || before.deleted)) {
    throw preconditionFailed(`${type}/${id} does not exist, so If-Match ${ifMatch} cannot match`);
  }
  const record = await indexAndPut(session, resource, 'PUT', expected);
  const created = !before || before.deleted;
  return writeResponse(req, record, created ? 201 : 200, created, checked.issues);
}

export async function conditionalUpdate(ctx: Context, session: StoreSession, req: FhirRequest, type: string): Promise<FhirResponse> {
  assertResourceType(type);
  const { resource } = checkBody(ctx, req.body, type, req.validated);
  const matches = await conditionalMatches(session, ctx, type, searchParamsOf(req));
  if (matches.length > 1) throw preconditionFailed(`The conditional update matched several ${type} resources`);
  if (matches.length === 1) {
    const id = matches[0].id!;
    if (resource.id !== undefined && resource.id !== id) {
      throw badRequest(`The id in the body (${resource.id}) differs from the matched resource (${id})`, [`${type}.id`]);
    }
    return update(ctx, session, { ...req, body: { ...resource, id }, validated: true }, type, id);
  }
  // The body passed base validation above: update/create need not validate it again.
  if (resource.id !== undefined) {
    assertId(resource.id);
    return update(ctx, session, { ...req, validated: true }, type, resource.id);
  }
  return create(ctx, session, { ...req, validated: true, headers: { ...req.headers, 'if-none-exist': undefined } }, type);
}

export async function remove(ctx: Context, session: StoreSession, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  assertResourceType(type);
  assertId(id);
  const ifMatch = header(req, 'if-match');
  const expected = ifMatch ? parseETag(ifMatch) : undefined;
  const before = await session.current(type, id);
  if (!before) throw notFound(`${type}/${id} is not known`);
  // Access hook (src/access): decided on the record this transaction read.
  await req.access?.checkWriteTarget(session, type, id, before);
  if (before.deleted) {
    if (expected !== undefined) throw preconditionFailed(`${type}/${id} is already deleted`);
    return { status: 204, headers: { ETag: etag(before.versionId) } };
  }
  await req.access?.checkWrite('delete', before.resource, undefined, session);
  const record = await session.delete(type, id, { method: 'DELETE', expectedVersion: expected });
  return deleteResponse(req, record!);
}

function deleteResponse(req: FhirRequest, record: VersionRecord): FhirResponse {
  const headers = { ETag: etag(record.versionId) };
  if (prefer(req).return === 'OperationOutcome') {
    return {
      status: 200,
      headers,
      body: operationOutcome([{ severity: 'information', code: 'informational', diagnostics: `Deleted ${record.resourceType}/${record.id}` }]),
    };
  }
  return { status: 204, headers };
}

export async function conditionalDelete(ctx: Context, session: StoreSession, req: FhirRequest, type: string): Promise<FhirResponse> {
  assertResourceType(type);
  const matches = await conditionalMatches(session, ctx, type, searchParamsOf(req));
  if (matches.length > 1) throw preconditionFailed(`The conditional delete matched several ${type} resources`);
  if (matches.length === 0) return { status: 204, headers: {} };
  return remove(ctx, session, req, type, matches[0].id!);
}

// -- patch ---------------------------------------------------------------------------------------------------

export async function patch(ctx: Context, session: StoreSession, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  assertResourceType(type);
  assertId(id);
  const current = await session.current(type, id);
  if (!current) throw notFound(`${type}/${id} is not known`);
  // Access hook (src/access): decided on the record this transaction read, before anything about it is told.
  await req.access?.checkWriteTarget(session, type, id, current);
  if (current.deleted) throw gone(`${type}/${id} was deleted`);
  const ifMatch = header(req, 'if-match');
  const expected = ifMatch ? parseETag(ifMatch) : current.versionId;
  if (expected !== current.versionId) {
    throw preconditionFailed(`Version conflict on ${type}/${id}: expected version ${expected}, current is ${current.versionId}`);
  }
  let patched: Resource;
  if (req.contentType === 'application/json-patch+json') {
    patched = applyJsonPatch(current.resource!, req.body);
  } else {
    const params = req.body as Resource | undefined;
    if (!params || params.resourceType !== 'Parameters') {
      throw badRequest('A FHIRPath Patch body must be a Parameters resource (or send application/json-patch+json)');
    }
    assertValidResource(params);
    patched = applyFhirPathPatch(current.resource!, params as Parameters);
  }
  if (patched.resourceType !== type || patched.id !== id) {
    throw new FhirError(422, 'A patch must not change the resource type or id', 'processing');
  }
  const resource = withoutServerMeta(patched);
  assertValidResource(resource);
  checkBusinessRules(resource);
  const issues = validateOnWrite(resource, ctx.config.profileValidation);
  await req.access?.checkWrite('patch', current.resource, resource, session);
  const record = await indexAndPut(session, resource, 'PATCH', expected);
  return writeResponse(req, record, 200, false, issues);
}

export async function conditionalPatch(ctx: Context, session: StoreSession, req: FhirRequest, type: string): Promise<FhirResponse> {
  assertResourceType(type);
  const matches = await conditionalMatches(session, ctx, type, searchParamsOf(req));
  if (matches.length === 0) throw notFound(`The conditional patch matched no ${type}`);
  if (matches.length > 1) throw preconditionFailed(`The conditional patch matched several ${type} resources`);
  return patch(ctx, session, req, type, matches[0].id!);
}

/** Query parameters that are search criteria (formatting parameters removed). */
export function searchParamsOf(req: FhirRequest): [string, string][] {
  return req.query.filter(([k]) => !FORMAT_PARAMS.has(k));
}

export const FORMAT_PARAMS = new Set(['_format', '_pretty', '_summary', '_elements']);

// -- history ---------------------------------------------------------------------------------------------------

function parseInstantParam(name: string, value: string): string {
  const t = Date.parse(value);
  if (!/^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.test(value) || !Number.isFinite(t)) {
    throw badRequest(`Parameter ${name}: "${value}" is not a valid instant`, [name]);
  }
  return new Date(t).toISOString();
}

export function pageSize(ctx: Context, req: FhirRequest): number {
  const raw = queryValue(req, '_count');
  if (raw === undefined) return ctx.config.limits.defaultCount;
  if (!/^\d+$/.test(raw)) throw badRequest(`Parameter _count: "${raw}" is not a non-negative integer`, ['_count']);
  return Math.min(Number(raw), ctx.config.limits.maxCount);
}

export async function history(ctx: Context, req: FhirRequest, type?: string, id?: string): Promise<FhirResponse> {
  if (type) assertResourceType(type);
  if (id) assertId(id);
  const known = new Set(['_count', '_since', '_at', '_cursor', ...FORMAT_PARAMS]);
  for (const [k] of req.query) {
    if (!known.has(k)) throw badRequest(`Parameter ${k} is not supported on history`, [k]);
  }
  const query: HistoryQuery = { resourceType: type, id, count: pageSize(ctx, req) };
  const since = queryValue(req, '_since');
  if (since) query.since = parseInstantParam('_since', since);
  const at = queryValue(req, '_at');
  if (at) query.at = parseInstantParam('_at', at);
  const cursor = queryValue(req, '_cursor');
  if (cursor) query.cursor = cursor;
  if (id && type) {
    const current = await ctx.store.current(type, id);
    if (!current) throw notFound(`${type}/${id} is not known`);
  }
  const page = await ctx.store.history(query);
  const path = [type, id, '_history'].filter(Boolean).join('/');
  const selfParams = req.query.filter(([k]) => k !== '_cursor');
  const links: BundleLink[] = [{ relation: 'self', url: linkUrl(req.baseUrl, path, req.query) }];
  if (page.next) links.push({ relation: 'next', url: linkUrl(req.baseUrl, path, [...selfParams, ['_cursor', page.next]]) });
  const bundle: Bundle = {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'history',
    ...(page.total !== undefined ? { total: page.total } : {}),
    link: links,
    entry: page.entries.map((v) => historyEntry(req.baseUrl, v)),
  };
  return { status: 200, headers: {}, body: bundle };
}

function historyEntry(baseUrl: string, v: VersionRecord): BundleEntry {
  const url = `${v.resourceType}/${v.id}`;
  const entry: BundleEntry = { fullUrl: `${baseUrl}/${url}` };
  if (v.resource) entry.resource = v.resource as FhirResource;
  entry.request = { method: v.method, url: v.method === 'POST' ? v.resourceType : url };
  entry.response = {
    status: v.deleted ? '204' : v.method === 'POST' ? '201' : '200',
    etag: etag(v.versionId),
    lastModified: v.lastUpdated,
  };
  return entry;
}

export function linkUrl(baseUrl: string, path: string, query: [string, string][]): string {
  const qs = new URLSearchParams(query).toString();
  return `${baseUrl}/${path}${qs ? `?${qs}` : ''}`;
}

// -- search ----------------------------------------------------------------------------------------------------

export async function search(
  ctx: Context,
  session: StoreSession,
  req: FhirRequest,
  type: string | undefined,
  params: [string, string][],
  extra?: { path?: string; filters?: SearchRequest['filters'] },
): Promise<FhirResponse> {
  if (type) assertResourceType(type);
  const strict = prefer(req).handling === 'strict';
  const criteria = params.filter(([k]) => !FORMAT_PARAMS.has(k) && k !== '_cursor');
  const { request, ignored } = parseSearch(type, criteria, {
    strict,
    defaultCount: ctx.config.limits.defaultCount,
    maxCount: ctx.config.limits.maxCount,
  });
  const cursor = params.find(([k]) => k === '_cursor')?.[1];
  // Access hook (src/access): paging links are sealed to the principal who received them.
  if (cursor) request.cursor = req.access ? req.access.openCursor(cursor) : cursor;
  // _summary=count answers with the total only.
  if (params.some(([k, v]) => k === '_summary' && v === 'count')) {
    request.total = 'accurate';
    request.count = 0;
    request.include = [];
  }
  if (extra?.filters) request.filters.push(...extra.filters);
  if (!type && request.resourceTypes.length === 0) request.resourceTypes = [...fhirModel().resourceTypes];
  // Hierarchies (reference :above / :below) are read through the session: inside a transaction they include its own writes.
  await expandSearchFilters(request, () => terminologyService().scope(ctx.store), session);
  // Access hook (src/access): the decision point narrows the request before the query runs.
  if (req.access) await req.access.narrow(request);
  const result = await session.search(request);
  const seal = (c: string) => (req.access ? req.access.sealCursor(c) : c);
  const path = extra?.path ?? (type ?? '');
  const keep = params.filter(([k]) => k !== '_cursor');
  // first / previous / next: keyset cursors (src/store/cursor.ts), stable while data changes.
  const link: BundleLink[] = [{ relation: 'self', url: linkUrl(req.baseUrl, path, params) }, { relation: 'first', url: linkUrl(req.baseUrl, path, keep) }];
  if (result.previous) link.push({ relation: 'previous', url: linkUrl(req.baseUrl, path, [...keep, ['_cursor', seal(result.previous)]]) });
  if (result.next) link.push({ relation: 'next', url: linkUrl(req.baseUrl, path, [...keep, ['_cursor', seal(result.next)]]) });
  const entry: BundleEntry[] = result.resources.map((r) => ({
    fullUrl: `${req.baseUrl}/${r.resourceType}/${r.id}`,
    resource: r as FhirResource,
    search: { mode: 'match' },
  }));
  // Access hook (src/access): every _include / _revinclude result is checked like a read.
  const included = req.access && result.included ? await req.access.filterIncluded(result.included) : result.included;
  for (const r of included ?? []) {
    entry.push({ fullUrl: `${req.baseUrl}/${r.resourceType}/${r.id}`, resource: r as FhirResource, search: { mode: 'include' } });
  }
  if (ignored.length) {
    const outcome: OperationOutcome = operationOutcome(
      ignored.map((p: string) => ({
        severity: 'warning' as const,
        code: 'not-supported' as const,
        diagnostics: `The search parameter "${p}" is unknown or not supported and was ignored`,
        expression: [p],
      })),
    );
    entry.push({ resource: outcome, search: { mode: 'outcome' } });
  }
  const bundle: Bundle = {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    ...(result.total !== undefined ? { total: result.total } : {}),
    link,
    entry,
  };
  return { status: 200, headers: {}, body: bundle, summarizable: true };
}

/**
 * Compartment search: `Patient/123/Observation` (or `Patient/123/*`) — the type's members of the compartment,
 * with any further search parameters. The compartment's owner must exist.
 */
export async function compartmentSearch(
  ctx: Context,
  session: StoreSession,
  req: FhirRequest,
  compartment: string,
  id: string,
  type: string,
): Promise<FhirResponse> {
  if (!isCompartment(compartment)) throw notFound(`${compartment} is not a compartment`);
  assertId(id);
  const owner = await session.current(compartment, id);
  if (!owner || owner.deleted) throw notFound(`${compartment}/${id} is not known`);
  const types = type === '*' ? compartmentTypes(compartment) : [type];
  if (type !== '*') {
    assertResourceType(type);
    if (!compartmentTypes(compartment).includes(type)) {
      throw badRequest(`${type} resources do not belong to the ${compartment} compartment`);
    }
  }
  const path = `${compartment}/${id}/${type}`;
  if (type === '*') {
    const params = req.query.filter(([k]) => k !== '_type');
    return search(ctx, session, req, undefined, [...params, ['_type', types.join(',')]], { path, filters: [compartmentFilter(compartment, id, types)] });
  }
  return search(ctx, session, req, type, req.query, { path, filters: [compartmentFilter(compartment, id, types)] });
}

export type { Issue };

/**
 * Every MongoDB filter, sort, projection and document the Mongo store sends, built by small pure functions so
 * that they can be checked without a server (test/mongo-queries.test.ts evaluates them with mingo).
 *
 * Document model:
 * - `resources`: one document per resource id, its current version (live or tombstone).
 *   `_id: 'Type/id'`, resourceType, id, version, lastUpdated, method, deleted, resource (absent when deleted),
 *   plus the search index fields of the live version (`idx`, from `mongoIndexFields` in search-filter.ts).
 * - `history`: one document per version. `_id: 'Type/id/version'`, same fields without the index part.
 *
 * lastUpdated is kept as the ISO string of the port (`YYYY-MM-DDTHH:mm:ss.sssZ`, fixed width), which sorts
 * and compares correctly as a string.
 */
import type { Resource } from 'fhir/r4';
import { badRequest } from '../../fhir/outcome.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import type { HistoryQuery, VersionRecord, WriteMethod } from '../port.ts';

/** Fields common to both collections. */
export interface VersionDoc {
  _id: string;
  resourceType: string;
  id: string;
  version: number;
  lastUpdated: string;
  method: WriteMethod;
  deleted: boolean;
  resource?: Resource;
}

/** A `resources` document: the version fields plus the search index fields of the live version. */
export interface CurrentDoc extends VersionDoc {
  [indexField: string]: unknown;
}

/**
 * A plain MongoDB query / sort / projection document (kept untyped here so that mingo can evaluate it).
 * Search filters, sorts and cursors are built in search-filter.ts.
 */
export type Doc = Record<string, unknown>;

export const resourceKey = (resourceType: string, id: string): string => `${resourceType}/${id}`;
export const versionKey = (resourceType: string, id: string, version: number): string =>
  `${resourceType}/${id}/${version}`;

/** The fields of a record document, without the index part (projection for current/version lookups). */
export const RECORD_PROJECTION: Doc = {
  _id: 1,
  resourceType: 1,
  id: 1,
  version: 1,
  lastUpdated: 1,
  method: 1,
  deleted: 1,
  resource: 1,
};

/** `resources` lookup of one id (live or tombstone). */
export function currentFilter(resourceType: string, id: string): Doc {
  return { _id: resourceKey(resourceType, id) };
}

/** `history` lookup of one version. */
export function versionFilter(resourceType: string, id: string, version: number): Doc {
  return { _id: versionKey(resourceType, id, version) };
}

/**
 * The guard of a write replacing the current document: matches only while the stored version is still the
 * one the writer read. Of two writers that read the same version, the second one's replace matches nothing
 * (or hits a write conflict inside a transaction) and loses.
 */
export function guardFilter(resourceType: string, id: string, readVersion: number): Doc {
  return { _id: resourceKey(resourceType, id), version: readVersion };
}

/** Live resources (of one type or all) for count(). */
export function countFilter(resourceType?: string): Doc {
  return resourceType ? { resourceType, deleted: false } : { deleted: false };
}

/** The stored copy of a written resource: meta.versionId and meta.lastUpdated set, the input left as is. */
export function stampResource(resource: Resource, version: number, lastUpdated: string): Resource {
  return { ...resource, meta: { ...resource.meta, versionId: String(version), lastUpdated } } as Resource;
}

/** The record of a new version (a tombstone when `resource` is undefined). */
export function newVersion(
  resourceType: string,
  id: string,
  version: number,
  lastUpdated: string,
  method: WriteMethod,
  resource: Resource | undefined,
): VersionRecord {
  const record: VersionRecord = { resourceType, id, versionId: version, lastUpdated, method, deleted: !resource };
  if (resource) record.resource = stampResource(resource, version, lastUpdated);
  return record;
}

/** The `history` document of a version. */
export function historyDocument(record: VersionRecord): VersionDoc {
  const doc: VersionDoc = {
    _id: versionKey(record.resourceType, record.id, record.versionId),
    resourceType: record.resourceType,
    id: record.id,
    version: record.versionId,
    lastUpdated: record.lastUpdated,
    method: record.method,
    deleted: record.deleted,
  };
  if (record.resource) doc.resource = record.resource;
  return doc;
}

/**
 * The `resources` document replacing the current one. Index fields are only kept for live versions (a
 * tombstone is found by no search). Index fields cannot overwrite the record fields.
 */
export function currentDocument(record: VersionRecord, indexFields: Doc = {}): CurrentDoc {
  const base: CurrentDoc = { ...historyDocument(record), _id: resourceKey(record.resourceType, record.id) };
  return record.deleted ? base : { ...indexFields, ...base };
}

/** A stored document (either collection) back to the port's record. */
export function recordFromDoc(doc: VersionDoc): VersionRecord {
  const record: VersionRecord = {
    resourceType: doc.resourceType,
    id: doc.id,
    versionId: doc.version,
    lastUpdated: doc.lastUpdated,
    method: doc.method,
    deleted: doc.deleted,
  };
  if (doc.resource && !doc.deleted) record.resource = doc.resource;
  return record;
}

// -- history ---------------------------------------------------------------------------------------------

/** Newest first; `_id` breaks ties of lastUpdated (versions written in one millisecond by other processes). */
export const HISTORY_SORT: Record<string, 1 | -1> = { lastUpdated: -1, _id: -1 };

interface HistoryCursor {
  /** lastUpdated of the last entry of the previous page. */
  t: string;
  /** _id of that entry. */
  k: string;
}

export function encodeHistoryCursor(doc: Pick<VersionDoc, '_id' | 'lastUpdated'>): string {
  return encodeCursor({ t: doc.lastUpdated, k: doc._id } satisfies HistoryCursor);
}

export function decodeHistoryCursor(cursor: string): HistoryCursor {
  const c = decodeCursor<Partial<HistoryCursor>>(cursor);
  if (typeof c.t !== 'string' || typeof c.k !== 'string') throw badRequest('The history paging cursor is invalid');
  return { t: c.t, k: c.k };
}

/** Filter of a history query without the paging cursor (also the filter counted for `total`). */
export function historyBaseFilter(query: Omit<HistoryQuery, 'count' | 'cursor'>): Doc {
  const filter: Doc = {};
  if (query.resourceType) filter.resourceType = query.resourceType;
  if (query.id) filter.id = query.id;
  const range: Doc = {};
  if (query.since) range.$gt = query.since;
  if (query.at) range.$lte = query.at;
  if (Object.keys(range).length) filter.lastUpdated = range;
  return filter;
}

/** Filter of one history page: the base filter, then only entries strictly after the cursor in HISTORY_SORT. */
export function historyPageFilter(query: Omit<HistoryQuery, 'count'>): Doc {
  const base = historyBaseFilter(query);
  if (!query.cursor) return base;
  const c = decodeHistoryCursor(query.cursor);
  const after = { $or: [{ lastUpdated: { $lt: c.t } }, { lastUpdated: c.t, _id: { $lt: c.k } }] };
  return Object.keys(base).length ? { $and: [base, after] } : after;
}

// -- instants ----------------------------------------------------------------------------------------------

/**
 * The lastUpdated of a new version: the clock's instant, but never at or before the previous version of the
 * same resource (another process with a slower clock may have written it).
 */
export function nextLastUpdated(clockInstant: string, previous: string | undefined): string {
  if (previous && clockInstant <= previous) return new Date(Date.parse(previous) + 1).toISOString();
  return clockInstant;
}

/**
 * The store port: the one interface every persistence adapter implements (SQLite embedded, MongoDB).
 * Interactions are written once against it; adapters differ only in how they keep rows and run queries.
 *
 * Semantics every adapter guarantees (the shared store test suite checks them):
 * - versions are integers starting at 1, increasing by one per write of a resource (deletes included);
 * - `lastUpdated` is an ISO instant (UTC, millisecond precision) assigned by the store at commit time order;
 * - a write inside `transaction()` is visible to later reads of the same transaction and to nobody else
 *   before the commit; a thrown error rolls everything back;
 * - `expectedVersion` makes a write conditional: if the current version differs (or the resource does not
 *   exist / is deleted), the adapter throws a 412 FhirError and the write does not happen, even when two
 *   writers race (exactly one wins).
 */
import type { Resource } from 'fhir/r4';
import type { IndexValue, SearchRequest } from '../search/types.ts';

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One version of a resource, as kept in history. `resource` is absent for deletions. */
export interface VersionRecord {
  resourceType: string;
  id: string;
  versionId: number;
  lastUpdated: string;
  method: WriteMethod;
  deleted: boolean;
  resource?: Resource;
  /**
   * The stored JSON text of `resource`, when the adapter keeps one (SQLite): exactly what
   * `JSON.stringify(resource)` gives for the record as read (meta.versionId and meta.lastUpdated included),
   * so a plain JSON read can send it as it is. Stale once `resource` is changed: only read paths use it.
   */
  json?: string;
}

/**
 * The key under which an adapter may give a record read from its current rows the access facts it stored beside
 * that version when it was written (the text of the store's `accessFacts` function: SQLite's `resources.access`);
 * src/access/decision.ts decides on them instead of parsing the resource. Not enumerable by JSON.stringify, and
 * dropped when `resource` is assigned.
 */
export const ACCESS_FACTS = Symbol.for('dsp.store.accessFacts');

/** The current state of a resource id: live (with its resource) or deleted (a tombstone). */
export type CurrentRecord = VersionRecord;

export interface HistoryQuery {
  resourceType?: string;
  id?: string;
  /** Only versions with lastUpdated strictly after this instant (ISO). */
  since?: string;
  /** Only versions with lastUpdated at or before this instant (ISO), for _at. */
  at?: string;
  count: number;
  /** Opaque cursor from a previous page (`HistoryPage.next`). */
  cursor?: string;
}

export interface HistoryPage {
  /** Newest first. */
  entries: VersionRecord[];
  /** Cursor of the next (older) page, when there is one. */
  next?: string;
  total?: number;
}

export interface SearchResult {
  /** Current (live) resources of the page, in the requested order. */
  resources: Resource[];
  /** Cursor for the next page, when there is one. */
  next?: string;
  /** Cursor for the previous page (a "before" keyset cursor), when the page was reached from a cursor. */
  previous?: string;
  /** Matches in total, when the request asked for it (`total: 'accurate' | 'estimate'`). */
  total?: number;
  /** Resources added by _include / _revinclude (search mode `include`). */
  included?: Resource[];
}

export interface WriteOptions {
  /** Conditional write: the version the caller expects to replace (If-Match). */
  expectedVersion?: number;
  method: WriteMethod;
  /** Index values extracted from the resource by the search indexer (the interaction layer computes them). */
  index: IndexValue[];
}

/** Operations available inside a transaction (and, for convenience, outside one on the store itself). */
export interface StoreSession {
  /** Current record of a resource (live or tombstone), or undefined when the id was never used. */
  current(resourceType: string, id: string): Promise<CurrentRecord | undefined>;
  /** One version, or undefined. */
  version(resourceType: string, id: string, versionId: number): Promise<VersionRecord | undefined>;
  /**
   * Writes a new version of `resource` (its resourceType and id are set). The store assigns
   * meta.versionId and meta.lastUpdated on the stored copy and returns the resulting record.
   * Creates the resource when the id is new or deleted.
   */
  put(resource: Resource, options: WriteOptions): Promise<VersionRecord>;
  /** Marks the resource deleted (a new tombstone version). Returns undefined when it was not live. */
  delete(resourceType: string, id: string, options: Omit<WriteOptions, 'index'>): Promise<VersionRecord | undefined>;
  /** Runs a search (see src/search/types.ts). */
  search(request: SearchRequest): Promise<SearchResult>;
}

export interface TransactionOptions {
  /**
   * `false`: this commit need not be on disk when it returns (the embedded store commits it without an fsync;
   * a later durable commit makes it durable). Only for data whose loss on a power failure is acceptable
   * (audit entries of answers about shared, non-patient data). Default: durable as the store is configured.
   */
  durable?: boolean;
}

export interface Store extends StoreSession {
  readonly kind: 'sqlite' | 'mongodb';
  init(): Promise<void>;
  close(): Promise<void>;
  /**
   * Runs `work` atomically: all of its writes commit together or none do. Adapters serialise or isolate
   * concurrent transactions so that conditional writes stay correct.
   */
  transaction<T>(work: (session: StoreSession) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Resolves once every commit made so far is durable as the store is configured (after commits with
   * `durable: false`, whose callers wait for durability separately). A no-op where a commit is durable when it
   * returns.
   */
  durable(): Promise<void>;
  history(query: HistoryQuery): Promise<HistoryPage>;
  /** Number of live resources (of one type, or all). */
  count(resourceType?: string): Promise<number>;
  /**
   * Replaces the search index values of live resources without creating versions (after the search
   * parameters changed). Entries whose resource is no longer live are skipped.
   */
  reindex(entries: { resourceType: string; id: string; index: IndexValue[] }[]): Promise<void>;
  /** Drops every resource and version: tests and `dsp-fhir` admin tooling only. */
  clear(): Promise<void>;
}

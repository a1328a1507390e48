/**
 * The MongoDB store (official `mongodb` driver 7). See docs/mongodb.md for the document model.
 *
 * - `resources` holds the current version of each id (live or tombstone) with its search index fields;
 *   `history` holds every version.
 * - Every write runs in a multi-document transaction (a replica set or sharded cluster is required): the
 *   current document and the history document change together or not at all. Writes use majority write
 *   concern; transactions read a snapshot.
 * - A write replaces the current document with a filter on the version it read (`{_id, version}`); a new id
 *   is inserted (the `_id` is unique). Of two racing writers, the loser gets a write conflict (retried by
 *   `withTransaction`, whose retry then sees the winner's version), an unmatched replace or a duplicate key
 *   (retried here). On the retry, a conditional write (`expectedVersion`) fails with 412.
 * - The work function of `transaction()` may run more than once (retries): it must not have side effects
 *   outside the store session.
 */
import { MongoClient, MongoServerError, type ClientSession, type Collection, type Document, type IndexDescription, type TransactionOptions } from 'mongodb';
import type { Resource } from 'fhir/r4';
import { FhirError, conflict, preconditionFailed } from '../../fhir/outcome.ts';
import type { IndexValue, SearchRequest } from '../../search/types.ts';
import type {
  CurrentRecord,
  HistoryPage,
  HistoryQuery,
  SearchResult,
  Store,
  StoreSession,
  VersionRecord,
  WriteMethod,
  WriteOptions,
} from '../port.ts';
import { InstantClock } from '../clock.ts';
import {
  compileMongoFilter,
  mongoIndexFields,
  mongoSearchIndexes,
  resolveMongoChains,
  resolveMongoIncludes,
  type MongoFind,
} from './search-filter.ts';
import {
  HISTORY_SORT,
  RECORD_PROJECTION,
  countFilter,
  currentDocument,
  currentFilter,
  encodeHistoryCursor,
  guardFilter,
  historyBaseFilter,
  historyDocument,
  historyPageFilter,
  newVersion,
  nextLastUpdated,
  recordFromDoc,
  versionFilter,
  type Doc,
  type VersionDoc,
} from './queries.ts';

export interface MongoStoreOptions {
  /** Connection string, e.g. `mongodb://localhost:27017/?replicaSet=rs0`. */
  uri: string;
  /** Database name; defaults to the one in the URI, else the driver's default (`test`). */
  dbName?: string;
  /** A client to use instead of connecting to `uri` (tests: `memoryMongoClient()` from test/support/mongo-memory-client.ts). */
  client?: MongoClient;
}

/** Indexes of the version fields (the search indexes come from search-filter.ts). */
export const RESOURCE_INDEXES: IndexDescription[] = [
  { key: { resourceType: 1, deleted: 1 }, name: 'type_deleted' },
];
export const HISTORY_INDEXES: IndexDescription[] = [
  { key: { resourceType: 1, id: 1, version: -1 }, name: 'type_id_version', unique: true },
  { key: { resourceType: 1, id: 1, lastUpdated: -1, _id: -1 }, name: 'instance_history' },
  { key: { resourceType: 1, lastUpdated: -1, _id: -1 }, name: 'type_history' },
  { key: { lastUpdated: -1, _id: -1 }, name: 'system_history' },
];

const TRANSACTION_OPTIONS: TransactionOptions = {
  readConcern: { level: 'snapshot' },
  writeConcern: { w: 'majority' },
  readPreference: 'primary',
};

/** Attempts of a transaction that lost a write race outside the driver's own retry (see WriteRace). */
const MAX_RACE_ATTEMPTS = 8;

const DUPLICATE_KEY = 11000;

/** What a search reads of each match: the resource, and the fields its keyset cursor is made of. */
const SEARCH_PROJECTION = { resource: 1, resourceType: 1, id: 1, lastUpdated: 1, 'idx.slo': 1, 'idx.shi': 1 };


export const STANDALONE_MESSAGE =
  'MongoDB transactions need a replica set (or a sharded cluster); this server is a standalone mongod. ' +
  'Start it with --replSet rs0 and run rs.initiate() once (see docs/mongodb.md), and add ?replicaSet=rs0 to the URI.';

/** Thrown inside a transaction when another writer changed the resource first: the whole transaction is retried. */
class WriteRace extends Error {
  constructor(key: string) {
    super(`Concurrent write on ${key}`);
    this.name = 'WriteRace';
  }
}

function isStandaloneError(err: unknown): boolean {
  return (
    err instanceof MongoServerError &&
    (err.code === 20 || err.code === 263) &&
    /replica set|Transaction numbers/i.test(err.message)
  );
}

export class MongoStore implements Store {
  readonly kind = 'mongodb' as const;
  private readonly client: MongoClient;
  private readonly dbName: string | undefined;
  private resources!: Collection<Document>;
  private historyColl!: Collection<Document>;
  private readonly clock = new InstantClock();

  constructor(options: MongoStoreOptions) {
    this.client = options.client ?? new MongoClient(options.uri, { writeConcern: { w: 'majority' } });
    this.dbName = options.dbName;
  }

  async init(): Promise<void> {
    await this.client.connect();
    const db = this.client.db(this.dbName);
    const hello = await db.admin().command({ hello: 1 });
    if (!hello.setName && hello.msg !== 'isdbgrid') throw new Error(STANDALONE_MESSAGE);
    this.resources = db.collection('resources');
    this.historyColl = db.collection('history');
    await this.resources.createIndexes([...RESOURCE_INDEXES, ...(mongoSearchIndexes as unknown as IndexDescription[])]);
    await this.historyColl.createIndexes(HISTORY_INDEXES);
    const newest = await this.historyColl.findOne({}, { sort: HISTORY_SORT, projection: { lastUpdated: 1 } });
    if (newest) this.clock.observe(newest.lastUpdated as string);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  // -- reads outside transactions ---------------------------------------------------------------------------

  current(resourceType: string, id: string): Promise<CurrentRecord | undefined> {
    return this.currentIn(resourceType, id);
  }

  version(resourceType: string, id: string, versionId: number): Promise<VersionRecord | undefined> {
    return this.versionIn(resourceType, id, versionId);
  }

  search(request: SearchRequest): Promise<SearchResult> {
    return this.searchIn(request);
  }

  async count(resourceType?: string): Promise<number> {
    return this.resources.countDocuments(countFilter(resourceType));
  }

  async history(query: HistoryQuery): Promise<HistoryPage> {
    const docs = (await this.historyColl
      .find(historyPageFilter(query), { sort: HISTORY_SORT, limit: query.count + 1 })
      .toArray()) as unknown as VersionDoc[];
    const page = docs.slice(0, query.count);
    const result: HistoryPage = { entries: page.map(recordFromDoc) };
    if (docs.length > query.count && page.length) result.next = encodeHistoryCursor(page[page.length - 1]);
    const base = historyBaseFilter(query);
    // System history without _since/_at counts the whole collection: its metadata count is exact enough and free.
    result.total = Object.keys(base).length
      ? await this.historyColl.countDocuments(base)
      : await this.historyColl.estimatedDocumentCount();
    return result;
  }

  // -- writes -----------------------------------------------------------------------------------------------

  put(resource: Resource, options: WriteOptions): Promise<VersionRecord> {
    return this.transaction((session) => session.put(resource, options));
  }

  delete(resourceType: string, id: string, options: Omit<WriteOptions, 'index'>): Promise<VersionRecord | undefined> {
    return this.transaction((session) => session.delete(resourceType, id, options));
  }

  /** Transactions commit with majority write concern: a commit that returned is durable already. */
  async durable(): Promise<void> {}

  async transaction<T>(work: (session: StoreSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const session = this.client.startSession();
      try {
        return await session.withTransaction(() => work(this.sessionFor(session)), TRANSACTION_OPTIONS);
      } catch (err) {
        if (err instanceof WriteRace) {
          if (attempt < MAX_RACE_ATTEMPTS) continue;
          throw conflict(`${err.message}: gave up after ${attempt} attempts, try again`);
        }
        if (isStandaloneError(err)) throw new Error(STANDALONE_MESSAGE, { cause: err });
        throw err;
      } finally {
        await session.endSession();
      }
    }
  }

  async reindex(entries: { resourceType: string; id: string; index: IndexValue[] }[]): Promise<void> {
    if (!entries.length) return;
    await this.resources.bulkWrite(
      entries.map((e) => ({
        updateOne: { filter: { _id: `${e.resourceType}/${e.id}`, deleted: false } as Document, update: { $set: mongoIndexFields(e.index) as unknown as Document } },
      })),
      { ordered: false, writeConcern: { w: 'majority' } },
    );
  }

  async clear(): Promise<void> {
    await this.resources.deleteMany({});
    await this.historyColl.deleteMany({});
  }

  // -- shared by the store and its transaction sessions ---------------------------------------------------

  private async currentIn(resourceType: string, id: string, session?: ClientSession): Promise<CurrentRecord | undefined> {
    const doc = await this.resources.findOne(currentFilter(resourceType, id), { projection: RECORD_PROJECTION, session });
    return doc ? recordFromDoc(doc as unknown as VersionDoc) : undefined;
  }

  private async versionIn(
    resourceType: string,
    id: string,
    versionId: number,
    session?: ClientSession,
  ): Promise<VersionRecord | undefined> {
    if (!Number.isInteger(versionId)) return undefined;
    const doc = await this.historyColl.findOne(versionFilter(resourceType, id, versionId), { session });
    return doc ? recordFromDoc(doc as unknown as VersionDoc) : undefined;
  }

  /**
   * Chains and `_has` are resolved into id lists first, then the compiled filter (live documents only, keyset
   * cursor) runs with `limit: count + 1` to know whether a next page exists; includes follow the page.
   */
  private async searchIn(request: SearchRequest, session?: ClientSession): Promise<SearchResult> {
    const find: MongoFind = (filter, projection) => this.resources.find(filter, { projection, session }).toArray();
    const resolved = await resolveMongoChains(request, find);
    const compiled = compileMongoFilter(resolved);
    const docs = await this.resources
      .find(compiled.filter, { sort: compiled.sort, limit: compiled.limit, projection: SEARCH_PROJECTION, session })
      .toArray();
    const { page, next, previous } = compiled.paginate(docs);
    const result: SearchResult = { resources: page.map((d) => d.resource as Resource) };
    if (next) result.next = next;
    if (previous) result.previous = previous;
    if (request.total !== 'none') result.total = await this.resources.countDocuments(compiled.countFilter, { session });
    if (request.include.length && page.length) {
      result.included = await resolveMongoIncludes(resolved, result.resources, find);
    }
    return result;
  }

  /** One write inside a transaction: a new version of the resource, or a tombstone when `resource` is undefined. */
  private async write(
    session: ClientSession,
    resourceType: string,
    id: string,
    method: WriteMethod,
    resource: Resource | undefined,
    options: { expectedVersion?: number; index?: IndexValue[] },
  ): Promise<VersionRecord | undefined> {
    const existing = await this.currentIn(resourceType, id, session);
    if (options.expectedVersion !== undefined) {
      if (!existing || existing.deleted || existing.versionId !== options.expectedVersion) {
        const state = existing ? `${existing.versionId}${existing.deleted ? ' (deleted)' : ''}` : 'none';
        throw preconditionFailed(
          `Version conflict on ${resourceType}/${id}: expected version ${options.expectedVersion}, current is ${state}`,
        );
      }
    }
    if (!resource && (!existing || existing.deleted)) return undefined;
    const version = (existing?.versionId ?? 0) + 1;
    const lastUpdated = nextLastUpdated(this.clock.next(), existing?.lastUpdated);
    this.clock.observe(lastUpdated);
    const record = newVersion(resourceType, id, version, lastUpdated, method, resource);
    const index = options.index ?? [];
    const doc = currentDocument(record, resource ? (mongoIndexFields(index) as unknown as Doc) : {});
    const key = `${resourceType}/${id}`;
    try {
      if (existing) {
        const res = await this.resources.replaceOne(guardFilter(resourceType, id, existing.versionId), doc, { session });
        if (res.matchedCount !== 1) throw new WriteRace(key);
      } else {
        await this.resources.insertOne(doc as Document, { session });
      }
      await this.historyColl.insertOne(historyDocument(record) as unknown as Document, { session });
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new WriteRace(key);
      throw err;
    }
    return record.resource ? { ...record, resource: structuredClone(record.resource) } : record;
  }

  private sessionFor(session: ClientSession): StoreSession {
    return {
      current: (type, id) => this.currentIn(type, id, session),
      version: (type, id, v) => this.versionIn(type, id, v, session),
      search: (request) => this.searchIn(request, session),
      put: async (resource, options) => {
        if (!resource.id) throw new FhirError(500, `put() needs a resource id (${resource.resourceType})`, 'exception');
        return (await this.write(session, resource.resourceType, resource.id, options.method, resource, options))!;
      },
      delete: (type, id, options) => this.write(session, type, id, 'DELETE', undefined, options),
    };
  }
}

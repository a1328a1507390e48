/**
 * The embedded store: SQLite through Node 24's built-in `node:sqlite` (no native build), WAL journal.
 *
 * - `resources` holds the current version of every id (live or tombstone); `history` holds every version.
 * - Writes run in `BEGIN IMMEDIATE` transactions on one writer connection, serialised by an async mutex so
 *   that an interaction that awaits between statements never interleaves with another one.
 * - Reads outside a transaction use a second connection: under WAL they see the last committed state and
 *   never the half-done work of a transaction in progress. (An in-memory database has a single connection,
 *   so there reads queue behind the mutex instead.)
 * - `synchronous=FULL` by default: an acknowledged commit is on disk (survives kill -9 and power loss). The
 *   connection itself runs `synchronous=NORMAL` (COMMIT writes the WAL frames, no fsync) and the store then
 *   `fdatasync`s the WAL file through the libuv thread pool before the commit's caller resumes: the event loop
 *   keeps serving requests during the fsync, and commits made while one is in flight share the next one
 *   (group commit). Reads outside a transaction that start while a commit is not yet on disk wait for it
 *   before they return, so no answer shows data a power loss could still take back (FULL's guarantee). This
 *   holds per store object: another SqliteStore on the same file (the audit writer thread's, with
 *   DSP_AUDIT_THREAD) makes commits this one's reads do not wait for.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { close as closeFd, closeSync, fdatasync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Resource } from 'fhir/r4';
import { FhirError, badRequest, preconditionFailed } from '../../fhir/outcome.ts';
import type { IndexValue, SearchRequest } from '../../search/types.ts';
import type {
  CurrentRecord,
  HistoryPage,
  HistoryQuery,
  SearchResult,
  Store,
  StoreSession,
  TransactionOptions,
  VersionRecord,
  WriteMethod,
  WriteOptions,
} from '../port.ts';
import { ACCESS_FACTS } from '../port.ts';
import { Mutex } from '../mutex.ts';
import { InstantClock } from '../clock.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import {
  SEARCH_SCHEMA_VERSION,
  compileSearch,
  deleteIndex,
  installSearchSchema,
  UPGRADABLE_SEARCH_SCHEMAS,
  isSearchShadowTable,
  paramIds,
  resetSearchCaches,
  typeRowsChanged,
  resolveIncludes,
  writeIndex,
} from './search-sql.ts';

export interface SqliteStoreOptions {
  /** Database file, or ':memory:'. */
  path: string;
  /** PRAGMA synchronous: FULL (default) or NORMAL. */
  synchronous?: 'FULL' | 'NORMAL';
  /**
   * Types whose versions are written once and never changed (the audit trail's entries and chain heads): a
   * version created by POST is kept in `resources` only, without its copy in `history` (one row per entry
   * instead of two); vread and history find it there. Should such a resource change after all, its version is
   * copied into `history` first.
   *
   * The list describes the data, so it is kept in the database (`historyless_types`, written at init()): a store
   * opened later on the same file without the option reads and writes those types the same way. The types in
   * effect are those stored plus those given; a type once stored stays historyless.
   */
  historyless?: readonly string[];
}

const NO_TYPES: ReadonlySet<string> = new Set();

interface ResourceRow {
  rid?: number;
  resource_type: string;
  id: string;
  version: number;
  last_updated: string;
  deleted: number;
  content: string | null;
  /** The access facts of the current version (ACCESS_FACTS); NULL in rows written without them and in history. */
  access?: string | null;
}
interface HistoryRow extends ResourceRow {
  seq: number;
  method: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS resources (
  rid INTEGER PRIMARY KEY,
  resource_type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  content TEXT,
  access TEXT,
  UNIQUE (resource_type, id)
);
CREATE INDEX IF NOT EXISTS resources_last_updated ON resources (resource_type, last_updated);
CREATE TABLE IF NOT EXISTS history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  resource_type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated TEXT NOT NULL,
  method TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  content TEXT,
  UNIQUE (resource_type, id, version)
);
CREATE INDEX IF NOT EXISTS history_type_seq ON history (resource_type, seq);
CREATE INDEX IF NOT EXISTS history_last_updated ON history (last_updated);
CREATE TABLE IF NOT EXISTS historyless_types (resource_type TEXT PRIMARY KEY);
`;

/** Tables that describe the database rather than hold data: clear() keeps them. */
const LAYOUT_TABLES = new Set(['historyless_types']);

/**
 * Schema version in `PRAGMA user_version`: 4 = integer-keyed index rows (rid, pid), 5 = plus the `_text` /
 * `_content` and `near` tables (a version-4 file opens as it is; `$reindex` fills them), 6 = plus the date spans
 * (`idx_date_span`, built from the date rows when a version 4 or 5 file opens). Version 0 with tables is
 * the first schema (index rows keyed by type, id and parameter text).
 */
const SCHEMA_VERSION = SEARCH_SCHEMA_VERSION;

/** Refuses a database written with another schema version (an empty one is rebuilt). */
function checkSchemaVersion(db: DatabaseSync, path: string): void {
  const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
  if (version === SCHEMA_VERSION || UPGRADABLE_SEARCH_SCHEMAS.includes(version)) return;
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[];
  if (!tables.length) return;
  const hasRows = tables.some((t) => db.prepare(`SELECT 1 FROM "${t.name}" LIMIT 1`).get() !== undefined);
  if (hasRows) {
    throw new Error(
      `${path} was written with store schema version ${version}; this server uses version ${SCHEMA_VERSION} ` +
        '(search index rows keyed by integer ids). Start with a fresh data folder (DSP_DATA_DIR) and load the data again.',
    );
  }
  // An empty database of an older schema: drop its tables, they are created again.
  for (const t of tables) db.exec(`DROP TABLE "${t.name}"`);
}

/** A record read from `resources` with its stored access facts (ACCESS_FACTS, src/store/port.ts). */
type WithFacts = VersionRecord & { [ACCESS_FACTS]?: string };

function toRecord(row: ResourceRow & { method?: string }): VersionRecord {
  const record: VersionRecord = {
    resourceType: row.resource_type,
    id: row.id,
    versionId: row.version,
    lastUpdated: row.last_updated,
    method: (row.method ?? (row.deleted ? 'DELETE' : 'PUT')) as WriteMethod,
    deleted: row.deleted === 1,
  };
  if (row.content !== null) withStoredJson(record, row.content);
  if (row.access) (record as WithFacts)[ACCESS_FACTS] = row.access;
  return record;
}

/**
 * Gives a record its stored text and a `resource` parsed from it on first use: a plain JSON read sends the
 * text and never parses it. `resource` stays an own enumerable property (spread, structuredClone and
 * JSON.stringify see it) and can be assigned.
 */
function withStoredJson(record: VersionRecord, content: string): void {
  let parsed: Resource | undefined;
  record.json = content;
  Object.defineProperty(record, 'resource', {
    enumerable: true,
    configurable: true,
    get: () => (parsed ??= JSON.parse(content) as Resource),
    set: (value: Resource | undefined) => {
      Object.defineProperty(record, 'resource', { value, writable: true, enumerable: true, configurable: true });
      delete record.json;
      delete (record as WithFacts)[ACCESS_FACTS];
    },
  });
}

/** Prepared statements of one connection. */
class Statements {
  readonly current: StatementSync;
  /** Rows changed on this connection so far (tells a transaction that wrote nothing). */
  readonly totalChanges: StatementSync;
  /** The current row without its content (writes need the rid, version and deleted flag only). */
  readonly head: StatementSync;
  readonly version: StatementSync;
  readonly insert: StatementSync;
  /** The insert of a create: does nothing (0 changes) when the (type, id) row exists. */
  readonly insertNew: StatementSync;
  readonly update: StatementSync;
  readonly insertHistory: StatementSync;
  readonly count: StatementSync;
  readonly countType: StatementSync;
  readonly byKeys = new Map<number, StatementSync>();
  /** SqliteStoreOptions.historyless. */
  historyless = NO_TYPES;

  readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.current = db.prepare('SELECT * FROM resources WHERE resource_type = ? AND id = ?');
    this.head = db.prepare('SELECT rid, version, deleted FROM resources WHERE resource_type = ? AND id = ?');
    this.version = db.prepare(
      'SELECT * FROM history WHERE resource_type = ? AND id = ? AND version = ?',
    );
    // The row of an id keeps its rid for life (index rows are keyed by it): insert once, then update.
    this.insert = db.prepare(
      'INSERT INTO resources (resource_type, id, version, last_updated, deleted, content, access) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertNew = db.prepare(
      'INSERT INTO resources (resource_type, id, version, last_updated, deleted, content, access) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (resource_type, id) DO NOTHING',
    );
    this.update = db.prepare('UPDATE resources SET version = ?, last_updated = ?, deleted = ?, content = ?, access = ? WHERE rid = ?');
    this.insertHistory = db.prepare(
      'INSERT INTO history (resource_type, id, version, last_updated, method, deleted, content) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.count = db.prepare('SELECT count(*) AS n FROM resources WHERE deleted = 0');
    this.totalChanges = db.prepare('SELECT total_changes() AS n');
    this.countType = db.prepare('SELECT count(*) AS n FROM resources WHERE deleted = 0 AND resource_type = ?');
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private writer!: DatabaseSync;
  private reader!: DatabaseSync;
  private w!: Statements;
  private r!: Statements;
  private readonly mutex = new Mutex();
  private readonly clock = new InstantClock();
  private readonly memory: boolean;
  /** FULL durability through the store's own WAL fsync (file databases; see the file comment). */
  private readonly syncWal: boolean;
  private readonly wal = new WalSync();
  private checkpointer: Checkpointer | undefined;

  private readonly options: SqliteStoreOptions;

  /**
   * Computes the access facts stored beside each version written from now on (`access` column, read back under
   * ACCESS_FACTS): set by the access layer for the clinical store (src/access/service.ts). Unset, or undefined
   * for a resource, the column is NULL and readers work from the resource itself.
   */
  accessFacts: ((resource: Resource) => string | undefined) | undefined;

  constructor(options: SqliteStoreOptions) {
    this.options = options;
    this.memory = options.path === ':memory:';
    this.syncWal = !this.memory && (options.synchronous ?? 'FULL') === 'FULL';
  }

  durable(): Promise<void> {
    return this.syncWal ? this.wal.whenDurable(this.wal.committed) : Promise.resolve();
  }

  /** The database file; undefined for an in-memory database. */
  get path(): string | undefined {
    return this.memory ? undefined : this.options.path;
  }

  /** Commits made and WAL fsyncs run so far (group commit: several commits share one fsync). */
  syncStats(): { commits: number; syncs: number; durableThrough: number; checkpoints: number } {
    return { ...this.wal.stats(), checkpoints: this.checkpointer?.done ?? 0 };
  }

  async init(): Promise<void> {
    if (!this.memory) mkdirSync(dirname(this.options.path), { recursive: true });
    this.writer = new DatabaseSync(this.options.path);
    // 16 KB pages (new databases only: WAL fixes the page size once written): measured fewer B-tree pages
    // touched per write, ~20 µs less COMMIT and no slower reads than 4 KB (docs/performance.md).
    // FULL is the store's own WAL fsync off the event loop (WalSync); the connection never fsyncs on COMMIT.
    this.writer.exec(`PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = ${this.syncWal ? 'NORMAL' : (this.options.synchronous ?? 'FULL')};
      PRAGMA foreign_keys = OFF; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;`);
    checkSchemaVersion(this.writer, this.options.path);
    this.writer.exec(SCHEMA);
    // Files written before the access facts column: added (NULL in every row; readers then parse the resource).
    if (!(this.writer.prepare('PRAGMA table_info(resources)').all() as { name: string }[]).some((c) => c.name === 'access')) {
      this.writer.exec('ALTER TABLE resources ADD COLUMN access TEXT');
    }
    // Sets PRAGMA user_version itself, in the same transaction as any upgrade.
    installSearchSchema(this.writer);
    for (const t of this.options.historyless ?? []) if (!/^[A-Z][A-Za-z]+$/.test(t)) throw new Error(`historyless: "${t}" is not a resource type`);
    // The types in effect: those the database has (see the option) and those given, which it keeps from now on.
    const remember = this.writer.prepare('INSERT OR IGNORE INTO historyless_types (resource_type) VALUES (?)');
    for (const t of this.options.historyless ?? []) remember.run(t);
    const historyless: ReadonlySet<string> = new Set(
      (this.writer.prepare('SELECT resource_type FROM historyless_types ORDER BY resource_type').all() as { resource_type: string }[]).map((r) => r.resource_type),
    );
    // The history of a historyless type is read newest first by lastUpdated (historyIn): an index for that, only in
    // a database that has such types (the clinical store's history is read by seq and needs none).
    if (historyless.size) this.writer.exec('CREATE INDEX IF NOT EXISTS history_type_last_updated ON history (resource_type, last_updated)');
    this.w = new Statements(this.writer);
    if (this.memory) {
      this.reader = this.writer;
      this.r = this.w;
    } else {
      this.reader = new DatabaseSync(this.options.path, { readOnly: true });
      this.reader.exec('PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;');
      this.r = new Statements(this.reader);
    }
    this.w.historyless = this.r.historyless = historyless;
    const last = this.writer.prepare('SELECT max(last_updated) AS t FROM history').get() as { t: string | null };
    if (last.t) this.clock.observe(last.t);
    // Versions kept without a history copy count too: the clock never hands out an instant older than theirs.
    for (const t of historyless) {
      const newest = this.writer.prepare('SELECT max(last_updated) AS t FROM resources WHERE resource_type = ?').get(t) as { t: string | null };
      if (newest.t) this.clock.observe(newest.t);
    }
    if (this.syncWal) await this.wal.open(`${this.options.path}-wal`);
    if (!this.memory) {
      // Checkpoints (copying the WAL into the database file, with two fsyncs) run in a worker thread; SQLite
      // would otherwise run one inside a COMMIT every 1,000 pages, on the event loop.
      this.writer.exec('PRAGMA wal_autocheckpoint = 0');
      this.checkpointer = new Checkpointer(this.options.path, () => this.writer.exec('PRAGMA wal_autocheckpoint = 1000'));
    }
  }

  async close(): Promise<void> {
    await this.mutex.run(async () => {
      await this.wal.close();
      await this.checkpointer?.close();
      if (this.reader !== this.writer) this.reader.close();
      this.writer.close();
    });
  }

  // -- reads outside transactions -------------------------------------------------------------------------

  private readOnly<T>(fn: (s: Statements) => T): Promise<T> {
    if (this.memory) return this.mutex.run(async () => fn(this.r));
    return Promise.resolve().then(() => {
      // What this read sees may include commits whose fsync is still running: the answer waits for them. (Read
      // the count right before the read: fn is synchronous, no commit can come in between.)
      const seen = this.wal.committed;
      const result = fn(this.r);
      return seen > this.wal.durableThrough ? this.wal.whenDurable(seen).then(() => result) : result;
    });
  }

  current(resourceType: string, id: string): Promise<CurrentRecord | undefined> {
    return this.readOnly((s) => currentOf(s, resourceType, id));
  }

  version(resourceType: string, id: string, versionId: number): Promise<VersionRecord | undefined> {
    return this.readOnly((s) => versionOf(s, resourceType, id, versionId));
  }

  search(request: SearchRequest): Promise<SearchResult> {
    return this.readOnly((s) => searchIn(s, request));
  }

  count(resourceType?: string): Promise<number> {
    return this.readOnly((s) => {
      const row = (resourceType ? s.countType.get(resourceType) : s.count.get()) as { n: number };
      return row.n;
    });
  }

  history(query: HistoryQuery): Promise<HistoryPage> {
    return this.readOnly((s) => historyIn(s.db, query, s.historyless));
  }

  // -- writes ----------------------------------------------------------------------------------------------

  put(resource: Resource, options: WriteOptions): Promise<VersionRecord> {
    return this.transaction((session) => session.put(resource, options));
  }

  delete(resourceType: string, id: string, options: Omit<WriteOptions, 'index'>): Promise<VersionRecord | undefined> {
    return this.transaction((session) => session.delete(resourceType, id, options));
  }

  async transaction<T>(work: (session: StoreSession) => Promise<T>, options?: TransactionOptions): Promise<T> {
    let seq = 0;
    const result = await this.mutex.run(async () => {
      // After a failed fsync nothing more is written (WalSync).
      if (this.wal.failure) throw this.wal.failure;
      const db = this.writer;
      const changesBefore = this.w.totalChanges.get() as { n: number };
      db.exec('BEGIN IMMEDIATE');
      const session = this.session();
      try {
        const result = await work(session);
        // A transaction that changed nothing (a delete of a missing resource, a conditional create that found
        // its match) has nothing to make durable: it neither waits for an fsync nor makes readers wait.
        const wrote = (this.w.totalChanges.get() as { n: number }).n !== changesBefore.n;
        db.exec('COMMIT');
        if (wrote) {
          if (this.syncWal) seq = this.wal.commit();
          this.checkpointer?.committed();
        }
        return result;
      } catch (err) {
        if (db.isTransaction) db.exec('ROLLBACK');
        // Parameter ids created by the rolled-back work are gone with it.
        resetSearchCaches(db);
        throw err;
      }
    });
    // The next transaction runs while this one's fsync is in flight (the mutex is free again). A commit that
    // need not be durable does not wait; the next fsync covers its frames all the same.
    if (seq && options?.durable !== false) await this.wal.whenDurable(seq);
    return result;
  }

  /**
   * One store transaction (one COMMIT, one fsync) for independent pieces of work, each in its own SAVEPOINT: a
   * step that throws is rolled back alone and the error goes to its caller; the others commit together. Batch
   * Bundles use it (src/fhir/bundle.ts): their entries are independent, and a COMMIT per entry made a
   * 778-entry batch cost ~8 s. Not part of the store port: callers check that the store has it.
   */
  grouped<T>(work: (step: <R>(fn: (session: StoreSession) => Promise<R>) => Promise<R>) => Promise<T>): Promise<T> {
    return this.transaction((session) => {
      const db = this.writer;
      const step = async <R>(fn: (session: StoreSession) => Promise<R>): Promise<R> => {
        db.exec('SAVEPOINT step');
        try {
          const result = await fn(session);
          db.exec('RELEASE step');
          return result;
        } catch (err) {
          if (db.isTransaction) {
            db.exec('ROLLBACK TO step');
            db.exec('RELEASE step');
          }
          // Parameter ids created by the rolled-back step are gone with it.
          resetSearchCaches(db);
          throw err;
        }
      };
      return work(step);
    });
  }

  reindex(entries: { resourceType: string; id: string; index: IndexValue[] }[]): Promise<void> {
    return this.transaction(async () => {
      for (const e of entries) {
        const row = this.w.head.get(e.resourceType, e.id) as Pick<ResourceRow, 'rid' | 'deleted'> | undefined;
        if (row && !row.deleted) writeIndex(this.writer, e.resourceType, e.id, e.index, false, row.rid);
      }
    });
  }

  async clear(): Promise<void> {
    // Through transaction(): durable like any other commit, and refused after a failed fsync.
    await this.transaction(async () => {
      const tables = this.writer
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .all() as { name: string }[];
      // The full-text table is emptied through itself; its shadow tables may not be written directly.
      for (const t of tables) if (!isSearchShadowTable(t.name) && !LAYOUT_TABLES.has(t.name)) this.writer.exec(`DELETE FROM "${t.name}"`);
    });
    resetSearchCaches(this.writer);
    resetSearchCaches(this.reader);
  }

  /** A session bound to the writer connection; only valid inside `transaction()`. */
  private session(): StoreSession {
    const s = this.w;
    const clock = this.clock;
    const accessFacts = this.accessFacts;
    const write = (
      resourceType: string,
      id: string,
      method: WriteMethod,
      resource: Resource | undefined,
      options: { expectedVersion?: number; index?: IndexValue[] },
    ): VersionRecord | undefined => {
      // A create (POST, no version expected) nearly always names an id nobody has used (the server drew it): its row
      // is inserted straight away, and the UNIQUE (resource_type, id) index that the insert checks in any case says
      // whether the id existed after all; only then is the current row read and the write goes the usual way. This
      // saves a separate lookup per created resource (~10 µs, docs/performance.md "Session 4: ingest").
      let drawn: string | undefined;
      let content: string | null = null;
      let access: string | null = null;
      let stored: Resource | undefined;
      /** The rid of the row a create has just inserted (undefined: the id existed, or not a create). */
      let fresh: number | undefined;
      if (method === 'POST' && resource && options.expectedVersion === undefined) {
        drawn = clock.next();
        stored = { ...resource, meta: { ...resource.meta, versionId: '1', lastUpdated: drawn } } as Resource;
        content = JSON.stringify(stored);
        access = accessFacts?.(stored) ?? null;
        const inserted = s.insertNew.run(resourceType, id, 1, drawn, 0, content, access);
        if (inserted.changes === 1) fresh = Number(inserted.lastInsertRowid);
      }
      const existing = fresh === undefined ? (s.head.get(resourceType, id) as Pick<ResourceRow, 'rid' | 'version' | 'deleted'> | undefined) : undefined;
      if (options.expectedVersion !== undefined) {
        if (!existing || existing.deleted || existing.version !== options.expectedVersion) {
          throw preconditionFailed(
            `Version conflict on ${resourceType}/${id}: expected version ${options.expectedVersion}, current is ${
              existing ? (existing.deleted ? `${existing.version} (deleted)` : existing.version) : 'none'
            }`,
          );
        }
      }
      if (!resource && (!existing || existing.deleted)) return undefined;
      const versionId = (existing?.version ?? 0) + 1;
      const lastUpdated = drawn ?? clock.next();
      // A create's version 1 is built above; any other version (a create over an existing id included) here.
      if (resource && fresh === undefined) {
        stored = { ...resource, meta: { ...resource.meta, versionId: String(versionId), lastUpdated } } as Resource;
        content = JSON.stringify(stored);
        access = accessFacts?.(stored) ?? null;
      }
      const deleted = resource ? 0 : 1;
      let rid: number;
      if (existing) {
        rid = existing.rid!;
        // A historyless version being replaced gets its history copy now (as a create: see the options).
        if (s.historyless.has(resourceType)) preparedOn(s.db, COPY_TO_HISTORY).run(rid);
        s.update.run(versionId, lastUpdated, deleted, content, access, rid);
      } else {
        rid = fresh ?? Number(s.insert.run(resourceType, id, versionId, lastUpdated, deleted, content, access).lastInsertRowid);
        // A new row of the type (a delete keeps its row): the probe bound's count follows without a recount.
        typeRowsChanged(s.db, resourceType, 1);
      }
      // A created version of a historyless type stays in `resources` only (see the options).
      if (!(fresh !== undefined && s.historyless.has(resourceType))) s.insertHistory.run(resourceType, id, versionId, lastUpdated, method, deleted, content);
      if (resource) writeIndex(s.db, resourceType, id, options.index ?? [], !existing || existing.deleted === 1, rid);
      else deleteIndex(s.db, resourceType, id, rid);
      return { resourceType, id, versionId, lastUpdated, method, deleted: !resource, resource: stored };
    };
    return {
      current: async (type, id) => currentOf(s, type, id),
      version: async (type, id, v) => versionOf(s, type, id, v),
      search: async (request) => searchIn(s, request),
      put: async (resource, options) => write(resource.resourceType, resource.id!, options.method, resource, options)!,
      delete: async (type, id, options) => write(type, id, 'DELETE', undefined, options),
    };
  }
}

function currentOf(s: Statements, resourceType: string, id: string): CurrentRecord | undefined {
  const row = s.current.get(resourceType, id) as ResourceRow | undefined;
  return row ? toRecord(row) : undefined;
}

function versionOf(s: Statements, resourceType: string, id: string, versionId: number): VersionRecord | undefined {
  const row = s.version.get(resourceType, id, versionId) as HistoryRow | undefined;
  if (row) return toRecord(row);
  // A historyless version has no history copy while it is the current one.
  if (!s.historyless.has(resourceType)) return undefined;
  const current = s.current.get(resourceType, id) as ResourceRow | undefined;
  return current?.version === versionId ? toRecord({ ...current, method: 'POST' }) : undefined;
}

/** The history copy of a historyless version about to be replaced (nothing when it has one). */
const COPY_TO_HISTORY =
  "INSERT OR IGNORE INTO history (resource_type, id, version, last_updated, method, deleted, content) SELECT resource_type, id, version, last_updated, 'POST', deleted, content FROM resources WHERE rid = ?";

/** A history arm's columns from `resources` (alias r): a historyless version without its history copy. */
const HISTORYLESS_COLUMNS = "NULL AS seq, r.resource_type, r.id, r.version, r.last_updated, 'POST' AS method, r.deleted, r.content";
/** The resources row (alias r) has no history copy. */
const NO_HISTORY_COPY = 'NOT EXISTS (SELECT 1 FROM history h WHERE h.resource_type = r.resource_type AND h.id = r.id AND h.version = r.version)';

/**
 * A search's statements (the sort walk's and counts at compile time, the page, `_total`, the includes) read one
 * snapshot: in a read transaction of their own outside a write transaction. Without it each statement sees the
 * commits made up to its start, and with the audit worker (DSP_AUDIT_THREAD) another connection commits to the
 * same file between them.
 */
function searchIn(s: Statements, request: SearchRequest): SearchResult {
  if (s.db.isTransaction) return searchOnce(s, request);
  s.db.exec('BEGIN');
  try {
    return searchOnce(s, request);
  } finally {
    s.db.exec('COMMIT');
  }
}

function searchOnce(s: Statements, request: SearchRequest): SearchResult {
  const compiled = compileSearch(request, { paramIds: paramIds(s.db) });
  // count 0 (_summary=count, _count=0): the total only, no page query.
  const rows = request.count > 0 ? (s.db.prepare(compiled.sql).all(...(compiled.params as SQLInputValue[])) as unknown as ResourceRow[]) : [];
  const { page, next, previous } = compiled.paginate(rows);
  const result: SearchResult = { resources: page.map((r) => JSON.parse(r.content!) as Resource) };
  if (next) result.next = next;
  if (previous) result.previous = previous;
  if (compiled.countSql && request.total !== 'none') {
    const c = s.db.prepare(compiled.countSql).get(...(compiled.countParams as SQLInputValue[])) as { n: number };
    result.total = c.n;
  }
  if (request.include.length && page.length) {
    result.included = resolveIncludes(s.db, request, result.resources);
  }
  return result;
}

/**
 * History statements prepared once per connection: their SQL has a few shapes only (which filters are set),
 * and preparing costs more than running them (the terminology layer asks for the newest entry of three types
 * on every terminology operation).
 */
const historyStatements = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

function preparedOn(db: DatabaseSync, sql: string): StatementSync {
  let cache = historyStatements.get(db);
  if (!cache) historyStatements.set(db, (cache = new Map()));
  let st = cache.get(sql);
  if (!st) cache.set(sql, (st = db.prepare(sql)));
  return st;
}

function historyIn(db: DatabaseSync, query: HistoryQuery, historyless: ReadonlySet<string>): HistoryPage {
  // Historyless versions (see the options) are read from `resources` as well; with them, the order is that of
  // lastUpdated (strictly increasing per store: the commit order) and the cursor an instant.
  const both = historyless.size > 0 && (!query.resourceType || historyless.has(query.resourceType));
  let cursorAt: SQLInputValue | undefined;
  if (query.cursor) {
    const c = decodeCursor<{ seq?: unknown; t?: unknown }>(query.cursor);
    const at = both ? c.t : c.seq;
    if (both ? typeof at !== 'string' : typeof at !== 'number' || !Number.isSafeInteger(at)) throw badRequest('The history paging cursor is invalid');
    cursorAt = at as SQLInputValue;
  }
  /** The query's conditions on one table (alias `a`): type(s), id, since, at, and the page's cursor when `page`. */
  const conditions = (a: string, types: readonly string[], page: boolean): { where: string[]; params: SQLInputValue[] } => {
    // One resource's versions are read through (type, id, version): `+` keeps SQLite from choosing an index on
    // lastUpdated for a since, at or cursor bound instead (then it sorts the type's versions).
    const updated = `${query.id && both ? '+' : ''}${a}.last_updated`;
    const where: string[] = [];
    const params: SQLInputValue[] = [...types];
    if (types.length) where.push(types.length === 1 ? `${a}.resource_type = ?` : `${a}.resource_type IN (${types.map(() => '?').join(', ')})`);
    if (query.id) {
      where.push(`${a}.id = ?`);
      params.push(query.id);
    }
    if (query.since) {
      where.push(`${updated} > ?`);
      params.push(query.since);
    }
    if (query.at) {
      where.push(`${updated} <= ?`);
      params.push(query.at);
    }
    if (page && cursorAt !== undefined) {
      where.push(`${both ? updated : `${a}.seq`} < ?`);
      params.push(cursorAt);
    }
    return { where, params };
  };
  const whereOf = (where: string[]) => (where.length ? `WHERE ${where.join(' AND ')}` : '');
  const queried = query.resourceType ? [query.resourceType] : [];
  let pageSql: string;
  let pageParams: SQLInputValue[];
  let totalSql: string;
  let totalParams: SQLInputValue[];
  if (!both) {
    const page = conditions('h', queried, true);
    pageSql = `SELECT * FROM history h ${whereOf(page.where)} ORDER BY h.seq DESC LIMIT ?`;
    pageParams = page.params;
    const all = conditions('h', queried, false);
    totalSql = `SELECT count(*) AS n FROM history h ${whereOf(all.where)}`;
    totalParams = all.params;
  } else {
    // One arm for the history table and one per historyless type for its versions kept in `resources` only, each
    // read newest first through an index ((resource_type, last_updated) on both tables, history's last_updated
    // for system history): SQLite merges the arms and stops at the LIMIT, with no sort of the rows (a sort over
    // every version, content included, took 87-254 ms for a type history page of 20,000 audit entries).
    const types = query.resourceType ? [query.resourceType] : [...historyless];
    const arms: string[] = [];
    pageParams = [];
    const h = conditions('h', queried, true);
    arms.push(`SELECT h.seq, h.resource_type, h.id, h.version, h.last_updated, h.method, h.deleted, h.content FROM history h ${whereOf(h.where)}`);
    pageParams.push(...h.params);
    for (const t of types) {
      const r = conditions('r', [t], true);
      arms.push(`SELECT ${HISTORYLESS_COLUMNS} FROM resources r ${whereOf([...r.where, NO_HISTORY_COPY])}`);
      pageParams.push(...r.params);
    }
    // One resource's versions: their order is that of lastUpdated too, and its index (type, id, version) has them.
    pageSql = `${arms.join(' UNION ALL ')} ORDER BY ${query.id ? 'version' : 'last_updated'} DESC LIMIT ?`;
    // The total without a NOT EXISTS per row: the history rows, plus the rows of the historyless types in
    // `resources`, less those of them that have their history copy (a version is in both tables then).
    const ht = conditions('h', queried, false);
    const rt = conditions('r', types, false);
    const copies = conditions('h', types, false);
    totalSql =
      `SELECT (SELECT count(*) FROM history h ${whereOf(ht.where)}) + (SELECT count(*) FROM resources r ${whereOf(rt.where)}) - ` +
      `(SELECT count(*) FROM history h JOIN resources r ON r.resource_type = h.resource_type AND r.id = h.id AND r.version = h.version ${whereOf(copies.where)}) AS n`;
    totalParams = [...ht.params, ...rt.params, ...copies.params];
  }
  const rows = preparedOn(db, pageSql).all(...pageParams, query.count + 1) as unknown as HistoryRow[];
  const page = rows.slice(0, query.count);
  const result: HistoryPage = { entries: page.map(toRecord) };
  if (rows.length > query.count) {
    const last = page[page.length - 1];
    result.next = encodeCursor(both ? { t: last.last_updated } : { seq: last.seq });
  }
  result.total = (preparedOn(db, totalSql).get(...totalParams) as { n: number }).n;
  return result;
}

/**
 * Group fsync of a WAL file through the libuv thread pool. Commits are numbered; `whenDurable(n)` resolves
 * once an fdatasync that started after commit n has finished. At most one fdatasync runs at a time, and
 * every commit made while it runs is covered by the next one, so under load one fsync serves many commits.
 * A failed fdatasync is final (`failure`, a 503): on Linux the failed pages are marked clean, so a later
 * fsync would "succeed" over lost frames; every waiting commit, every later write and every read that waits
 * for durability is refused until the server is restarted (as PostgreSQL does).
 */
class WalSync {
  committed = 0;
  durableThrough = 0;
  failure: FhirError | undefined;
  private syncs = 0;
  /** A plain descriptor, not a FileHandle: a store nobody closes (tests, tools) leaks it without GC warnings. */
  private fd: number | undefined;
  private inflight: { upTo: number; done: Promise<void> } | undefined;
  private queued: Promise<void> | undefined;

  async open(path: string): Promise<void> {
    // The WAL file exists once the database is in WAL mode with a connection open. It is created anew when a
    // database is opened after its last connection closed: its directory entry is made durable once here
    // (SQLite's own FULL syncs the directory on a new WAL's first sync; the writer connection never syncs).
    this.fd = openSync(path, 'r+');
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  async close(): Promise<void> {
    await this.inflight?.done.catch(() => undefined);
    await this.queued?.catch(() => undefined);
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) await new Promise<void>((resolve) => closeFd(fd, () => resolve()));
  }

  commit(): number {
    return ++this.committed;
  }

  stats(): { commits: number; syncs: number; durableThrough: number } {
    return { commits: this.committed, syncs: this.syncs, durableThrough: this.durableThrough };
  }

  whenDurable(seq: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.durableThrough >= seq) return Promise.resolve();
    if (this.inflight && this.inflight.upTo >= seq) return this.inflight.done;
    // Commit `seq` came after the running fsync started: the next one covers it (and every later commit).
    this.queued ??= (this.inflight?.done.catch(() => undefined) ?? Promise.resolve()).then(() => {
      this.queued = undefined;
      return this.start();
    });
    return this.queued;
  }

  private start(): Promise<void> {
    // A queued fsync after a failed one would "succeed" over the lost pages: the commits it covers fail too.
    if (this.failure) return Promise.reject(this.failure);
    const upTo = this.committed;
    const fd = this.fd;
    const synced = new Promise<void>((resolve, reject) => {
      if (fd === undefined) reject(new Error('the WAL file is not open'));
      else fdatasync(fd, (err) => (err ? reject(err) : resolve()));
    });
    const done = synced.then(
      () => {
        this.syncs++;
        if (upTo > this.durableThrough) this.durableThrough = upTo;
        if (this.inflight?.done === done) this.inflight = undefined;
      },
      (err: unknown) => {
        if (this.inflight?.done === done) this.inflight = undefined;
        this.failure ??= new FhirError(503, `The database could not be made durable (fsync of its WAL failed: ${err instanceof Error ? err.message : String(err)}); restart the server`, 'transient');
        throw this.failure;
      },
    );
    this.inflight = { upTo, done };
    return done;
  }
}

/** Commits after which a checkpoint is asked for; and the longest time a committed page waits for one. */
const CHECKPOINT_COMMITS = 256;
const CHECKPOINT_MS = 5_000;

/**
 * Asks the checkpoint worker (checkpointer.ts) for a checkpoint every CHECKPOINT_COMMITS commits, or on the
 * first commit CHECKPOINT_MS after the last one; one at a time. The worker starts on the first request. If it
 * cannot run, the writer gets SQLite's own automatic checkpoints back (`fallback`).
 */
class Checkpointer {
  private readonly path: string;
  private readonly fallback: () => void;
  private worker: Worker | undefined;
  private failed = false;
  private closing = false;
  private running = false;
  private commits = 0;
  private last = Date.now();
  /** Checkpoints finished (for tests and tools). */
  done = 0;

  constructor(path: string, fallback: () => void) {
    this.path = path;
    this.fallback = fallback;
  }

  committed(): void {
    this.commits++;
    if (this.running || this.failed) return;
    if (this.commits < CHECKPOINT_COMMITS && Date.now() - this.last < CHECKPOINT_MS) return;
    this.request();
  }

  private request(): void {
    this.running = true;
    this.commits = 0;
    this.last = Date.now();
    if (!this.worker) {
      const worker = new Worker(new URL('./checkpointer.ts', import.meta.url), { workerData: { path: this.path } });
      worker.unref();
      worker.on('message', (reply: { ok: boolean }) => {
        this.running = false;
        // Unreferenced between checkpoints; never while closing (close() waits for the worker's exit).
        if (!this.closing) worker.unref();
        // A checkpoint that fails (not one that merely could not copy everything) gives SQLite its own back:
        // with wal_autocheckpoint=0 and no working checkpointer the WAL would grow without bound.
        if (!reply.ok) this.fail();
        else this.done++;
      });
      worker.on('error', () => this.fail());
      worker.on('exit', () => {
        if (this.worker === worker) this.fail();
      });
      this.worker = worker;
    }
    // Referenced while a checkpoint runs (a process that ends meanwhile waits for it), unreferenced otherwise.
    this.worker.ref();
    this.worker.postMessage('checkpoint');
  }

  private fail(): void {
    if (this.failed) return;
    this.failed = true;
    this.running = false;
    void this.worker?.terminate();
    this.worker = undefined;
    this.fallback();
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.failed = true;
    this.closing = true;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    // An unreferenced worker would let the process end before its exit is seen (a top-level await never settled).
    worker.ref();
    worker.postMessage('close');
    await exited;
  }
}

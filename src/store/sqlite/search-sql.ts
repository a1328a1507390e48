/**
 * FHIR search on SQLite (`node:sqlite`): index tables, index writes and the compilation of a SearchRequest
 * (src/search/types.ts) into one SQL query over the `resources` table:
 *
 *   resources(rid INTEGER PRIMARY KEY, resource_type, id, version, last_updated, deleted, content,
 *             UNIQUE (resource_type, id))
 *
 * (any rowid table with those columns works: the SQL uses `rowid`, which `rid` aliases).
 *
 * Index rows are keyed by integers: the resource's rowid (`rid`) and `pid`, the id of a (resource type,
 * parameter code) pair in the small `search_params` table (cached in memory on the writing connection).
 * One WITHOUT ROWID table per value kind (idx_string, idx_token, idx_reference, idx_date, idx_number,
 * idx_quantity, idx_uri) with PRIMARY KEY (rid, pid, n), `n` numbering the resource's values. Composite
 * values are stored as their components under the parameter `<code>$<i>`, sharing the combination's number
 * n: the first component in the component kind's table, the others in `<table>_part` tables that have no
 * secondary index (they are only ever reached from the first component through the primary key).
 *
 * Every filter becomes `r.rowid [NOT] IN (SELECT x.rid FROM idx_... x WHERE x.pid = ? AND <value condition>)`,
 * which SQLite drives from the index table's (pid, value...) index, then probes `resources` by rowid: no scan
 * of `resources`. The store passes the parameter ids as bound values (`paramIds`); without them (tests that
 * compile without a connection) they are sub-selects on `search_params`, same rows. References keep their
 * target as text (target_type, target_id), since a target may not exist yet: the (pid, target_id,
 * target_type) index serves reference searches, chains, compartments and `_revinclude`; references without a
 * target (urn:, contained, foreign URLs) are in the (pid, reference) index instead (both partial: one entry
 * per reference); `_has` and `_include` go
 * through the primary key. Sorting uses correlated MIN/MAX sub-selects per sort key; paging is keyset-based
 * with an opaque cursor. `idx_date_span` (R*Tree) holds each resource's date span per parameter: two-sided date
 * bounds are one box query (planDateSpan). Common filters are probed per row instead of driving (planProbes);
 * the first page of a one-filter, one-key sort is an index-only top-k (topKSearch); a one-key sort whose filters
 * are all common walks the key's index in order and probes the filters per row (sortWalk). Parameters that are
 * others under another name (Observation's combo-*, `patient` from `subject`) have no rows of their own and are
 * searched in the rows they stand for (indexAliases).
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { Resource } from 'fhir/r4';
import { badRequest, notSupported } from '../../fhir/outcome.ts';
import { keysetCond, predicateCond, type Cond, type KeysetKey, type Scalar } from '../../search/conditions.ts';
import { cursorCond, decodePageCursor, encodePageCursor, pageOf, type PageCursor, type PagePosition } from '../cursor.ts';
import { onReindexCompleted, onRegistryChange, registryGeneration, searchParam, unionTerms } from '../../search/registry.ts';
import { normalizeReference } from '../../search/normalize.ts';
import { EARTH_RADIUS_KM, latitudeBand } from '../../search/text.ts';
import { fhirModel } from '../../fhir/model.ts';
import type { Filter, IncludeSpec, IndexValue, ParamType, Predicate, SearchRequest } from '../../search/types.ts';

type Kind = Exclude<IndexValue['type'], 'composite' | 'text' | 'position'>;
type SqlParam = string | number | null;

const TABLES: Record<Kind, { table: string; cols: Record<string, string> }> = {
  string: { table: 'idx_string', cols: { value: 'value', exact: 'exact' } },
  token: { table: 'idx_token', cols: { system: 'system', code: 'code', text: 'text', ofType: 'of_type' } },
  reference: {
    table: 'idx_reference',
    cols: { reference: 'reference', targetType: 'target_type', targetId: 'target_id', identifierSystem: 'identifier_system', identifierValue: 'identifier_value' },
  },
  date: { table: 'idx_date', cols: { low: 'low', high: 'high' } },
  number: { table: 'idx_number', cols: { value: 'value', low: 'low', high: 'high' } },
  quantity: {
    table: 'idx_quantity',
    cols: { value: 'value', low: 'low', high: 'high', system: 'system', code: 'code', unit: 'unit', canonicalValue: 'canonical_value', canonicalCode: 'canonical_code' },
  },
  uri: { table: 'idx_uri', cols: { value: 'value' } },
};
const KINDS = Object.keys(TABLES) as Kind[];

// Parameters answered from the rows of others -----------------------------------------------------------------

/**
 * Observation's `combo-*` parameters are, by their definitions, the union of two others of the same type
 * (`combo-code` = `Observation.code | Observation.component.code` = `code` | `component-code`; the composite
 * `combo-code-value-quantity` = `code-value-quantity` | `component-code-value-quantity`, same components). The
 * indexer converts a node the same way whichever parameter reached it, so a resource's `combo-code` values are
 * exactly its `code` and `component-code` values: this store writes no rows for them and searches them in the
 * rows of both (`pid IN (a, b)`; a composite's components share the value's number n, so the join of its parts
 * stays within one value). 1.7 rows fewer per Synthea resource (12 % of its index rows). A pair holds only while
 * the registry's definitions say so (the expressions and components compared): a server SearchParameter that
 * changes one of them ends the alias, and the resources written until then need `$reindex` to get their rows.
 * A database written before (with the combo rows) answers the same: those rows are no longer read.
 */
const ALIAS_CANDIDATES: Record<string, Record<string, readonly [string, string]>> = {
  Observation: {
    'combo-code': ['code', 'component-code'],
    'combo-value-quantity': ['value-quantity', 'component-value-quantity'],
    'combo-value-concept': ['value-concept', 'component-value-concept'],
    'combo-data-absent-reason': ['data-absent-reason', 'component-data-absent-reason'],
    'combo-code-value-quantity': ['code-value-quantity', 'component-code-value-quantity'],
    'combo-code-value-concept': ['code-value-concept', 'component-code-value-concept'],
  },
};

/**
 * `patient` = `<subject>.where(resolve() is Patient)` (Observation, Condition, Encounter... 36 types; Task's
 * `for`): the indexer keeps a subject's values whose literal reference names a Patient, so the `patient` values
 * are exactly the `subject` rows with target_type = 'Patient' (one reference row per clinical resource fewer;
 * a subject given by identifier only has no target type, and no `patient` value either). Where `patient` and
 * `subject` have the same expression (DeviceUseStatement, EnrollmentRequest) it is a plain alias.
 */
const PATIENT_FROM = { code: 'patient', from: 'subject', targetType: 'Patient' } as const;

/** An aliased parameter: the codes whose rows hold its values, and the target type those rows must have. */
export interface IndexAlias {
  of: readonly string[];
  targetType?: string;
}

/** resource type -> the aliased codes in effect (cleared on registry changes). */
const aliasCache = new Map<string, Map<string, IndexAlias>>();
/** The types whose `patient` is answered from their `subject` rows (patientAliasTypes). */
let typesWithPatientAlias: string[] | undefined;
/**
 * The aliases in effect on every type as of the last registry change, once a database is open (statements):
 * what the index rows of the open databases follow.
 */
let aliasSnapshot: Map<string, ReadonlyMap<string, IndexAlias>> | undefined;
/** type -> aliased code -> the registry generation it waits for: it has rows of its own until that re-index. */
const heldAliases = new Map<string, Map<string, number>>();
/** The connections statements() prepared (aliasRowsChanged writes through one per database). */
const openDbs = new Set<WeakRef<DatabaseSync>>();

function dropAliasCaches(): void {
  aliasCache.clear();
  typesWithPatientAlias = undefined;
}

function snapshotAliases(): Map<string, ReadonlyMap<string, IndexAlias>> {
  const out = new Map<string, ReadonlyMap<string, IndexAlias>>();
  for (const t of new Set([...Object.keys(ALIAS_CANDIDATES), ...fhirModel().resourceTypes])) {
    const m = indexAliases(t);
    if (m.size) out.set(t, m);
  }
  return out;
}

/**
 * A registry change can end an alias (a server SearchParameter redefines `subject`, `code`...) or bring one
 * back (it is deleted). The re-index job it starts runs later, so in the same synchronous step: an alias that
 * ends gets its rows written at once in every open database, copied from the rows it was answered from (exact:
 * they were written under the definitions the alias held for); an alias that comes back stays off on that type
 * (its own rows go on being written and searched) until a re-index of the type started after the change has
 * completed, while the rows it would be answered from still hold the old definition's values.
 */
onRegistryChange((change) => {
  const before = aliasSnapshot;
  dropAliasCaches();
  if (!before) return;
  if (change.startup) {
    heldAliases.clear();
    dropAliasCaches();
    aliasSnapshot = snapshotAliases();
    return;
  }
  const generation = registryGeneration();
  for (const t of new Set([...Object.keys(ALIAS_CANDIDATES), ...fhirModel().resourceTypes])) {
    const now = rawAliases(t);
    const was = before.get(t);
    const held = heldAliases.get(t);
    for (const code of now.keys()) {
      if (was?.has(code)) continue;
      let h = heldAliases.get(t);
      if (!h) heldAliases.set(t, (h = new Map()));
      h.set(code, generation);
    }
    if (held) for (const code of [...held.keys()]) if (!now.has(code)) held.delete(code);
    if (was) for (const [code, alias] of was) if (!now.has(code)) writeAliasRows(t, code, alias);
  }
  dropAliasCaches();
  aliasSnapshot = snapshotAliases();
});

/** A re-index has rewritten `types`: the aliases held for it take effect, their own rows dropped. */
onReindexCompleted((types, generation) => {
  let released = false;
  for (const t of types) {
    const held = heldAliases.get(t);
    if (!held) continue;
    for (const [code, g] of [...held]) {
      if (g > generation) continue;
      held.delete(code);
      released = true;
      eachDatabase((db) => {
        for (const { pid, kind } of aliasParamRows(db, t, code)) {
          for (const table of [TABLES[kind].table, `${TABLES[kind].table}_part`]) db.prepare(`DELETE FROM ${table} WHERE pid = ?`).run(pid);
        }
      });
    }
    if (!held.size) heldAliases.delete(t);
  }
  if (released) {
    dropAliasCaches();
    aliasSnapshot = snapshotAliases();
  }
});

/** Runs `write` once per open database (a file's first connection that takes the write; each in-memory one). */
function eachDatabase(write: (db: DatabaseSync) => void): void {
  const done = new Set<string>();
  for (const ref of [...openDbs]) {
    const db = ref.deref();
    if (!db?.isOpen) {
      openDbs.delete(ref);
      continue;
    }
    const file = db.location();
    if (file && done.has(file)) continue;
    try {
      write(db);
      if (file) done.add(file);
    } catch {
      // A read-only connection: the file's writer takes it.
    }
  }
}

/** The `search_params` rows of `code` on `type` and of its composite components (`<code>$<i>`). */
function aliasParamRows(db: DatabaseSync, type: string, code: string): { code: string; pid: number; kind: Kind }[] {
  return db
    .prepare(`SELECT code, pid, kind FROM search_params WHERE resource_type = ?1 AND (code = ?2 OR substr(code, 1, length(?2) + 1) = ?2 || '$')`)
    .all(type, code) as { code: string; pid: number; kind: Kind }[];
}

/** Gives the aliased `code` of `type` rows of its own: copies of the rows of the codes it was answered from. */
function writeAliasRows(type: string, code: string, alias: IndexAlias): void {
  eachDatabase((db) => {
    const p = statements(db);
    for (const from of alias.of)
      for (const src of aliasParamRows(db, type, from)) {
        if (!(src.kind in TABLES)) continue;
        const target = paramId(p, type, code + src.code.slice(from.length), src.kind);
        const cols = Object.values(TABLES[src.kind].cols).join(', ');
        const only = alias.targetType && src.kind === 'reference' ? ' AND target_type = ?3' : '';
        for (const table of [TABLES[src.kind].table, `${TABLES[src.kind].table}_part`]) {
          const st = db.prepare(`INSERT OR IGNORE INTO ${table} (rid, pid, n, ${cols}) SELECT rid, ?1, n, ${cols} FROM ${table} WHERE pid = ?2${only}`);
          if (only) st.run(target, src.pid, alias.targetType!);
          else st.run(target, src.pid);
        }
      }
  });
}

function aliasHolds(type: string, code: string, of: readonly string[]): boolean {
  const d = searchParam(type, code);
  if (!d?.expression || d.type === 'special') return false;
  const terms = unionTerms(d.expression);
  // The alias's terms are those of the parameters it unites, in their order.
  let at = 0;
  const united = of.every((c) => {
    const o = searchParam(type, c);
    if (!o?.expression || o.type !== d.type) return false;
    for (const own of unionTerms(o.expression)) if (terms[at++] !== own) return false;
    if (d.type !== 'composite') return !d.components?.length && !o.components?.length;
    const dc = d.components ?? [];
    const oc = o.components ?? [];
    return dc.length > 0 && dc.length === oc.length && dc.every((x, k) => !!x.type && x.type === oc[k]!.type && x.expression === oc[k]!.expression);
  });
  return united && at === terms.length;
}

/** `patient` from `subject` on a type (PATIENT_FROM), with the target type its rows need (none: a plain alias). */
function patientAlias(type: string): IndexAlias | undefined {
  const p = searchParam(type, PATIENT_FROM.code);
  const s = searchParam(type, PATIENT_FROM.from);
  if (p?.type !== 'reference' || s?.type !== 'reference' || !p.expression || !s.expression) return undefined;
  const pt = unionTerms(p.expression);
  const st = unionTerms(s.expression);
  if (pt.length !== 1 || st.length !== 1) return undefined;
  if (pt[0] === st[0]) return { of: [PATIENT_FROM.from] };
  return pt[0] === `${st[0]}.where(resolve() is ${PATIENT_FROM.targetType})` ? { of: [PATIENT_FROM.from], targetType: PATIENT_FROM.targetType } : undefined;
}

let aliasesOn = true;
/**
 * Tests and benchmarks only: with `false`, every parameter gets rows of its own again and is searched in them
 * (the layout before the aliases), on every connection of the process, until set back.
 */
export function setIndexAliases(on: boolean): void {
  aliasesOn = on;
  heldAliases.clear();
  dropAliasCaches();
  if (aliasSnapshot) aliasSnapshot = snapshotAliases();
}

/** The aliases the registry's definitions allow on a type, held ones included. */
function rawAliases(type: string): Map<string, IndexAlias> {
  const m = new Map<string, IndexAlias>();
  if (aliasesOn) {
    for (const [code, of] of Object.entries(ALIAS_CANDIDATES[type] ?? {})) if (aliasHolds(type, code, of)) m.set(code, { of });
    const patient = patientAlias(type);
    if (patient) m.set(PATIENT_FROM.code, patient);
  }
  return m;
}

/**
 * The aliased parameter codes of a type (ALIAS_CANDIDATES, PATIENT_FROM): they have no index rows of their own.
 * An alias a registry change brings back waits for the type's re-index (heldAliases).
 */
export function indexAliases(type: string): ReadonlyMap<string, IndexAlias> {
  let m = aliasCache.get(type);
  if (!m) {
    m = rawAliases(type);
    const held = heldAliases.get(type);
    if (held) for (const code of held.keys()) m.delete(code);
    aliasCache.set(type, m);
  }
  return m;
}

/** The types whose `patient` is answered from their `subject` rows (for searches over every type). */
function patientAliasTypes(): string[] {
  return (typesWithPatientAlias ??= fhirModel().resourceTypes.filter((t) => indexAliases(t).has(PATIENT_FROM.code)));
}

/** The alias of `code` on `type` (a composite's `<code>$<i>` gives its components' codes), if it has one. */
function aliasOf(type: string, code: string): IndexAlias | undefined {
  const aliases = indexAliases(type);
  if (!aliases.size) return undefined;
  const dollar = code.indexOf('$');
  const alias = aliases.get(dollar < 0 ? code : code.slice(0, dollar));
  if (!alias || dollar < 0) return alias;
  return { of: alias.of.map((c) => c + code.slice(dollar)), targetType: alias.targetType };
}

/** The parameter codes whose rows hold the values of `code` on `type`. */
function rowCodes(type: string, code: string): readonly string[] {
  return aliasOf(type, code)?.of ?? [code];
}

/** Version of the index schema, kept in `PRAGMA user_version` by the store (6: plus `idx_date_span`). */
export const SEARCH_SCHEMA_VERSION = 6;
/**
 * Older schema versions the store opens and upgrades: 4 lacks the `_text` / `_content` / `near` tables, which
 * installSearchSchema creates empty (`POST [base]/$reindex` fills them); 4 and 5 lack `idx_date_span`, which
 * installSearchSchema builds from `idx_date` on opening (date searches need it complete), before the store
 * serves anything: a blocking build (139 s wall, 24 s CPU for 1M resources, docs/search.md).
 */
export const UPGRADABLE_SEARCH_SCHEMAS: readonly number[] = [4, 5];

/**
 * Creates the index tables and their indexes (idempotent) and sets `PRAGMA user_version` to
 * SEARCH_SCHEMA_VERSION, in one transaction (or in the caller's). A database of version 4 or 5 is upgraded in
 * that same transaction: `idx_date_span` dropped if there (an earlier build that did not finish), created and
 * filled from `idx_date`. The upgrade is decided by the version, which changes only when the spans are
 * complete: a build that throws or is killed part way leaves the old version, and the next opening builds
 * them again.
 */
export function installSearchSchema(db: DatabaseSync): void {
  const stmts: string[] = [
    `CREATE TABLE IF NOT EXISTS search_params (pid INTEGER PRIMARY KEY, resource_type TEXT NOT NULL, code TEXT NOT NULL, kind TEXT NOT NULL, UNIQUE (resource_type, code))`,
  ];
  for (const kind of KINDS) {
    const { table, cols } = TABLES[kind];
    const numeric = new Set(['value', 'low', 'high', 'canonical_value']);
    const colDefs = Object.values(cols)
      .map((c) => `${c} ${(kind === 'number' || kind === 'quantity') && numeric.has(c) ? 'REAL' : 'TEXT'}`)
      .join(', ');
    for (const t of [table, `${table}_part`])
      stmts.push(
        `CREATE TABLE IF NOT EXISTS ${t} (rid INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL, ${colDefs}, PRIMARY KEY (rid, pid, n)) WITHOUT ROWID`,
      );
  }
  // Only the indexes that query plans use (EXPLAIN QUERY PLAN over test/search.test.ts): every one starts
  // with pid (a parameter of a type), so `:missing` uses them too. Exact strings, token systems alone and
  // `:text` are filtered within the parameter's rows. (Partial indexes `WHERE n > 0` would keep later
  // composite components out as well, but they stop SQLite from using the multi-index OR that date and
  // quantity prefixes need: hence the _part tables.)
  stmts.push(
    'CREATE INDEX IF NOT EXISTS idx_string_value ON idx_string (pid, value)',
    'CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (pid, code, system)',
    'CREATE INDEX IF NOT EXISTS idx_token_oftype ON idx_token (pid, of_type) WHERE of_type IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (pid, target_id, target_type) WHERE target_id IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_reference_ref ON idx_reference (pid, reference) WHERE target_id IS NULL',
    'CREATE INDEX IF NOT EXISTS idx_reference_ident ON idx_reference (pid, identifier_value) WHERE identifier_value IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (pid, low)',
    'CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (pid, high)',
    'CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (pid, value)',
    'CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (pid, code, value)',
    'CREATE INDEX IF NOT EXISTS idx_quantity_canon ON idx_quantity (pid, canonical_code, canonical_value)',
    'CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (pid, value)',
  );
  stmts.push(...SPECIAL_TABLES);
  const own = !db.isTransaction;
  if (own) db.exec('BEGIN IMMEDIATE');
  try {
    // Read inside the transaction: another connection may have upgraded the file meanwhile.
    const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
    const upgrade = UPGRADABLE_SEARCH_SCHEMAS.includes(version);
    for (const s of stmts) db.exec(s);
    if (upgrade) db.exec('DROP TABLE IF EXISTS idx_date_span');
    db.exec(DATE_SPAN_TABLE);
    if (upgrade) fillDateSpans(db);
    if (version !== SEARCH_SCHEMA_VERSION) db.exec(`PRAGMA user_version = ${SEARCH_SCHEMA_VERSION}`);
    if (own) db.exec('COMMIT');
  } catch (err) {
    if (own && db.isTransaction) db.exec('ROLLBACK');
    prepared.delete(db); // statements prepared by the fill, over tables the rollback removed
    throw err;
  }
}

// Date spans (R*Tree) ---------------------------------------------------------------------------------------

/**
 * `idx_date_span`: one R*Tree entry per (resource, date parameter), the span of all its values: from the
 * earliest to the latest instant any value's range touches (epoch milliseconds). Dimensions: the parameter id
 * (a point, pid0 = pid1) and the span (low, high). The entry id is `rid << 21 | pid` (pids below 2^21).
 *
 * A date filter on a multi-valued parameter is met when one value matches each bound, possibly two different
 * values (`date=ge2020&date=lt2021` on a resource with dates in 2019 and 2022 matches), so no single index row
 * is bounded on both sides. Every date prefix but `ne` implies a bound on the span (see dateSpanBounds), and
 * the bounds of several filters on one parameter combine: a two-sided bound is one R*Tree box query, a superset
 * of the matches that drives the query when small; the date filters themselves are still checked on each
 * candidate. R*Tree coordinates are 32-bit floats rounded outwards (low down, high up): still a superset.
 */
const DATE_SPAN_TABLE = 'CREATE VIRTUAL TABLE IF NOT EXISTS idx_date_span USING rtree(id, pid0, pid1, low, high)';
const SPAN_PID_LIMIT = 2 ** 21;
/** Beyond any date (float32 range): a value whose text does not parse spans everything. */
const SPAN_OPEN = 3e38;

function spanLow(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? -SPAN_OPEN : t;
}
function spanHigh(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? SPAN_OPEN : t;
}

/**
 * Fills the (new, empty) `idx_date_span` from `idx_date`: the upgrade of a database of schema 4 or 5, inside
 * installSearchSchema's transaction (nothing to do on a new database).
 */
function fillDateSpans(db: DatabaseSync): void {
  const rows = db.prepare(
    `SELECT d.rid, d.pid, min(min(d.low, d.high)) AS lo, max(max(d.low, d.high)) AS hi FROM idx_date d
     WHERE d.pid IN (SELECT sp.pid FROM search_params sp WHERE instr(sp.code, '$') = 0 AND sp.pid < ${SPAN_PID_LIMIT}) GROUP BY d.rid, d.pid`,
  );
  const { insertSpan } = statements(db);
  for (const r of rows.iterate() as Iterable<{ rid: number; pid: number; lo: string; hi: string }>) insertSpan.run(r.rid, r.pid, spanLow(r.lo), spanHigh(r.hi));
}

// _text, _content and near ----------------------------------------------------------------------------------

/**
 * `idx_text`: one FTS5 row per resource (rowid = the resource's rid), column `t` the words of `_text`, `c` those
 * of `_content`, as the indexer folded and cut them (src/search/text.ts), joined by spaces: the unicode61
 * tokenizer finds the same words again. Contentless (the words are not stored twice), with deletes.
 * `idx_position`: `near` points, served by the (pid, latitude) index for the latitude band of a search.
 */
const SPECIAL_TABLES = [
  `CREATE VIRTUAL TABLE IF NOT EXISTS idx_text USING fts5(t, c, content='', contentless_delete=1, detail=column, tokenize='unicode61 remove_diacritics 0')`,
  'CREATE TABLE IF NOT EXISTS idx_position (rid INTEGER NOT NULL, pid INTEGER NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL, PRIMARY KEY (rid, pid)) WITHOUT ROWID',
  'CREATE INDEX IF NOT EXISTS idx_position_lat ON idx_position (pid, latitude)',
];

/** The FTS5 shadow tables of `idx_text` (written by SQLite only: `DELETE FROM idx_text` empties them). */
export function isSearchShadowTable(name: string): boolean {
  return /^idx_text_(data|idx|docsize|config|content)$/.test(name) || /^idx_date_span_(node|parent|rowid)$/.test(name);
}

interface SpecialStatements {
  text: StatementSync;
  position: StatementSync;
}
const specialPrepared = new WeakMap<DatabaseSync, SpecialStatements>();

function specialRemoveStatements(db: DatabaseSync): StatementSync[] {
  return [db.prepare('DELETE FROM idx_text WHERE rowid = ?'), db.prepare('DELETE FROM idx_position WHERE rid = ?')];
}

/** Writes the `_text` / `_content` row and `near` points of one resource (after its old rows were removed). */
function writeSpecialIndex(p: Prepared, rid: number, resourceType: string, values: IndexValue[]): void {
  let st = specialPrepared.get(p.db);
  if (!st) {
    st = {
      text: p.db.prepare('INSERT INTO idx_text (rowid, t, c) VALUES (?, ?, ?)'),
      position: p.db.prepare('INSERT OR REPLACE INTO idx_position (rid, pid, latitude, longitude) VALUES (?, ?, ?, ?)'),
    };
    specialPrepared.set(p.db, st);
  }
  let t: string | null = null;
  let c: string | null = null;
  for (const v of values) {
    if (v.type === 'text') {
      if (v.param === '_text') t = v.words.join(' ');
      else c = v.words.join(' ');
    } else if (v.type === 'position') st.position.run(rid, paramId(p, resourceType, v.param, 'position' as Kind), v.latitude, v.longitude);
  }
  if (t !== null || c !== null) st.text.run(rid, t, c);
}

/** FTS5 query: the words of each alternative all prefix-matched in column `col`, alternatives ORed. */
function ftsQuery(col: 't' | 'c', anyOf: string[][]): string {
  return anyOf.map((words) => '(' + words.map((w) => `${col} : "${w.replace(/"/g, '""')}"*`).join(' AND ') + ')').join(' OR ');
}

/** The rowids of the resources with a `near` point within one of the filter's circles. */
function nearSelect(f: Extract<Filter, { kind: 'near' }>, types: string[], q: Sql, sub: string): string {
  const alts = f.anyOf.map((pt) => {
    const [lo, hi] = latitudeBand(pt.latitude, pt.distanceKm);
    const lat0 = q.p(pt.latitude);
    const lon0 = q.p(pt.longitude);
    // Haversine, as in src/search/text.ts haversineKm (SQLite's math functions).
    const d = `2 * ${EARTH_RADIUS_KM} * asin(min(1, sqrt(power(sin(radians(${sub}.latitude - ${lat0}) / 2), 2) + cos(radians(${lat0})) * cos(radians(${sub}.latitude)) * power(sin(radians(${sub}.longitude - ${lon0}) / 2), 2))))`;
    return `(${sub}.latitude BETWEEN ${q.p(lo)} AND ${q.p(hi)} AND ${d} <= ${q.p(pt.distanceKm)})`;
  });
  return `SELECT ${sub}.rid FROM idx_position ${sub} WHERE ${pidIs(sub, types, f.param, q)} AND (${alts.join(' OR ')})`;
}

/** Inserts one index row: (rid, pid, n) and the value's columns in TABLES order (no per-row mapping). */
const INSERT_ROW: Record<Kind, (st: StatementSync, rid: number, pid: number, n: number, v: IndexValue) => void> = {
  string: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'string' }>;
    st.run(rid, pid, n, x.value, x.exact);
  },
  token: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'token' }>;
    st.run(rid, pid, n, x.system ?? null, x.code ?? null, x.text ?? null, x.ofType ?? null);
  },
  reference: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'reference' }>;
    st.run(rid, pid, n, x.reference, x.targetType ?? null, x.targetId ?? null, x.identifierSystem ?? null, x.identifierValue ?? null);
  },
  date: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'date' }>;
    st.run(rid, pid, n, x.low, x.high);
  },
  number: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'number' }>;
    st.run(rid, pid, n, x.value, x.low, x.high);
  },
  quantity: (st, rid, pid, n, v) => {
    const x = v as Extract<IndexValue, { type: 'quantity' }>;
    st.run(rid, pid, n, x.value, x.low, x.high, x.system ?? null, x.code ?? null, x.unit ?? null, x.canonicalValue ?? null, x.canonicalCode ?? null);
  },
  uri: (st, rid, pid, n, v) => {
    st.run(rid, pid, n, (v as Extract<IndexValue, { type: 'uri' }>).value);
  },
};

interface Prepared {
  db: DatabaseSync;
  /** (rid, pid, low, high) into idx_date_span. */
  insertSpan: StatementSync;
  /** (rid, pid): one span out. */
  deleteSpan: StatementSync;
  /** (rid): every span of a resource out (from its date rows: run before they are deleted). */
  removeSpans: StatementSync;
  /** (rid): the spans a resource's date rows give (pid, lo, hi as ISO text). */
  oldSpans: StatementSync;
  /** One-row INSERT per kind, into the main table and into the _part table. */
  insert: Record<Kind, StatementSync>;
  insertPart: Record<Kind, StatementSync>;
  remove: StatementSync[];
  rowid: StatementSync;
  findParam: StatementSync;
  addParam: StatementSync;
  /** resource type -> code -> pid. */
  pids: Map<string, Map<string, number>>;
  countType: StatementSync;
  /** resource type -> its row count (paramIds typeRows), shared with the other connections to the file. */
  typeRows: Map<string, number>;
}
const prepared = new WeakMap<DatabaseSync, Prepared>();

/**
 * The row counts per resource type of each database file, shared by the connections open on it in this process
 * (the store writes on one and searches on another: the counts the writer's writes keep current are the ones
 * the reader's searches use). An entry lives while one of its connections is open: a file opened again after
 * all were closed is counted again.
 */
const typeRowsByFile = new Map<string, { rows: Map<string, number>; dbs: WeakRef<DatabaseSync>[] }>();

function sharedTypeRows(db: DatabaseSync): Map<string, number> {
  const file = db.location();
  // In memory: one connection, its own counts.
  if (!file) return new Map();
  for (const [f, e] of typeRowsByFile) {
    e.dbs = e.dbs.filter((r) => r.deref()?.isOpen);
    if (!e.dbs.length) typeRowsByFile.delete(f);
  }
  let e = typeRowsByFile.get(file);
  if (!e) typeRowsByFile.set(file, (e = { rows: new Map(), dbs: [] }));
  e.dbs.push(new WeakRef(db));
  return e.rows;
}

function statements(db: DatabaseSync): Prepared {
  let p = prepared.get(db);
  if (!p) {
    p = {
      db,
      insert: insertStatements(db, ''),
      insertPart: insertStatements(db, '_part'),
      insertSpan: db.prepare('INSERT INTO idx_date_span (id, pid0, pid1, low, high) VALUES ((?1 << 21) | ?2, ?2, ?2, ?3, ?4)'),
      deleteSpan: db.prepare('DELETE FROM idx_date_span WHERE id = (?1 << 21) | ?2'),
      removeSpans: db.prepare('DELETE FROM idx_date_span WHERE id IN (SELECT (d.rid << 21) | d.pid FROM idx_date d WHERE d.rid = ?1 GROUP BY d.pid)'),
      oldSpans: db.prepare('SELECT d.pid, min(min(d.low, d.high)) AS lo, max(max(d.low, d.high)) AS hi FROM idx_date d WHERE d.rid = ? GROUP BY d.pid'),
      remove: [...KINDS.flatMap((k) => [TABLES[k].table, `${TABLES[k].table}_part`]).map((t) => db.prepare(`DELETE FROM ${t} WHERE rid = ?`)), ...specialRemoveStatements(db)],
      rowid: db.prepare('SELECT rowid AS rid FROM resources WHERE resource_type = ? AND id = ?'),
      findParam: db.prepare('SELECT pid FROM search_params WHERE resource_type = ? AND code = ?'),
      addParam: db.prepare('INSERT INTO search_params (resource_type, code, kind) VALUES (?, ?, ?)'),
      pids: new Map(),
      countType: db.prepare('SELECT count(*) AS n FROM resources WHERE resource_type = ?'),
      typeRows: sharedTypeRows(db),
    };
    prepared.set(db, p);
    openDbs.add(new WeakRef(db));
    aliasSnapshot ??= snapshotAliases();
  }
  return p;
}

// Measured: multi-row INSERTs (2 to 64 rows per statement) were no cheaper than one prepared one-row INSERT.
function insertStatements(db: DatabaseSync, suffix: string): Record<Kind, StatementSync> {
  const out = {} as Record<Kind, StatementSync>;
  for (const kind of KINDS) {
    const { table, cols } = TABLES[kind];
    const names = Object.values(cols);
    out[kind] = db.prepare(`INSERT INTO ${table}${suffix} (rid, pid, n, ${names.join(', ')}) VALUES (?, ?, ?, ${names.map(() => '?').join(', ')})`);
  }
  return out;
}

/**
 * Forgets the cached parameter ids of a connection and the row counts of its file: call after a ROLLBACK (ids
 * created in the rolled-back transaction are gone, rows it added were counted) or after the tables were
 * emptied. The next search counts each type again.
 */
export function resetSearchCaches(db: DatabaseSync): void {
  prepared.get(db)?.pids.clear();
  const file = db.location();
  (prepared.get(db)?.typeRows ?? (file ? typeRowsByFile.get(file)?.rows : undefined))?.clear();
}

/**
 * A ParamIds over a connection for compileSearch: looks `search_params` up, caching the ids found (an id never
 * changes; resetSearchCaches after a rollback or a clear).
 */
export function paramIds(db: DatabaseSync): ParamIds {
  const p = statements(db);
  const ids: ParamIds = (resourceType, code) => {
    let byCode = p.pids.get(resourceType);
    let pid = byCode?.get(code);
    if (pid === undefined) {
      pid = (p.findParam.get(resourceType, code) as { pid: number } | undefined)?.pid;
      if (pid !== undefined) {
        if (!byCode) p.pids.set(resourceType, (byCode = new Map()));
        byCode.set(code, pid);
      }
    }
    return pid;
  };
  ids.countUpTo = (sql, params) => (db.prepare(sql).get(...(params as SQLInputValue[])) as { n: number }).n;
  ids.rows = (sql, params) => db.prepare(sql).all(...(params as SQLInputValue[])) as Record<string, SqlParam>[];
  ids.typeRows = (resourceType) => {
    let n = p.typeRows.get(resourceType);
    if (n === undefined) {
      // Through the (resource_type, id) index: ~15 ms for 470,000 Observations, once per type (then kept
      // current by typeRowsChanged, never recounted on a timer: no periodic stall of the event loop).
      n = (p.countType.get(resourceType) as { n: number }).n;
      p.typeRows.set(resourceType, n);
    }
    return n;
  };
  return ids;
}

/**
 * The store's writes report the rows they add to (or remove from) `resources` here, inside their transaction:
 * the counts behind the probe bound follow them without a recount. A type not counted yet is left alone (its
 * first search counts it). A transaction rolled back afterwards calls resetSearchCaches, which drops the
 * counts; a count taken while a write is in flight may be off by that write: an estimate either way.
 */
export function typeRowsChanged(db: DatabaseSync, resourceType: string, delta: number): void {
  const rows = statements(db).typeRows;
  const n = rows.get(resourceType);
  if (n !== undefined) rows.set(resourceType, Math.max(0, n + delta));
}

function paramId(p: Prepared, resourceType: string, code: string, kind: Kind): number {
  let byCode = p.pids.get(resourceType);
  if (!byCode) p.pids.set(resourceType, (byCode = new Map()));
  let pid = byCode.get(code);
  if (pid === undefined) {
    const row = p.findParam.get(resourceType, code) as { pid: number } | undefined;
    pid = row ? row.pid : Number(p.addParam.run(resourceType, code, kind).lastInsertRowid);
    byCode.set(code, pid);
  }
  return pid;
}

function rowidOf(p: Prepared, resourceType: string, id: string): number {
  const row = p.rowid.get(resourceType, id) as { rid: number } | undefined;
  if (!row) throw new Error(`index write for ${resourceType}/${id}, which is not in the resources table`);
  return row.rid;
}

/**
 * Replaces the index rows of one resource. Call inside the write's transaction, after the resource row was
 * written. `fresh` says the resource has no index rows yet (new id, or a deleted one), which saves the
 * deletes; `rid` is its rowid in `resources` when the caller knows it (else it is looked up).
 */
export function writeIndex(db: DatabaseSync, resourceType: string, id: string, values: IndexValue[], fresh = false, rid?: number): void {
  const p = statements(db);
  const r = rid ?? rowidOf(p, resourceType, id);
  // The spans the old date rows give (read before they go): R*Tree deletes and inserts are dear (a node
  // rewritten, underfull nodes re-inserted), so unchanged spans stay as they are.
  let old: Map<number, [number, number]> | undefined;
  if (!fresh) {
    old = new Map();
    for (const o of p.oldSpans.all(r) as { pid: number; lo: string; hi: string }[]) old.set(o.pid, [spanLow(o.lo), spanHigh(o.hi)]);
    for (const st of p.remove) st.run(r);
  }
  let n = 0;
  let special: IndexValue[] | undefined;
  let spans: Map<number, [number, number]> | undefined;
  // Parameters answered from the rows of others (ALIAS_CANDIDATES) get none of their own.
  const aliases = indexAliases(resourceType);
  for (const v of values) {
    n++;
    if (aliases.size && aliases.has(v.param)) continue;
    if (v.type === 'date') {
      const pid = paramId(p, resourceType, v.param, 'date');
      INSERT_ROW.date(p.insert.date, r, pid, n, v);
      if (pid >= SPAN_PID_LIMIT) continue;
      const lo = Math.min(spanLow(v.low), spanLow(v.high));
      const hi = Math.max(spanHigh(v.low), spanHigh(v.high));
      const span = (spans ??= new Map()).get(pid);
      if (!span) spans.set(pid, [lo, hi]);
      else {
        if (lo < span[0]) span[0] = lo;
        if (hi > span[1]) span[1] = hi;
      }
    } else if (v.type === 'text' || v.type === 'position') (special ??= []).push(v);
    else if (v.type === 'composite') {
      for (let i = 0; i < v.components.length; i++) {
        const c = v.components[i]!;
        if (c.type === 'composite' || c.type === 'text' || c.type === 'position') continue;
        const st = i === 0 ? p.insert[c.type] : p.insertPart[c.type];
        INSERT_ROW[c.type](st, r, paramId(p, resourceType, `${v.param}$${i}`, c.type), n, c);
      }
    } else INSERT_ROW[v.type](p.insert[v.type], r, paramId(p, resourceType, v.param, v.type), n, v);
  }
  if (special) writeSpecialIndex(p, r, resourceType, special);
  if (old)
    for (const [pid, [lo, hi]] of old) {
      const now = spans?.get(pid);
      if (now && now[0] === lo && now[1] === hi) spans!.delete(pid);
      else p.deleteSpan.run(r, pid); // changed or gone (a composite component's pid has none: no-op)
    }
  if (spans) for (const [pid, [lo, hi]] of spans) p.insertSpan.run(r, pid, lo, hi);
}

/** Removes every index row of one resource (on delete); `rid` as in writeIndex. */
export function deleteIndex(db: DatabaseSync, resourceType: string, id: string, rid?: number): void {
  const p = statements(db);
  const r = rid ?? (p.rowid.get(resourceType, id) as { rid: number } | undefined)?.rid;
  if (r === undefined) return;
  p.removeSpans.run(r);
  for (const st of p.remove) st.run(r);
}

// Compilation ---------------------------------------------------------------------------------------------

/**
 * The id of a (resource type, parameter code) in `search_params`, when it has one. `countUpTo` (from
 * paramIds(db)) runs a bounded `SELECT count(*) AS n` for the selectivity estimates of compileSearch.
 */
export interface ParamIds {
  (resourceType: string, code: string): number | undefined;
  countUpTo?: (sql: string, params: SqlParam[]) => number;
  /** Runs a query and returns its rows (the sort walk's index walks, sortWalk). */
  rows?: (sql: string, params: SqlParam[]) => Record<string, SqlParam>[];
  /** Rows of a resource type (deleted ones included): counted once, then kept current (typeRowsChanged). */
  typeRows?: (resourceType: string) => number;
}

class Sql {
  readonly params: SqlParam[] = [];
  readonly pids: ParamIds | undefined;
  /** Filters compiled as a correlated `EXISTS` probe of the row instead of `rowid IN (...)` (planProbes). */
  readonly probe: Set<Filter>;
  /** The date span that drives the query (planDateSpan), if any. */
  readonly span: DateSpan | undefined;
  /** Filters tested per row by their set of rowids (`+r.rowid IN (...)`, built once) instead of driving (planProbes). */
  readonly sets: Set<Filter>;
  constructor(pids?: ParamIds, probe: Set<Filter> = new Set(), span?: DateSpan, sets: Set<Filter> = new Set()) {
    this.pids = pids;
    this.probe = probe;
    this.span = span;
    this.sets = sets;
  }
  /** Numbered placeholders: fragments may be built in any order. */
  p(v: SqlParam): string {
    this.params.push(v);
    return `?${this.params.length}`;
  }
  list(vs: SqlParam[]): string {
    return vs.map((v) => this.p(v)).join(', ');
  }
}

function render(cond: Cond, col: (field: string) => string, q: Sql): string {
  switch (cond.op) {
    case 'and':
    case 'or':
      return '(' + cond.conds.map((c) => render(c, col, q)).join(cond.op === 'and' ? ' AND ' : ' OR ') + ')';
    case 'not':
      // NOT over a comparison with NULLs would be NULL: treat the row as not matching.
      return `(NOT coalesce(${render(cond.cond, col, q)}, 0))`;
    case 'true':
      return '1';
    case 'false':
      return '0';
    case 'eq':
      return `${col(cond.field)} = ${q.p(cond.value)}`;
    case 'ne':
      return `${col(cond.field)} <> ${q.p(cond.value)}`;
    case 'gt':
      return `${col(cond.field)} > ${q.p(cond.value)}`;
    case 'ge':
      return `${col(cond.field)} >= ${q.p(cond.value)}`;
    case 'lt':
      return `${col(cond.field)} < ${q.p(cond.value)}`;
    case 'le':
      return `${col(cond.field)} <= ${q.p(cond.value)}`;
    case 'isNull':
      return `${col(cond.field)} IS NULL`;
    case 'notNull':
      return `${col(cond.field)} IS NOT NULL`;
    case 'prefix':
      return `(${col(cond.field)} >= ${q.p(cond.value)} AND ${col(cond.field)} < ${q.p(cond.value + '\u{10FFFF}')})`;
    case 'contains':
      return `instr(${col(cond.field)}, ${q.p(cond.value)}) > 0`;
    case 'in':
      return cond.values.length ? `${col(cond.field)} IN (${q.list(cond.values)})` : '0';
  }
}

function kindOf(type: ParamType | string): Kind {
  if (type === 'composite' || type === 'special' || !(type in TABLES)) throw notSupported(`Search on ${type} parameters is not supported`);
  return type as Kind;
}

function typesClause(alias: string, types: string[], q: Sql, filters: Filter[] = [], driven = false): string {
  if (!types.length) return '1';
  // With a filter that selects rowids, drive the query from it (probe the rowids it yields) rather than
  // walk every resource of the type through the (resource_type, id) index in result order and test each:
  // the unary + keeps the planner off that index. `_id` filters use the index (type and id).
  const drive = !filters.some((f) => f.kind === 'id') && (driven || filters.some(selectsRowids));
  return `${drive ? '+' : ''}${alias}.resource_type IN (${q.list(types)})`;
}

/** Whether the filter compiles to `rowid IN (...)` (not NOT IN). */
function selectsRowids(f: Filter): boolean {
  switch (f.kind) {
    case 'param':
      return !f.not;
    case 'missing':
      return !f.missing;
    case 'chain':
    case 'compartment':
    case 'text':
    case 'near':
      return true;
    default:
      return false;
  }
}

/**
 * `<tbl>.pid` is one of the parameter ids of `code` on `types` (on every type when `types` is empty); `tbl` is
 * the index table's alias in the query, `noIndex` writes `+<tbl>.pid` (keeps the planner off the pid indexes).
 * One type has at most one id: a scalar sub-select, which the planner can use inside OR branches (multi-index OR).
 */
function pidIs(tbl: string, types: string[], code: string, q: Sql, noIndex = false): string {
  const col = `${noIndex ? '+' : ''}${tbl}.pid`;
  // An aliased parameter (ALIAS_CANDIDATES, PATIENT_FROM) is answered from the rows of the parameters it unites,
  // those of `patient` from `subject` rows whose target is a Patient (`<tbl>.target_type`).
  const all = types.length ? types : code === PATIENT_FROM.code ? patientAliasTypes() : Object.keys(ALIAS_CANDIDATES);
  const aliased = all.map((t) => [t, aliasOf(t, code)] as const).filter((e): e is readonly [string, IndexAlias] => e[1] !== undefined);
  if (aliased.length) {
    const plain = types.filter((t) => !aliased.some(([a]) => a === t));
    const groups = new Map<string | undefined, { type: string; codes: readonly string[] }[]>();
    for (const t of plain) groups.set(undefined, [...(groups.get(undefined) ?? []), { type: t, codes: [code] }]);
    for (const [t, a] of aliased) groups.set(a.targetType, [...(groups.get(a.targetType) ?? []), { type: t, codes: a.of }]);
    const arms: string[] = [];
    for (const [targetType, members] of groups) {
      let ids: string;
      if (q.pids) {
        const known = members.flatMap((m) => m.codes.map((c) => q.pids!(m.type, c))).filter((x): x is number => x !== undefined);
        if (!known.length) continue;
        ids = known.length === 1 ? `${col} = ${q.p(known[0]!)}` : `${col} IN (${q.list(known)})`;
      } else {
        ids = `${col} IN (SELECT sp.pid FROM search_params sp WHERE ${members.map((m) => `(sp.resource_type = ${q.p(m.type)} AND sp.code IN (${q.list([...m.codes])}))`).join(' OR ')})`;
      }
      arms.push(targetType === undefined ? ids : `${ids} AND ${tbl}.target_type = ${q.p(targetType)}`);
    }
    // Over every type: the other types' own rows of the code.
    if (!types.length) {
      const others = aliased.map(([t]) => t);
      arms.push(`${col} IN (SELECT sp.pid FROM search_params sp WHERE sp.resource_type NOT IN (${q.list(others)}) AND sp.code = ${q.p(code)})`);
    }
    if (!arms.length) return `${col} = -1`;
    return arms.length === 1 ? `(${arms[0]})` : `(${arms.map((a) => `(${a})`).join(' OR ')})`;
  }
  if (q.pids && types.length) {
    // Known ids as bound values: the planner uses them inside OR branches too (multi-index OR), which it
    // does not with a sub-select. No id yet: the parameter has no value anywhere (-1 matches no row).
    const ids = types.map((t) => q.pids!(t, code)).filter((x): x is number => x !== undefined);
    return ids.length === 1 ? `${col} = ${q.p(ids[0]!)}` : ids.length ? `${col} IN (${q.list(ids)})` : `${col} = -1`;
  }
  if (types.length === 1) return `${col} = (SELECT sp.pid FROM search_params sp WHERE sp.resource_type = ${q.p(types[0]!)} AND sp.code = ${q.p(code)})`;
  const typeCond = types.length ? `sp.resource_type IN (${q.list(types)}) AND ` : '';
  return `${col} IN (SELECT sp.pid FROM search_params sp WHERE ${typeCond}sp.code = ${q.p(code)})`;
}

function paramType(types: string[], code: string): ParamType | undefined {
  for (const t of types) {
    const d = searchParam(t, code);
    if (d) return d.type;
  }
  return undefined;
}

/** Filter kinds whose SQL reads nothing of the row but `alias.rowid` (see the `_has` case of compileFilter). */
const ROWID_ONLY: ReadonlySet<Filter['kind']> = new Set(['param', 'missing', 'chain', 'compartment', 'text', 'near']);

/**
 * The SQL condition of one filter on the row `alias` (`types` are its possible types). Most filters test the
 * row's rowid, `rowid` (default `alias.rowid`): `rowid [NOT] IN (rowidSelect)`, or the probe `EXISTS (...)`.
 * `_id`, `_lastUpdated`, reverse references and `_has` read the row's columns (type, id, last_updated).
 */
function compileFilter(f: Filter, alias: string, types: string[], q: Sql, depth: number, rowid = `${alias}.rowid`): string {
  const sub = `i${depth}`;
  switch (f.kind) {
    case 'id':
      return f.ids.length ? `${alias}.id IN (${q.list(f.ids)})` : '0';
    case 'not-refs':
      // One bound JSON array whatever its length (no limit on bound variables); SQLite builds the
      // sub-select's set once and probes it per row.
      return f.refs.length ? `(${alias}.resource_type || '/' || ${alias}.id) NOT IN (SELECT value FROM json_each(${q.p(JSON.stringify(f.refs))}))` : '1';
    case 'lastUpdated':
      return (
        '(' +
        f.anyOf
          .map((p) => render(predicateCond(p, '_lastUpdated'), (field) => `${alias}.last_updated`, q))
          .join(' OR ') +
        ')'
      );
    case 'missing': {
      const inner = rowidSelect(f, types, q, depth);
      if (inner === undefined) return f.missing ? '0' : '1'; // _id and _lastUpdated: every resource has them
      return `${rowid} ${f.missing ? 'NOT IN' : 'IN'} (${inner})`;
    }
    case 'param': {
      if (q.probe.has(f) && !f.not && f.type !== 'composite') {
        // The row's own index rows through the primary key (rid, pid, n); `+` keeps the planner off the
        // parameter's (pid, value) index.
        const { table } = TABLES[kindOf(f.type)];
        return `EXISTS (SELECT 1 FROM ${table} ${sub} WHERE ${sub}.rid = ${rowid} AND ${pidIs(sub, types, f.param, q, true)} AND ${paramConds(f, sub, q)})`;
      }
      return `${rowid} ${f.not ? 'NOT IN' : 'IN'} (${rowidSelect(f, types, q, depth)!})`;
    }
    case 'chain':
    case 'text':
    case 'near':
      return `${rowid} IN (${rowidSelect(f, types, q, depth)!})`;
    case 'compartment': {
      const inner = rowidSelect(f, types, q, depth);
      return inner === undefined ? '0' : `${rowid} IN (${inner})`;
    }
    case 'has': {
      const s = `s${depth}`;
      if (f.where.every((w) => ROWID_ONLY.has(w.kind))) {
        // The source filters need nothing of the source's row but its rowid, which is the reference row's
        // rid: they are compiled on it, and the row itself is not read (index rows exist for live resources
        // only: a delete removes them; the parameter id is the source type's). Same rows, one B-tree look-up
        // less per source.
        const param = pidIs(sub, [f.sourceType], f.param, q);
        if (q.probe.has(f)) {
          // The target's references, each tested: by a probe, or in the set of a source filter's `IN` form (`+`:
          // a look-up per reference in the set built once, not a seek of the target's index per rid of the set).
          const tests = f.where.map((w) => ` AND ${compileFilter(w, s, [f.sourceType], q, depth + 1, `+${sub}.rid`)}`).join('');
          return `EXISTS (SELECT 1 FROM idx_reference ${sub} WHERE ${param} AND ${sub}.target_id IS NOT NULL AND ${sub}.target_id = ${alias}.id AND ${sub}.target_type = ${alias}.resource_type${tests})`;
        }
        const conds = f.where.map((w) => ` AND ${compileFilter(w, s, [f.sourceType], q, depth + 1, `${sub}.rid`)}`).join('');
        const targetTypes = types.length ? ` AND ${sub}.target_type IN (${q.list(types)})` : ` AND ${sub}.target_type IS NOT NULL`;
        return `(${alias}.resource_type, ${alias}.id) IN (SELECT ${sub}.target_type, ${sub}.target_id FROM idx_reference ${sub} WHERE ${param}${targetTypes}${conds})`;
      }
      const where = f.where.map((w) => compileFilter(w, s, [f.sourceType], q, depth + 1));
      if (q.probe.has(f)) {
        // Semi-join per row: the references to this row from the source parameter ((pid, target_id,
        // target_type) index), each source probed by rowid; stops at the first source that matches.
        const source = `SELECT 1 FROM resources ${s} WHERE ${s}.rowid = ${sub}.rid AND ${s}.resource_type = ${q.p(f.sourceType)} AND ${s}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
        return `EXISTS (SELECT 1 FROM idx_reference ${sub} WHERE ${pidIs(sub, [f.sourceType], f.param, q)} AND ${sub}.target_id IS NOT NULL AND ${sub}.target_id = ${alias}.id AND ${sub}.target_type = ${alias}.resource_type AND EXISTS (${source}))`;
      }
      const sources = `SELECT ${s}.rowid FROM resources ${s} WHERE ${typesClause(s, [f.sourceType], q, f.where)} AND ${s}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      const targetTypes = types.length ? ` AND ${sub}.target_type IN (${q.list(types)})` : ` AND ${sub}.target_type IS NOT NULL`;
      const inner = `SELECT ${sub}.target_type, ${sub}.target_id FROM idx_reference ${sub} WHERE ${pidIs(sub, [f.sourceType], f.param, q)}${targetTypes} AND ${sub}.rid IN (${sources})`;
      return `(${alias}.resource_type, ${alias}.id) IN (${inner})`;
    }
  }
}

/** The value conditions of a (not composite) parameter filter on its index rows `sub`, ORed. */
function paramConds(f: Extract<Filter, { kind: 'param' }>, sub: string, q: Sql): string {
  const kind = kindOf(f.type);
  const { cols } = TABLES[kind];
  const conds = f.anyOf.map((p) => {
    const c = predicateCond(p, f.param);
    return render(kind === 'reference' ? onTargetColumns(c) : c, (field) => `${sub}.${cols[field] ?? badField(field)}`, q);
  });
  return `(${conds.join(' OR ')})`;
}

/**
 * The one-column SELECT of the rowids that a filter's `rowid IN (...)` form tests (`rowid NOT IN (...)` for
 * `:not` and `:missing=true`), with no reference to the row tested: compileFilter wraps it, the planner counts
 * it (planProbes) and the top-k reads its matches from it (topKSearch). Undefined for the filters that have no
 * such form (`_id`, `_lastUpdated`, reverse references, `_has`, `:missing` on `_id` / `_lastUpdated`, a
 * compartment without parameters on the types searched).
 */
function rowidSelect(f: Filter, types: string[], q: Sql, depth = 1): string | undefined {
  const sub = `i${depth}`;
  switch (f.kind) {
    case 'missing': {
      const t = paramType(types, f.param);
      if (!t) throw badRequest(`Unknown search parameter ${f.param}`);
      if (f.param === '_id' || f.param === '_lastUpdated') return undefined;
      let kind: Kind;
      let param = f.param;
      if (t === 'composite') {
        const def = types.map((ty) => searchParam(ty, f.param)).find((d) => d);
        kind = kindOf(def?.components?.[0]?.type ?? 'token');
        param = `${f.param}$0`;
      } else kind = kindOf(t);
      return `SELECT ${sub}.rid FROM ${TABLES[kind].table} ${sub} WHERE ${pidIs(sub, types, param, q)}`;
    }
    case 'param': {
      if (f.type === 'composite') return f.anyOf.map((p) => compositeSubquery(f.param, p, types, q, depth)).join(' UNION ALL ');
      const { table } = TABLES[kindOf(f.type)];
      return `SELECT ${sub}.rid FROM ${table} ${sub} WHERE ${pidIs(sub, types, f.param, q)} AND ${paramConds(f, sub, q)}`;
    }
    case 'chain': {
      const t = `t${depth}`;
      const where = f.where.map((w) => compileFilter(w, t, f.targetTypes, q, depth + 1));
      const targets = `SELECT ${t}.id, ${t}.resource_type FROM resources ${t} WHERE ${typesClause(t, f.targetTypes, q, f.where)} AND ${t}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      return `SELECT ${sub}.rid FROM idx_reference ${sub} WHERE ${pidIs(sub, types, f.param, q)} AND ${sub}.target_id IS NOT NULL AND (${sub}.target_id, ${sub}.target_type) IN (${targets})`;
    }
    case 'compartment': {
      // The rows of each compartment parameter; an aliased one's are those of the codes it stands for (the
      // target type is the compartment's: `patient` from `subject` adds no condition to a Patient compartment).
      const codesOf = (t: string, params: string[]) =>
        params.flatMap((c) => {
          const a = aliasOf(t, c);
          return !a ? [c] : a.targetType && a.targetType !== f.targetType ? [] : a.of;
        });
      const alts = Object.entries(f.paramsByType)
        .filter(([t, params]) => params.length && (!types.length || types.includes(t)))
        .map(([t, params]) => `(sp.resource_type = ${q.p(t)} AND sp.code IN (${q.list([...new Set(codesOf(t, params))])}))`);
      if (!alts.length) return undefined;
      let pids = `SELECT sp.pid FROM search_params sp WHERE ${alts.join(' OR ')}`;
      if (q.pids) {
        const ids = Object.entries(f.paramsByType)
          .filter(([t]) => !types.length || types.includes(t))
          .flatMap(([t, params]) => [...new Set(codesOf(t, params))].map((c) => q.pids!(t, c)))
          .filter((x): x is number => x !== undefined);
        pids = ids.length ? q.list(ids) : '-1';
      }
      return `SELECT ${sub}.rid FROM idx_reference ${sub} WHERE ${sub}.pid IN (${pids}) AND ${sub}.target_id = ${q.p(f.targetId)} AND ${sub}.target_type = ${q.p(f.targetType)}`;
    }
    case 'text':
      // The FTS row is the resource's (rowid = rid): the type is fixed by the outer query.
      return `SELECT rowid FROM idx_text WHERE idx_text MATCH ${q.p(ftsQuery(f.param === '_text' ? 't' : 'c', f.anyOf))}`;
    case 'near':
      return nearSelect(f, types, q, sub);
    default:
      return undefined;
  }
}

/**
 * Reference conditions in the terms of the indexes: `reference = 'Type/id'` becomes target_id = id AND
 * target_type = Type (the (pid, target_id, target_type) index), and `reference = <anything else>` gets
 * `target_id IS NULL` (the partial (pid, reference) index). Same rows: a stored reference has a target
 * exactly when its normalised text is a `Type/id` (normalizeReference), and then the text is `Type/id`.
 */
function onTargetColumns(c: Cond): Cond {
  switch (c.op) {
    case 'and':
    case 'or':
      return { op: c.op, conds: c.conds.map(onTargetColumns) };
    case 'not':
      return { op: 'not', cond: onTargetColumns(c.cond) };
    case 'eq': {
      if (c.field !== 'reference' || typeof c.value !== 'string') return c;
      const n = normalizeReference(c.value, (t) => fhirModel().isResourceType(t));
      if (n.targetType && n.targetId && n.reference === c.value)
        return { op: 'and', conds: [{ op: 'eq', field: 'targetId', value: n.targetId }, { op: 'eq', field: 'targetType', value: n.targetType }] };
      return { op: 'and', conds: [c, { op: 'isNull', field: 'targetId' }] };
    }
    default:
      return c;
  }
}

function badField(field: string): never {
  throw new Error(`index field ${field} has no column`);
}

function compositeSubquery(code: string, p: Predicate, types: string[], q: Sql, depth: number): string {
  if (p.type !== 'composite') throw badRequest(`${code}: composite value expected`);
  const parts = p.components.map((c, i) => {
    if (c.type === 'composite') throw badRequest(`${code}: nested composite`);
    const kind = kindOf(c.type);
    return { kind, alias: `c${depth}_${i}`, pred: c, i };
  });
  const first = parts[0]!;
  const joins = parts
    .slice(1)
    .map(
      (pt) =>
        ` JOIN ${TABLES[pt.kind].table}_part ${pt.alias} ON ${pt.alias}.rid = ${first.alias}.rid AND ${pt.alias}.n = ${first.alias}.n AND ${pidIs(pt.alias, types, `${code}$${pt.i}`, q)}`,
    )
    .join('');
  const where = [pidIs(first.alias, types, `${code}$0`, q)];
  for (const pt of parts)
    where.push(render(predicateCond(pt.pred, code), (field) => `${pt.alias}.${TABLES[pt.kind].cols[field] ?? badField(field)}`, q));
  return `SELECT ${first.alias}.rid FROM ${TABLES[first.kind].table} ${first.alias}${joins} WHERE ${where.join(' AND ')}`;
}

/** The index column holding a sort key of `kind` (a date's high end descending, its low end ascending). */
function sortColumn(kind: Kind, descending: boolean): string {
  switch (kind) {
    case 'token':
      return 'code';
    case 'reference':
      return 'reference';
    case 'date':
      return descending ? 'high' : 'low';
    default:
      return 'value';
  }
}

/** Sort key kinds whose key column leads a (pid, column) index: the walk reads that index in order (sortWalk). */
const WALKABLE: ReadonlySet<Kind> = new Set(['date', 'string', 'token', 'number', 'uri']);

/**
 * The SQL expression giving one sort key's value for the row `r`: `_id` and `_lastUpdated` from its columns,
 * a parameter from its index rows, those of the rowid `rowid` (the top-k gives the rid of an index row).
 */
function sortExpression(param: string, descending: boolean, types: string[], q: Sql, rowid = 'r.rowid'): string {
  if (param === '_id') return 'r.id';
  if (param === '_lastUpdated') return 'r.last_updated';
  const t = paramType(types, param);
  if (!t) throw badRequest(`Unknown sort parameter ${param}`);
  const kind = kindOf(t);
  const agg = descending ? 'MAX' : 'MIN';
  // The rid fixes the type: the parameter ids of every searched type can be offered at once. `+x.pid`: the
  // rows of this rid through the primary key, not a walk of the parameter's (pid, value) index.
  return `(SELECT ${agg}(x.${sortColumn(kind, descending)}) FROM ${TABLES[kind].table} x WHERE x.rid = ${rowid} AND ${pidIs('x', types, param, q, true)})`;
}

/**
 * Index rows a filter may have and still count as selective (drive the query with `rowid IN (...)`); a filter
 * with more is probed per row with `EXISTS`. By default it scales with the searched type (probeBound);
 * `DSP_SEARCH_PROBE_BOUND` fixes it (0: probe every filter that can be probed, as the tests do to cover both
 * forms on small data).
 */
const FIXED_PROBE_BOUND = (() => {
  const v = Number(process.env.DSP_SEARCH_PROBE_BOUND);
  return process.env.DSP_SEARCH_PROBE_BOUND && Number.isInteger(v) && v >= 0 ? v : undefined;
})();
/** The bound when the type's size is not known (several types, no connection). */
const DEFAULT_PROBE_BOUND = 2000;
const MIN_PROBE_BOUND = 200;
const MAX_PROBE_BOUND = 20_000;

/**
 * The probe bound for a search of `types` returning `count` rows. Driving by a filter with n matches costs
 * about n row reads (then a sort); walking the type in order and probing each row costs about
 * rows × (count + 1) / n probes until a page is full. They cross near n = √(rows × (count + 1)): 3,100 for
 * 470,000 Observations and a page of 20 (measured crossover 3,000-4,000), 1,000 for 52,000 Encounters. Kept
 * between 200 (small databases: the plans hardly matter) and 20,000 (the cost of the bounded count).
 */
function probeBound(pids: ParamIds, types: string[], count: number): number {
  if (FIXED_PROBE_BOUND !== undefined) return FIXED_PROBE_BOUND;
  if (!pids.typeRows || !types.length) return DEFAULT_PROBE_BOUND;
  let rows = 0;
  for (const t of types) rows += pids.typeRows(t);
  return Math.min(MAX_PROBE_BOUND, Math.max(MIN_PROBE_BOUND, Math.round(Math.sqrt(rows * (count + 1)))));
}

/**
 * The bounded counts of one compile (sortWalk, planProbes, planDateSpan): `SELECT count(*)` over at most `limit`
 * of a filter's index rows (or a date span's boxes), each kept with its limit, so that no filter is counted
 * again where an earlier count answers: an exact count (under its limit) answers any limit, a count that
 * reached its limit any lower one (4 × the bound answers 2 × the bound).
 */
class Counts {
  private readonly known = new Map<Filter | string, { n: number; limit: number }>();
  private readonly pids: ParamIds;
  constructor(pids: ParamIds) {
    this.pids = pids;
  }
  /** min(rows, limit) for the query `select` builds (run only when no earlier count answers). */
  upTo(key: Filter | string, limit: number, select: () => { sql: string; params: SqlParam[] }): number {
    const k = this.known.get(key);
    if (k && (k.n < k.limit || k.limit >= limit)) return Math.min(k.n, limit);
    const { sql, params } = select();
    const n = this.pids.countUpTo!(`SELECT count(*) AS n FROM (${sql} LIMIT ${limit})`, params);
    this.known.set(key, { n, limit });
    return n;
  }
  /** min(index rows, limit) of a filter on `types` (always the same types for one Filter); undefined without a rowid form. */
  filter(f: Filter, types: string[], limit: number): number | undefined {
    if (!selectsRowids(f)) return undefined;
    let none = false;
    const n = this.upTo(f, limit, () => {
      const q = new Sql(this.pids);
      const sql = rowidSelect(f, types, q);
      none = sql === undefined;
      return { sql: sql ?? 'SELECT 1 WHERE 0', params: q.params };
    });
    return none ? undefined : n;
  }
}

/** Whether a filter has a probe form (positive, not composite). */
function probeable(f: Filter): boolean {
  return (f.kind === 'param' && !f.not && f.type !== 'composite') || f.kind === 'has';
}

/**
 * Chooses the filters compiled as per-row `EXISTS` probes. `rowid IN (...)` materialises the whole match set
 * of a filter, then probes and sorts it: right for a selective filter (a few rows), slow for a common one (a
 * frequent code: 50,000 rows to return 20). A bounded count of the filter's index rows (at most probeBound
 * read) tells them apart. With a selective filter the query is driven by it and the common ones are probed
 * on its rows; with none and the default order (type, id), SQLite walks the type's (resource_type, id)
 * index in order, probes each row and stops at count + 1 matches. Sorted searches without a selective filter
 * keep the `IN` form (every match needs its sort key anyway). `_has` counts as selective when one of its
 * source filters is; probed, its source filters are probed too (the sources come one by one). A common filter
 * under 2 × the bound is tested by its set of rowids (`sets`; the `IN` form looked up, not driven from) on the
 * walk of the type's index, and so is a source filter of a probed `_has` under 4 × the bound, on each
 * reference.
 */
function planProbes(request: SearchRequest, pids: ParamIds | undefined, counts: Counts | undefined): { probe: Set<Filter>; span?: DateSpan; sets?: Set<Filter> } {
  const probe = new Set<Filter>();
  if (!pids?.countUpTo || !counts || request.count <= 0) return { probe };
  const span = planDateSpan(request, pids, counts);
  // The source filters of a probed `_has` that count between the bound and 4 × the bound keep their `IN` form:
  // SQLite builds their set of rids once (under 5 ms for 12,000), and each target's references are looked up in
  // it instead of probed one by one (a patient has ~360 Observations: a target without a match cost ~0.5 ms,
  // ~0.1 ms with the set). Above 4 × the bound, the set costs more than probing targets, who then mostly match.
  // Likewise the common filters under 2 × the bound of a walk of the type's (resource_type, id) index (no
  // driver, no sort): each row is looked up in the set (~0.1 µs with SQLite's Bloom filter, ~0.35 µs a rid to
  // build) instead of probed (~1.5-3 µs); the crossover is near 3 × the bound, and counting further costs
  // (0.35 ms a bound's worth of index rows on the 1M database).
  const inSet = new Set<Filter>();
  const common = (f: Filter, types: string[], source = false): boolean => {
    if (f.kind === 'has') return !f.where.some((w) => probeable(w) && !common(w, [f.sourceType], true));
    const bound = probeBound(pids, types, request.count);
    if (bound === 0) return true;
    // A sorted search never tests a filter by its set (only `_has` sources): whether it is common is enough.
    const limit = (source ? 4 : request.sort.length ? 1 : 2) * bound;
    const n = counts.filter(f, types, limit);
    if (n === undefined) return false;
    if (n >= bound && n < limit) inSet.add(f);
    return n >= bound;
  };
  const probeAll = (f: Filter) => {
    probe.add(f);
    if (f.kind === 'has') for (const w of f.where) if (probeable(w) && !inSet.has(w)) probeAll(w);
  };
  const candidates = request.filters.filter(probeable);
  // The filters a date span stands for are checked on its candidates (not counted: it is small).
  const commons = candidates.filter((f) => span?.filters.includes(f) || common(f, request.resourceTypes));
  // Probing costs a read of the driving rows: only under drivers known to be small (estimated, a date span,
  // `_id`, a patient's compartment). Under a chain (its size unknown: a common family name has thousands of
  // Observations) the common filters keep `IN`, whose set SQLite screens with a Bloom filter before reading.
  const small = !!span || commons.length < candidates.length || request.filters.some((f) => f.kind === 'id' || f.kind === 'compartment');
  const other = request.filters.some((f) => !probeable(f) && f.kind !== 'id' && f.kind !== 'compartment' && selectsRowids(f));
  if (small) for (const f of commons) probeAll(f);
  else if (!other && !request.sort.length) {
    const sets = new Set<Filter>();
    for (const f of commons) {
      if (f.kind === 'param' && inSet.has(f)) sets.add(f);
      else probeAll(f);
    }
    return { probe, span, sets };
  }
  return { probe, span };
}

/** A two-sided bound on the date span of one parameter (idx_date_span), and the filters that imply it. */
interface DateSpan {
  pid: number;
  /** The span reaches `from` (its high >= from) and starts by `to` (its low <= to); epoch ms. */
  from: number;
  to: number;
  filters: Filter[];
}

/**
 * The bound on a resource's date span (its values' earliest and latest instants) that a date filter implies:
 * a value matching the predicate lies within the span, so the span reaches the value's high (>= `from`) or
 * starts by its low (<= `to`). ORed predicates: the loosest of each side; `ne` implies nothing.
 */
function dateSpanBounds(anyOf: Predicate[]): { from?: number; to?: number } {
  let from: number | undefined = Infinity;
  let to: number | undefined = -Infinity;
  for (const p of anyOf) {
    if (p.type !== 'date') return {};
    const lo = Date.parse(p.low);
    const hi = Date.parse(p.high);
    let f: number | undefined;
    let t: number | undefined;
    switch (p.prefix) {
      case 'eq': // low >= s.low and high <= s.high: the value is within the search range
      case 'ap': // overlaps the (widened) search range
        [f, t] = [lo, hi];
        break;
      case 'ge': // high >= s.low (implied by ge, see conditions.ts)
        f = lo;
        break;
      case 'gt': // high > s.high
      case 'sa': // low > s.high
        f = hi;
        break;
      case 'le': // low <= s.high
        t = hi;
        break;
      case 'lt': // low < s.low
      case 'eb': // high < s.low
        t = lo;
        break;
      case 'ne':
        break;
    }
    from = from === undefined || f === undefined || Number.isNaN(f) ? undefined : Math.min(from, f);
    to = to === undefined || t === undefined || Number.isNaN(t) ? undefined : Math.max(to, t);
  }
  return { from, to };
}

/**
 * The date span that drives the query: for a parameter of the (one) searched type whose date filters together
 * bound its span on both sides (`date=geX&date=ltY`, `date=eqX`, `date=apX`), the R*Tree box query, when it
 * yields fewer than the probe bound's entries (the least of them when several parameters qualify).
 */
function planDateSpan(request: SearchRequest, pids: ParamIds, counts: Counts): DateSpan | undefined {
  if (request.resourceTypes.length !== 1 || !pids.countUpTo) return undefined;
  const type = request.resourceTypes[0]!;
  const byParam = new Map<string, { from: number; to: number; filters: Filter[] }>();
  for (const f of request.filters) {
    if (f.kind !== 'param' || f.type !== 'date' || f.not) continue;
    const b = dateSpanBounds(f.anyOf);
    if (b.from === undefined && b.to === undefined) continue;
    const e = byParam.get(f.param) ?? { from: -Infinity, to: Infinity, filters: [] };
    if (b.from !== undefined) e.from = Math.max(e.from, b.from);
    if (b.to !== undefined) e.to = Math.min(e.to, b.to);
    e.filters.push(f);
    byParam.set(f.param, e);
  }
  let best: { span: DateSpan; n: number } | undefined;
  const bound = probeBound(pids, request.resourceTypes, request.count);
  for (const [param, e] of byParam) {
    if (!Number.isFinite(e.from) || !Number.isFinite(e.to)) continue;
    if (rowCodes(type, param)[0] !== param) continue;
    const pid = pids(type, param);
    if (pid === undefined || pid >= SPAN_PID_LIMIT) continue;
    const span: DateSpan = { pid, from: e.from, to: e.to, filters: e.filters };
    const box = spanBox(span, 'ds', (v) => String(v));
    const n = counts.upTo(`span ${box}`, bound, () => ({ sql: `SELECT 1 FROM idx_date_span ds WHERE ${box}`, params: [] }));
    if (n < bound && (!best || n < best.n)) best = { span, n };
  }
  return best?.span;
}

/** The R*Tree box condition of a span (`value` renders a bound value: a placeholder or a literal). */
function spanBox(span: DateSpan, alias: string, value: (v: number) => string): string {
  return `${alias}.pid0 = ${value(span.pid)} AND ${alias}.pid1 = ${value(span.pid)} AND ${alias}.low <= ${value(span.to)} AND ${alias}.high >= ${value(span.from)}`;
}

export interface CompiledSearch {
  /** Selects resource_type, id, version, last_updated, deleted, content (+ s0..sN sort values). */
  sql: string;
  params: SqlParam[];
  /** `SELECT COUNT(*) AS n ...` when the request asks for a total. */
  countSql?: string;
  countParams?: SqlParam[];
  /** Limit used (count + 1: one extra row tells whether there is a next page). */
  limit: number;
  /** Cursor of the page that follows `row` (the last row of the current page). */
  cursorAfter(row: unknown): string;
  /**
   * The page from the fetched rows (a "before" cursor fetches in the reversed order: the page is turned
   * back) with its `next` and `previous` cursors (src/store/cursor.ts pageOf).
   */
  paginate<R>(rows: R[]): { page: R[]; next?: string; previous?: string };
}

/**
 * Compiles a search. Rows come back in the requested order (ties broken by resource type and id); at most
 * `count + 1` rows: when the extra row is there, `cursorAfter(lastRowOfPage)` is the next page's cursor.
 */
export function compileSearch(request: SearchRequest, opts: { includeContent?: boolean; paramIds?: ParamIds } = {}): CompiledSearch {
  const types = request.resourceTypes;
  const whereOf = (q: Sql) => {
    const where: string[] = [typesClause('r', types, q, request.filters.filter((f) => !q.probe.has(f) && !q.sets.has(f)), !!q.span)];
    // A date span: the candidates of the R*Tree box (a superset of the matches of its filters, probed on them).
    if (q.span) where.push(`r.rowid IN (SELECT ds.id >> 21 FROM idx_date_span ds WHERE ${spanBox(q.span, 'ds', (v) => q.p(v))})`);
    const sets: string[] = [];
    const probes: string[] = [];
    for (const f of request.filters) {
      // A set is looked up (`+`: not driven from), before the probes.
      if (q.sets.has(f)) sets.push(compileFilter(f, 'r', types, q, 1, '+r.rowid'));
      else (q.probe.has(f) ? probes : where).push(compileFilter(f, 'r', types, q, 1));
    }
    probes.unshift(...sets);
    // Probes first, then the row: walking the (resource_type, id) index, SQLite reads a `resources` row
    // (large: its content is inline) only when a WHERE term needs a column of it, and it tests plain terms
    // such as `deleted = 0` before sub-query terms. CASE fixes the order: the row is read for matches only.
    if (probes.length) where.push(`CASE WHEN ${probes.join(' AND ')} THEN r.deleted = 0 ELSE 0 END`);
    else where.push('r.deleted = 0');
    return where.join(' AND ');
  };
  const content = opts.includeContent === false ? 'NULL AS content' : 'r.content';
  const limit = request.count + 1;
  const cursor = request.cursor ? decodePageCursor(request.cursor, request.sort.length) : undefined;
  const position = (row: unknown): PagePosition => {
    const r = row as Record<string, unknown>;
    return { v: request.sort.map((_k, i) => (r[`s${i}`] ?? null) as Scalar | null), t: r.resource_type as string, i: r.id as string };
  };
  const compiled = (sql: string, params: SqlParam[]): CompiledSearch => {
    const c: CompiledSearch = {
      sql,
      params,
      limit,
      cursorAfter(row: unknown): string {
        return encodePageCursor({ ...position(row), before: false, inclusive: false });
      },
      paginate: (rows) => pageOf(rows, request.count, cursor, position),
    };
    if (request.total !== 'none') {
      const cq = new Sql(opts.paramIds);
      c.countSql = `SELECT COUNT(*) AS n FROM resources r WHERE ${whereOf(cq)}`;
      c.countParams = cq.params;
    }
    return c;
  };
  // A sort whose filters are all common: the sort key's index walked in order (sortWalk), first page or later.
  const counts = opts.paramIds?.countUpTo ? new Counts(opts.paramIds) : undefined;
  const walk = sortWalk(request, opts.paramIds, counts, cursor, content, limit);
  if (walk) return compiled(walk.sql, walk.params);
  // First page of a sort over one filter: the index-only top-k (topKSearch), which needs none of the planning
  // below (its bounded counts and R*Tree count would be thrown away).
  const topK = cursor ? undefined : topKSearch(request, opts.paramIds, content, limit);
  if (topK) return compiled(topK.sql, topK.params);
  const plan = planProbes(request, opts.paramIds, counts);
  const q = new Sql(opts.paramIds, plan.probe, plan.span, plan.sets);
  const sortCols = request.sort.map((k, i) => `${sortExpression(k.param, k.descending, types, q)} AS s${i}`);
  const select = `SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, ${content}${sortCols.map((c) => ', ' + c).join('')} FROM resources r WHERE ${whereOf(q)}`;
  // A "before" cursor (previous link) compares reversed and fetches in the reversed order.
  const back = !!cursor?.before;
  const dir = (descending: boolean) => (descending !== back ? ' DESC' : '');
  let sql: string;
  if (!request.sort.length) {
    let keyset = '';
    if (cursor) {
      const op = `${back ? '<' : '>'}${cursor.inclusive ? '=' : ''}`;
      keyset = ` AND (r.resource_type, r.id) ${op} (${q.p(cursor.t)}, ${q.p(cursor.i)})`;
    }
    sql = `${select}${keyset} ORDER BY r.resource_type${dir(false)}, r.id${dir(false)} LIMIT ${q.p(limit)}`;
  } else {
    let keyset = '';
    if (cursor) {
      const keys: KeysetKey[] = request.sort.map((k, i) => ({ field: `s${i}`, descending: k.descending, last: cursor.v[i]! }));
      keys.push({ field: 'resource_type', descending: false, last: cursor.t }, { field: 'id', descending: false, last: cursor.i });
      keyset = ` WHERE ${render(cursorCond(keys, cursor, keysetCond), (f) => `q.${f}`, q)}`;
    }
    const order = request.sort.map((k, i) => `q.s${i}${dir(k.descending)}`).join(', ');
    sql = `SELECT * FROM (${select}) q${keyset} ORDER BY ${order}, q.resource_type${dir(false)}, q.id${dir(false)} LIMIT ${q.p(limit)}`;
  }
  return compiled(sql, q.params);
}

/**
 * The first page of `[type]?param=x&_sort=[-]key` (one type, one positive parameter filter, one sort key on a
 * parameter): the sort key of every match is computed from the index tables alone (the matches' rids from the
 * filter's index, each key through the sort parameter's primary key), then only the matches that can be on the
 * page are read from `resources`: those whose key is at least as good as the (count + 1)-th best key (all of
 * its ties, the (type, id) tie-break needs them; all matches when there is no such key or it is missing). The
 * general plan reads every match's row before sorting. Same rows, same order, same columns; later pages
 * (cursor) take the general plan, whose keyset conditions read the same keys.
 */
function topKSearch(request: SearchRequest, pids: ParamIds | undefined, content: string, limit: number): { sql: string; params: SqlParam[] } | undefined {
  const [f, ...more] = request.filters;
  const [key, ...keys] = request.sort;
  const types = request.resourceTypes;
  if (!pids || !f || more.length || !key || keys.length || types.length !== 1 || request.count <= 0) return undefined;
  if (f.kind !== 'param' || f.not || f.type === 'composite' || key.param === '_id' || key.param === '_lastUpdated') return undefined;
  const q = new Sql(pids);
  const rids = rowidSelect(f, types, q);
  if (rids === undefined) return undefined;
  const sortKey = sortExpression(key.param, key.descending, types, q, 'k.rid');
  const order = key.descending ? ' DESC' : '';
  // Missing keys sort first ascending, last descending (SQLite's NULL order, as in the general plan).
  const onPage = key.descending ? 'm.s0 >= (SELECT s0 FROM t)' : 'm.s0 IS NULL OR m.s0 <= (SELECT s0 FROM t)';
  const sql =
    `WITH m AS MATERIALIZED (SELECT k.rid AS rid, ${sortKey} AS s0 FROM (SELECT DISTINCT rid FROM (${rids})) k), ` +
    `t AS (SELECT m.s0 AS s0 FROM m ORDER BY m.s0${order} LIMIT 1 OFFSET ${q.p(request.count)}) ` +
    `SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, ${content}, m.s0 AS s0 FROM m JOIN resources r ON r.rowid = m.rid ` +
    `WHERE ((SELECT s0 FROM t) IS NULL OR ${onPage}) AND r.resource_type = ${q.p(types[0]!)} AND r.deleted = 0 ` +
    `ORDER BY s0${order}, r.resource_type, r.id LIMIT ${q.p(limit)}`;
  return { sql, params: q.params };
}

/**
 * A page of `[type]?p1=a&p2=b&_sort=[-]key` whose filters are all common (or absent), by walking the sort
 * key's index in the page's order: `idx_date (pid, high)` downwards for `-date`. Each index row is a candidate
 * when it holds its resource's key (the highest value descending, the lowest ascending: sortExpression's MAX /
 * MIN; one row per resource) and the resource passes every filter, probed on its rid (`EXISTS` through the
 * filter table's primary key); the walk stops at count + 1 candidates, then the rows tied with the last one
 * that can still reach the page are added (the first by id: the (type, id) tie-break), and only those rows are
 * read. The top-k and the general
 * plan compute the key of every match (18,000 look-ups for a frequent code); with n matches among R keyed
 * rows the walk visits about R × (count + 1) / n index rows, fewer when n is above the probe bound (the same
 * crossover, √(R × (count + 1))), so every filter must count at least the bound (planProbes' bounded count).
 *
 * Where it applies: one type, one sort key on a parameter of a walkable kind (WALKABLE), filters that are
 * positive, non-composite parameters; page 1 descending (missing keys sort last: after the walk), or a page
 * after or before a cursor holding a key (the walk starts at it). The walk runs here, when the search is
 * compiled (the store runs the compiled SQL at once), and gives up, leaving the page to the top-k or the
 * general plan, when it finds fewer than count + 1 rows walking down (the page ends in resources without the
 * key, which only those plans order) or when it reaches its extent: at most as many index rows as the
 * filters' estimated matches (counted up to 4 × the bound), so that a walk through matches clustered at the
 * far end of the order (Synthea's panels: 8 to 16 times the rows independence predicts) costs at most about
 * what the top-k would. Results: the general plan's rows, in its order.
 */
function sortWalk(
  request: SearchRequest,
  pids: ParamIds | undefined,
  counts: Counts | undefined,
  cursor: PageCursor | undefined,
  content: string,
  limit: number,
): { sql: string; params: SqlParam[] } | undefined {
  const [key, ...keys] = request.sort;
  const types = request.resourceTypes;
  if (!pids?.rows || !counts || !key || keys.length || types.length !== 1 || request.count <= 0) return undefined;
  const type = types[0]!;
  if (key.param === '_id' || key.param === '_lastUpdated') return undefined;
  const kind = paramType(types, key.param);
  if (!kind || !WALKABLE.has(kind as Kind)) return undefined;
  const column = sortColumn(kind as Kind, key.descending);
  if (!request.filters.every((f) => f.kind === 'param' && !f.not && f.type !== 'composite' && f.type in TABLES)) return undefined;
  const back = !!cursor?.before;
  // Walking down the index: descending forwards, ascending backwards (a previous link). Missing keys are
  // lowest: a walk up from a cursor's key never meets them, a walk down ends before them.
  const down = key.descending !== back;
  const from = cursor?.v[0];
  if (cursor ? from === null || from === undefined : !down) return undefined;
  // An aliased key has the rows of two parameters: the top-k or the general plan takes it.
  if (rowCodes(type, key.param)[0] !== key.param) return undefined;
  const sortPid = pids(type, key.param);
  if (sortPid === undefined) return undefined;
  const bound = probeBound(pids, types, request.count);
  // The matches, estimated: the least of the filters' counts, each up to 4 × the bound. Under 4 × the bound a
  // filter is tested by its set of rids (its `IN` form: built once, ~0.35 µs a rid, then ~0.2 µs a candidate),
  // above by a probe per candidate (~3 µs: the index rows of a frequent code are met within a few hundred).
  let matches = Infinity;
  const inSet = new Set<Filter>();
  // With several filters each is first counted up to the bound only: a selective one (a patient's) ends the walk
  // before a common one is counted further; planProbes, which then only asks whether a filter is common (a
  // sorted search), reuses these counts.
  if (bound > 0 && request.filters.length > 1) for (const f of request.filters) if (counts.filter(f, types, bound)! < bound) return undefined;
  if (bound > 0)
    for (const f of request.filters) {
      const n = counts.filter(f, types, 4 * bound)!;
      if (n < bound) return undefined;
      if (n < 4 * bound) inSet.add(f);
      matches = Math.min(matches, n);
    }
  const table = TABLES[kind as Kind].table;
  const dir = down ? ' DESC' : '';
  const cmp = down ? '<=' : '>=';
  // The walk's extent in index rows (none without a filter: every row is a candidate): about the top-k's cost.
  const extent = Number.isFinite(matches) ? (inSet.size ? 16 : 1) * matches : undefined;
  // The candidates among the index rows `e` that `range` selects (`d`: id, pid, n, key).
  const walk = (range: (q: Sql) => string, tail: string, window?: number): { sql: string; params: SqlParam[] } => {
    const q = new Sql(pids, new Set(request.filters.filter((f) => !inSet.has(f))));
    let rows = `SELECT e.rid AS rid, e.pid AS pid, e.n AS n, e.${column} AS k FROM ${table} e WHERE e.pid = ${q.p(sortPid)} AND e.${column} IS NOT NULL AND ${range(q)}`;
    // A window of the index in order: SQLite reads it as a co-routine in its order and stops with the walk.
    if (window !== undefined) rows += ` ORDER BY e.${column}${dir} LIMIT ${q.p(window)}`;
    // Sets first (cheap), then probes; `+d.rid`: a set is looked up, never driven from.
    const test: string[] = [...request.filters.filter((f) => inSet.has(f)), ...request.filters.filter((f) => !inSet.has(f))].map((f) => compileFilter(f, 'd', types, q, 1, '+d.rid'));
    // The resource's key: no other value of it is better (nor an equal one numbered lower). Through the primary
    // key (rid, pid): `+` keeps the planner off the (pid, value) index, which it takes when the walk's value is
    // a constant (the ties' walk) and which then reads every better value of the parameter.
    const better = key.descending ? '>' : '<';
    test.push(`NOT EXISTS (SELECT 1 FROM ${table} d2 WHERE d2.rid = d.rid AND d2.pid = d.pid AND (+d2.${column} ${better} d.k OR (+d2.${column} = d.k AND d2.n < d.n)))`);
    if (cursor) {
      // At the cursor's key, the (type, id) tie-break (ascending; reversed for a previous link).
      const op = `${back ? '<' : '>'}${cursor.inclusive ? '=' : ''}`;
      const tie = type === cursor.t ? `(SELECT t.id ${op} ${q.p(cursor.i)} FROM resources t WHERE t.rowid = d.rid)` : (back ? type < cursor.t : type > cursor.t) ? '1' : '0';
      test.push(`(d.k <> ${q.p(from!)} OR ${tie})`);
    }
    // Tests first, the row last (read for candidates only): live and of the searched type.
    const live = `(SELECT r.deleted = 0 FROM resources r WHERE r.rowid = d.rid AND r.resource_type = ${q.p(type)})`;
    const sql = `SELECT d.rid AS rid, d.k AS k FROM (${rows}) d WHERE CASE WHEN ${test.join(' AND ')} THEN ${live} ELSE 0 END${tail}`;
    return { sql, params: q.params };
  };
  const start = (q: Sql, alias: string) => (cursor ? `${alias}.${column} ${cmp} ${q.p(from!)}` : '1');
  const first = walk((q) => start(q, 'e'), ` ORDER BY d.k${dir} LIMIT ${limit}`, extent);
  const found = pids.rows(first.sql, first.params);
  const rids: SqlParam[] = [];
  if (found.length === limit) {
    // The rows tied with the last one found: only `limit - before` of them can reach the page, the first in the
    // (type, id) tie-break (one type: by id; reversed for a previous link). The ties query sorts them by id and
    // keeps those (SQLite's sorter with a LIMIT), so a key of few values (status, gender, a code: thousands of
    // ties) reads every tie once in SQL but never carries them through JS or the page query (20,000
    // Observations: `_sort=-status` 7 ms CPU against 18-22 with every tie kept).
    const last = found[found.length - 1]!.k!;
    for (const r of found) if (r.k !== last) rids.push(r.rid!);
    const byId = ` ORDER BY (SELECT t.id FROM resources t WHERE t.rowid = d.rid)${back ? ' DESC' : ''} LIMIT ${limit - rids.length}`;
    const ties = walk((q) => `e.${column} = ${q.p(last)}`, byId);
    for (const r of pids.rows(ties.sql, ties.params)) rids.push(r.rid!);
  } else if (!down) {
    // Walking up to the end of the index (not stopped by the extent), these are all the rows: the last page
    // of an ascending sort, the first of a descending one reached back.
    if (extent !== undefined) {
      const q = new Sql(pids);
      const beyond = `SELECT 1 AS k FROM ${table} e WHERE e.pid = ${q.p(sortPid)} AND e.${column} IS NOT NULL AND ${start(q, 'e')} ORDER BY e.${column}${dir} LIMIT 1 OFFSET ${q.p(extent)}`;
      if (pids.rows(beyond, q.params).length) return undefined;
    }
    for (const r of found) rids.push(r.rid!);
  } else return undefined;
  // The page in the general plan's order (a previous link fetches reversed, like the general plan).
  const q = new Sql(pids);
  const order = (descending: boolean) => (descending !== back ? ' DESC' : '');
  const sortKey = sortExpression(key.param, key.descending, types, q);
  const sql =
    `WITH w AS (SELECT r.rowid AS rid, r.resource_type AS t, r.id AS i, ${sortKey} AS s0 FROM resources r WHERE r.rowid IN (SELECT value FROM json_each(${q.p(JSON.stringify(rids))})) AND r.deleted = 0 ` +
    `ORDER BY s0${order(key.descending)}, t${order(false)}, i${order(false)} LIMIT ${q.p(limit)}) ` +
    `SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, ${content}, w.s0 AS s0 FROM w JOIN resources r ON r.rowid = w.rid ORDER BY w.s0${order(key.descending)}, w.t${order(false)}, w.i${order(false)}`;
  return { sql, params: q.params };
}

// _include / _revinclude -----------------------------------------------------------------------------------

const MAX_INCLUDE_ROUNDS = 4;
const MAX_INCLUDED = 1000;

/**
 * Resources to add to a page for the request's `_include` / `_revinclude` specs (live ones only, no
 * duplicates of the page or of each other). `:iterate` specs are re-applied to what was added, up to four
 * rounds and 1,000 resources.
 */
export function resolveIncludes(db: DatabaseSync, request: SearchRequest, resources: Resource[]): Resource[] {
  if (!request.include.length || !resources.length) return [];
  const seen = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
  const included: Resource[] = [];
  let frontier = resources;
  for (let round = 0; round < MAX_INCLUDE_ROUNDS && frontier.length && included.length < MAX_INCLUDED; round++) {
    const specs = request.include.filter((s) => round === 0 || s.iterate);
    if (!specs.length) break;
    const added: Resource[] = [];
    for (const spec of specs) {
      for (const res of fetchInclude(db, spec, frontier)) {
        const key = `${res.resourceType}/${res.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        added.push(res);
        if (included.length + added.length >= MAX_INCLUDED) break;
      }
    }
    included.push(...added);
    frontier = added;
  }
  return included;
}

function fetchInclude(db: DatabaseSync, spec: IncludeSpec, from: Resource[]): Resource[] {
  const q = new Sql();
  const keys = spec.reverse ? from : from.filter((r) => spec.sourceType === '*' || r.resourceType === spec.sourceType);
  if (!keys.length) return [];
  let sql: string;
  // The source's parameter(s): `param` of `sourceType`, or every parameter of it / of any type.
  const conds: string[] = ["sp.kind = 'reference'"];
  if (spec.sourceType !== '*') conds.push(`sp.resource_type = ${q.p(spec.sourceType)}`);
  if (spec.param !== '*') conds.push(`sp.code = ${q.p(spec.param)}`);
  let param = ` AND x.pid IN (SELECT sp.pid FROM search_params sp WHERE ${conds.join(' AND ')})`;
  // An aliased parameter's rows are those of the codes it stands for (`patient`: `subject` rows to a Patient).
  // (`*` takes every reference parameter of the source: the rows of what an alias stands for are among them.)
  if (spec.param !== '*') {
    const sources = spec.sourceType !== '*' ? [spec.sourceType] : spec.param === PATIENT_FROM.code ? patientAliasTypes() : Object.keys(ALIAS_CANDIDATES);
    const arms: string[] = [];
    for (const t of sources) {
      const a = aliasOf(t, spec.param);
      if (!a) continue;
      const own = `x.pid IN (SELECT sp.pid FROM search_params sp WHERE sp.resource_type = ${q.p(t)} AND sp.code IN (${q.list([...a.of])}))`;
      arms.push(a.targetType ? `(${own} AND x.target_type = ${q.p(a.targetType)})` : `(${own})`);
    }
    if (arms.length) param = ` AND (${[param.slice(5), ...arms].join(' OR ')})`;
  }
  const target = spec.targetType ? ` AND x.target_type = ${q.p(spec.targetType)}` : '';
  if (!spec.reverse) {
    const pairs = keys.map((r) => `(${q.p(r.resourceType)}, ${q.p(r.id ?? '')})`).join(', ');
    sql = `SELECT DISTINCT t.content FROM idx_reference x JOIN resources t ON t.resource_type = x.target_type AND t.id = x.target_id AND t.deleted = 0 WHERE x.rid IN (SELECT f.rowid FROM resources f WHERE (f.resource_type, f.id) IN (VALUES ${pairs}))${param}${target}`;
  } else {
    const pairs = keys.map((r) => `(${q.p(r.id ?? '')}, ${q.p(r.resourceType)})`).join(', ');
    sql = `SELECT DISTINCT s.content FROM idx_reference x JOIN resources s ON s.rowid = x.rid AND s.deleted = 0 WHERE x.target_id IS NOT NULL AND (x.target_id, x.target_type) IN (VALUES ${pairs})${param}${target}`;
  }
  const rows = db.prepare(sql).all(...(q.params as SQLInputValue[])) as { content: string }[];
  return rows.map((r) => JSON.parse(r.content) as Resource);
}

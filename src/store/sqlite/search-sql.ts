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
 * with an opaque cursor.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { Resource } from 'fhir/r4';
import { badRequest, notSupported } from '../../fhir/outcome.ts';
import { keysetCond, predicateCond, type Cond, type KeysetKey, type Scalar } from '../../search/conditions.ts';
import { cursorCond, decodePageCursor, encodePageCursor, pageOf, type PagePosition } from '../cursor.ts';
import { searchParam } from '../../search/registry.ts';
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

/** Version of the index schema, kept in `PRAGMA user_version` by the store. */
export const SEARCH_SCHEMA_VERSION = 5;
/**
 * Older schema versions the store opens as they are: 4 lacks only the `_text` / `_content` / `near` tables,
 * which installSearchSchema creates empty (`POST [base]/$reindex` fills them).
 */
export const UPGRADABLE_SEARCH_SCHEMAS: readonly number[] = [4];

/** Creates the index tables and their indexes (idempotent). */
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
  for (const s of stmts) db.exec(s);
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
  return /^idx_text_(data|idx|docsize|config|content)$/.test(name);
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

function nearCondition(f: Extract<Filter, { kind: 'near' }>, alias: string, types: string[], q: Sql, sub: string): string {
  const alts = f.anyOf.map((pt) => {
    const [lo, hi] = latitudeBand(pt.latitude, pt.distanceKm);
    const lat0 = q.p(pt.latitude);
    const lon0 = q.p(pt.longitude);
    // Haversine, as in src/search/text.ts haversineKm (SQLite's math functions).
    const d = `2 * ${EARTH_RADIUS_KM} * asin(min(1, sqrt(power(sin(radians(${sub}.latitude - ${lat0}) / 2), 2) + cos(radians(${lat0})) * cos(radians(${sub}.latitude)) * power(sin(radians(${sub}.longitude - ${lon0}) / 2), 2))))`;
    return `(${sub}.latitude BETWEEN ${q.p(lo)} AND ${q.p(hi)} AND ${d} <= ${q.p(pt.distanceKm)})`;
  });
  return `${alias}.rowid IN (SELECT ${sub}.rid FROM idx_position ${sub} WHERE ${pidIs(`${sub}.pid`, types, f.param, q)} AND (${alts.join(' OR ')}))`;
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
  /** One-row INSERT per kind, into the main table and into the _part table. */
  insert: Record<Kind, StatementSync>;
  insertPart: Record<Kind, StatementSync>;
  remove: StatementSync[];
  rowid: StatementSync;
  findParam: StatementSync;
  addParam: StatementSync;
  /** resource type -> code -> pid. */
  pids: Map<string, Map<string, number>>;
}
const prepared = new WeakMap<DatabaseSync, Prepared>();

function statements(db: DatabaseSync): Prepared {
  let p = prepared.get(db);
  if (!p) {
    p = {
      db,
      insert: insertStatements(db, ''),
      insertPart: insertStatements(db, '_part'),
      remove: [...KINDS.flatMap((k) => [TABLES[k].table, `${TABLES[k].table}_part`]).map((t) => db.prepare(`DELETE FROM ${t} WHERE rid = ?`)), ...specialRemoveStatements(db)],
      rowid: db.prepare('SELECT rowid AS rid FROM resources WHERE resource_type = ? AND id = ?'),
      findParam: db.prepare('SELECT pid FROM search_params WHERE resource_type = ? AND code = ?'),
      addParam: db.prepare('INSERT INTO search_params (resource_type, code, kind) VALUES (?, ?, ?)'),
      pids: new Map(),
    };
    prepared.set(db, p);
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
 * Forgets the cached parameter ids of a connection: call after a ROLLBACK (ids created in the rolled-back
 * transaction are gone) or after the tables were emptied.
 */
export function resetSearchCaches(db: DatabaseSync): void {
  prepared.get(db)?.pids.clear();
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
  return ids;
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
  if (!fresh) for (const st of p.remove) st.run(r);
  let n = 0;
  let special: IndexValue[] | undefined;
  for (const v of values) {
    n++;
    if (v.type === 'text' || v.type === 'position') (special ??= []).push(v);
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
}

/** Removes every index row of one resource (on delete); `rid` as in writeIndex. */
export function deleteIndex(db: DatabaseSync, resourceType: string, id: string, rid?: number): void {
  const p = statements(db);
  const r = rid ?? (p.rowid.get(resourceType, id) as { rid: number } | undefined)?.rid;
  if (r === undefined) return;
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
}

class Sql {
  readonly params: SqlParam[] = [];
  readonly pids: ParamIds | undefined;
  /** Filters compiled as a correlated `EXISTS` probe of the row instead of `rowid IN (...)` (planProbes). */
  readonly probe: Set<Filter>;
  constructor(pids?: ParamIds, probe: Set<Filter> = new Set()) {
    this.pids = pids;
    this.probe = probe;
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

function typesClause(alias: string, types: string[], q: Sql, filters: Filter[] = []): string {
  if (!types.length) return '1';
  // With a filter that selects rowids, drive the query from it (probe the rowids it yields) rather than
  // walk every resource of the type through the (resource_type, id) index in result order and test each:
  // the unary + keeps the planner off that index. `_id` filters use the index (type and id).
  const drive = !filters.some((f) => f.kind === 'id') && filters.some(selectsRowids);
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
 * `col` is one of the parameter ids of `code` on `types` (on every type when `types` is empty). One type has
 * at most one id: a scalar sub-select, which the planner can use inside OR branches (multi-index OR).
 */
function pidIs(col: string, types: string[], code: string, q: Sql): string {
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

/** `alias.rowid IN (...)` for one filter; `types` are the alias's possible types. */
function compileFilter(f: Filter, alias: string, types: string[], q: Sql, depth: number): string {
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
      const t = paramType(types, f.param);
      if (!t) throw badRequest(`Unknown search parameter ${f.param}`);
      if (f.param === '_id' || f.param === '_lastUpdated') return f.missing ? '0' : '1';
      let kind: Kind;
      let param = f.param;
      if (t === 'composite') {
        const def = types.map((ty) => searchParam(ty, f.param)).find((d) => d);
        kind = kindOf(def?.components?.[0]?.type ?? 'token');
        param = `${f.param}$0`;
      } else kind = kindOf(t);
      const inner = `SELECT ${sub}.rid FROM ${TABLES[kind].table} ${sub} WHERE ${pidIs(`${sub}.pid`, types, param, q)}`;
      return `${alias}.rowid ${f.missing ? 'NOT IN' : 'IN'} (${inner})`;
    }
    case 'param': {
      if (f.type === 'composite') {
        const alts = f.anyOf.map((p) => compositeSubquery(f.param, p, types, q, depth));
        return `${alias}.rowid ${f.not ? 'NOT IN' : 'IN'} (${alts.join(' UNION ALL ')})`;
      }
      const kind = kindOf(f.type);
      const { table, cols } = TABLES[kind];
      const conds = f.anyOf.map((p) => {
        const c = predicateCond(p, f.param);
        return render(kind === 'reference' ? onTargetColumns(c) : c, (field) => `${sub}.${cols[field] ?? badField(field)}`, q);
      });
      if (q.probe.has(f) && !f.not)
        // The row's own index rows through the primary key (rid, pid, n); `+` keeps the planner off the
        // parameter's (pid, value) index.
        return `EXISTS (SELECT 1 FROM ${table} ${sub} WHERE ${sub}.rid = ${alias}.rowid AND ${pidIs(`+${sub}.pid`, types, f.param, q)} AND (${conds.join(' OR ')}))`;
      const inner = `SELECT ${sub}.rid FROM ${table} ${sub} WHERE ${pidIs(`${sub}.pid`, types, f.param, q)} AND (${conds.join(' OR ')})`;
      return `${alias}.rowid ${f.not ? 'NOT IN' : 'IN'} (${inner})`;
    }
    case 'chain': {
      const t = `t${depth}`;
      const where = f.where.map((w) => compileFilter(w, t, f.targetTypes, q, depth + 1));
      const targets = `SELECT ${t}.id, ${t}.resource_type FROM resources ${t} WHERE ${typesClause(t, f.targetTypes, q, f.where)} AND ${t}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      const inner = `SELECT ${sub}.rid FROM idx_reference ${sub} WHERE ${pidIs(`${sub}.pid`, types, f.param, q)} AND ${sub}.target_id IS NOT NULL AND (${sub}.target_id, ${sub}.target_type) IN (${targets})`;
      return `${alias}.rowid IN (${inner})`;
    }
    case 'compartment': {
      const alts = Object.entries(f.paramsByType)
        .filter(([t, params]) => params.length && (!types.length || types.includes(t)))
        .map(([t, params]) => `(sp.resource_type = ${q.p(t)} AND sp.code IN (${q.list(params)}))`);
      if (!alts.length) return '0';
      let pids = `SELECT sp.pid FROM search_params sp WHERE ${alts.join(' OR ')}`;
      if (q.pids) {
        const ids = Object.entries(f.paramsByType)
          .filter(([t]) => !types.length || types.includes(t))
          .flatMap(([t, params]) => params.map((c) => q.pids!(t, c)))
          .filter((x): x is number => x !== undefined);
        pids = ids.length ? q.list(ids) : '-1';
      }
      const inner = `SELECT ${sub}.rid FROM idx_reference ${sub} WHERE ${sub}.pid IN (${pids}) AND ${sub}.target_id = ${q.p(f.targetId)} AND ${sub}.target_type = ${q.p(f.targetType)}`;
      return `${alias}.rowid IN (${inner})`;
    }
    case 'text':
      // The FTS row is the resource's (rowid = rid): the type is fixed by the outer query.
      return `${alias}.rowid IN (SELECT rowid FROM idx_text WHERE idx_text MATCH ${q.p(ftsQuery(f.param === '_text' ? 't' : 'c', f.anyOf))})`;
    case 'near':
      return nearCondition(f, alias, types, q, sub);
    case 'has': {
      const s = `s${depth}`;
      const where = f.where.map((w) => compileFilter(w, s, [f.sourceType], q, depth + 1));
      if (q.probe.has(f)) {
        // Semi-join per row: the references to this row from the source parameter ((pid, target_id,
        // target_type) index), each source probed by rowid; stops at the first source that matches.
        const source = `SELECT 1 FROM resources ${s} WHERE ${s}.rowid = ${sub}.rid AND ${s}.resource_type = ${q.p(f.sourceType)} AND ${s}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
        return `EXISTS (SELECT 1 FROM idx_reference ${sub} WHERE ${pidIs(`${sub}.pid`, [f.sourceType], f.param, q)} AND ${sub}.target_id IS NOT NULL AND ${sub}.target_id = ${alias}.id AND ${sub}.target_type = ${alias}.resource_type AND EXISTS (${source}))`;
      }
      const sources = `SELECT ${s}.rowid FROM resources ${s} WHERE ${typesClause(s, [f.sourceType], q, f.where)} AND ${s}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      const targetTypes = types.length ? ` AND ${sub}.target_type IN (${q.list(types)})` : ` AND ${sub}.target_type IS NOT NULL`;
      const inner = `SELECT ${sub}.target_type, ${sub}.target_id FROM idx_reference ${sub} WHERE ${pidIs(`${sub}.pid`, [f.sourceType], f.param, q)}${targetTypes} AND ${sub}.rid IN (${sources})`;
      return `(${alias}.resource_type, ${alias}.id) IN (${inner})`;
    }
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
        ` JOIN ${TABLES[pt.kind].table}_part ${pt.alias} ON ${pt.alias}.rid = ${first.alias}.rid AND ${pt.alias}.n = ${first.alias}.n AND ${pidIs(`${pt.alias}.pid`, types, `${code}$${pt.i}`, q)}`,
    )
    .join('');
  const where = [pidIs(`${first.alias}.pid`, types, `${code}$0`, q)];
  for (const pt of parts)
    where.push(render(predicateCond(pt.pred, code), (field) => `${pt.alias}.${TABLES[pt.kind].cols[field] ?? badField(field)}`, q));
  return `SELECT ${first.alias}.rid FROM ${TABLES[first.kind].table} ${first.alias}${joins} WHERE ${where.join(' AND ')}`;
}

/** The SQL expression giving one sort key's value for the row `r`. */
function sortExpression(param: string, descending: boolean, types: string[], q: Sql): string {
  if (param === '_id') return 'r.id';
  if (param === '_lastUpdated') return 'r.last_updated';
  const t = paramType(types, param);
  if (!t) throw badRequest(`Unknown sort parameter ${param}`);
  const kind = kindOf(t);
  const agg = descending ? 'MAX' : 'MIN';
  const col: Record<Kind, string> = {
    string: 'value',
    token: 'code',
    reference: 'reference',
    date: descending ? 'high' : 'low',
    number: 'value',
    quantity: 'value',
    uri: 'value',
  };
  // The rid fixes the type: the parameter ids of every searched type can be offered at once. `+x.pid`: the
  // rows of this rid through the primary key, not a walk of the parameter's (pid, value) index.
  return `(SELECT ${agg}(x.${col[kind]}) FROM ${TABLES[kind].table} x WHERE x.rid = r.rowid AND ${pidIs('+x.pid', types, param, q)})`;
}

/**
 * Index rows a filter may have and still count as selective (drive the query with `rowid IN (...)`); a filter
 * with more is probed per row with `EXISTS`. `DSP_SEARCH_PROBE_BOUND` overrides it (0: probe every filter
 * that can be probed, as the tests do to cover both forms on small data).
 */
const PROBE_BOUND = (() => {
  const v = Number(process.env.DSP_SEARCH_PROBE_BOUND);
  return process.env.DSP_SEARCH_PROBE_BOUND && Number.isInteger(v) && v >= 0 ? v : 2000;
})();

/** Whether a filter has a probe form (positive, not composite). */
function probeable(f: Filter): boolean {
  return (f.kind === 'param' && !f.not && f.type !== 'composite') || f.kind === 'has';
}

/**
 * Chooses the filters compiled as per-row `EXISTS` probes. `rowid IN (...)` materialises the whole match set
 * of a filter, then probes and sorts it: right for a selective filter (a few rows), slow for a common one (a
 * frequent code: 50,000 rows to return 20). A bounded count of the filter's index rows (at most PROBE_BOUND
 * read) tells them apart. With a selective filter the query is driven by it and the common ones are probed
 * on its rows; with none and the default order (type, id), SQLite walks the type's (resource_type, id)
 * index in order, probes each row and stops at count + 1 matches. Sorted searches without a selective filter
 * keep the `IN` form (every match needs its sort key anyway). `_has` counts as selective when one of its
 * source filters is; probed, its source filters are probed too (the sources come one by one).
 */
function planProbes(request: SearchRequest, pids: ParamIds | undefined): Set<Filter> {
  const probe = new Set<Filter>();
  if (!pids?.countUpTo || request.count <= 0) return probe;
  const common = (f: Filter, types: string[]): boolean => {
    if (f.kind === 'has') return !f.where.some((w) => probeable(w) && !common(w, [f.sourceType]));
    if (PROBE_BOUND === 0) return true;
    const eq = new Sql(pids);
    const expr = compileFilter(f, 'r', types, eq, 1);
    const head = 'r.rowid IN (';
    if (!expr.startsWith(head)) return false;
    return pids.countUpTo!(`SELECT count(*) AS n FROM (${expr.slice(head.length, -1)} LIMIT ${PROBE_BOUND})`, eq.params) >= PROBE_BOUND;
  };
  const probeAll = (f: Filter) => {
    probe.add(f);
    if (f.kind === 'has') for (const w of f.where) if (probeable(w)) probeAll(w);
  };
  const candidates = request.filters.filter(probeable);
  const commons = candidates.filter((f) => common(f, request.resourceTypes));
  // Probing costs a read of the driving rows: only under drivers known to be small (estimated, `_id`, a
  // patient's compartment). Under a chain (its size unknown: a common family name has thousands of
  // Observations) the common filters keep `IN`, whose set SQLite screens with a Bloom filter before reading.
  const small = commons.length < candidates.length || request.filters.some((f) => f.kind === 'id' || f.kind === 'compartment');
  const other = request.filters.some((f) => !probeable(f) && f.kind !== 'id' && f.kind !== 'compartment' && selectsRowids(f));
  if (small || (!other && !request.sort.length)) for (const f of commons) probeAll(f);
  return probe;
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
    const where: string[] = [typesClause('r', types, q, request.filters.filter((f) => !q.probe.has(f)))];
    const probes: string[] = [];
    for (const f of request.filters) (q.probe.has(f) ? probes : where).push(compileFilter(f, 'r', types, q, 1));
    // Probes first, then the row: walking the (resource_type, id) index, SQLite reads a `resources` row
    // (large: its content is inline) only when a WHERE term needs a column of it, and it tests plain terms
    // such as `deleted = 0` before sub-query terms. CASE fixes the order: the row is read for matches only.
    if (probes.length) where.push(`CASE WHEN ${probes.join(' AND ')} THEN r.deleted = 0 ELSE 0 END`);
    else where.push('r.deleted = 0');
    return where.join(' AND ');
  };
  const q = new Sql(opts.paramIds, planProbes(request, opts.paramIds));
  const sortCols = request.sort.map((k, i) => `${sortExpression(k.param, k.descending, types, q)} AS s${i}`);
  const content = opts.includeContent === false ? 'NULL AS content' : 'r.content';
  const select = `SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, ${content}${sortCols.map((c) => ', ' + c).join('')} FROM resources r WHERE ${whereOf(q)}`;
  const limit = request.count + 1;
  const cursor = request.cursor ? decodePageCursor(request.cursor, request.sort.length) : undefined;
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
  const position = (row: unknown): PagePosition => {
    const r = row as Record<string, unknown>;
    return { v: request.sort.map((_k, i) => (r[`s${i}`] ?? null) as Scalar | null), t: r.resource_type as string, i: r.id as string };
  };
  const compiled: CompiledSearch = {
    sql,
    params: q.params,
    limit,
    cursorAfter(row: unknown): string {
      return encodePageCursor({ ...position(row), before: false, inclusive: false });
    },
    paginate: (rows) => pageOf(rows, request.count, cursor, position),
  };
  if (request.total !== 'none') {
    const cq = new Sql(opts.paramIds);
    compiled.countSql = `SELECT COUNT(*) AS n FROM resources r WHERE ${whereOf(cq)}`;
    compiled.countParams = cq.params;
  }
  return compiled;
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
  const param = ` AND x.pid IN (SELECT sp.pid FROM search_params sp WHERE ${conds.join(' AND ')})`;
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

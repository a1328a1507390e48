/**
 * FHIR search on SQLite (`node:sqlite`): index tables, index writes and the compilation of a SearchRequest
 * (src/search/types.ts) into one SQL query over the `resources` table:
 *
 *   resources(resource_type, id, version, last_updated, deleted, content, PRIMARY KEY (resource_type, id))
 *
 * One index table per value kind (idx_string, idx_token, idx_reference, idx_date, idx_number, idx_quantity,
 * idx_uri), keyed by (resource_type, resource_id, param). Composite values are stored as their components in
 * the component kinds' tables, under the parameter `<code>$<i>` and a group number `grp` shared by the
 * components of one combination.
 *
 * Every filter becomes `(r.resource_type, r.id) [NOT] IN (SELECT resource_type, resource_id FROM idx_... WHERE
 * resource_type IN (...) AND param = ? AND <value condition>)`, which SQLite drives from the index table's
 * (resource_type, param, value) index and then probes the resources primary key: no scan of `resources`.
 * Sorting uses correlated MIN/MAX sub-selects per sort key; paging is keyset-based with an opaque cursor.
 */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import type { Resource } from 'fhir/r4';
import { badRequest, notSupported } from '../../fhir/outcome.ts';
import { decodeCursor, encodeCursor, keysetCond, predicateCond, type Cond, type KeysetKey, type Scalar } from '../../search/conditions.ts';
import { searchParam } from '../../search/registry.ts';
import type { Filter, IncludeSpec, IndexValue, ParamType, Predicate, SearchRequest } from '../../search/types.ts';

type Kind = Exclude<IndexValue['type'], 'composite'>;
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

/** Creates the index tables and their indexes (idempotent). */
export function installSearchSchema(db: DatabaseSync): void {
  const stmts: string[] = [];
  for (const kind of KINDS) {
    const { table, cols } = TABLES[kind];
    const numeric = new Set(['value', 'low', 'high', 'canonical_value']);
    const colDefs = Object.values(cols)
      .map((c) => `${c} ${(kind === 'number' || kind === 'quantity') && numeric.has(c) ? 'REAL' : 'TEXT'}`)
      .join(', ');
    stmts.push(
      `CREATE TABLE IF NOT EXISTS ${table} (resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, ${colDefs})`,
      `CREATE INDEX IF NOT EXISTS ${table}_res ON ${table} (resource_type, resource_id, param)`,
    );
  }
  stmts.push(
    'CREATE INDEX IF NOT EXISTS idx_string_value ON idx_string (resource_type, param, value)',
    'CREATE INDEX IF NOT EXISTS idx_string_exact ON idx_string (resource_type, param, exact)',
    'CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (resource_type, param, code, system)',
    'CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (resource_type, param, system)',
    'CREATE INDEX IF NOT EXISTS idx_token_text ON idx_token (resource_type, param, text) WHERE text IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_token_oftype ON idx_token (resource_type, param, of_type) WHERE of_type IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_reference_ref ON idx_reference (resource_type, param, reference)',
    'CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (target_type, target_id, param, resource_type)',
    'CREATE INDEX IF NOT EXISTS idx_reference_tid ON idx_reference (resource_type, param, target_id)',
    'CREATE INDEX IF NOT EXISTS idx_reference_ident ON idx_reference (resource_type, param, identifier_value) WHERE identifier_value IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (resource_type, param, low)',
    'CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (resource_type, param, high)',
    'CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (resource_type, param, value)',
    'CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (resource_type, param, code, value)',
    'CREATE INDEX IF NOT EXISTS idx_quantity_canon ON idx_quantity (resource_type, param, canonical_code, canonical_value)',
    'CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (resource_type, param, value)',
  );
  for (const s of stmts) db.exec(s);
}

interface Prepared {
  insert: Record<Kind, ReturnType<DatabaseSync['prepare']>>;
  remove: ReturnType<DatabaseSync['prepare']>[];
}
const prepared = new WeakMap<DatabaseSync, Prepared>();

function statements(db: DatabaseSync): Prepared {
  let p = prepared.get(db);
  if (!p) {
    const insert = {} as Prepared['insert'];
    for (const kind of KINDS) {
      const { table, cols } = TABLES[kind];
      const names = Object.values(cols);
      insert[kind] = db.prepare(
        `INSERT INTO ${table} (resource_type, resource_id, param, grp, ${names.join(', ')}) VALUES (?, ?, ?, ?, ${names.map(() => '?').join(', ')})`,
      );
    }
    const remove = KINDS.map((k) => db.prepare(`DELETE FROM ${TABLES[k].table} WHERE resource_type = ? AND resource_id = ?`));
    p = { insert, remove };
    prepared.set(db, p);
  }
  return p;
}

function insertValue(p: Prepared, type: string, id: string, v: IndexValue, param: string, grp: number | null): void {
  if (v.type === 'composite') return;
  const { cols } = TABLES[v.type];
  const rec = v as unknown as Record<string, unknown>;
  const values = Object.keys(cols).map((f) => {
    const x = rec[f];
    return x === undefined ? null : (x as SqlParam);
  });
  p.insert[v.type].run(type, id, param, grp, ...(values as SQLInputValue[]));
}

/**
 * Replaces the index rows of one resource. Call inside the write's transaction. `fresh` says the resource has
 * no index rows yet (new id, or a deleted one), which saves the seven deletes.
 */
export function writeIndex(db: DatabaseSync, resourceType: string, id: string, values: IndexValue[], fresh = false): void {
  const p = statements(db);
  if (!fresh) for (const r of p.remove) r.run(resourceType, id);
  let grp = 0;
  for (const v of values) {
    if (v.type === 'composite') {
      grp++;
      v.components.forEach((c, i) => insertValue(p, resourceType, id, c, `${v.param}$${i}`, grp));
    } else insertValue(p, resourceType, id, v, v.param, null);
  }
}

/** Removes every index row of one resource (on delete). */
export function deleteIndex(db: DatabaseSync, resourceType: string, id: string): void {
  for (const r of statements(db).remove) r.run(resourceType, id);
}

// Compilation ---------------------------------------------------------------------------------------------

class Sql {
  readonly params: SqlParam[] = [];
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

function typesClause(alias: string, types: string[], q: Sql): string {
  return types.length ? `${alias}.resource_type IN (${q.list(types)})` : '1';
}

function paramType(types: string[], code: string): ParamType | undefined {
  for (const t of types) {
    const d = searchParam(t, code);
    if (d) return d.type;
  }
  return undefined;
}

/** `(alias.resource_type, alias.id) IN (...)` for one filter; `types` are the alias's possible types. */
function compileFilter(f: Filter, alias: string, types: string[], q: Sql, depth: number): string {
  const sub = `i${depth}`;
  switch (f.kind) {
    case 'id':
      return f.ids.length ? `${alias}.id IN (${q.list(f.ids)})` : '0';
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
      const inner = `SELECT ${sub}.resource_type, ${sub}.resource_id FROM ${TABLES[kind].table} ${sub} WHERE ${typesClause(sub, types, q)} AND ${sub}.param = ${q.p(param)}`;
      return `(${alias}.resource_type, ${alias}.id) ${f.missing ? 'NOT IN' : 'IN'} (${inner})`;
    }
    case 'param': {
      if (f.type === 'composite') {
        const alts = f.anyOf.map((p) => compositeSubquery(f.param, p, types, q, depth));
        return `(${alias}.resource_type, ${alias}.id) ${f.not ? 'NOT IN' : 'IN'} (${alts.join(' UNION ALL ')})`;
      }
      const kind = kindOf(f.type);
      const { table, cols } = TABLES[kind];
      const conds = f.anyOf.map((p) => render(predicateCond(p, f.param), (field) => `${sub}.${cols[field] ?? badField(field)}`, q));
      const inner = `SELECT ${sub}.resource_type, ${sub}.resource_id FROM ${table} ${sub} WHERE ${typesClause(sub, types, q)} AND ${sub}.param = ${q.p(f.param)} AND (${conds.join(' OR ')})`;
      return `(${alias}.resource_type, ${alias}.id) ${f.not ? 'NOT IN' : 'IN'} (${inner})`;
    }
    case 'chain': {
      const t = `t${depth}`;
      const where = f.where.map((w) => compileFilter(w, t, f.targetTypes, q, depth + 1));
      const targets = `SELECT ${t}.resource_type, ${t}.id FROM resources ${t} WHERE ${typesClause(t, f.targetTypes, q)} AND ${t}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      const inner = `SELECT ${sub}.resource_type, ${sub}.resource_id FROM idx_reference ${sub} WHERE ${typesClause(sub, types, q)} AND ${sub}.param = ${q.p(f.param)} AND (${sub}.target_type, ${sub}.target_id) IN (${targets})`;
      return `(${alias}.resource_type, ${alias}.id) IN (${inner})`;
    }
    case 'compartment': {
      const alts = Object.entries(f.paramsByType)
        .filter(([t, params]) => params.length && (!types.length || types.includes(t)))
        .map(([t, params]) => `(${sub}.resource_type = ${q.p(t)} AND ${sub}.param IN (${q.list(params)}))`);
      if (!alts.length) return '0';
      const inner = `SELECT ${sub}.resource_type, ${sub}.resource_id FROM idx_reference ${sub} WHERE ${sub}.target_type = ${q.p(f.targetType)} AND ${sub}.target_id = ${q.p(f.targetId)} AND (${alts.join(' OR ')})`;
      return `(${alias}.resource_type, ${alias}.id) IN (${inner})`;
    }
    case 'has': {
      const s = `s${depth}`;
      const where = f.where.map((w) => compileFilter(w, s, [f.sourceType], q, depth + 1));
      const sources = `SELECT ${s}.resource_type, ${s}.id FROM resources ${s} WHERE ${s}.resource_type = ${q.p(f.sourceType)} AND ${s}.deleted = 0${where.map((w) => ` AND ${w}`).join('')}`;
      const targetTypes = types.length ? ` AND ${sub}.target_type IN (${q.list(types)})` : ` AND ${sub}.target_type IS NOT NULL`;
      const inner = `SELECT ${sub}.target_type, ${sub}.target_id FROM idx_reference ${sub} WHERE ${sub}.resource_type = ${q.p(f.sourceType)} AND ${sub}.param = ${q.p(f.param)}${targetTypes} AND (${sub}.resource_type, ${sub}.resource_id) IN (${sources})`;
      return `(${alias}.resource_type, ${alias}.id) IN (${inner})`;
    }
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
        ` JOIN ${TABLES[pt.kind].table} ${pt.alias} ON ${pt.alias}.resource_type = ${first.alias}.resource_type AND ${pt.alias}.resource_id = ${first.alias}.resource_id AND ${pt.alias}.grp = ${first.alias}.grp AND ${pt.alias}.param = ${q.p(`${code}$${pt.i}`)}`,
    )
    .join('');
  const where = [`${typesClause(first.alias, types, q)}`, `${first.alias}.param = ${q.p(`${code}$0`)}`];
  for (const pt of parts)
    where.push(render(predicateCond(pt.pred, code), (field) => `${pt.alias}.${TABLES[pt.kind].cols[field] ?? badField(field)}`, q));
  return `SELECT ${first.alias}.resource_type, ${first.alias}.resource_id FROM ${TABLES[first.kind].table} ${first.alias}${joins} WHERE ${where.join(' AND ')}`;
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
  return `(SELECT ${agg}(x.${col[kind]}) FROM ${TABLES[kind].table} x WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND x.param = ${q.p(param)})`;
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
}

/**
 * Compiles a search. Rows come back in the requested order (ties broken by resource type and id); at most
 * `count + 1` rows: when the extra row is there, `cursorAfter(lastRowOfPage)` is the next page's cursor.
 */
export function compileSearch(request: SearchRequest, opts: { includeContent?: boolean } = {}): CompiledSearch {
  const types = request.resourceTypes;
  const whereOf = (q: Sql) => {
    const where: string[] = [typesClause('r', types, q), 'r.deleted = 0'];
    for (const f of request.filters) where.push(compileFilter(f, 'r', types, q, 1));
    return where.join(' AND ');
  };
  const q = new Sql();
  const sortCols = request.sort.map((k, i) => `${sortExpression(k.param, k.descending, types, q)} AS s${i}`);
  const content = opts.includeContent === false ? 'NULL AS content' : 'r.content';
  const select = `SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, ${content}${sortCols.map((c) => ', ' + c).join('')} FROM resources r WHERE ${whereOf(q)}`;
  const limit = request.count + 1;
  const cursor = request.cursor ? decodeCursor(request.cursor, request.sort.length) : undefined;
  let sql: string;
  if (!request.sort.length) {
    const keyset = cursor ? ` AND (r.resource_type, r.id) > (${q.p(cursor.t)}, ${q.p(cursor.i)})` : '';
    sql = `${select}${keyset} ORDER BY r.resource_type, r.id LIMIT ${q.p(limit)}`;
  } else {
    let keyset = '';
    if (cursor) {
      const keys: KeysetKey[] = request.sort.map((k, i) => ({ field: `s${i}`, descending: k.descending, last: cursor.v[i]! }));
      keys.push({ field: 'resource_type', descending: false, last: cursor.t }, { field: 'id', descending: false, last: cursor.i });
      keyset = ` WHERE ${render(keysetCond(keys), (f) => `q.${f}`, q)}`;
    }
    const order = request.sort.map((k, i) => `q.s${i}${k.descending ? ' DESC' : ''}`).join(', ');
    sql = `SELECT * FROM (${select}) q${keyset} ORDER BY ${order}, q.resource_type, q.id LIMIT ${q.p(limit)}`;
  }
  const compiled: CompiledSearch = {
    sql,
    params: q.params,
    limit,
    cursorAfter(row: unknown): string {
      const r = row as Record<string, unknown>;
      return encodeCursor({
        v: request.sort.map((_k, i) => (r[`s${i}`] ?? null) as Scalar | null),
        t: r.resource_type as string,
        i: r.id as string,
      });
    },
  };
  if (request.total !== 'none') {
    const cq = new Sql();
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
  const pairs = keys.map((r) => `(${q.p(r.resourceType)}, ${q.p(r.id ?? '')})`).join(', ');
  let sql: string;
  if (!spec.reverse) {
    const param = spec.param === '*' ? '' : ` AND x.param = ${q.p(spec.param)}`;
    const target = spec.targetType ? ` AND x.target_type = ${q.p(spec.targetType)}` : '';
    const source = spec.sourceType === '*' ? '' : ` AND x.resource_type = ${q.p(spec.sourceType)}`;
    sql = `SELECT DISTINCT t.content FROM idx_reference x JOIN resources t ON t.resource_type = x.target_type AND t.id = x.target_id AND t.deleted = 0 WHERE (x.resource_type, x.resource_id) IN (VALUES ${pairs})${source}${param}${target}`;
  } else {
    const param = spec.param === '*' ? '' : ` AND x.param = ${q.p(spec.param)}`;
    const target = spec.targetType ? ` AND x.target_type = ${q.p(spec.targetType)}` : '';
    const source = spec.sourceType === '*' ? '' : ` AND x.resource_type = ${q.p(spec.sourceType)}`;
    sql = `SELECT DISTINCT s.content FROM idx_reference x JOIN resources s ON s.resource_type = x.resource_type AND s.id = x.resource_id AND s.deleted = 0 WHERE (x.target_type, x.target_id) IN (VALUES ${pairs})${source}${param}${target}`;
  }
  const rows = db.prepare(sql).all(...(q.params as SQLInputValue[])) as { content: string }[];
  return rows.map((r) => JSON.parse(r.content) as Resource);
}

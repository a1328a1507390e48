/**
 * Opaque paging cursors: base64url JSON. A cursor that does not decode is a client error.
 *
 * Search pages use keyset cursors (`PageCursor`): the position of a row in the search's order (its sort
 * values, then resource type and id) and a direction. An "after" cursor (a `next` link) selects the rows
 * that follow the position; a "before" cursor (a `previous` link) runs the comparison reversed, fetches in
 * the reversed order and turns the page back. A position is a row's values, never an offset, so links stay
 * valid while resources are added or removed: a page starts exactly where its neighbour ended.
 */
import type { Cond, KeysetKey } from '../search/conditions.ts';
import { badRequest } from '../fhir/outcome.ts';

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

export function decodeCursor<T>(cursor: string): T {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (value === null || typeof value !== 'object') throw new Error('not an object');
    return value as T;
  } catch {
    throw badRequest('The paging cursor is invalid or has expired');
  }
}

/** A row's place in a search's order: its sort values (null: no value), resource type and id. */
export interface PagePosition {
  v: (string | number | null)[];
  t: string;
  i: string;
}

export interface PageCursor extends PagePosition {
  /** The page before the position (a `previous` link); else the page after it. */
  before: boolean;
  /** The row at the position belongs to the page (used when a page came back empty: see pageOf). */
  inclusive: boolean;
}

/** Wire form: `{ v, t, i }` plus `b: 1` (before) and `e: 1` (inclusive); older forward cursors still decode. */
export function encodePageCursor(c: PageCursor): string {
  return encodeCursor({ v: c.v, t: c.t, i: c.i, ...(c.before ? { b: 1 } : {}), ...(c.inclusive ? { e: 1 } : {}) });
}

/** Decodes a search cursor and checks its shape against the number of sort keys (400 otherwise). */
export function decodePageCursor(cursor: string, sortKeys: number): PageCursor {
  const c = decodeCursor<{ v?: unknown; t?: unknown; i?: unknown; b?: unknown; e?: unknown }>(cursor);
  const valid =
    Array.isArray(c.v) &&
    c.v.length === sortKeys &&
    c.v.every((v) => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) &&
    typeof c.t === 'string' &&
    typeof c.i === 'string' &&
    (c.b === undefined || c.b === 1) &&
    (c.e === undefined || c.e === 1);
  if (!valid) throw badRequest('The paging cursor is invalid or has expired');
  return { v: c.v as PagePosition['v'], t: c.t as string, i: c.i as string, before: c.b === 1, inclusive: c.e === 1 };
}

/**
 * The keyset keys a cursor compares with: the search's keys (sort keys, then the ascending tie-breaks on
 * type and id) holding the cursor's values, every direction flipped for a "before" cursor (rows before a
 * position in an order are the rows after it in the reversed order; missing values stay lowest).
 * The store also reverses its ORDER BY / sort for a "before" cursor.
 */
function orientKeys(keys: KeysetKey[], c: PageCursor): KeysetKey[] {
  return c.before ? keys.map((k) => ({ ...k, descending: !k.descending })) : keys;
}

/** The row exactly at the position (every key equal; a null value is a missing one): for inclusive cursors. */
function atPosition(keys: KeysetKey[]): Cond {
  return { op: 'and', conds: keys.map((k): Cond => (k.last === null ? { op: 'isNull', field: k.field } : { op: 'eq', field: k.field, value: k.last })) };
}

/** The keyset condition of a cursor, given the store-neutral `keysetCond` (strictly after, in key order). */
export function cursorCond(keys: KeysetKey[], c: PageCursor, keysetCond: (keys: KeysetKey[]) => Cond): Cond {
  const strict = keysetCond(orientKeys(keys, c));
  return c.inclusive ? { op: 'or', conds: [strict, atPosition(keys)] } : strict;
}

/**
 * One page from the rows a store fetched with `limit = count + 1` in the cursor's fetch order (reversed for
 * a "before" cursor), and the cursors of its neighbours:
 * - `next`: after the last row, when a row follows (forward: the extra row; backward: the cursor's own row
 *   came after this page);
 * - `previous`: before the first row, when a row precedes (backward: the extra row; forward: the page was
 *   reached from a cursor, so rows came before it).
 * An empty page reached from a cursor points back at the cursor's position, the row at it included (it
 * belonged to the neighbour page), so a walk never loses a row that is still there.
 */
export function pageOf<R>(rows: R[], count: number, cursor: PageCursor | undefined, position: (row: R) => PagePosition): { page: R[]; next?: string; previous?: string } {
  if (count <= 0) return { page: [] };
  const more = rows.length > count;
  const page = rows.slice(0, count);
  if (cursor?.before) page.reverse();
  const after = (r: R, inclusive = false) => encodePageCursor({ ...position(r), before: false, inclusive });
  const before = (r: R, inclusive = false) => encodePageCursor({ ...position(r), before: true, inclusive });
  const back = (flip: boolean) => encodePageCursor({ v: cursor!.v, t: cursor!.t, i: cursor!.i, before: flip, inclusive: !cursor!.inclusive });
  const out: { page: R[]; next?: string; previous?: string } = { page };
  if (!cursor?.before) {
    if (more && page.length) out.next = after(page[page.length - 1]!);
    if (cursor) out.previous = page.length ? before(page[0]!) : back(true);
  } else {
    if (more && page.length) out.previous = before(page[0]!);
    out.next = page.length ? after(page[page.length - 1]!) : back(false);
  }
  return out;
}

/**
 * The upgrade of a schema 4 or 5 database to schema 6 (the date spans, `idx_date_span`) is all or nothing: the
 * span table is created, filled from `idx_date` and `PRAGMA user_version` set to 6 in one transaction, and the
 * upgrade is decided by the version, not by whether the table exists. Checked here: a build killed part way
 * (the state the earlier two-step upgrade left: an empty span table under version 5) and a build that throws
 * part way (the disk full: `max_page_count`) both leave a database that the next opening upgrades completely,
 * and the two-sided date searches driven by the spans find the rows written before the upgrade.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Resource } from 'fhir/r4';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { installSearchSchema, SEARCH_SCHEMA_VERSION } from '../src/store/sqlite/search-sql.ts';

const dir = mkdtempSync(join(tmpdir(), 'dsp-span-upgrade-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 80 Encounters, one a year from 1990 (periods of a few months), and 40 Goals with two due dates each. */
function resources(): Resource[] {
  const out: Resource[] = [];
  for (let i = 0; i < 80; i++) {
    const y = 1990 + (i % 40);
    out.push({
      resourceType: 'Encounter',
      id: `e${i}`,
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      period: { start: `${y}-0${1 + (i % 3)}-10`, end: `${y}-0${4 + (i % 3)}-20` },
    } as Resource);
  }
  for (let i = 0; i < 40; i++)
    out.push({
      resourceType: 'Goal',
      id: `g${i}`,
      lifecycleStatus: 'active',
      description: { text: 'goal' },
      subject: { reference: 'Patient/p' },
      target: [{ dueDate: `${1995 + (i % 10)}-06-01` }, { dueDate: `${2015 + (i % 10)}-06-01` }],
    } as Resource);
  return out;
}

/** Searches whose date filters bound the span on both sides (the plans the spans drive). */
const QUERIES: [string, [string, string][]][] = [
  ['Encounter', [['date', 'ge2000-01-01'], ['date', 'lt2010-01-01']]],
  ['Encounter', [['date', 'eq2005']]],
  ['Encounter', [['date', 'ap2012-03-01']]],
  ['Goal', [['target-date', 'ge2000-01-01'], ['target-date', 'lt2016-01-01']]],
];

async function searchAll(store: SqliteStore): Promise<string[][]> {
  const out: string[][] = [];
  for (const [type, q] of QUERIES) {
    const { request } = parseSearch(type, [...q, ['_count', '1000']], { strict: true });
    out.push((await store.search(request)).resources.map((r) => r.id!).sort());
  }
  return out;
}

/** A database of schema 6 with the data, and the answers to QUERIES (each non-empty). */
async function written(path: string): Promise<{ answers: string[][]; spans: unknown[] }> {
  const store = new SqliteStore({ path });
  await store.init();
  for (const r of resources()) await store.put(r, { method: 'PUT', index: extractIndex(r) });
  const answers = await searchAll(store);
  await store.close();
  for (const a of answers) expect(a.length).toBeGreaterThan(0);
  return { answers, spans: spansOf(path) };
}

function spansOf(path: string): unknown[] {
  const raw = new DatabaseSync(path, { readOnly: true });
  try {
    return raw.prepare('SELECT id, pid0, pid1, low, high FROM idx_date_span ORDER BY id').all();
  } finally {
    raw.close();
  }
}

function pragma(path: string, name: string): number {
  const raw = new DatabaseSync(path, { readOnly: true });
  try {
    return Object.values(raw.prepare(`PRAGMA ${name}`).get() as Record<string, number>)[0]!;
  } finally {
    raw.close();
  }
}

function hasSpanTable(path: string): boolean {
  const raw = new DatabaseSync(path, { readOnly: true });
  try {
    return raw.prepare("SELECT 1 FROM sqlite_master WHERE name = 'idx_date_span'").get() !== undefined;
  } finally {
    raw.close();
  }
}

async function reopened(path: string): Promise<string[][]> {
  const store = new SqliteStore({ path });
  await store.init();
  try {
    return await searchAll(store);
  } finally {
    await store.close();
  }
}

describe('upgrade of schema 5 to 6 (date spans)', () => {
  it('a build killed part way (an empty span table left under version 5) is done again on the next opening', async () => {
    const path = join(dir, 'killed.db');
    const { answers, spans } = await written(path);
    const raw = new DatabaseSync(path);
    raw.exec('DELETE FROM idx_date_span; PRAGMA user_version = 5');
    raw.close();
    expect(await reopened(path)).toEqual(answers);
    expect(spansOf(path)).toEqual(spans);
    expect(pragma(path, 'user_version')).toBe(SEARCH_SCHEMA_VERSION);
  });

  it('a build that throws part way leaves version 5 and no span table; the next opening completes it', async () => {
    const path = join(dir, 'full.db');
    const { answers } = await written(path);
    // Schema 5 (no span table), with enough date rows that the build needs many pages: 40,000 more spans of
    // resources that do not exist (no search returns them), then no free pages (VACUUM).
    let raw = new DatabaseSync(path);
    raw.exec(`DROP TABLE idx_date_span; PRAGMA user_version = 5;
      INSERT INTO idx_date (rid, pid, n, low, high)
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 40000)
        SELECT 1000000 + i, (SELECT pid FROM search_params WHERE resource_type = 'Encounter' AND code = 'date'), 1,
          '1990-01-01T00:00:00.000Z', '1990-02-01T00:00:00.000Z' FROM k;
      VACUUM;`);
    const pages = pragma(path, 'page_count');
    // Room for the empty tables (the R*Tree's three shadow tables and root node), not for the spans.
    raw.exec(`PRAGMA max_page_count = ${pages + 24}`);
    expect(() => installSearchSchema(raw)).toThrow(/full/i);
    raw.close();
    expect(pragma(path, 'user_version')).toBe(5);
    expect(hasSpanTable(path)).toBe(false);
    // The store opens it (no page limit), builds every span and answers as before the upgrade.
    expect(await reopened(path)).toEqual(answers);
    expect(pragma(path, 'user_version')).toBe(SEARCH_SCHEMA_VERSION);
    raw = new DatabaseSync(path, { readOnly: true });
    const n = (raw.prepare('SELECT count(*) AS n FROM idx_date_span').get() as { n: number }).n;
    const want = (raw.prepare('SELECT count(*) AS n FROM (SELECT DISTINCT rid, pid FROM idx_date)').get() as { n: number }).n;
    raw.close();
    expect(n).toBe(want);
    expect(n).toBeGreaterThan(40000);
  });

  it('a version 6 database keeps its spans as they are', async () => {
    const path = join(dir, 'six.db');
    const { answers, spans } = await written(path);
    // Rows no rebuild from idx_date would give: the first span widened (its low a year earlier, epoch ms:
    // still a superset, the answers stay the same) and a marker span of a resource that does not exist.
    const raw = new DatabaseSync(path);
    const first = spans[0] as { id: number; low: number };
    raw.prepare('UPDATE idx_date_span SET low = ? WHERE id = ?').run(first.low - 366 * 86_400_000, first.id);
    raw.prepare('INSERT INTO idx_date_span (id, pid0, pid1, low, high) VALUES (?, 1, 1, 0, 1)').run(999_999 * 2 ** 21 + 1);
    raw.close();
    const changed = spansOf(path);
    expect(changed).toHaveLength(spans.length + 1);
    expect(changed).not.toEqual(spans);
    expect(await reopened(path)).toEqual(answers);
    expect(spansOf(path)).toEqual(changed);
    // The check can fail: the same database under version 5 is rebuilt on opening, and both rows are gone.
    const five = new DatabaseSync(path);
    five.exec('PRAGMA user_version = 5');
    five.close();
    expect(await reopened(path)).toEqual(answers);
    expect(spansOf(path)).toEqual(spans);
  });
});

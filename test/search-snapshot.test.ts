/**
 * A search on the SQLite store reads one snapshot (src/store/sqlite/store.ts searchIn): the sort walk's queries
 * and counts at compile time, the page, `_total` and the includes run in one read transaction on the reader
 * connection. Checked by committing from another connection to the same file (as the audit worker does with
 * DSP_AUDIT_THREAD) between the page query and the count: the total is that of the page's snapshot.
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

const dir = mkdtempSync(join(tmpdir(), 'dsp-search-snapshot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a search reads one snapshot', () => {
  it('gives the total of the page it read when another connection commits in between', async () => {
    const path = join(dir, 'snap.db');
    const store = new SqliteStore({ path });
    await store.init();
    for (const id of ['a', 'b', 'c']) {
      const p = { resourceType: 'Patient', id, name: [{ family: 'Snap' }] } as Resource;
      await store.put(p, { method: 'PUT', index: extractIndex(p) });
    }
    const other = new DatabaseSync(path);
    other.exec('PRAGMA busy_timeout = 5000');
    // The store's reader: after the page query runs, another connection commits a new live Patient row.
    const reader = (store as unknown as { reader: DatabaseSync }).reader;
    const prepare = reader.prepare.bind(reader);
    let written = 0;
    reader.prepare = ((sql: string) => {
      const st = prepare(sql);
      if (!/^SELECT r\.resource_type, r\.id/.test(sql) && !/^SELECT \* FROM \(SELECT r\.resource_type/.test(sql)) return st;
      const all = st.all.bind(st);
      return Object.assign(st, {
        all: (...args: Parameters<typeof all>) => {
          const rows = all(...args);
          other
            .prepare("INSERT INTO resources (resource_type, id, version, last_updated, deleted, content) VALUES ('Patient', ?, 1, '2026-11-22T00:00:00Z', 0, '{}')")
            .run(`x${++written}`);
          return rows;
        },
      });
    }) as typeof reader.prepare;
    const res = await store.search(parseSearch('Patient', [['_total', 'accurate']], { strict: true }).request);
    expect(written).toBe(1);
    expect({ page: res.resources.length, total: res.total }).toEqual({ page: 3, total: 3 });
    // The next search sees the committed row.
    reader.prepare = prepare as typeof reader.prepare;
    const after = await store.search(parseSearch('Patient', [['_total', 'accurate'], ['_summary', 'count']], { strict: true }).request);
    expect(after.total).toBe(4);
    other.close();
    await store.close();
  });
});

/**
 * The MongoDB store's query documents, evaluated with mingo over in-memory collections (no MongoDB server runs
 * here or in CI). What a server adds on top (transactions, write conflicts) is covered by the shared store
 * suite when MONGODB_URI is set.
 */
import { describe, expect, it } from 'vitest';
import { Query, updateOne } from 'mingo';
import type { Patient, Resource } from 'fhir/r4';
import { compileMongoFilter, mongoIndexFields } from '../src/store/mongo/search-filter.ts';
import { extractIndex } from '../src/search/indexer.ts';
import type { SearchRequest, SortKey } from '../src/search/types.ts';
import { walkBothWays } from './support/paging.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import type { HistoryQuery, VersionRecord, WriteMethod } from '../src/store/port.ts';
import {
  HISTORY_SORT,
  RECORD_PROJECTION,
  countFilter,
  currentDocument,
  currentFilter,
  decodeHistoryCursor,
  guardFilter,
  historyBaseFilter,
  historyDocument,
  historyPageFilter,
  newVersion,
  nextLastUpdated,
  recordFromDoc,
  versionFilter,
  type CurrentDoc,
  type Doc,
  type VersionDoc,
} from '../src/store/mongo/queries.ts';

const find = <T>(docs: T[], filter: Doc, sort?: Doc, limit?: number): T[] => {
  let cursor = new Query(filter).find<T>(docs);
  if (sort) cursor = cursor.sort(sort);
  if (limit !== undefined) cursor = cursor.limit(limit);
  return cursor.all();
};

/** A tiny in-memory database written through the same document builders the store uses. */
class Collections {
  resources: CurrentDoc[] = [];
  history: VersionDoc[] = [];

  write(
    type: string,
    id: string,
    lastUpdated: string,
    method: WriteMethod = 'PUT',
    live = true,
    index: Doc = {},
  ): VersionRecord {
    const cur = find(this.resources, currentFilter(type, id))[0];
    const version = (cur?.version ?? 0) + 1;
    const resource = live ? ({ resourceType: type, id } as Patient) : undefined;
    const record = newVersion(type, id, version, lastUpdated, method, resource);
    const doc = currentDocument(record, index);
    if (cur) {
      const i = this.resources.findIndex((d) => new Query(guardFilter(type, id, cur.version)).test(d));
      expect(i).toBeGreaterThanOrEqual(0);
      this.resources[i] = doc;
    } else {
      this.resources.push(doc);
    }
    this.history.push(historyDocument(record));
    return record;
  }
}

function ms(n: number): string {
  return new Date(Date.UTC(2024, 0, 1) + n).toISOString();
}

describe('mongo query documents: current and version lookups', () => {
  const db = new Collections();
  db.write('Patient', 'a', ms(1));
  db.write('Patient', 'a', ms(2));
  db.write('Patient', 'b', ms(3));
  db.write('Observation', 'a', ms(4));

  it('finds exactly the current document of an id, type included', () => {
    const hits = find(db.resources, currentFilter('Patient', 'a'));
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ resourceType: 'Patient', id: 'a', version: 2, lastUpdated: ms(2) });
    expect(find(db.resources, currentFilter('Observation', 'a'))[0].version).toBe(1);
    expect(find(db.resources, currentFilter('Patient', 'zz'))).toHaveLength(0);
  });

  it('finds one version in history and no other', () => {
    const v1 = find(db.history, versionFilter('Patient', 'a', 1));
    expect(v1).toHaveLength(1);
    const rec = recordFromDoc(v1[0]);
    expect(rec).toMatchObject({ resourceType: 'Patient', id: 'a', versionId: 1, lastUpdated: ms(1), deleted: false });
    expect(rec.resource?.meta).toEqual({ versionId: '1', lastUpdated: ms(1) });
    expect(find(db.history, versionFilter('Patient', 'a', 3))).toHaveLength(0);
    expect(find(db.history, versionFilter('Patient', 'b', 2))).toHaveLength(0);
  });

  it('ids that are prefixes of one another do not collide', () => {
    const local = new Collections();
    local.write('Patient', 'a', ms(1));
    local.write('Patient', 'a1', ms(2));
    local.write('Patient', 'a', ms(3));
    expect(find(local.history, versionFilter('Patient', 'a', 1))).toHaveLength(1);
    expect(find(local.history, versionFilter('Patient', 'a1', 1))[0].id).toBe('a1');
    expect(find(local.history, historyBaseFilter({ resourceType: 'Patient', id: 'a' }))).toHaveLength(2);
  });

  it('the record projection leaves the index fields out', () => {
    const local = new Collections();
    local.write('Patient', 'x', ms(1), 'PUT', true, { 'idx.name': ['smith'] });
    const doc = local.resources[0];
    expect(doc['idx.name']).toEqual(['smith']);
    const projected = new Query(currentFilter('Patient', 'x')).find<Doc>(local.resources, RECORD_PROJECTION).all()[0];
    expect(projected['idx.name']).toBeUndefined();
    expect(projected.resource).toBeDefined();
  });

  it('index fields cannot overwrite the record fields', () => {
    const record = newVersion('Patient', 'p', 3, ms(1), 'PUT', { resourceType: 'Patient', id: 'p' });
    const doc = currentDocument(record, { version: 99, deleted: true, _id: 'x', name: ['n'] });
    expect(doc).toMatchObject({ _id: 'Patient/p', version: 3, deleted: false, name: ['n'] });
  });
});

describe('mongo query documents: conditional writes', () => {
  it('the guard matches the version that was read and not a stale one', () => {
    const db = new Collections();
    db.write('Patient', 'a', ms(1));
    db.write('Patient', 'a', ms(2));
    const stale = updateOne(db.resources, guardFilter('Patient', 'a', 1), { $set: { version: 3 } });
    expect(stale.matchedCount).toBe(0);
    expect(find(db.resources, currentFilter('Patient', 'a'))[0].version).toBe(2);
    const fresh = updateOne(db.resources, guardFilter('Patient', 'a', 2), { $set: { version: 3 } });
    expect(fresh.matchedCount).toBe(1);
  });

  it('of two writers that read the same version, only the first guarded replace matches', () => {
    const db = new Collections();
    db.write('Patient', 'a', ms(1));
    const readByBoth = find(db.resources, currentFilter('Patient', 'a'))[0].version;
    const first = updateOne(db.resources, guardFilter('Patient', 'a', readByBoth), { $set: { version: readByBoth + 1 } });
    const second = updateOne(db.resources, guardFilter('Patient', 'a', readByBoth), { $set: { version: readByBoth + 1 } });
    expect([first.matchedCount, second.matchedCount]).toEqual([1, 0]);
  });

  it('the guard does not match another resource with the same version', () => {
    const db = new Collections();
    db.write('Patient', 'a', ms(1));
    db.write('Patient', 'b', ms(2));
    expect(find(db.resources, guardFilter('Patient', 'b', 1)).map((d) => d.id)).toEqual(['b']);
    expect(find(db.resources, guardFilter('Patient', 'c', 1))).toHaveLength(0);
  });
});

describe('mongo query documents: deletes', () => {
  const db = new Collections();
  db.write('Patient', 'a', ms(1), 'POST', true, { 'idx.family': ['doe'] });
  db.write('Patient', 'b', ms(2));
  db.write('Patient', 'a', ms(3), 'DELETE', false, { 'idx.family': ['doe'] });
  db.write('Observation', 'o', ms(4));

  it('a tombstone replaces the current document: next version, no resource, no index fields', () => {
    const doc = find(db.resources, currentFilter('Patient', 'a'))[0];
    expect(doc).toMatchObject({ version: 2, deleted: true, method: 'DELETE', lastUpdated: ms(3) });
    expect(doc.resource).toBeUndefined();
    expect(doc['idx.family']).toBeUndefined();
    const rec = recordFromDoc(doc);
    expect(rec.deleted).toBe(true);
    expect(rec.resource).toBeUndefined();
  });

  it('history keeps the deleted version and the one before it', () => {
    const versions = find(db.history, historyBaseFilter({ resourceType: 'Patient', id: 'a' }), HISTORY_SORT);
    expect(versions.map((v) => [v.version, v.deleted])).toEqual([
      [2, true],
      [1, false],
    ]);
    expect(versions[1].resource).toBeDefined();
  });

  it('count filters leave tombstones out, and a tombstone matches no index field', () => {
    expect(find(db.resources, countFilter()).map((d) => d._id).sort()).toEqual(['Observation/o', 'Patient/b']);
    expect(find(db.resources, countFilter('Patient')).map((d) => d._id)).toEqual(['Patient/b']);
    expect(find(db.resources, { 'idx.family': 'doe' })).toHaveLength(0);
  });

  it('a write after a delete revives the id with the next version', () => {
    const local = new Collections();
    local.write('Patient', 'a', ms(1));
    local.write('Patient', 'a', ms(2), 'DELETE', false);
    const rec = local.write('Patient', 'a', ms(3));
    expect(rec.versionId).toBe(3);
    expect(find(local.resources, countFilter('Patient'))).toHaveLength(1);
  });
});

describe('mongo query documents: history filters and paging', () => {
  const db = new Collections();
  // 3 types, interleaved writes; several writes share a millisecond (as they could across processes).
  const times = [1, 2, 2, 3, 5, 5, 5, 8, 9, 9, 12, 13, 13, 13, 20, 21];
  const plan: [string, string][] = [
    ['Patient', 'a'], ['Patient', 'b'], ['Observation', 'o1'], ['Patient', 'a'],
    ['Encounter', 'e'], ['Patient', 'a'], ['Observation', 'o2'], ['Patient', 'b'],
    ['Patient', 'a'], ['Observation', 'o1'], ['Patient', 'a'], ['Encounter', 'e'],
    ['Patient', 'c'], ['Patient', 'a'], ['Patient', 'a'], ['Observation', 'o1'],
  ];
  plan.forEach(([type, id], i) => db.write(type, id, ms(times[i]), 'PUT', !(type === 'Patient' && id === 'b' && i === 7)));

  const expected = (q: Omit<HistoryQuery, 'count' | 'cursor'>): string[] =>
    db.history
      .filter((h) => (!q.resourceType || h.resourceType === q.resourceType) && (!q.id || h.id === q.id))
      .filter((h) => (!q.since || h.lastUpdated > q.since) && (!q.at || h.lastUpdated <= q.at))
      .sort((x, y) => (x.lastUpdated === y.lastUpdated ? (x._id < y._id ? 1 : -1) : x.lastUpdated < y.lastUpdated ? 1 : -1))
      .map((h) => h._id);

  /** Pages through the history like the store does: limit count + 1, cursor from the last entry of a page. */
  const pages = (q: Omit<HistoryQuery, 'cursor'>): string[][] => {
    const out: string[][] = [];
    let cursor: string | undefined;
    for (let guard = 0; guard < 100; guard++) {
      const docs = find(db.history, historyPageFilter({ ...q, cursor }), HISTORY_SORT, q.count + 1);
      const page = docs.slice(0, q.count);
      out.push(page.map((d) => d._id));
      if (docs.length <= q.count) return out;
      cursor = Buffer.from(JSON.stringify({ t: page[page.length - 1].lastUpdated, k: page[page.length - 1]._id })).toString('base64url');
    }
    throw new Error('paging did not end');
  };

  const cases: [string, Omit<HistoryQuery, 'count' | 'cursor'>][] = [
    ['system', {}],
    ['type', { resourceType: 'Patient' }],
    ['instance', { resourceType: 'Patient', id: 'a' }],
    ['system since', { since: ms(5) }],
    ['type since', { resourceType: 'Observation', since: ms(2) }],
    ['system at', { at: ms(9) }],
    ['instance since and at', { resourceType: 'Patient', id: 'a', since: ms(2), at: ms(13) }],
  ];

  for (const [name, q] of cases) {
    it(`${name}: the base filter returns the right versions, newest first`, () => {
      const got = find(db.history, historyBaseFilter(q), HISTORY_SORT).map((d) => d._id);
      expect(got).toEqual(expected(q));
      expect(got.length).toBeGreaterThan(0);
    });

    for (const count of [1, 2, 3, 7]) {
      it(`${name}: pages of ${count} cover every entry once, in order`, () => {
        const all = pages({ ...q, count });
        expect(all.flat()).toEqual(expected(q));
        expect(new Set(all.flat()).size).toBe(all.flat().length);
        for (const p of all.slice(0, -1)) expect(p).toHaveLength(count);
      });
    }
  }

  it('since is exclusive and at is inclusive', () => {
    const since = find(db.history, historyBaseFilter({ since: ms(13) }), HISTORY_SORT);
    expect(since.every((d) => d.lastUpdated > ms(13))).toBe(true);
    expect(since.map((d) => d.lastUpdated)).toEqual([ms(21), ms(20)]);
    const at = find(db.history, historyBaseFilter({ at: ms(2) }), HISTORY_SORT);
    expect(at.map((d) => d.lastUpdated)).toEqual([ms(2), ms(2), ms(1)]);
  });

  it('instance history is in version order', () => {
    const versions = find(db.history, historyBaseFilter({ resourceType: 'Patient', id: 'a' }), HISTORY_SORT).map((d) => d.version);
    expect(versions).toEqual([...versions].sort((x, y) => y - x));
    expect(versions[0]).toBe(7);
  });

  it('the deleted version of Patient/b appears in its history as a tombstone', () => {
    const b = find(db.history, historyBaseFilter({ resourceType: 'Patient', id: 'b' }), HISTORY_SORT);
    expect(b.map((d) => [d.version, d.deleted])).toEqual([
      [2, true],
      [1, false],
    ]);
  });
});

describe('mongo query documents: cursors, instants, stored copies', () => {
  it('history cursors that do not decode are a 400', () => {
    expect(() => decodeHistoryCursor('not a cursor')).toThrow(FhirError);
    const noFields = Buffer.from('{"x":1}').toString('base64url');
    try {
      historyPageFilter({ cursor: noFields });
      expect.unreachable();
    } catch (e) {
      expect((e as FhirError).status).toBe(400);
    }
  });

  it('lastUpdated never goes back for one resource, even behind a slow clock', () => {
    expect(nextLastUpdated(ms(10), ms(5))).toBe(ms(10));
    expect(nextLastUpdated(ms(10), undefined)).toBe(ms(10));
    expect(nextLastUpdated(ms(5), ms(10))).toBe(ms(11));
    expect(nextLastUpdated(ms(10), ms(10))).toBe(ms(11));
  });

  it('the stored copy carries meta and the input is left untouched', () => {
    const input: Patient = { resourceType: 'Patient', id: 'p', meta: { profile: ['http://x'] } };
    const record = newVersion('Patient', 'p', 4, ms(1), 'PUT', input);
    expect(record.resource?.meta).toEqual({ profile: ['http://x'], versionId: '4', lastUpdated: ms(1) });
    expect(input.meta).toEqual({ profile: ['http://x'] });
    expect(historyDocument(record)).toMatchObject({ _id: 'Patient/p/4', version: 4, deleted: false });
    expect(currentDocument(record)._id).toBe('Patient/p');
  });
});

describe('mongo search filters (mingo): negated filter and paging both ways', () => {
  type SDoc = Record<string, unknown>;
  let docs: SDoc[] = [];
  const doc = (r: Resource): SDoc => ({ _id: `${r.resourceType}/${r.id}`, resourceType: r.resourceType, id: r.id, deleted: false, resource: r, ...mongoIndexFields(extractIndex(r)) });
  const put = (r: Resource) => {
    docs = docs.filter((d) => d._id !== `${r.resourceType}/${r.id}`);
    docs.push(doc(r));
  };
  const obs = (id: string, date?: string): Resource => ({ resourceType: 'Observation', id, status: 'final', code: { text: 'x' }, ...(date ? { effectiveDateTime: date } : {}) }) as Resource;
  const run = (request: SearchRequest) => {
    const c = compileMongoFilter(request);
    const found = new Query(c.filter).find<SDoc>(docs).sort(c.sort as Record<string, 1 | -1>).limit(c.limit).all() as SDoc[];
    const { page, next, previous } = c.paginate(found);
    return { ids: page.map((d) => d._id as string), next, previous, total: new Query(c.countFilter).find(docs).all().length };
  };
  const request = (extra: Partial<SearchRequest>): SearchRequest => ({ resourceTypes: ['Observation'], filters: [], sort: [], count: 1000, total: 'none', include: [], ...extra });

  it('not-refs leaves out exactly the listed Type/id, in totals too; the same id of another type stays', () => {
    docs = [];
    for (const id of ['a', 'b', 'c']) put(obs(id));
    put({ resourceType: 'Patient', id: 'a' } as Resource);
    const both = request({ resourceTypes: ['Observation', 'Patient'], filters: [{ kind: 'not-refs', refs: ['Observation/a', 'Patient/zz'] }] });
    const r = run(both);
    expect([...r.ids].sort()).toEqual(['Observation/b', 'Observation/c', 'Patient/a']);
    expect(r.total).toBe(3);
    expect(run(request({ filters: [{ kind: 'not-refs', refs: [] }] })).ids).toHaveLength(3);
  });

  for (const [label, sort] of [
    ['unsorted', []],
    ['sorted by -date', [{ param: 'date', descending: true }]],
    ['sorted by date', [{ param: 'date', descending: false }]],
  ] as [string, SortKey[]][]) {
    it(`${label}: forward to the end and back, with inserts and deletes between pages`, async () => {
      docs = [];
      const dates = new Map<string, string | undefined>();
      for (let i = 0; i < 20; i++) {
        const id = `o${String(i).padStart(2, '0')}`;
        dates.set(id, i === 4 ? undefined : `2024-01-${String(((i * 3) % 7) + 1).padStart(2, '0')}`);
        put(obs(id, dates.get(id)));
      }
      await walkBothWays(
        {
          page: async (cursor) => run(request({ sort, count: 3, ...(cursor ? { cursor } : {}) })),
          all: async () => run(request({ sort })).ids,
          cloneAfter: async (ref) => {
            const id = ref.split('/')[1]!;
            dates.set(`${id}x`, dates.get(id));
            put(obs(`${id}x`, dates.get(id)));
            return `Observation/${id}x`;
          },
          remove: async (ref) => {
            docs = docs.filter((d) => d._id !== ref);
          },
        },
        3,
      );
    });
  }
});

describe('mongo search filters (mingo): _text, _content and near', () => {
  const resources: Resource[] = [
    { resourceType: 'Location', id: 'lux', name: 'Luxembourg-Ville', position: { latitude: 49.6116, longitude: 6.1319 } } as Resource,
    { resourceType: 'Location', id: 'wiltz', name: 'Wiltz', position: { latitude: 49.9658, longitude: 5.9325 } } as Resource,
    { resourceType: 'Location', id: 'nowhere', name: 'Sans position' } as Resource,
  ];
  const docs = resources.map((r) => ({ _id: `${r.resourceType}/${r.id}`, resourceType: r.resourceType, id: r.id, deleted: false, ...mongoIndexFields(extractIndex(r)) }));
  const run = (filters: SearchRequest['filters']) => {
    const c = compileMongoFilter({ resourceTypes: ['Location'], filters, sort: [], count: 100, total: 'none', include: [] });
    return (new Query(c.filter).find<{ id: string }>(docs).all() as { id: string }[]).map((d) => d.id).sort();
  };

  it('stores words and the position as plain fields', () => {
    expect(docs[0]!.idx.cnt).toEqual(expect.arrayContaining(['luxembourg', 'ville']));
    expect(docs[0]!.idx.geo).toEqual({ near: { lat: 49.6116, lon: 6.1319 } });
    expect(docs[2]!.idx.geo).toBeUndefined();
  });

  it('matches word prefixes (all words of a value) and distances, with the filter fields indexed', async () => {
    expect(run([{ kind: 'text', param: '_content', anyOf: [['lux', 'vil']] }])).toEqual(['lux']);
    expect(run([{ kind: 'text', param: '_content', anyOf: [['lux', 'wil']] }])).toEqual([]);
    expect(run([{ kind: 'text', param: '_content', anyOf: [['wil'], ['sans']] }])).toEqual(['nowhere', 'wiltz']);
    // Luxembourg-Ville to Wiltz: about 42 km.
    expect(run([{ kind: 'near', param: 'near', anyOf: [{ latitude: 49.6116, longitude: 6.1319, distanceKm: 40 }] }])).toEqual(['lux']);
    expect(run([{ kind: 'near', param: 'near', anyOf: [{ latitude: 49.6116, longitude: 6.1319, distanceKm: 45 }] }])).toEqual(['lux', 'wiltz']);
    const { mongoSearchIndexes: indexes } = await import('../src/store/mongo/search-filter.ts');
    const keys = indexes.flatMap((i) => Object.keys(i.key));
    for (const k of ['idx.txt', 'idx.cnt', 'idx.geo.near.lat']) expect(keys).toContain(k);
  });
});

/**
 * The shared store test suite: the semantics of src/store/port.ts, run against every adapter
 * (test/store.test.ts). `makeStore` returns a store on which init() has been called; the suite clears it
 * before each case and closes it at the end.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Patient, Resource } from 'fhir/r4';
import { FhirError } from '../src/fhir/outcome.ts';
import type { HistoryQuery, Store, VersionRecord, WriteMethod } from '../src/store/port.ts';
import type { IndexValue, SearchRequest, SortKey } from '../src/search/types.ts';
import { walkBothWays } from './support/paging.ts';

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const patient = (id: string, family = 'Doe'): Patient => ({ resourceType: 'Patient', id, name: [{ family }] });
const resource = (resourceType: string, id: string): Resource => ({ resourceType, id }) as Resource;
const opts = (method: WriteMethod = 'PUT', expectedVersion?: number) =>
  expectedVersion === undefined ? { method, index: [] } : { method, index: [], expectedVersion };

async function expectStatus(promise: Promise<unknown>, status: number): Promise<FhirError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(status);
    return err as FhirError;
  }
  throw new Error(`expected a FhirError ${status}, the call succeeded`);
}

const key = (r: Pick<VersionRecord, 'resourceType' | 'id' | 'versionId'>) => `${r.resourceType}/${r.id}/${r.versionId}`;

function searchRequest(resourceTypes: string[], extra: Partial<SearchRequest> = {}): SearchRequest {
  return { resourceTypes, filters: [], sort: [], count: 50, total: 'none', include: [], ...extra };
}

export function defineStoreSuite(name: string, makeStore: () => Promise<Store>): void {
  describe(`store port semantics: ${name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await makeStore();
    });
    afterAll(async () => {
      await store?.close();
    });
    beforeEach(async () => {
      await store.clear();
    });

    /** Every history entry, newest first, read page by page. */
    async function fullHistory(query: Omit<HistoryQuery, 'count' | 'cursor'> = {}, count = 1000): Promise<VersionRecord[][]> {
      const pages: VersionRecord[][] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 1000; i++) {
        const page = await store.history({ ...query, count, cursor });
        pages.push(page.entries);
        if (!page.next) return pages;
        expect(page.entries).toHaveLength(count);
        cursor = page.next;
      }
      throw new Error('history paging did not end');
    }

    describe('versions and lookups', () => {
      it('put creates version 1, then 2, with meta set on the returned and the stored copies', async () => {
        const r1 = await store.put(patient('p1', 'One'), opts('POST'));
        expect(r1).toMatchObject({ resourceType: 'Patient', id: 'p1', versionId: 1, method: 'POST', deleted: false });
        expect(r1.lastUpdated).toMatch(ISO_MS);
        expect(r1.resource?.meta?.versionId).toBe('1');
        expect(r1.resource?.meta?.lastUpdated).toBe(r1.lastUpdated);

        const r2 = await store.put(patient('p1', 'Two'), opts('PUT'));
        expect(r2.versionId).toBe(2);
        expect(r2.resource?.meta?.versionId).toBe('2');
        expect(r2.lastUpdated > r1.lastUpdated).toBe(true);

        const cur = await store.current('Patient', 'p1');
        expect(cur).toMatchObject({ versionId: 2, deleted: false, lastUpdated: r2.lastUpdated });
        expect(cur?.resource?.meta).toMatchObject({ versionId: '2', lastUpdated: r2.lastUpdated });
        expect((cur?.resource as Patient).name?.[0].family).toBe('Two');
      });

      it('version() returns each stored version and nothing else', async () => {
        await store.put(patient('p1', 'One'), opts('POST'));
        await store.put(patient('p1', 'Two'), opts());
        const v1 = await store.version('Patient', 'p1', 1);
        expect(v1).toMatchObject({ versionId: 1, deleted: false, method: 'POST' });
        expect((v1?.resource as Patient).name?.[0].family).toBe('One');
        expect(v1?.resource?.meta?.versionId).toBe('1');
        const v2 = await store.version('Patient', 'p1', 2);
        expect((v2?.resource as Patient).name?.[0].family).toBe('Two');
        expect(await store.version('Patient', 'p1', 3)).toBeUndefined();
        expect(await store.version('Patient', 'nope', 1)).toBeUndefined();
        expect(await store.version('Observation', 'p1', 1)).toBeUndefined();
      });

      it('current() of an id never used is undefined, and types are kept apart', async () => {
        await store.put(patient('same'), opts('POST'));
        await store.put(resource('Observation', 'same'), opts('POST'));
        await store.put(resource('Observation', 'same'), opts());
        expect(await store.current('Patient', 'other')).toBeUndefined();
        expect((await store.current('Patient', 'same'))?.versionId).toBe(1);
        expect((await store.current('Observation', 'same'))?.versionId).toBe(2);
      });

      it('lastUpdated strictly increases over consecutive writes', async () => {
        const stamps: string[] = [];
        for (let i = 0; i < 20; i++) stamps.push((await store.put(patient(`p${i % 3}`), opts(i < 3 ? 'POST' : 'PUT'))).lastUpdated);
        for (let i = 1; i < stamps.length; i++) expect(stamps[i] > stamps[i - 1]).toBe(true);
        for (const s of stamps) expect(s).toMatch(ISO_MS);
      });
    });

    describe('deletes', () => {
      it('delete writes a tombstone version and current() reports it deleted', async () => {
        await store.put(patient('p1'), opts('POST'));
        await store.put(patient('p1'), opts('POST'));
        const del = await store.delete('Patient', 'p1', { method: 'DELETE' });
        expect(del).toMatchObject({ resourceType: 'Patient', id: 'p1', versionId: 3, deleted: true, method: 'DELETE' });
        expect(del?.resource).toBeUndefined();
        const cur = await store.current('Patient', 'p1');
        expect(cur).toMatchObject({ versionId: 3, deleted: true });
        expect(cur?.resource).toBeUndefined();
        expect((await store.version('Patient', 'p1', 2))?.resource).toBeDefined();
        expect((await store.version('Patient', 'p1', 3))?.deleted).toBe(true);
      });

      it('deleting what is not live writes nothing and returns undefined', async () => {
        expect(await store.delete('Patient', 'never', { method: 'DELETE' })).toBeUndefined();
        expect(await store.current('Patient', 'never')).toBeUndefined();
        await store.put(patient('p1'), opts('POST'));
        await store.delete('Patient', 'p1', { method: 'DELETE' });
        expect(await store.delete('Patient', 'p1', { method: 'DELETE' })).toBeUndefined();
        expect((await store.current('Patient', 'p1'))?.versionId).toBe(2);
        expect((await fullHistory()).flat()).toHaveLength(2);
      });

      it('put after delete revives the id with the next version', async () => {
        await store.put(patient('p1', 'One'), opts('POST'));
        await store.delete('Patient', 'p1', { method: 'DELETE' });
        const revived = await store.put(patient('p1', 'Back'), opts());
        expect(revived).toMatchObject({ versionId: 3, deleted: false });
        const cur = await store.current('Patient', 'p1');
        expect(cur).toMatchObject({ versionId: 3, deleted: false });
        expect((cur?.resource as Patient).name?.[0].family).toBe('Back');
        expect(await store.count('Patient')).toBe(1);
      });
    });

    describe('a create (POST) over an id that exists', () => {
      const familyIndex = (f: string): IndexValue[] => [{ param: 'family', type: 'string', value: f.toLowerCase(), exact: f }];
      const family = async (f: string) =>
        (
          await store.search(
            searchRequest(['Patient'], { filters: [{ kind: 'param', param: 'family', type: 'string', anyOf: [{ type: 'string', value: f, modifier: 'exact' }] }] }),
          )
        ).resources.map((r) => r.id);

      it('live or deleted, becomes the next version with its index rows replaced; an expected version is still checked', async () => {
        const first = await store.put(patient('p1', 'Alpha'), { method: 'POST', index: familyIndex('Alpha') });
        expect(first).toMatchObject({ versionId: 1, deleted: false, method: 'POST' });
        expect(first.resource!.meta).toEqual({ versionId: '1', lastUpdated: first.lastUpdated });
        // The same id again as a create: no second row, version 2, the old index row gone.
        const again = await store.put(patient('p1', 'Beta'), { method: 'POST', index: familyIndex('Beta') });
        expect(again).toMatchObject({ versionId: 2, deleted: false });
        expect(again.resource!.meta!.versionId).toBe('2');
        expect(again.lastUpdated > first.lastUpdated).toBe(true);
        expect(await store.count('Patient')).toBe(1);
        expect(await family('Alpha')).toEqual([]);
        expect(await family('Beta')).toEqual(['p1']);
        // Deleted, then created again under the same id: version 4, live.
        await store.delete('Patient', 'p1', { method: 'DELETE' });
        const revived = await store.put(patient('p1', 'Gamma'), { method: 'POST', index: familyIndex('Gamma') });
        expect(revived).toMatchObject({ versionId: 4, deleted: false });
        expect((await store.current('Patient', 'p1'))!.resource).toMatchObject({ name: [{ family: 'Gamma' }], meta: { versionId: '4' } });
        expect(await family('Gamma')).toEqual(['p1']);
        const history = await store.history({ resourceType: 'Patient', id: 'p1', count: 10 });
        expect(history.entries.map((e) => [e.versionId, e.method, e.deleted])).toEqual([
          [4, 'POST', false],
          [3, 'DELETE', true],
          [2, 'POST', false],
          [1, 'POST', false],
        ]);
        // A create that expects a version still checks it.
        await expectStatus(store.put(patient('p1', 'Delta'), { method: 'POST', expectedVersion: 1, index: familyIndex('Delta') }), 412);
        expect((await store.current('Patient', 'p1'))!.versionId).toBe(4);
      });

      it('a created version replaced by a second create keeps both: vread of each, history at every level', async () => {
        const other = await store.put(resource('Observation', 'o1'), opts('POST'));
        const v1 = await store.put(patient('p1', 'One'), opts('POST'));
        const v2 = await store.put(patient('p1', 'Two'), opts('POST'));
        expect(v2).toMatchObject({ versionId: 2, method: 'POST' });
        const read1 = await store.version('Patient', 'p1', 1);
        expect(read1).toMatchObject({ versionId: 1, method: 'POST', deleted: false, lastUpdated: v1.lastUpdated });
        expect(read1!.resource).toMatchObject({ name: [{ family: 'One' }], meta: { versionId: '1', lastUpdated: v1.lastUpdated } });
        const read2 = await store.version('Patient', 'p1', 2);
        expect(read2).toMatchObject({ versionId: 2, method: 'POST', lastUpdated: v2.lastUpdated });
        expect((read2!.resource as Patient).name?.[0].family).toBe('Two');
        expect(await store.version('Patient', 'p1', 3)).toBeUndefined();
        const instance = await store.history({ resourceType: 'Patient', id: 'p1', count: 10 });
        expect(instance.entries.map((e) => [e.versionId, e.method, (e.resource as Patient).name?.[0].family])).toEqual([
          [2, 'POST', 'Two'],
          [1, 'POST', 'One'],
        ]);
        if (instance.total !== undefined) expect(instance.total).toBe(2);
        const type = await store.history({ resourceType: 'Patient', count: 10 });
        expect(type.entries.map(key)).toEqual(['Patient/p1/2', 'Patient/p1/1']);
        if (type.total !== undefined) expect(type.total).toBe(2);
        const system = (await fullHistory({}, 1)).flat();
        expect(system.map(key)).toEqual(['Patient/p1/2', 'Patient/p1/1', key(other)]);
        const total = (await store.history({ count: 1 })).total;
        if (total !== undefined) expect(total).toBe(3);
      });
    });

    describe('conditional writes', () => {
      it('a matching expectedVersion writes the next version', async () => {
        await store.put(patient('p1'), opts('POST'));
        const r = await store.put(patient('p1', 'New'), opts('PUT', 1));
        expect(r.versionId).toBe(2);
      });

      it('a stale expectedVersion is a 412 and nothing is written', async () => {
        await store.put(patient('p1', 'One'), opts('POST'));
        await store.put(patient('p1', 'Two'), opts());
        await expectStatus(store.put(patient('p1', 'Stale'), opts('PUT', 1)), 412);
        const cur = await store.current('Patient', 'p1');
        expect(cur?.versionId).toBe(2);
        expect((cur?.resource as Patient).name?.[0].family).toBe('Two');
        expect(await store.version('Patient', 'p1', 3)).toBeUndefined();
        expect((await fullHistory()).flat()).toHaveLength(2);
      });

      it('expectedVersion on an unknown or deleted id is a 412 and nothing is written', async () => {
        await expectStatus(store.put(patient('ghost'), opts('PUT', 1)), 412);
        expect(await store.current('Patient', 'ghost')).toBeUndefined();
        await store.put(patient('p1'), opts('POST'));
        await store.delete('Patient', 'p1', { method: 'DELETE' });
        await expectStatus(store.put(patient('p1'), opts('PUT', 2)), 412);
        expect(await store.current('Patient', 'p1')).toMatchObject({ versionId: 2, deleted: true });
      });

      it('a delete with a stale expectedVersion is a 412 and the resource stays live', async () => {
        await store.put(patient('p1'), opts('POST'));
        await store.put(patient('p1'), opts());
        await expectStatus(store.delete('Patient', 'p1', { method: 'DELETE', expectedVersion: 1 }), 412);
        expect(await store.current('Patient', 'p1')).toMatchObject({ versionId: 2, deleted: false });
        const del = await store.delete('Patient', 'p1', { method: 'DELETE', expectedVersion: 2 });
        expect(del?.versionId).toBe(3);
      });

      it('two concurrent puts with the same expectedVersion: exactly one wins, the other gets 412', async () => {
        await store.put(patient('race'), opts('POST'));
        const results = await Promise.allSettled([
          store.put(patient('race', 'A'), opts('PUT', 1)),
          store.put(patient('race', 'B'), opts('PUT', 1)),
        ]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(FhirError);
        expect(((lost[0] as PromiseRejectedResult).reason as FhirError).status).toBe(412);
        const winner = (won[0] as PromiseFulfilledResult<VersionRecord>).value;
        const cur = await store.current('Patient', 'race');
        expect(cur?.versionId).toBe(2);
        expect((cur?.resource as Patient).name?.[0].family).toBe((winner.resource as Patient).name?.[0].family);
        expect((await fullHistory({ resourceType: 'Patient', id: 'race' })).flat()).toHaveLength(2);
      });

      it('five concurrent conditional writers: one wins', async () => {
        await store.put(patient('race'), opts('POST'));
        const results = await Promise.allSettled(
          ['A', 'B', 'C', 'D', 'E'].map((f) => store.put(patient('race', f), opts('PUT', 1))),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect((r.reason as FhirError).status).toBe(412);
        expect((await store.current('Patient', 'race'))?.versionId).toBe(2);
      });

      it('concurrent unconditional writes all land, each with its own version', async () => {
        const results = await Promise.all(['A', 'B', 'C', 'D'].map((f) => store.put(patient('busy', f), opts())));
        expect(results.map((r) => r.versionId).sort()).toEqual([1, 2, 3, 4]);
        expect((await store.current('Patient', 'busy'))?.versionId).toBe(4);
        const versions = (await fullHistory({ resourceType: 'Patient', id: 'busy' })).flat().map((e) => e.versionId);
        expect(versions).toEqual([4, 3, 2, 1]);
      });
    });

    describe('transactions', () => {
      it('commits every write of the work together and returns its result', async () => {
        const result = await store.transaction(async (s) => {
          await s.put(patient('t1'), opts('POST'));
          await s.put(patient('t2'), opts('POST'));
          return 'done';
        });
        expect(result).toBe('done');
        expect(await store.count('Patient')).toBe(2);
      });

      it('a throw inside rolls back every write, creates included, and the store is unchanged', async () => {
        await store.put(patient('keep', 'Before'), opts('POST'));
        await store.put(patient('gone'), opts('POST'));
        const historyBefore = (await fullHistory()).flat().map(key);
        const boom = new Error('boom');
        await expect(
          store.transaction(async (s) => {
            await s.put(patient('fresh'), opts('POST'));
            await s.put(patient('keep', 'After'), opts());
            await s.delete('Patient', 'gone', { method: 'DELETE' });
            await s.put(resource('Observation', 'o1'), opts('POST'));
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(await store.current('Patient', 'fresh')).toBeUndefined();
        expect(await store.current('Observation', 'o1')).toBeUndefined();
        const keep = await store.current('Patient', 'keep');
        expect(keep?.versionId).toBe(1);
        expect((keep?.resource as Patient).name?.[0].family).toBe('Before');
        expect(await store.current('Patient', 'gone')).toMatchObject({ versionId: 1, deleted: false });
        expect(await store.count()).toBe(2);
        expect((await fullHistory()).flat().map(key)).toEqual(historyBefore);
        // The ids are usable afterwards and start at version 1.
        expect((await store.put(patient('fresh'), opts('POST'))).versionId).toBe(1);
        expect((await store.put(patient('keep'), opts())).versionId).toBe(2);
      });

      it('a 412 inside a transaction rolls back the writes made before it', async () => {
        await store.put(patient('p1'), opts('POST'));
        await store.put(patient('p1'), opts());
        await expectStatus(
          store.transaction(async (s) => {
            await s.put(patient('new'), opts('POST'));
            await s.put(patient('p1'), opts('PUT', 1));
          }),
          412,
        );
        expect(await store.current('Patient', 'new')).toBeUndefined();
        expect((await store.current('Patient', 'p1'))?.versionId).toBe(2);
      });

      it('reads inside a transaction see its own writes', async () => {
        await store.put(patient('p1', 'Old'), opts('POST'));
        await store.transaction(async (s) => {
          const created = await s.put(patient('t1', 'New'), opts('POST'));
          expect(await s.current('Patient', 't1')).toMatchObject({ versionId: 1, deleted: false });
          expect((await s.version('Patient', 't1', 1))?.lastUpdated).toBe(created.lastUpdated);
          await s.put(patient('p1', 'Changed'), opts('PUT', 1));
          const p1 = await s.current('Patient', 'p1');
          expect(p1?.versionId).toBe(2);
          expect((p1?.resource as Patient).name?.[0].family).toBe('Changed');
          // A second conditional write in the same transaction sees the first one's version.
          await s.put(patient('p1', 'Again'), opts('PUT', 2));
          await s.delete('Patient', 't1', { method: 'DELETE' });
          expect(await s.current('Patient', 't1')).toMatchObject({ versionId: 2, deleted: true });
          const found = await s.search(searchRequest(['Patient']));
          expect(found.resources.map((r) => r.id)).toEqual(['p1']);
        });
        expect((await store.current('Patient', 'p1'))?.versionId).toBe(3);
        expect(await store.current('Patient', 't1')).toMatchObject({ versionId: 2, deleted: true });
      });
    });

    describe('history', () => {
      /** 4 Patients and 2 Observations, with updates and deletes; returns the writes in order. */
      async function seed(): Promise<VersionRecord[]> {
        const writes: VersionRecord[] = [];
        const put = async (r: Resource) => writes.push(await store.put(r, opts()));
        const create = async (r: Resource) => writes.push(await store.put(r, opts('POST')));
        const del = async (type: string, id: string) => writes.push((await store.delete(type, id, { method: 'DELETE' }))!);
        await create(patient('a'));
        await create(patient('b'));
        await create(resource('Observation', 'o1'));
        await put(patient('a', 'A2'));
        await create(patient('c'));
        await del('Patient', 'b');
        await create(resource('Observation', 'o2'));
        await put(patient('a', 'A3'));
        await put(resource('Observation', 'o1'));
        await put(patient('b', 'Revived'));
        await create(patient('d'));
        await del('Observation', 'o2');
        return writes;
      }
      const newestFirst = (writes: VersionRecord[]) => [...writes].reverse().map(key);

      it('system history lists every version, newest first, tombstones included', async () => {
        const writes = await seed();
        const page = await store.history({ count: 100 });
        expect(page.entries.map(key)).toEqual(newestFirst(writes));
        expect(page.next).toBeUndefined();
        if (page.total !== undefined) expect(page.total).toBe(writes.length);
        const tomb = page.entries.find((e) => key(e) === 'Patient/b/2');
        expect(tomb).toMatchObject({ deleted: true, method: 'DELETE' });
        expect(tomb?.resource).toBeUndefined();
        const live = page.entries.find((e) => key(e) === 'Patient/a/3');
        expect(live?.resource?.meta?.versionId).toBe('3');
        expect((live?.resource as Patient).name?.[0].family).toBe('A3');
      });

      it('type and instance history are filtered and newest first', async () => {
        const writes = await seed();
        const patients = await store.history({ resourceType: 'Patient', count: 100 });
        expect(patients.entries.map(key)).toEqual(newestFirst(writes.filter((w) => w.resourceType === 'Patient')));
        const a = await store.history({ resourceType: 'Patient', id: 'a', count: 100 });
        expect(a.entries.map((e) => e.versionId)).toEqual([3, 2, 1]);
        if (a.total !== undefined) expect(a.total).toBe(3);
        const none = await store.history({ resourceType: 'Patient', id: 'zz', count: 10 });
        expect(none.entries).toEqual([]);
        expect(none.next).toBeUndefined();
      });

      it('since keeps only versions strictly after the instant; at keeps those at or before it', async () => {
        const writes = await seed();
        const pivot = writes[4].lastUpdated;
        const since = await store.history({ since: pivot, count: 100 });
        expect(since.entries.map(key)).toEqual(newestFirst(writes.slice(5)));
        if (since.total !== undefined) expect(since.total).toBe(writes.length - 5);
        const at = await store.history({ at: pivot, count: 100 });
        expect(at.entries.map(key)).toEqual(newestFirst(writes.slice(0, 5)));
        const typeSince = await store.history({ resourceType: 'Observation', since: pivot, count: 100 });
        expect(typeSince.entries.map(key)).toEqual(newestFirst(writes.slice(5).filter((w) => w.resourceType === 'Observation')));
      });

      for (const count of [1, 2, 5]) {
        it(`paging ${count} at a time covers every entry once, in order, at each level`, async () => {
          const writes = await seed();
          const levels: [Omit<HistoryQuery, 'count'>, VersionRecord[]][] = [
            [{}, writes],
            [{ resourceType: 'Patient' }, writes.filter((w) => w.resourceType === 'Patient')],
            [{ resourceType: 'Patient', id: 'a' }, writes.filter((w) => w.resourceType === 'Patient' && w.id === 'a')],
            [{ since: writes[2].lastUpdated }, writes.slice(3)],
          ];
          for (const [query, expected] of levels) {
            const all = (await fullHistory(query, count)).flat();
            expect(all.map(key)).toEqual(newestFirst(expected));
            expect(new Set(all.map(key)).size).toBe(all.length);
          }
        });
      }

      it('a cursor keeps its place when newer versions are written between pages', async () => {
        const writes = await seed();
        const first = await store.history({ count: 4 });
        await store.put(patient('late'), opts('POST'));
        const rest = (await fullHistory({}, 100)).flat();
        expect(rest[0].id).toBe('late');
        const second = await store.history({ count: 100, cursor: first.next });
        expect([...first.entries, ...second.entries].map(key)).toEqual(newestFirst(writes));
      });
    });

    describe('search (no filters)', () => {
      it('finds live resources of the type only, with accurate totals', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('b'), opts('POST'));
        await store.put(patient('c'), opts('POST'));
        await store.put(resource('Observation', 'o'), opts('POST'));
        await store.delete('Patient', 'b', { method: 'DELETE' });
        const result = await store.search(searchRequest(['Patient'], { total: 'accurate' }));
        expect(result.resources.map((r) => r.id).sort()).toEqual(['a', 'c']);
        expect(result.total).toBe(2);
        for (const r of result.resources) expect(r.meta?.versionId).toBeDefined();
      });

      it('pages cover every match once', async () => {
        for (let i = 0; i < 7; i++) await store.put(patient(`p${i}`), opts('POST'));
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let i = 0; i < 10; i++) {
          const page = await store.search(searchRequest(['Patient'], { count: 3, cursor }));
          seen.push(...page.resources.map((r) => r.id!));
          if (!page.next) break;
          expect(page.resources).toHaveLength(3);
          cursor = page.next;
        }
        expect(seen.sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
      });

      it('_id restricts the matches', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('b'), opts('POST'));
        await store.put(patient('c'), opts('POST'));
        const result = await store.search(searchRequest(['Patient'], { filters: [{ kind: 'id', ids: ['a', 'c', 'zz'] }] }));
        expect(result.resources.map((r) => r.id).sort()).toEqual(['a', 'c']);
      });

      it('not-refs leaves out exactly the listed Type/id (the same id of another type stays), totals included', async () => {
        for (const id of ['a', 'b', 'c']) await store.put(patient(id), opts('POST'));
        await store.put(resource('Observation', 'a'), opts('POST'));
        await store.put(resource('Observation', 'b'), opts('POST'));
        const refs = (r: { resources: Resource[] }) => r.resources.map((x) => `${x.resourceType}/${x.id}`).sort();
        const both = ['Patient', 'Observation'];
        const result = await store.search(searchRequest(both, { total: 'accurate', filters: [{ kind: 'not-refs', refs: ['Patient/a', 'Observation/b', 'Observation/zz'] }] }));
        expect(refs(result)).toEqual(['Observation/a', 'Patient/b', 'Patient/c']);
        expect(result.total).toBe(3);
        // With other filters, and empty (no restriction).
        const withId = await store.search(searchRequest(both, { filters: [{ kind: 'id', ids: ['a'] }, { kind: 'not-refs', refs: ['Observation/a'] }] }));
        expect(refs(withId)).toEqual(['Patient/a']);
        const none = await store.search(searchRequest(both, { filters: [{ kind: 'not-refs', refs: [] }] }));
        expect(refs(none)).toHaveLength(5);
        // A long list (more than SQLite's bound-variable limit of older versions).
        const many = Array.from({ length: 40_000 }, (_, i) => `Patient/x${i}`);
        const long = await store.search(searchRequest(['Patient'], { filters: [{ kind: 'not-refs', refs: [...many, 'Patient/c'] }] }));
        expect(refs(long)).toEqual(['Patient/a', 'Patient/b']);
      });
    });

    describe('search paging in both directions', () => {
      const family = new Map<string, string | undefined>();
      const familyIndex = (f: string | undefined): IndexValue[] => (f === undefined ? [] : [{ param: 'family', type: 'string', value: f, exact: f }]);
      async function putFamily(id: string, f: string | undefined): Promise<void> {
        family.set(id, f);
        // Every id written here is new (the seed's and the clones'): a create.
        await store.put(patient(id, f ?? 'none'), { method: 'POST', index: familyIndex(f) });
      }
      async function seed(): Promise<void> {
        // 20 patients; family values repeat (ties break on id) and one has none (lowest).
        for (let i = 0; i < 20; i++) await putFamily(`p${String(i).padStart(2, '0')}`, i === 5 ? undefined : `f${(i * 7) % 10}`);
      }
      const ids = (r: { resources: Resource[] }) => r.resources.map((x) => `${x.resourceType}/${x.id}`);
      const cases: [string, SortKey[]][] = [
        ['unsorted', []],
        ['sorted ascending', [{ param: 'family', descending: false }]],
        ['sorted descending', [{ param: 'family', descending: true }]],
      ];
      for (const [label, sort] of cases) {
        it(`${label}: forward to the end and back, with inserts and deletes between pages`, async () => {
          await seed();
          const request = (count: number, cursor?: string) => searchRequest(['Patient'], { sort, count, ...(cursor ? { cursor } : {}) });
          await walkBothWays(
            {
              page: async (cursor) => {
                const r = await store.search(request(3, cursor));
                return { ids: ids(r), next: r.next, previous: r.previous };
              },
              all: async () => ids(await store.search(request(1000))),
              cloneAfter: async (ref) => {
                const id = ref.split('/')[1]!;
                await putFamily(`${id}x`, family.get(id));
                return `Patient/${id}x`;
              },
              remove: async (ref) => {
                await store.delete('Patient', ref.split('/')[1]!, { method: 'DELETE' });
              },
            },
            3,
          );
        });
      }

      it('an empty page reached from a cursor points back at the rows around the cursor', async () => {
        await seed();
        const first = await store.search(searchRequest(['Patient'], { count: 18 }));
        const rest = await store.search(searchRequest(['Patient'], { count: 18, cursor: first.next }));
        expect(ids(rest)).toEqual(['Patient/p18', 'Patient/p19']);
        for (const id of ['p18', 'p19']) await store.delete('Patient', id, { method: 'DELETE' });
        const empty = await store.search(searchRequest(['Patient'], { count: 18, cursor: first.next }));
        expect(empty.resources).toEqual([]);
        expect(empty.next).toBeUndefined();
        // Back from the empty page: the page that ended at the cursor, its last row included.
        const back = await store.search(searchRequest(['Patient'], { count: 3, cursor: empty.previous }));
        expect(ids(back)).toEqual(['Patient/p15', 'Patient/p16', 'Patient/p17']);
      });

      it('a cursor that does not decode, or does not fit the sort, is a 400', async () => {
        await seed();
        await expectStatus(store.search(searchRequest(['Patient'], { cursor: 'not-a-cursor' })), 400);
        const sorted = await store.search(searchRequest(['Patient'], { count: 3, sort: [{ param: 'family', descending: false }] }));
        await expectStatus(store.search(searchRequest(['Patient'], { count: 3, cursor: sorted.next })), 400);
        const forged = Buffer.from(JSON.stringify({ v: [], t: 'Patient', i: 'p01', b: 2 })).toString('base64url');
        await expectStatus(store.search(searchRequest(['Patient'], { count: 3, cursor: forged })), 400);
      });
    });

    describe('search includes', () => {
      const subject = (target: string) => [
        { param: 'subject', type: 'reference' as const, reference: target, targetType: target.split('/')[0], targetId: target.split('/')[1] },
      ];
      const observation = (id: string, target: string) =>
        store.put({ resourceType: 'Observation', id, status: 'final', code: { text: 'x' }, subject: { reference: target } } as Resource, {
          method: 'POST',
          index: subject(target),
        });

      it('_include adds the live resources the matches reference, once each', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('b'), opts('POST'));
        await store.put(patient('c'), opts('POST'));
        await observation('o1', 'Patient/a');
        await observation('o2', 'Patient/a');
        await observation('o3', 'Patient/b');
        await observation('o4', 'Patient/c');
        await store.delete('Patient', 'c', { method: 'DELETE' });
        const result = await store.search(
          searchRequest(['Observation'], {
            include: [{ reverse: false, sourceType: 'Observation', param: 'subject', iterate: false }],
          }),
        );
        expect(result.resources.map((r) => r.id).sort()).toEqual(['o1', 'o2', 'o3', 'o4']);
        expect((result.included ?? []).map((r) => `${r.resourceType}/${r.id}`).sort()).toEqual(['Patient/a', 'Patient/b']);
      });

      it('_revinclude adds the live resources that reference the matches', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('b'), opts('POST'));
        await observation('o1', 'Patient/a');
        await observation('o2', 'Patient/b');
        await observation('o3', 'Patient/b');
        await store.delete('Observation', 'o3', { method: 'DELETE' });
        const result = await store.search(
          searchRequest(['Patient'], {
            filters: [{ kind: 'id', ids: ['b'] }],
            include: [{ reverse: true, sourceType: 'Observation', param: 'subject', iterate: false }],
          }),
        );
        expect(result.resources.map((r) => r.id)).toEqual(['b']);
        expect((result.included ?? []).map((r) => `${r.resourceType}/${r.id}`)).toEqual(['Observation/o2']);
      });

      it('a rewrite without the reference drops it from includes', async () => {
        await store.put(patient('a'), opts('POST'));
        await observation('o1', 'Patient/a');
        await store.put({ resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' } } as Resource, opts());
        const rev = await store.search(
          searchRequest(['Patient'], { include: [{ reverse: true, sourceType: 'Observation', param: 'subject', iterate: false }] }),
        );
        expect(rev.included ?? []).toEqual([]);
      });
    });

    describe('reindex', () => {
      it('replaces the index values of live resources without a new version, skipping deleted ones', async () => {
        const tokenFilter = (code: string): SearchRequest['filters'] => [
          { kind: 'param', param: 'gender', type: 'token', anyOf: [{ type: 'token', code }] },
        ];
        const indexed = (code: string) => [{ param: 'gender', type: 'token' as const, code }];
        await store.put(patient('a'), { method: 'POST', index: indexed('male') });
        await store.put(patient('b'), { method: 'POST', index: indexed('male') });
        await store.delete('Patient', 'b', { method: 'DELETE' });
        await store.reindex([
          { resourceType: 'Patient', id: 'a', index: indexed('female') },
          { resourceType: 'Patient', id: 'b', index: indexed('female') },
          { resourceType: 'Patient', id: 'never', index: indexed('female') },
        ]);
        const female = await store.search(searchRequest(['Patient'], { filters: tokenFilter('female') }));
        expect(female.resources.map((r) => r.id)).toEqual(['a']);
        const male = await store.search(searchRequest(['Patient'], { filters: tokenFilter('male') }));
        expect(male.resources).toEqual([]);
        expect((await store.current('Patient', 'a'))!.versionId).toBe(1);
        expect(await store.current('Patient', 'never')).toBeUndefined();
      });
    });

    describe('count and clear', () => {
      it('count() counts live resources, per type or in all', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('a'), opts());
        await store.put(patient('b'), opts('POST'));
        await store.put(resource('Observation', 'o'), opts('POST'));
        await store.delete('Patient', 'b', { method: 'DELETE' });
        expect(await store.count('Patient')).toBe(1);
        expect(await store.count('Observation')).toBe(1);
        expect(await store.count('Encounter')).toBe(0);
        expect(await store.count()).toBe(2);
      });

      it('clear() drops every resource and version', async () => {
        await store.put(patient('a'), opts('POST'));
        await store.put(patient('a'), opts());
        await store.put(resource('Observation', 'o'), opts('POST'));
        await store.clear();
        expect(await store.count()).toBe(0);
        expect(await store.current('Patient', 'a')).toBeUndefined();
        expect(await store.version('Patient', 'a', 1)).toBeUndefined();
        expect((await store.history({ count: 10 })).entries).toEqual([]);
        expect((await store.put(patient('a'), opts('POST'))).versionId).toBe(1);
      });
    });
  });
}

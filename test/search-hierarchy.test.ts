/**
 * Reference `:above` / `:below` hierarchies (src/search/hierarchy.ts): the node limit is checked while the
 * pages of a level arrive (a very wide level is refused before it is read in full), and inside a transaction
 * the hierarchy is read through the transaction's session (its own writes are part of it).
 */
import type { Bundle, Resource } from 'fhir/r4';
import { beforeAll, describe, expect, it } from 'vitest';
import { FhirError } from '../src/fhir/outcome.ts';
import { hierarchyNodes, MAX_HIERARCHY_NODES } from '../src/search/hierarchy.ts';
import type { SearchRequest } from '../src/search/types.ts';
import type { SearchResult } from '../src/store/port.ts';
import { makeApp, type TestApp } from './support/app.ts';

/** A session whose Location `root` has `width` children, served page by page; counts what it hands out. */
function wideSession(width: number) {
  const state = { served: 0, pages: 0 };
  const session = {
    async search(request: SearchRequest): Promise<SearchResult> {
      state.pages++;
      const start = request.cursor ? Number(request.cursor) : 0;
      const f = request.filters[0]!;
      // Only the root has children; the children have none.
      const parents = f.kind === 'param' ? f.anyOf.map((v) => (v as { targetId?: string }).targetId) : [];
      const total = parents.includes('root') ? width : 0;
      const end = Math.min(total, start + request.count);
      const resources: Resource[] = [];
      for (let i = start; i < end; i++) resources.push({ resourceType: 'Location', id: `l${i}`, partOf: { reference: 'Location/root' } } as Resource);
      state.served += resources.length;
      return { resources, next: end < total ? String(end) : undefined };
    },
  };
  return { session, state };
}

describe('hierarchy node limit', () => {
  it('refuses a level wider than the limit after reading at most limit + 1 nodes of it', async () => {
    const { session, state } = wideSession(MAX_HIERARCHY_NODES * 4);
    const err = await hierarchyNodes(session, 'Location', 'root', 'below', 'partof:below').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(400);
    expect((err as FhirError).message).toMatch(/partof:below: the Location hierarchy has more than 5000 nodes/);
    expect(state.served).toBeLessThanOrEqual(MAX_HIERARCHY_NODES);
    expect(state.served).toBeGreaterThanOrEqual(MAX_HIERARCHY_NODES - 1);
  });
  it('a hierarchy of exactly the limit is expanded in full', async () => {
    const { session } = wideSession(MAX_HIERARCHY_NODES - 1);
    const nodes = await hierarchyNodes(session, 'Location', 'root', 'below', 'partof:below');
    expect(nodes.length).toBe(MAX_HIERARCHY_NODES);
    expect(new Set(nodes).size).toBe(MAX_HIERARCHY_NODES);
  });
  it('a smaller limit applies in the same way', async () => {
    const { session, state } = wideSession(50);
    await expect(hierarchyNodes(session, 'Location', 'root', 'below', 'k', 10)).rejects.toThrow(/more than 10 nodes/);
    expect(state.served).toBe(10);
  });
});

describe('hierarchies inside a transaction', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
  });
  const ids = (b: Bundle | undefined) => (b?.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id).sort();

  it("a GET entry's partof:below sees the transaction's own writes two levels down", async () => {
    const loc = (id: string, parent?: string) => ({ resourceType: 'Location', id, name: id, ...(parent ? { partOf: { reference: `Location/${parent}` } } : {}) });
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: loc('tx-site'), request: { method: 'PUT', url: 'Location/tx-site' } },
        { resource: loc('tx-floor', 'tx-site'), request: { method: 'PUT', url: 'Location/tx-floor' } },
        { resource: loc('tx-room', 'tx-floor'), request: { method: 'PUT', url: 'Location/tx-room' } },
        { request: { method: 'GET', url: 'Location?partof:below=Location/tx-site' } },
        { request: { method: 'GET', url: 'Location?partof:above=Location/tx-room' } },
      ],
    };
    const res = await t.http.post('/fhir').send(bundle);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(ids(entries[3]!.resource as Bundle)).toEqual(['tx-floor', 'tx-room']);
    // Above tx-room: tx-room, tx-floor, tx-site; the Locations whose parent is one of them.
    expect(ids(entries[4]!.resource as Bundle)).toEqual(['tx-floor', 'tx-room']);
    // After the commit, the same search outside a transaction agrees.
    expect(ids((await t.http.get('/fhir/Location?partof:below=Location/tx-site')).body as Bundle)).toEqual(['tx-floor', 'tx-room']);
  });
});

/**
 * The audit trail's own index extractor (src/audit/index-values.ts) against the generic one: over the
 * AuditEvents a server really writes (reads, vreads, searches, refusals, emergency access, a transaction, a
 * batch, a failed authentication, a national contact point, a patient and an assistant reading their trail),
 * both give the same values in the same order; the events are indexed directly, not through the fallback; an
 * event of another shape and a changed AuditEvent parameter set go through `extractIndex`.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from 'fhir/r4';
import { makeApp, type TestApp } from './support/app.ts';
import { seed } from './access-fixture.ts';
import { accessRuntime } from '../src/access/service.ts';
import { allAuditEvents } from '../src/audit/chain.ts';
import { auditIndexValues, indexedDirectly } from '../src/audit/index-values.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { setServerSearchParameters } from '../src/search/registry.ts';

let t: TestApp;
let events: AuditEvent[];

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp', organization: 'Organization/hospital' });
  const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
  const er = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none', purpose: 'EMERGENCY', reason: 'unconscious at the ER' });
  const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
  const asst = await t.as({ role: 'assistant', id: 'RelatedPerson/asst' });
  const ncp = await t.as({ role: 'ncp', id: 'Organization/ncp-be' });
  const ok = (status: number) => expect(status).toBeLessThan(500);
  ok((await gp.get('/fhir/Observation/o-normal')).status);
  ok((await gp.get('/fhir/Observation/o-normal/_history/1')).status);
  ok((await gp.get('/fhir/Patient/anna')).status);
  ok((await gp.get('/fhir/Observation?subject=Patient/anna&code=http://loinc.org|8867-4&_count=5')).status);
  ok((await gp.get('/fhir/Patient/anna/Observation')).status);
  ok((await none.get('/fhir/Observation/o-normal')).status); // refused: 404, in anna's trail
  ok((await none.get('/fhir/Observation/missing')).status);
  ok((await none.put('/fhir/Observation/o-normal').send({ resourceType: 'Observation', id: 'o-normal', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/anna' } })).status);
  ok((await er.get('/fhir/Observation/o-blood')).status); // emergency access, flagged
  ok((await er.get('/fhir/Observation/o-normal')).status);
  ok((await anna.get('/fhir/AuditEvent?patient=Patient/anna&_count=3')).status);
  ok((await asst.get('/fhir/Observation/o-normal')).status);
  ok((await ncp.get('/fhir/Patient/anna')).status);
  ok((await t.http.get('/fhir/Observation/o-ben')).status);
  ok((await t.http.get('/fhir/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender&code=male&system=http://hl7.org/fhir/administrative-gender')).status);
  ok((await t.http.get('/fhir/Practitioner/dr-gp')).status);
  ok((await t.client('not-a-jwt').get('/fhir/Patient/anna')).status); // failed authentication
  const tx = await gp.post('/fhir').send({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:7c1b1d7e-8a4e-4e43-9d5e-1f3c2b0a9e11', resource: { resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: 'Patient/anna' } }, request: { method: 'POST', url: 'Observation' } },
      { request: { method: 'GET', url: 'Observation?subject=Patient/anna' } },
      { request: { method: 'GET', url: 'Patient/anna' } },
    ],
  });
  ok(tx.status);
  // A transaction of twelve entries: its event lists more than eight values of one parameter (entity, entity-type).
  const big = await gp.post('/fhir').send({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      ...Array.from({ length: 6 }, (_, i) => ({ resource: { resourceType: 'Observation', status: 'final', code: { text: `step ${i}` }, subject: { reference: 'Patient/anna' } }, request: { method: 'POST', url: 'Observation' } })),
      ...['Patient/anna', 'Observation/o-normal', 'Observation?subject=Patient/anna', 'Patient/anna', 'Observation/o-blood', 'Practitioner/dr-gp'].map((url) => ({ request: { method: 'GET', url } })),
    ],
  });
  ok(big.status);
  const batch = await gp.post('/fhir').send({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Observation/o-ben' } }, { request: { method: 'GET', url: 'Patient/ben' } }] });
  ok(batch.status);
  const rt = await accessRuntime(t.ctx);
  await rt.audit.flush();
  events = await allAuditEvents(rt.auditStore);
});

describe('the audit trail index extractor', () => {
  it('gives exactly what extractIndex gives for every event the server wrote', () => {
    expect(events.length).toBeGreaterThan(40);
    const kinds = new Set(events.map((e) => `${e.subtype?.[0]?.code} ${e.outcome}`));
    // Reads, vreads, searches, operations, transactions and refusals are all in the set.
    for (const k of ['read 0', 'vread 0', 'search-type 0', 'operation 0', 'transaction 0', 'read 4', 'update 4', 'authenticate 4']) expect(kinds, k).toContain(k);
    expect(events.some((e) => e.meta?.tag?.some((c) => c.code === 'emergency-access'))).toBe(true);
    expect(events.some((e) => e.agent.some((a) => a.who?.reference === 'Patient/anna'))).toBe(true);
    expect(events.some((e) => e.agent.some((a) => a.who?.reference === 'Organization/ncp-be'))).toBe(true);
    // The twelve-entry transaction: more than eight values of one parameter (withoutRepeats' long branch).
    expect(events.some((e) => (e.entity?.length ?? 0) >= 9)).toBe(true);
    expect(events.some((e) => auditIndexValues(e).filter((v) => v.param === 'entity').length > 8)).toBe(true);
    for (const e of events) {
      expect(indexedDirectly(e), `AuditEvent ${e.subtype?.[0]?.code}`).toBe(true);
      expect(auditIndexValues(e), JSON.stringify(e)).toStrictEqual(extractIndex(e));
    }
  });

  it('the same before the store adds its meta (the write path indexes the event it is about to store)', () => {
    for (const e of events) {
      const { meta, ...rest } = e;
      const bare = (meta?.tag ? { ...rest, meta: { tag: meta.tag } } : rest) as AuditEvent;
      expect(auditIndexValues(bare)).toStrictEqual(extractIndex(bare));
    }
  });

  it('an event of another shape goes through extractIndex', () => {
    const e = structuredClone(events[0]);
    e.agent[0].name = 'Dr. Gregor Weber';
    e.agent[0].network = { address: '10.0.0.1', type: '2' };
    e.entity = [...(e.entity ?? []), { name: 'ström', what: { identifier: { system: 'urn:x', value: '1' } } }];
    expect(indexedDirectly(e)).toBe(false);
    const values = auditIndexValues(e);
    expect(values).toStrictEqual(extractIndex(e));
    expect(values.some((v) => v.param === 'agent-name')).toBe(true);
  });

  it('a malformed stored entry (edited outside the server) goes through extractIndex instead of throwing', () => {
    const malformed: Record<string, unknown>[] = [];
    const tagged = events.find((e) => e.meta?.tag?.length)!;
    const at = (e: AuditEvent, edit: (x: Record<string, any>) => void) => {
      const x = structuredClone(e) as unknown as Record<string, any>;
      edit(x);
      malformed.push(x);
    };
    at(tagged, (x) => (x.meta.tag = x.meta.tag[0]));
    at(events[0], (x) => (x.subtype = x.subtype[0]));
    at(events[0], (x) => (x.agent[0].role = 'doctor'));
    at(events[0], (x) => (x.agent[0].policy = 'https://dsp.lu/policy'));
    for (const x of malformed) {
      const e = x as unknown as AuditEvent;
      expect(indexedDirectly(e), JSON.stringify(x)).toBe(false);
      expect(auditIndexValues(e)).toStrictEqual(extractIndex(e));
    }
  });

  describe('a changed AuditEvent parameter set', () => {
    // The server's own path for SearchParameters created through the API; undone after each test.
    afterEach(() => {
      setServerSearchParameters([]);
    });

    it('a SearchParameter registered on AuditEvent sends every event through extractIndex', () => {
      const e = events[0];
      expect(indexedDirectly(e)).toBe(true);
      setServerSearchParameters([
        {
          resourceType: 'SearchParameter',
          url: 'https://dsp.lu/fhir/SearchParameter/audit-purpose',
          name: 'purpose',
          status: 'active',
          description: 'purpose of the event',
          code: 'purpose',
          base: ['AuditEvent'],
          type: 'token',
          expression: 'AuditEvent.purposeOfEvent',
        },
      ]);
      expect(indexedDirectly(e)).toBe(false);
      const values = auditIndexValues(e);
      expect(values.some((v) => v.param === 'purpose')).toBe(true);
      expect(values).toStrictEqual(extractIndex(e));
    });

    it('a built-in parameter given another expression sends every event through extractIndex', () => {
      const e = events.find((x) => x.entity?.some((y) => y.role))!;
      expect(indexedDirectly(e)).toBe(true);
      setServerSearchParameters([
        {
          resourceType: 'SearchParameter',
          url: 'https://dsp.lu/fhir/SearchParameter/audit-entity-type',
          name: 'entity-type',
          status: 'active',
          description: 'the role of the entity, searched as its type',
          code: 'entity-type',
          base: ['AuditEvent'],
          type: 'token',
          expression: 'AuditEvent.entity.role',
        },
      ]);
      expect(indexedDirectly(e)).toBe(false);
      const values = auditIndexValues(e);
      expect(values).toStrictEqual(extractIndex(e));
      const roles = e.entity!.filter((x) => x.role).map((x) => x.role!.code);
      expect(values.filter((v) => v.param === 'entity-type').map((v) => (v as { code?: string }).code)).toStrictEqual([...new Set(roles)]);
    });

    it('the registry is the base set again after each test', () => {
      expect(indexedDirectly(events[0])).toBe(true);
    });
  });
});

/**
 * One AuditEvent per transaction Bundle (docs/decisions.md): the Bundle's event lists every entry (what it was
 * about, its interaction and status, the failure's code) and every patient the entries touched; the entries
 * write no events of their own. A batch keeps one event per entry (its entries are independent requests).
 */
import { describe, expect, it } from 'vitest';
import type { AuditEvent, AuditEventEntity, Bundle, BundleEntry } from 'fhir/r4';
import { makeApp } from './support/app.ts';
import { accessRuntime } from '../src/access/service.ts';
import { verifyAuditChain } from '../src/audit/chain.ts';
import { obs, seed } from './access-fixture.ts';

const detail = (e: AuditEventEntity, type: string) => e.detail?.find((d) => d.type === type)?.valueString;

/** A fresh app, the audit count before, and the answer to a Bundle of that type posted by an administrator. */
async function post(type: 'transaction' | 'batch', entry: BundleEntry[]) {
  const t = await makeApp();
  const rt = await accessRuntime(t.ctx);
  const before = rt.audit.written;
  const res = await t.http.post('/fhir').send({ resourceType: 'Bundle', type, entry });
  return { t, rt, before, res };
}

describe('one AuditEvent per transaction', () => {
  it('lists every entry with its outcome and every patient; found by entity, subtype and the patient’s $access-log', async () => {
    const { t, rt, before, res: tx } = await post('transaction', [
      { fullUrl: 'urn:uuid:0d4c7f2e-1111-4a5b-9c1d-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'Tx' }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', status: 'final', code: { text: 'a' }, subject: { reference: 'urn:uuid:0d4c7f2e-1111-4a5b-9c1d-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
      { resource: { resourceType: 'Observation', id: 'tx-audit-obs', status: 'final', code: { text: 'b' }, subject: { reference: 'urn:uuid:0d4c7f2e-1111-4a5b-9c1d-000000000001' } }, request: { method: 'PUT', url: 'Observation/tx-audit-obs' } },
      { resource: { resourceType: 'Practitioner', id: 'tx-audit-pr' }, request: { method: 'PUT', url: 'Practitioner/tx-audit-pr' } },
    ]);
    expect(tx.status).toBe(200);
    // One entry in the trail for the whole Bundle.
    expect(rt.audit.written).toBe(before + 1);
    const locations = (tx.body as Bundle).entry!.map((e) => e.response!.location!.replace(/\/_history\/.*$/, ''));
    const patientId = locations[0].split('/')[1];

    const found = await t.http.get('/fhir/AuditEvent?subtype=transaction&_count=10');
    expect(found.status).toBe(200);
    expect(found.body.entry).toHaveLength(1);
    const event = found.body.entry[0].resource as AuditEvent;
    expect(event.outcome).toBe('0');
    const entities = event.entity!;
    // The patient once as the record's subject, then one entity per entry in the order the entries ran.
    const withDetail = entities.filter((e) => e.detail);
    expect(withDetail.map((e) => e.what?.reference)).toEqual(locations);
    expect(withDetail.map((e) => [detail(e, 'interaction'), detail(e, 'status')])).toEqual([
      ['create', '201'],
      ['create', '201'],
      ['update', '201'],
      ['update', '201'],
    ]);
    expect(entities.filter((e) => e.what?.reference === `Patient/${patientId}` && e.role?.code === '1').length).toBeGreaterThanOrEqual(1);

    // Search by an entry's entity finds the transaction's event; so does the patient's access log.
    const byEntity = await t.http.get(`/fhir/AuditEvent?entity=${locations[1]}`);
    expect(byEntity.body.entry.map((e: { resource: AuditEvent }) => e.resource.id)).toEqual([event.id]);
    const log = await t.http.get(`/fhir/Patient/${patientId}/$access-log?_count=50`);
    expect(log.status).toBe(200);
    expect((log.body as Bundle).entry!.map((e) => e.resource!.id)).toContain(event.id);
    expect((await verifyAuditChain(rt.auditStore)).ok).toBe(true);
  });

  it('a failed transaction: one event with the failure, the entries that ran and the failing entry’s status', async () => {
    const { t, rt, before, res: tx } = await post('transaction', [
      { resource: { resourceType: 'Observation', status: 'final', code: { text: 'a' }, subject: { reference: 'Patient/tx-fail' } }, request: { method: 'POST', url: 'Observation' } },
      { resource: { resourceType: 'Observation', id: 'tx-fail-2', status: 'final', code: { text: 'b' } }, request: { method: 'PUT', url: 'Observation/tx-fail-2', ifMatch: 'W/"4"' } },
    ]);
    expect(tx.status).toBe(412);
    expect(rt.audit.written).toBe(before + 1);
    const found = await t.http.get('/fhir/AuditEvent?subtype=transaction&_count=10');
    const event = found.body.entry[0].resource as AuditEvent;
    expect(event.outcome).toBe('4');
    expect(event.outcomeDesc).toMatch(/^HTTP 412/);
    expect(event.meta?.tag?.map((c) => c.code)).toContain('denied-or-failed');
    const ran = event.entity!.filter((e) => e.detail);
    expect(ran.map((e) => [detail(e, 'interaction'), detail(e, 'status')])).toEqual([
      ['create', '201'],
      ['update', '412'],
    ]);
    expect(ran[1].what?.reference).toBe('Observation/tx-fail-2');
    expect(detail(ran[1], 'outcome')).toBe('conflict');
    // The patient the first entry wrote to (rolled back) is listed: the attempt is in that patient's trail.
    expect(event.entity!.some((e) => e.what?.reference === 'Patient/tx-fail' && e.role?.code === '1')).toBe(true);
  });

  it('a professional’s transaction: the patient’s $access-log shows it with each entry; a refused one lists the entry with its status', async () => {
    const t = await makeApp();
    await seed(t);
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const entries = [
      { resource: obs('tx-gp', 'anna'), request: { method: 'PUT', url: 'Observation/tx-gp' } },
      { request: { method: 'GET', url: 'Observation/o-normal' } },
    ];
    expect((await gp.post('/fhir').send({ resourceType: 'Bundle', type: 'transaction', entry: entries })).status).toBe(200);
    expect((await none.post('/fhir').send({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: obs('tx-none', 'anna'), request: { method: 'PUT', url: 'Observation/tx-none' } }] })).status).toBe(404);

    const log = await anna.get('/fhir/Patient/anna/$access-log?_count=100');
    expect(log.status).toBe(200);
    const events = (log.body as Bundle).entry!.map((e) => e.resource as AuditEvent).filter((e) => e.subtype?.[0]?.code === 'transaction');
    const byGp = events.find((e) => e.agent.some((a) => a.who?.reference === 'Practitioner/dr-gp'))!;
    expect(byGp.outcome).toBe('0');
    const ran = byGp.entity!.filter((e) => e.detail);
    expect(ran.map((e) => [e.what?.reference, detail(e, 'interaction'), detail(e, 'status')])).toEqual([
      ['Observation/tx-gp', 'update', '201'],
      ['Observation/o-normal', 'read', '200'],
    ]);
    // A refused write is not attributed to the patient (as for the same PUT on its own): found by its entity.
    const refused = await t.http.get('/fhir/AuditEvent?entity=Observation/tx-none');
    const byNone = (refused.body as Bundle).entry!.map((e) => e.resource as AuditEvent).find((e) => e.agent.some((a) => a.who?.reference === 'Practitioner/dr-none'))!;
    expect(byNone.subtype?.[0]?.code).toBe('transaction');
    expect(byNone.outcome).toBe('4');
    expect(byNone.entity!.filter((e) => e.detail).map((e) => [e.what?.reference, detail(e, 'status')])).toEqual([['Observation/tx-none', '404']]);
    // No event of its own for any entry: the transaction's is the only one naming the written resource.
    const naming = (log.body as Bundle).entry!.map((e) => e.resource as AuditEvent).filter((e) => e.entity?.some((x) => x.what?.reference === 'Observation/tx-gp'));
    expect(naming.map((e) => e.id)).toEqual([byGp.id]);
  });

  it('a batch keeps one event per entry', async () => {
    const { t, rt, before, res: batch } = await post('batch', [
      { resource: { resourceType: 'Practitioner', id: 'b-1' }, request: { method: 'PUT', url: 'Practitioner/b-1' } },
      { resource: { resourceType: 'Practitioner', id: 'b-2' }, request: { method: 'PUT', url: 'Practitioner/b-2' } },
    ]);
    expect(batch.status).toBe(200);
    expect(rt.audit.written).toBe(before + 3);
  });
});

/**
 * Operation access rules live on the registered operation (src/operations/registry.ts `access`): a new
 * operation declares who may call it and which scopes it needs; one registered without a rule is refused to
 * everybody, administrators included (fail closed).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type TestApp } from './support/app.ts';
import { seed } from './access-fixture.ts';
import { operationRegistry } from '../src/operations/index.ts';
import type { Operation } from '../src/operations/registry.ts';
import type { Store, StoreSession, TransactionOptions } from '../src/store/port.ts';

let t: TestApp;
const ran: string[] = [];

function testOperation(name: string, access: Operation['access'] | undefined): void {
  operationRegistry.register({
    name,
    definition: `https://example.org/OperationDefinition/${name}`,
    resourceTypes: [],
    levels: ['system', 'type', 'instance'],
    affectsState: false,
    ...(access ? { access } : {}),
    async handler(_ctx, req) {
      ran.push(`${name} ${req.principal?.ref ?? 'internal'}`);
      return { status: 200, headers: {}, body: { resourceType: 'Parameters', parameter: [{ name: 'ran', valueString: name }] } };
    },
  } as Operation);
}

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  testOperation('no-rule', undefined);
  testOperation('open-rule', { audience: 'any', scopes: (target) => [{ type: target.resourceType ?? '*', perms: ['r'] }] });
  testOperation('admin-rule', { audience: 'admin', scopes: () => [] });
  testOperation('admin-only-rule', { audience: 'admin', roles: ['admin'], scopes: () => [] });
  testOperation('patient-rule', { audience: 'patient', scopes: () => [{ type: 'Consent', perms: ['r'] }] });
});

describe('operations declare their own access rule', () => {
  it('an operation registered without a rule is refused to everybody, administrators included; its handler never runs', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    for (const client of [t.http, gp]) {
      const res = await client.get('/fhir/$no-rule');
      expect(res.status).toBe(403);
      expect(res.body.issue[0].code).toBe('forbidden');
      expect(res.body.issue[0].diagnostics).toMatch(/\$no-rule declares no access rule/);
    }
    expect(ran.filter((r) => r.startsWith('no-rule'))).toEqual([]);
  });

  it('audience any: every principal, with the scopes the rule names; an instance target is checked like a read', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
    expect((await gp.get('/fhir/Observation/o-normal/$open-rule')).status).toBe(200);
    // Not visible to dr-none: the same 404 as a read.
    expect((await none.get('/fhir/Observation/o-normal/$open-rule')).status).toBe(404);
    expect((await none.get('/fhir/Observation/$open-rule')).status).toBe(200);
    // The rule asks read on the target type: a token without it is refused.
    const encounterOnly = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp', scope: 'user/Encounter.rs' });
    const refused = await encounterOnly.get('/fhir/Observation/$open-rule');
    expect(refused.status).toBe(403);
    expect(refused.body.issue[0].diagnostics).toMatch(/Observation/);
  });

  it('audience admin: administrators and system clients only', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const system = await t.as({ role: 'system', id: 'Device/lab' });
    expect((await gp.get('/fhir/$admin-rule')).status).toBe(403);
    expect((await system.get('/fhir/$admin-rule')).status).toBe(200);
    expect((await t.http.get('/fhir/$admin-rule')).status).toBe(200);
  });

  it('roles narrow the audience: admin-only refuses system clients before the handler runs; $reindex is administrators only', async () => {
    const system = await t.as({ role: 'system', id: 'Device/lab' });
    const refused = await system.get('/fhir/$admin-only-rule');
    expect(refused.status).toBe(403);
    expect(refused.body.issue[0].diagnostics).toBe('Operation $admin-only-rule is available to administrators only');
    expect(ran).not.toContain('admin-only-rule Device/lab');
    expect((await t.http.get('/fhir/$admin-only-rule')).status).toBe(200);
    expect(ran).toContain('admin-only-rule Practitioner/test-admin');
    // $reindex states it in its rule (the handler holds no role check of its own).
    for (const res of [await system.get('/fhir/$reindex'), await system.post('/fhir/$reindex?type=Patient')]) {
      expect(res.status).toBe(403);
      expect(res.body.issue[0].diagnostics).toBe('Operation $reindex is available to administrators only');
    }
    expect((await t.http.get('/fhir/$reindex')).status).toBe(200);
  });

  it('audience patient: the patient, their assistant and administrators; professionals and system clients 403', async () => {
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    const asst = await t.as({ role: 'assistant', id: 'RelatedPerson/asst' });
    const ben = await t.as({ role: 'patient', id: 'Patient/ben' });
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    const system = await t.as({ role: 'system', id: 'Device/lab' });
    expect((await anna.get('/fhir/Patient/anna/$patient-rule')).status).toBe(200);
    expect((await asst.get('/fhir/Patient/anna/$patient-rule')).status).toBe(200);
    expect((await t.http.get('/fhir/Patient/anna/$patient-rule')).status).toBe(200);
    expect((await ben.get('/fhir/Patient/anna/$patient-rule')).status).toBe(404);
    expect((await gp.get('/fhir/Patient/anna/$patient-rule')).status).toBe(403);
    expect((await system.get('/fhir/Patient/anna/$patient-rule')).status).toBe(403);
  });

  it('every operation the server registers declares a rule', () => {
    const missing = operationRegistry.list().filter((o) => !(o as Partial<Operation>).access && !o.name.endsWith('-rule'));
    expect(missing.map((o) => o.name)).toEqual([]);
    expect(operationRegistry.list().length).toBeGreaterThan(20);
  });

  it('an unknown operation is the registry’s 404, for everybody', async () => {
    const gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
    for (const client of [t.http, gp]) expect((await client.get('/fhir/$no-such-operation')).status).toBe(404);
  });
});

describe('the patient access operations read the active Consents once per call', () => {
  /** Counts searches of a patient's Consents, on the store and inside its transactions, while `run` runs. */
  async function consentSearches(run: () => Promise<unknown>): Promise<number> {
    const store = t.ctx.store;
    let n = 0;
    const counting = (session: StoreSession): StoreSession['search'] => {
      const search = session.search.bind(session);
      return (request) => {
        if (request.resourceTypes.length === 1 && request.resourceTypes[0] === 'Consent' && request.filters.some((f) => f.kind === 'param' && f.param === 'patient')) n++;
        return search(request);
      };
    };
    const { search, transaction } = store;
    store.search = counting(store);
    store.transaction = ((work: (s: StoreSession) => Promise<unknown>, options?: TransactionOptions) =>
      transaction.call(store, (s: StoreSession) => work({ current: s.current.bind(s), version: s.version.bind(s), put: s.put.bind(s), delete: s.delete.bind(s), search: counting(s) }), options)) as Store['transaction'];
    try {
      await run();
    } finally {
      store.search = search;
      store.transaction = transaction;
    }
    return n;
  }

  it('$access-policy and a changing operation: one search of the Consents each', async () => {
    const anna = await t.as({ role: 'patient', id: 'Patient/anna' });
    // The decision point's own policy read is cached between requests: warm it first.
    expect((await anna.get('/fhir/Patient/anna/$access-policy')).status).toBe(200);
    expect(await consentSearches(async () => expect((await anna.get('/fhir/Patient/anna/$access-policy')).status).toBe(200))).toBe(1);
    expect((await anna.get('/fhir/Patient/anna/$access-policy')).status).toBe(200);
    const block = { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }] };
    expect(await consentSearches(async () => expect((await anna.post('/fhir/Patient/anna/$access-block').send(block)).status).toBe(200))).toBe(1);
    // The answer is the policy after the write, read from the same search.
    const after = (await anna.get('/fhir/Patient/anna/$access-policy')).body;
    const blocked = (after.parameter as { name: string; part?: { name: string; valueReference?: { reference: string } }[] }[]).filter((p) => p.name === 'block').map((p) => p.part?.find((x) => x.name === 'actor')?.valueReference?.reference);
    expect(blocked).toContain('Practitioner/dr-none');
  });
});

/**
 * Ingest path of batch and transaction Bundles (src/fhir/bundle.ts): what the fast path must keep exactly as the
 * slow one did (profile issues, conditional references resolved once per transaction).
 */
import { describe, expect, it } from 'vitest';
import type { Bundle, BundleEntry, Observation, Patient } from 'fhir/r4';
import { makeApp } from './support/app.ts';

function tx(entries: BundleEntry[], type: 'transaction' | 'batch' = 'transaction'): Bundle {
  return { resourceType: 'Bundle', type, entry: entries };
}

describe('profile validation of entries (DSP_PROFILE_VALIDATION)', () => {
  const LU_PATIENT = 'http://dsp.lu/fhir/StructureDefinition/lu-patient';
  // Declares LU Patient but has no matricule, name, gender or birth date.
  const bad = { resourceType: 'Patient', meta: { profile: [LU_PATIENT] }, active: true } as Patient;
  const bundleOf = (type: 'transaction' | 'batch') => tx([{ resource: bad, request: { method: 'POST', url: 'Patient' } }], type);

  for (const type of ['transaction', 'batch'] as const) {
    it(`warn, ${type}: the profile issues come back in the entry with Prefer: return=OperationOutcome, not otherwise`, async () => {
      const lenient = await makeApp({ profileValidation: 'warn' });
      const withOutcome = await lenient.http.post('/fhir').set('Prefer', 'return=OperationOutcome').send(bundleOf(type));
      expect(withOutcome.status).toBe(200);
      const entry = (withOutcome.body as Bundle).entry![0];
      expect(entry.response!.status).toBe('201');
      const issues = (entry.resource as { issue: { severity: string }[] }).issue;
      expect(issues.some((i) => i.severity === 'error')).toBe(true);
      const plain = await lenient.http.post('/fhir').send(bundleOf(type));
      expect((plain.body as Bundle).entry![0].response!.status).toBe('201');
      expect(await lenient.ctx.store.count('Patient')).toBe(2);
    });

    it(`reject, ${type}: an entry that does not conform to its declared profile is refused whatever Prefer says`, async () => {
      const strict = await makeApp({ profileValidation: 'reject' });
      const res = await strict.http.post('/fhir').set('Prefer', 'return=minimal').send(bundleOf(type));
      if (type === 'transaction') expect(res.status).toBe(422);
      else expect((res.body as Bundle).entry![0].response!.status).toBe('422');
      expect(await strict.ctx.store.count('Patient')).toBe(0);
    });
  }
});

describe('reference rewriting', () => {
  it('rewrites conditional and urn:uuid references at any depth, the same conditional reference everywhere', async () => {
    const t = await makeApp();
    const pre = await t.http.put('/fhir/Patient/known').send({ resourceType: 'Patient', id: 'known', identifier: [{ system: 'urn:oid:1.3.182.4.4', value: '1980010112345' }] });
    expect(pre.status).toBe(201);
    const cond = 'Patient?identifier=urn:oid:1.3.182.4.4|1980010112345';
    const urn = 'urn:uuid:1b0c4f7e-2222-4c1a-9a53-000000000001';
    const observation = (n: number): Observation => ({
      resourceType: 'Observation',
      status: 'final',
      code: { text: `o${n}` },
      subject: { reference: cond },
      performer: [{ reference: urn }, { reference: cond, display: 'self' }],
      hasMember: n > 0 ? [{ reference: 'urn:uuid:1b0c4f7e-2222-4c1a-9a53-000000000100' }] : undefined,
    });
    const res = await t.http.post('/fhir').send(
      tx([
        { fullUrl: urn, resource: { resourceType: 'Practitioner', name: [{ family: 'Muller' }] }, request: { method: 'POST', url: 'Practitioner' } },
        { fullUrl: 'urn:uuid:1b0c4f7e-2222-4c1a-9a53-000000000100', resource: observation(0), request: { method: 'POST', url: 'Observation' } },
        { resource: observation(1), request: { method: 'POST', url: 'Observation' } },
        { resource: observation(2), request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(200);
    const locations = (res.body as Bundle).entry!.map((e) => e.response!.location!.split('/_history')[0]!);
    for (const [i, loc] of locations.slice(1).entries()) {
      const o = (await t.http.get(`/fhir/${loc}`)).body as Observation;
      expect(o.subject!.reference).toBe('Patient/known');
      expect(o.performer!.map((p) => p.reference)).toEqual([locations[0], 'Patient/known']);
      expect(o.performer![1].display).toBe('self');
      // observation(0) has no member; observation(1) and (2) point at observation(0), by its urn:uuid.
      expect(o.hasMember?.[0]?.reference).toBe(i === 0 ? undefined : locations[1]);
    }
    // The index follows the rewritten references.
    const found = await t.http.get('/fhir/Observation?subject=Patient/known&_count=10');
    expect((found.body as Bundle).entry).toHaveLength(3);
  });
});

describe('index values: fewer rows, same matches', () => {
  const height = (text: string): Observation => ({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8302-2', display: 'Body Height' }], text },
    subject: { reference: 'Patient/p' },
    valueQuantity: { value: 167.7, unit: 'cm', system: 'http://unitsofmeasure.org', code: 'cm' },
  });

  it('a CodeableConcept text equal to a coding display gives no separate text value; another text does', async () => {
    const { extractIndex } = await import('../src/search/indexer.ts');
    const same = extractIndex(height('Body height')).filter((v) => v.param === 'code');
    expect(same).toEqual([{ param: 'code', type: 'token', system: 'http://loinc.org', code: '8302-2', text: 'body height' }]);
    const other = extractIndex(height('Height, standing')).filter((v) => v.param === 'code');
    expect(other.map((v) => (v as { text?: string }).text)).toEqual(['body height', 'height, standing']);
  });

  it('composites skip token components that have neither system nor code', async () => {
    const { extractIndex } = await import('../src/search/indexer.ts');
    const composites = extractIndex(height('Height, standing')).filter((v) => v.param === 'code-value-quantity');
    expect(composites).toHaveLength(1);
    const first = (composites[0] as { components: { code?: string }[] }).components[0]!;
    expect(first.code).toBe('8302-2');
  });

  it(':text, :missing and composite searches find the same resources', async () => {
    const t = await makeApp();
    const a = (await t.http.post('/fhir/Observation').send(height('Body height'))).body as Observation;
    const b = (await t.http.post('/fhir/Observation').send(height('Height, standing'))).body as Observation;
    const ids = async (q: string) => (((await t.http.get(`/fhir/Observation?${q}`)).body as Bundle).entry ?? []).map((e) => e.resource!.id).sort();
    const both = [a.id, b.id].sort();
    expect(await ids('code:text=body')).toEqual(both);
    expect(await ids('code:text=height')).toEqual([b.id]);
    expect(await ids('code:text=height%2C%20st')).toEqual([b.id]);
    expect(await ids('code:missing=false')).toEqual(both);
    expect(await ids('code:missing=true')).toEqual([]);
    expect(await ids('code-value-quantity=http://loinc.org|8302-2$gt150')).toEqual(both);
    expect(await ids('code-value-quantity=8302-2$lt150')).toEqual([]);
    expect(await ids('combo-code-value-quantity=http://loinc.org|8302-2$167.7')).toEqual(both);
  });
});

describe('batch entries in one store transaction (savepoints)', () => {
  it('a step that throws after writing is rolled back alone; the others commit, index rows included', async () => {
    const t = await makeApp();
    const store = t.ctx.store as unknown as {
      grouped<T>(work: (step: <R>(fn: (s: import('../src/store/port.ts').StoreSession) => Promise<R>) => Promise<R>) => Promise<T>): Promise<T>;
    };
    const { extractIndex } = await import('../src/search/indexer.ts');
    const p = (id: string, family: string) => ({ resourceType: 'Patient', id, name: [{ family }] }) as Patient;
    const put = (s: import('../src/store/port.ts').StoreSession, r: Patient) => s.put(r, { method: 'PUT', index: extractIndex(r) });
    const errors: unknown[] = [];
    await store.grouped(async (step) => {
      await step((s) => put(s, p('g1', 'Alpha')));
      await step(async (s) => {
        await put(s, p('g2', 'Beta'));
        await put(s, p('g1', 'AlphaChanged'));
        throw new Error('entry failed after writing');
      }).catch((e: unknown) => errors.push(e));
      await step((s) => put(s, p('g3', 'Gamma')));
    });
    expect(errors).toHaveLength(1);
    expect((await t.ctx.store.current('Patient', 'g1'))!.versionId).toBe(1);
    expect(await t.ctx.store.current('Patient', 'g2')).toBeUndefined();
    expect((await t.ctx.store.current('Patient', 'g3'))!.resource).toMatchObject({ name: [{ family: 'Gamma' }] });
    const names = async (q: string) => (((await t.http.get(`/fhir/Patient?${q}`)).body as Bundle).entry ?? []).map((e) => e.resource!.id).sort();
    expect(await names('name=beta')).toEqual([]);
    expect(await names('name=alphachanged')).toEqual([]);
    expect(await names('name=alpha')).toEqual(['g1']);
  });

  it('a long batch keeps the order of its entries: reads and conditional creates see the writes before them', async () => {
    const t = await makeApp();
    const entries: BundleEntry[] = [];
    for (let i = 0; i < 120; i++) {
      entries.push({ resource: { resourceType: 'Patient', id: `b${i}`, identifier: [{ system: 'urn:x', value: String(i) }] } as Patient, request: { method: 'PUT', url: `Patient/b${i}` } });
    }
    entries.push({ request: { method: 'GET', url: 'Patient/b119' } });
    // Matches b5, written earlier in the same batch: 200, nothing created.
    entries.push({ resource: { resourceType: 'Patient' } as Patient, request: { method: 'POST', url: 'Patient', ifNoneExist: 'identifier=urn:x|5' } });
    // Fails (412): the version is 1; the entries around it are kept.
    entries.push({ resource: { resourceType: 'Patient', id: 'b1' } as Patient, request: { method: 'PUT', url: 'Patient/b1', ifMatch: 'W/"7"' } });
    entries.push({ request: { method: 'DELETE', url: 'Patient/b2' } });
    const res = await t.http.post('/fhir').send(tx(entries, 'batch'));
    expect(res.status).toBe(200);
    const statuses = (res.body as Bundle).entry!.map((e) => e.response!.status);
    expect(statuses.slice(0, 120).every((s) => s === '201')).toBe(true);
    expect(statuses.slice(120)).toEqual(['200', '200', '412', '204']);
    expect(await t.ctx.store.count('Patient')).toBe(119);
    expect((await t.ctx.store.current('Patient', 'b1'))!.versionId).toBe(1);
  });
});

/**
 * Parameters answered from the rows of others (search-sql.ts): Observation's combo-* parameters from the rows of
 * the parameters they unite (ALIAS_CANDIDATES), and `patient` from the `subject` rows that target a Patient
 * (PATIENT_FROM). On real Synthea data (plus a few subjects that are not Patients), every search on them gives
 * the same resources, in the same order and pages, includes included, as the layout before (their own rows,
 * `setIndexAliases(false)`), and a database written before (with those rows) gives the same answers read with
 * the aliases on. Needs ../shared/data/synthea (skipped without).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, Observation, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { indexAliases, setIndexAliases } from '../src/store/sqlite/search-sql.ts';
import { extractIndex } from '../src/search/indexer.ts';
import { setServerSearchParameters } from '../src/search/registry.ts';
import { startReindex, waitForReindex } from '../src/search/reindex.ts';
import { parseSearch } from '../src/search/parse.ts';
import { compartmentFilter, compartmentTypes } from '../src/fhir/compartments.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SYNTHEA = join(ROOT, '..', 'shared', 'data', 'synthea');
const HAVE_DATA = existsSync(SYNTHEA);
if (!HAVE_DATA) console.warn(`search-index-alias: ${SYNTHEA} is absent (a fresh clone): the real-data comparison is skipped`);

/** Resources of a few patient Bundles, ids from their urn:uuid fullUrls and references rewritten to them. */
function loadResources(bundles: number): Resource[] {
  const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json.bz2') && !/Information/.test(f)).sort().slice(0, bundles);
  const out: Resource[] = [];
  for (const f of files) {
    const bundle = JSON.parse(execFileSync('bzip2', ['-dc', join(SYNTHEA, f)], { maxBuffer: 1 << 30 }).toString('utf8')) as Bundle;
    const refs = new Map<string, string>();
    for (const e of bundle.entry ?? []) if (e.fullUrl && e.resource) refs.set(e.fullUrl, `${e.resource.resourceType}/${e.fullUrl.replace('urn:uuid:', '')}`);
    for (const e of bundle.entry ?? []) {
      if (!e.resource || !e.fullUrl) continue;
      const text = JSON.stringify(e.resource).replace(/"reference":"(urn:uuid:[^"]+)"/g, (m, u: string) => (refs.has(u) ? `"reference":"${refs.get(u)}"` : m));
      out.push({ ...(JSON.parse(text) as Resource), id: e.fullUrl.replace('urn:uuid:', '') });
    }
  }
  // Subjects that are not Patients, or not literal: they have `subject` rows and no `patient` value.
  const patient = out.find((r) => r.resourceType === 'Patient')!;
  const code = { coding: [{ system: 'http://loinc.org', code: '8302-2' }] };
  out.push(
    { resourceType: 'Group', id: 'g1', type: 'person', actual: true } as Resource,
    { resourceType: 'Observation', id: 'x-group', status: 'final', code, subject: { reference: 'Group/g1' } } as Observation,
    { resourceType: 'Observation', id: 'x-ident', status: 'final', code, subject: { identifier: { system: 'urn:oid:1.2.3', value: 'LU-42' } } } as Observation,
    { resourceType: 'Observation', id: 'x-both', status: 'final', code, subject: { reference: `Patient/${patient.id}`, identifier: { system: 'urn:oid:1.2.3', value: 'LU-43' } } } as Observation,
    { resourceType: 'Observation', id: 'x-abs', status: 'final', code, subject: { reference: `http://elsewhere.example/fhir/Patient/${patient.id}` } } as Observation,
    { resourceType: 'Observation', id: 'x-contained', status: 'final', code, contained: [{ resourceType: 'Patient', id: 'p' }], subject: { reference: '#p' } } as Observation,
    { resourceType: 'Condition', id: 'x-cond-group', subject: { reference: 'Group/g1' }, code } as Resource,
    { resourceType: 'DeviceUseStatement', id: 'x-dus', status: 'active', subject: { reference: `Patient/${patient.id}` }, device: { reference: 'Device/d1' } } as Resource,
    { resourceType: 'Task', id: 'x-task', status: 'requested', intent: 'order', for: { reference: `Patient/${patient.id}` } } as Resource,
  );
  return out;
}

async function storeOf(resources: Resource[]): Promise<SqliteStore> {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  await store.transaction(async (s) => {
    for (const r of resources) await s.put(r, { method: 'POST', index: extractIndex(r) });
  });
  return store;
}

interface Query {
  type: string | undefined;
  params: [string, string][];
  /** Patient/<id>/<type>?...: the Patient compartment. */
  compartment?: string;
}

/** Every page of a search: the ids in order, page by page, each page's included resources after a `+`. */
async function run(store: SqliteStore, type: string | undefined, params: [string, string][], compartment?: string): Promise<string[][]> {
  const { request } = parseSearch(type, params, { strict: true });
  if (compartment) request.filters.push(compartmentFilter('Patient', compartment, type ? [type] : undefined));
  const pages: string[][] = [];
  for (let i = 0; i < 50; i++) {
    const res = await store.search(request);
    pages.push([...res.resources.map((r) => `${r.resourceType}/${r.id}`), '+', ...(res.included ?? []).map((r) => `${r.resourceType}/${r.id}`).sort()]);
    if (!res.next) break;
    request.cursor = res.next;
  }
  return pages;
}

/** Queries on every combo-* parameter, with values drawn from the data. */
function queries(resources: Resource[]): Query[] {
  const obs = resources.filter((r): r is Observation => r.resourceType === 'Observation');
  const codes = new Set<string>();
  const componentCodes = new Set<string>();
  const quantities: { value: number; system?: string; code?: string; coding: string }[] = [];
  const concepts = new Set<string>();
  const pairs: string[] = [];
  for (const o of obs) {
    for (const c of o.code.coding ?? []) codes.add(`${c.system}|${c.code}`);
    if (o.valueQuantity?.value !== undefined) quantities.push({ value: o.valueQuantity.value, system: o.valueQuantity.system, code: o.valueQuantity.code, coding: `${o.code.coding?.[0]?.system}|${o.code.coding?.[0]?.code}` });
    for (const c of o.valueCodeableConcept?.coding ?? []) concepts.add(`${c.system}|${c.code}`);
    for (const comp of o.component ?? []) {
      for (const c of comp.code.coding ?? []) componentCodes.add(`${c.system}|${c.code}`);
      const q = comp.valueQuantity;
      if (q?.value !== undefined) {
        quantities.push({ value: q.value, system: q.system, code: q.code, coding: `${comp.code.coding?.[0]?.system}|${comp.code.coding?.[0]?.code}` });
        pairs.push(`${comp.code.coding?.[0]?.system}|${comp.code.coding?.[0]?.code}$${q.value}|${q.system}|${q.code}`);
      }
      for (const c of comp.valueCodeableConcept?.coding ?? []) concepts.add(`${c.system}|${c.code}`);
    }
  }
  const pick = <T>(xs: T[], n: number): T[] => xs.filter((_, i) => i % Math.max(1, Math.floor(xs.length / n)) === 0).slice(0, n);
  const code = [...codes];
  const comp = [...componentCodes];
  const out: Query[] = [];
  const O = 'Observation';
  for (const c of [...pick(code, 6), ...pick(comp, 4)]) {
    out.push({ type: O, params: [['combo-code', c]] });
    out.push({ type: O, params: [['combo-code', c.split('|')[1]!], ['_count', '7']] });
    out.push({ type: O, params: [['combo-code:not', c], ['_count', '50']] });
    out.push({ type: O, params: [['combo-code', c], ['_sort', '-date'], ['_count', '5']] });
    out.push({ type: undefined, params: [['_type', 'Observation'], ['combo-code', c]] });
    out.push({ type: 'DiagnosticReport', params: [['result:Observation.combo-code', c]] });
    out.push({ type: 'Patient', params: [['_has:Observation:subject:combo-code', c]] });
  }
  out.push({ type: O, params: [['combo-code', `${code[0]},${comp[0] ?? code[1]}`]] });
  out.push({ type: O, params: [['combo-code:text', 'pressure']] });
  out.push({ type: O, params: [['combo-code:text', 'body']] });
  for (const q of pick(quantities, 8)) {
    out.push({ type: O, params: [['combo-value-quantity', `${q.value}|${q.system ?? ''}|${q.code ?? ''}`]] });
    out.push({ type: O, params: [['combo-value-quantity', `gt${q.value}|${q.system ?? ''}|${q.code ?? ''}`], ['_count', '9']] });
    out.push({ type: O, params: [['combo-value-quantity', `le${q.value}`], ['combo-code', q.coding]] });
    out.push({ type: O, params: [['combo-value-quantity', `ap${q.value}||${q.code ?? ''}`]] });
    out.push({ type: O, params: [['combo-code-value-quantity', `${q.coding}$ge${q.value}`]] });
    out.push({ type: O, params: [['combo-code-value-quantity', `${q.coding}$lt${q.value}|${q.system ?? ''}|${q.code ?? ''}`]] });
  }
  for (const p of pick(pairs, 4)) out.push({ type: O, params: [['combo-code-value-quantity', p]] });
  for (const c of pick([...concepts], 5)) {
    out.push({ type: O, params: [['combo-value-concept', c]] });
    out.push({ type: O, params: [['combo-code-value-concept', `${code.find(() => true)}$${c}`]] });
  }
  const conceptObs = obs.find((o) => o.valueCodeableConcept?.coding?.[0]);
  if (conceptObs) out.push({ type: O, params: [['combo-code-value-concept', `${conceptObs.code.coding![0]!.system}|${conceptObs.code.coding![0]!.code}$${conceptObs.valueCodeableConcept!.coding![0]!.system}|${conceptObs.valueCodeableConcept!.coding![0]!.code}`]] });
  for (const p of ['combo-code', 'combo-value-quantity', 'combo-value-concept', 'combo-data-absent-reason', 'combo-code-value-quantity']) {
    out.push({ type: O, params: [[`${p}:missing`, 'true'], ['_count', '40']] });
    out.push({ type: O, params: [[`${p}:missing`, 'false'], ['_count', '40']] });
  }
  out.push({ type: O, params: [['combo-data-absent-reason', 'unknown']] });
  // Sorts on an aliased key: every page, in order (ties broken by type and id).
  out.push({ type: O, params: [['_sort', 'combo-code'], ['_count', '50']] });
  out.push({ type: O, params: [['_sort', '-combo-code'], ['category', 'vital-signs'], ['_count', '25']] });
  out.push({ type: O, params: [['_sort', 'combo-value-quantity'], ['combo-code', code[0]!], ['_count', '10']] });
  out.push({ type: O, params: [['_sort', '-combo-value-quantity'], ['_count', '60']] });
  out.push({ type: O, params: [['combo-code', code[1]!], ['_sort', '-combo-code,date'], ['_count', '4']] });
  // patient: from the subject rows that target a Patient.
  const patients = resources.filter((r) => r.resourceType === 'Patient');
  for (const p of patients) {
    for (const t of [O, 'Condition', 'Encounter', 'Procedure', 'DiagnosticReport', 'MedicationRequest', 'Claim', 'Immunization', 'DeviceUseStatement', 'Task', 'CarePlan']) {
      out.push({ type: t, params: [['patient', `Patient/${p.id}`], ['_count', '100']] });
      out.push({ type: undefined, params: [['_type', t], ['patient', p.id!], ['_count', '100']] });
      out.push({ type: t, params: [['_count', '100']], compartment: p.id });
    }
    out.push({ type: undefined, params: [['_type', 'Condition,Claim,Encounter,Immunization'], ['patient', `Patient/${p.id}`], ['_count', '100']] });
    out.push({ type: O, params: [['patient:Patient', p.id!], ['combo-code', code[0]!]] });
    out.push({ type: O, params: [['subject', `Patient/${p.id}`], ['_count', '100']] });
    out.push({ type: 'Patient', params: [['_id', p.id!], ['_revinclude', 'Observation:patient'], ['_revinclude', 'Condition:patient']] });
    out.push({ type: 'Patient', params: [['_id', p.id!], ['_revinclude', 'Observation:subject']] });
    out.push({ type: 'Patient', params: [['_has:Observation:patient:combo-code', code[0]!]] });
    out.push({ type: 'Patient', params: [['_has:Condition:patient:_id', 'x-cond-group']] });
  }
  const family = (patients[0] as { name?: { family?: string }[] }).name?.[0]?.family ?? 'x';
  out.push({ type: O, params: [['patient.family', family], ['_count', '60']] });
  out.push({ type: O, params: [['patient:Patient.family', family], ['_count', '60']] });
  out.push({ type: 'Condition', params: [['patient.gender', 'male,female'], ['_count', '60']] });
  for (const m of ['true', 'false']) for (const t of [O, 'Condition', 'Claim']) out.push({ type: t, params: [['patient:missing', m], ['_count', '80']] });
  out.push({ type: O, params: [['patient:identifier', 'urn:oid:1.2.3|LU-43']] });
  out.push({ type: O, params: [['subject:identifier', 'urn:oid:1.2.3|LU-42']] });
  out.push({ type: O, params: [['patient:identifier', 'urn:oid:1.2.3|LU-42']] });
  out.push({ type: O, params: [['patient', `http://elsewhere.example/fhir/Patient/${patients[0]!.id}`]] });
  out.push({ type: O, params: [['patient', 'Group/g1']] });
  out.push({ type: O, params: [['_include', 'Observation:patient'], ['_count', '30']] });
  out.push({ type: O, params: [['_include', 'Observation:patient:Patient'], ['combo-code', code[0]!]] });
  out.push({ type: O, params: [['_include', 'Observation:*'], ['combo-code', code[1]!]] });
  out.push({ type: 'Condition', params: [['_include', 'Condition:patient'], ['_count', '30']] });
  out.push({ type: 'Encounter', params: [['_include', 'Encounter:patient'], ['_revinclude', 'Observation:encounter'], ['_count', '10']] });
  out.push({ type: 'DeviceUseStatement', params: [['_include', 'DeviceUseStatement:patient']] });
  out.push({ type: 'Task', params: [['_include', 'Task:patient'], ['patient:missing', 'false']] });
  // Sorted on patient, iterated includes over it, and the search behind Patient/{id}/$everything (its compartment
  // over every member type; the operation adds the Patient itself).
  out.push({ type: O, params: [['_sort', 'patient'], ['_count', '70']] });
  out.push({ type: 'Condition', params: [['_sort', '-patient,_id'], ['_count', '20']] });
  out.push({ type: 'Encounter', params: [['_revinclude', 'Condition:encounter'], ['_include:iterate', 'Condition:patient'], ['_count', '15']] });
  out.push({ type: 'Encounter', params: [['_include', 'Encounter:patient'], ['_revinclude:iterate', 'Condition:patient'], ['_count', '5']] });
  for (const p of patients) out.push({ type: undefined, params: [['_type', compartmentTypes('Patient').join(',')], ['_count', '200']], compartment: p.id });
  return out;
}

describe('aliases follow the registry', () => {
  it('ends an alias when a server SearchParameter redefines one side, and brings it back when it goes', () => {
    expect(indexAliases('Observation').get('combo-code')).toEqual({ of: ['code', 'component-code'] });
    expect(indexAliases('Condition').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
    const changed = setServerSearchParameters([
      { resourceType: 'SearchParameter', url: 'http://example.org/sp/obs-code', name: 'code', status: 'active', code: 'code', base: ['Observation'], type: 'token', expression: 'Observation.code.coding[0]', description: 'first coding only' },
      { resourceType: 'SearchParameter', url: 'http://example.org/sp/cond-subject', name: 'subject', status: 'active', code: 'subject', base: ['Condition'], type: 'reference', expression: 'Condition.subject | Condition.encounter', description: 'wider' },
    ] as never);
    try {
      expect(changed).toEqual(['Condition', 'Observation']);
      expect(indexAliases('Observation').has('combo-code')).toBe(false);
      expect(indexAliases('Observation').get('combo-value-quantity')).toEqual({ of: ['value-quantity', 'component-value-quantity'] });
      expect(indexAliases('Condition').has('patient')).toBe(false);
      expect(indexAliases('Encounter').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
    } finally {
      setServerSearchParameters([]);
    }
    expect(indexAliases('Observation').get('combo-code')).toEqual({ of: ['code', 'component-code'] });
    expect(indexAliases('Condition').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
  });
});

describe.skipIf(!HAVE_DATA)('combo-* and patient answered from the rows of other parameters (real data)', () => {
  let resources: Resource[];
  let before: SqliteStore;
  let now: SqliteStore;
  beforeAll(async () => {
    resources = loadResources(3);
    setIndexAliases(false);
    before = await storeOf(resources);
    setIndexAliases(true);
    now = await storeOf(resources);
  }, 120_000);
  afterAll(async () => {
    setIndexAliases(true);
    await before?.close();
    await now?.close();
  });

  it('holds for the R4 definitions, and writes no rows for the aliased parameters', async () => {
    expect([...indexAliases('Observation').keys()].sort()).toEqual([
      'combo-code',
      'combo-code-value-concept',
      'combo-code-value-quantity',
      'combo-data-absent-reason',
      'combo-value-concept',
      'combo-value-quantity',
      'patient',
    ]);
    expect(indexAliases('Observation').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
    expect(indexAliases('Task').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
    expect(indexAliases('DeviceUseStatement').get('patient')).toEqual({ of: ['subject'] });
    // Claim and Immunization have a patient element of their own.
    expect(indexAliases('Claim').size).toBe(0);
    expect(indexAliases('Immunization').size).toBe(0);
    expect(indexAliases('Patient').size).toBe(0);
    const db = (s: SqliteStore) => (s as unknown as { writer: import('node:sqlite').DatabaseSync }).writer;
    const rowsOf = (s: SqliteStore, code: string) => {
      const tables = ['idx_token', 'idx_quantity', 'idx_token_part', 'idx_quantity_part', 'idx_reference'];
      let n = 0;
      for (const t of tables) n += (db(s).prepare(`SELECT count(*) AS n FROM ${t} x JOIN search_params sp ON sp.pid = x.pid WHERE sp.resource_type = 'Observation' AND (sp.code = ? OR sp.code LIKE ? || '$%')`).get(code, code) as { n: number }).n;
      return n;
    };
    for (const code of ['combo-code', 'combo-value-quantity', 'combo-code-value-quantity', 'patient']) {
      expect(rowsOf(before, code), code).toBeGreaterThan(0);
      expect(rowsOf(now, code), code).toBe(0);
    }
    expect(rowsOf(now, 'code')).toBe(rowsOf(before, 'code'));
  });

  it('gives the same pages as the parameters own rows did, also on a database written before', async () => {
    const qs = queries(resources);
    expect(qs.length).toBeGreaterThan(100);
    let nonEmpty = 0;
    for (const q of qs) {
      setIndexAliases(false);
      const expected = await run(before, q.type, q.params, q.compartment);
      setIndexAliases(true);
      const got = await run(now, q.type, q.params, q.compartment);
      const old = await run(before, q.type, q.params, q.compartment);
      const label = `${q.compartment ? `Patient/${q.compartment}/` : ''}${q.type ?? ''}?${q.params.map(([k, v]) => `${k}=${v}`).join('&')}`;
      expect(got, label).toEqual(expected);
      expect(old, `${label} (database written before)`).toEqual(expected);
      if (expected.flat().length > expected.length) nonEmpty++;
    }
    // The comparison means something: most queries find resources.
    expect(nonEmpty).toBeGreaterThan(qs.length * 0.6);
  }, 300_000);
});

describe('a redefinition answers right before and after its re-index', () => {
  // Hand-made: `patient` must give the same resources at every step, whatever `subject` means meanwhile.
  const subjectIsAsserter = {
    resourceType: 'SearchParameter', url: 'http://example.org/sp/cond-subject-asserter', name: 'subject', status: 'active',
    code: 'subject', base: ['Condition'], type: 'reference', expression: 'Condition.asserter', description: 'not the subject',
  } as never;
  const resources = [
    { resourceType: 'Patient', id: 'p1' },
    { resourceType: 'Patient', id: 'p2' },
    { resourceType: 'Group', id: 'g1', type: 'person', actual: true },
    { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' }, asserter: { reference: 'Patient/p2' } },
    { resourceType: 'Condition', id: 'c2', subject: { reference: 'Group/g1' }, asserter: { reference: 'Patient/p1' } },
    { resourceType: 'Condition', id: 'c3', subject: { reference: 'Patient/p2' } },
  ] as Resource[];
  const ids = async (store: SqliteStore, params: [string, string][]) => (await run(store, 'Condition', params)).flat().filter((x) => x !== '+').sort();
  const expectRight = async (store: SqliteStore) => {
    expect(await ids(store, [['patient', 'Patient/p1']])).toEqual(['Condition/c1']);
    expect(await ids(store, [['patient', 'p2']])).toEqual(['Condition/c3']);
    expect(await ids(store, [['patient:missing', 'true']])).toEqual(['Condition/c2']);
    expect(await ids(store, [['patient:missing', 'false']])).toEqual(['Condition/c1', 'Condition/c3']);
    expect((await run(store, 'Patient', [['_id', 'p1'], ['_revinclude', 'Condition:patient']])).flat()).toEqual(['Patient/p1', '+', 'Condition/c1']);
  };

  it('writes the rows of an alias that ends at once, and keeps an alias that comes back off until the re-index', async () => {
    const store = await storeOf(resources);
    try {
      await expectRight(store);
      expect(setServerSearchParameters([subjectIsAsserter])).toEqual(['Condition']);
      // Before any re-index: `subject` rows still hold Condition.subject, `patient` has its rows already.
      expect(indexAliases('Condition').has('patient')).toBe(false);
      await expectRight(store);
      const job = await startReindex(store, ['Condition'], 'test');
      expect((await waitForReindex(job.id))?.status).toBe('completed');
      expect(await ids(store, [['subject', 'Patient/p2']])).toEqual(['Condition/c1']);
      await expectRight(store);
      expect(setServerSearchParameters([])).toEqual(['Condition']);
      // The `subject` rows hold the asserters until the re-index: the alias waits for it.
      expect(indexAliases('Condition').has('patient')).toBe(false);
      await expectRight(store);
      const back = await startReindex(store, ['Condition'], 'test');
      expect((await waitForReindex(back.id))?.status).toBe('completed');
      expect(indexAliases('Condition').get('patient')).toEqual({ of: ['subject'], targetType: 'Patient' });
      expect(await ids(store, [['subject', 'Patient/p2']])).toEqual(['Condition/c3']);
      await expectRight(store);
    } finally {
      setServerSearchParameters([]);
      await store.close();
    }
  });
});

/**
 * FHIR search end to end on both stores: one table of (query, expected ids) run against SQLite (in-memory,
 * the search-sql schema) and against the MongoDB filters evaluated by mingo over documents in the
 * search-filter shape. Fixtures are indexed with extractIndex, queries parsed with parseSearch.
 */
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { CodeSystem, FhirResource, Resource } from 'fhir/r4';
import { Query } from 'mingo';
import { beforeAll, describe, expect, it } from 'vitest';
import { extractIndex } from '../src/search/indexer.ts';
import { parseSearch } from '../src/search/parse.ts';
import type { SearchRequest } from '../src/search/types.ts';
import { expandSearchFilters } from '../src/search/valuesets.ts';
import { ResourceSet, Scope } from '../src/terminology/registry.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import { compileSearch, deleteIndex, installSearchSchema, paramIds, resolveIncludes, writeIndex } from '../src/store/sqlite/search-sql.ts';
import {
  compileMongoFilter,
  mongoIndexFields,
  resolveMongoChains,
  resolveMongoIncludes,
  type Document,
} from '../src/store/mongo/search-filter.ts';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const BODY = 'http://example.org/fhir/CodeSystem/body';
/** A hierarchy for token :above / :below: A > B > C, A > D (nested concepts and a `parent` property). */
const bodySystem: CodeSystem = {
  resourceType: 'CodeSystem',
  url: BODY,
  status: 'active',
  content: 'complete',
  concept: [
    { code: 'A', concept: [{ code: 'B', concept: [{ code: 'C' }] }] },
    { code: 'D', property: [{ code: 'parent', valueCode: 'A' }] },
  ],
};

const fixtures: FhirResource[] = [
  {
    resourceType: 'Patient',
    id: 'p1',
    meta: { tag: [{ system: 'sys', code: 't1' }] },
    active: true,
    name: [{ family: 'Müller', given: ['Jean-Paul'] }],
    gender: 'male',
    birthDate: '1980-05-12',
    identifier: [
      { system: 'urn:oid:lu', value: '111', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } },
    ],
    telecom: [{ system: 'email', value: 'jp@x.lu' }],
    address: [{ city: 'Luxembourg', country: 'LU' }],
    managingOrganization: { reference: 'Organization/org1' },
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jean-Paul <b>Müller</b>: diabète &amp; hypertension</p></div>' },
  },
  {
    resourceType: 'Patient',
    id: 'p2',
    active: false,
    name: [{ family: 'Muller', given: ['Anna'] }],
    gender: 'female',
    birthDate: '1975',
    identifier: [{ system: 'urn:oid:lu', value: '222' }],
    address: [{ city: 'Esch-sur-Alzette' }],
    deceasedDateTime: '2020-01-01',
  },
  {
    resourceType: 'Patient',
    id: 'p3',
    name: [{ family: 'Schmidt', given: ['Peter'] }],
    gender: 'male',
    birthDate: '1990-12-31',
    managingOrganization: { reference: 'http://example.org/fhir/Organization/org2' },
  },
  { resourceType: 'Organization', id: 'org1', name: 'Centre Hospitalier' },
  { resourceType: 'Organization', id: 'org2', name: 'Clinique Sainte-Marie', partOf: { reference: 'Organization/org1' } },
  {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }], text: 'Systolic BP' },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2021-03-04T10:00:00+01:00',
    valueQuantity: { value: 120, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' },
    component: [{ code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: { value: 80, system: UCUM, code: 'mm[Hg]' } }],
  },
  {
    resourceType: 'Observation',
    id: 'o2',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '29463-7' }] },
    subject: { reference: 'Patient/p2', identifier: { system: 'urn:oid:lu', value: '222' } },
    effectiveDateTime: '2021-03-05',
    valueQuantity: { value: 70, system: UCUM, code: 'kg' },
  },
  {
    resourceType: 'Observation',
    id: 'o3',
    status: 'preliminary',
    code: { coding: [{ system: LOINC, code: '29463-7' }] },
    subject: { reference: 'Patient/p1' },
    effectivePeriod: { start: '2021-01-01', end: '2021-01-31' },
    valueQuantity: { value: 70000, system: UCUM, code: 'g' },
  },
  {
    resourceType: 'Observation',
    id: 'o4',
    status: 'amended',
    code: { coding: [{ system: LOINC, code: '8480-6' }] },
    subject: { reference: 'Patient/p3' },
    effectiveDateTime: '2021-03-04T23:30:00-02:00',
    valueQuantity: { value: 135, system: UCUM, code: 'mm[Hg]' },
  },
  { resourceType: 'RiskAssessment', id: 'r1', status: 'final', subject: { reference: 'Patient/p1' }, prediction: [{ probabilityDecimal: 0.25 }] },
  { resourceType: 'ValueSet', id: 'vs1', status: 'active', url: 'http://example.org/fhir/ValueSet/abc', name: 'Abc' },
  // _text / _content, near, hierarchies and subsumption.
  {
    resourceType: 'DocumentReference',
    id: 'd1',
    status: 'current',
    content: [{ attachment: { contentType: 'text/plain', title: 'Lettre de sortie cardiologie', data: 'SGVsbG8gd29ybGQ=' } }],
  },
  { resourceType: 'Location', id: 'loc1', name: 'Luxembourg', position: { latitude: 49.6116, longitude: 6.1319 } },
  { resourceType: 'Location', id: 'loc2', name: 'Esch-sur-Alzette', position: { latitude: 49.4958, longitude: 5.9806 } },
  { resourceType: 'Location', id: 'loc3', name: 'Paris', position: { latitude: 48.8566, longitude: 2.3522 } },
  { resourceType: 'Location', id: 'loc4', name: 'Ward 4', partOf: { reference: 'Location/loc1' } },
  { resourceType: 'Location', id: 'loc5', name: 'Room 5', partOf: { reference: 'Location/loc4' } },
  { resourceType: 'Encounter', id: 'e1', status: 'finished', class: { code: 'AMB' }, location: [{ location: { reference: 'Location/loc5' } }] },
  { resourceType: 'Encounter', id: 'e2', status: 'finished', class: { code: 'AMB' }, location: [{ location: { reference: 'Location/loc2' } }] },
  { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p2' }, code: { coding: [{ system: BODY, code: 'B' }] } },
  { resourceType: 'Condition', id: 'c2', subject: { reference: 'Patient/p2' }, code: { coding: [{ system: BODY, code: 'C' }] } },
  { resourceType: 'Condition', id: 'c3', subject: { reference: 'Patient/p2' }, code: { coding: [{ system: BODY, code: 'D' }] } },
];
/** A deleted resource: a tombstone that no search may return. */
const deleted: FhirResource = { resourceType: 'Patient', id: 'p4', name: [{ family: 'Müller' }], gender: 'male' };
const lastUpdated = (i: number) => new Date(Date.UTC(2024, 0, 1 + i)).toISOString();

let db: DatabaseSync;
let docs: Document[];

beforeAll(() => {
  db = new DatabaseSync(':memory:');
  db.exec(
    'CREATE TABLE resources(resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, content TEXT, PRIMARY KEY (resource_type, id))',
  );
  installSearchSchema(db);
  docs = [];
  const all = [...fixtures, deleted];
  all.forEach((r, i) => {
    const isDeleted = r === deleted;
    const index = extractIndex(r);
    db.prepare('INSERT INTO resources VALUES (?, ?, 1, ?, ?, ?)').run(r.resourceType, r.id!, lastUpdated(i), isDeleted ? 1 : 0, isDeleted ? null : JSON.stringify(r));
    writeIndex(db, r.resourceType, r.id!, index);
    if (isDeleted) deleteIndex(db, r.resourceType, r.id!);
    docs.push({
      _id: `${r.resourceType}/${r.id}`,
      resourceType: r.resourceType,
      id: r.id,
      version: 1,
      lastUpdated: lastUpdated(i),
      deleted: isDeleted,
      // Keep the index on the tombstone too: the filters must exclude it by `deleted` alone.
      ...mongoIndexFields(index),
      ...(isDeleted ? {} : { resource: r }),
    });
  });
});

function parse(type: string | undefined, qs: string, strict = true): SearchRequest {
  return parseSearch(type, [...new URLSearchParams(qs)], { strict }).request;
}

interface Page {
  ids: string[];
  resources: Resource[];
  next?: string;
  total?: number;
  included: string[];
}

const key = (r: Resource) => `${r.resourceType}/${r.id}`;

function sqlitePage(request: SearchRequest): Page {
  // With parameter ids and their row counts the store chooses, per filter, between driving the query and
  // probing each row (test/search-probe.test.ts forces the probe form with DSP_SEARCH_PROBE_BOUND=0).
  const c = compileSearch(request, { paramIds: paramIds(db) });
  const rows = db.prepare(c.sql).all(...(c.params as SQLInputValue[])) as Record<string, unknown>[];
  const page = rows.slice(0, request.count);
  const resources = page.map((r) => JSON.parse(r.content as string) as Resource);
  const out: Page = { ids: resources.map((r) => r.id!), resources, included: resolveIncludes(db, request, resources).map(key).sort() };
  if (rows.length > request.count) out.next = c.cursorAfter(page[page.length - 1]);
  if (c.countSql) out.total = (db.prepare(c.countSql).get(...(c.countParams as SQLInputValue[])) as { n: number }).n;
  return out;
}

const find = async (filter: Document, projection: Document) =>
  new Query(filter).find<Document>(docs, projection).all() as Document[];

async function mongoPage(request: SearchRequest): Promise<Page> {
  const resolved = await resolveMongoChains(request, find);
  const c = compileMongoFilter(resolved);
  const found = new Query(c.filter).find<Document>(docs).sort(c.sort).limit(c.limit).all() as Document[];
  const page = found.slice(0, request.count);
  const resources = page.map((d) => d.resource as Resource);
  const out: Page = { ids: resources.map((r) => r.id!), resources, included: (await resolveMongoIncludes(request, resources, find)).map(key).sort() };
  if (found.length > request.count) out.next = c.cursorAfter(page[page.length - 1]!);
  if (request.total !== 'none') out.total = new Query(c.countFilter).find(docs).all().length;
  return out;
}

type Row = [type: string | undefined, query: string, expected: string[], ordered?: 'ordered'];

const table: Row[] = [
  // token
  ['Patient', 'gender=male', ['p1', 'p3']],
  ['Patient', 'gender=male,female', ['p1', 'p2', 'p3']],
  ['Patient', 'identifier=urn:oid:lu|111', ['p1']],
  ['Patient', 'identifier=111', ['p1']],
  ['Patient', 'identifier=urn:oid:lu|', ['p1', 'p2']],
  ['Patient', 'identifier=|111', []],
  ['Patient', 'identifier=other|111', []],
  ['Patient', 'gender:not=male', ['p2']],
  ['Patient', 'identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111', ['p1']],
  ['Patient', 'identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|222', []],
  ['Observation', 'code:text=systolic', ['o1']],
  ['Observation', 'code=http://loinc.org|8480-6', ['o1', 'o4']],
  ['Observation', 'code=http://loinc.org|8480-6,http://loinc.org|29463-7&status=final', ['o1', 'o2']],
  ['Patient', 'active=true', ['p1']],
  ['Patient', 'active=false', ['p2']],
  ['Patient', 'email=jp@x.lu', ['p1']],
  ['Patient', 'telecom=email|jp@x.lu', ['p1']],
  ['Patient', '_tag=sys|t1', ['p1']],
  ['Patient', 'deceased=true', ['p2']],
  // string
  ['Patient', 'name=muller', ['p1', 'p2']],
  ['Patient', 'name=MÜL', ['p1', 'p2']],
  ['Patient', 'family:exact=Müller', ['p1']],
  ['Patient', 'family:exact=müller', []],
  ['Patient', 'name:contains=ete', ['p3']],
  ['Patient', 'name=jean', ['p1']],
  ['Patient', 'address-city=lux', ['p1']],
  ['Patient', 'address=esch', ['p2']],
  ['Patient', 'name=muller&gender=female', ['p2']],
  ['Patient', 'name=muller&name=anna', ['p2']],
  ['Organization', 'name=clinique sainte', ['org2']],
  // reference
  ['Observation', 'subject=Patient/p1', ['o1', 'o3']],
  ['Observation', 'subject=p1', ['o1', 'o3']],
  ['Observation', 'patient=p1', ['o1', 'o3']],
  ['Observation', 'subject:Patient=p3', ['o4']],
  ['Observation', 'subject=http://other.org/fhir/Patient/p3', ['o4']],
  ['Patient', 'organization=Organization/org2', ['p3']],
  ['Patient', 'organization=http://example.org/fhir/Organization/org2', ['p3']],
  ['Observation', 'subject:identifier=urn:oid:lu|222', ['o2']],
  ['RiskAssessment', 'patient=Patient/p1', ['r1']],
  // date: precision, prefixes, time zones
  ['Patient', 'birthdate=1980', ['p1']],
  ['Patient', 'birthdate=1980-05', ['p1']],
  ['Patient', 'birthdate=1980-05-12', ['p1']],
  ['Patient', 'birthdate=1975-06-01', []],
  ['Patient', 'birthdate=ge1980-01-01', ['p1', 'p3']],
  ['Patient', 'birthdate=gt1980-05-12', ['p3']],
  ['Patient', 'birthdate=lt1980', ['p2']],
  ['Patient', 'birthdate=le1975-06-01', ['p2']],
  ['Patient', 'birthdate=ne1980', ['p2', 'p3']],
  ['Patient', 'birthdate=sa1985', ['p3']],
  ['Patient', 'birthdate=eb1976', ['p2']],
  ['Patient', 'birthdate=ge1975&birthdate=le1985', ['p1', 'p2']],
  ['Patient', 'death-date=2020', ['p2']],
  ['Observation', 'date=2021-03-04', ['o1']],
  ['Observation', 'date=2021-03-05', ['o2', 'o4']],
  ['Observation', 'date=2021-03-04T09:00:00Z', ['o1']],
  // `+` must be percent-encoded in a query string (a bare `+` is a space).
  ['Observation', 'date=2021-03-04T10:00:00%2B01:00', ['o1']],
  ['Observation', 'date=2021-03-04T10:00', []],
  ['Observation', 'date=2021-03-04T09:00', ['o1']],
  ['Observation', 'date=2021-01-15', []],
  ['Observation', 'date=2021-01', ['o3']],
  ['Observation', 'date=ge2021-01-15&date=le2021-01-20', ['o3']],
  ['Observation', 'date=gt2021-03-05T00:00:00Z', ['o2', 'o4']],
  ['Patient', '_lastUpdated=ge2024-01-02', ['p2', 'p3']],
  ['Patient', '_lastUpdated=2024-01-01', ['p1']],
  // quantity and number
  ['Observation', 'value-quantity=120', ['o1']],
  ['Observation', 'value-quantity=gt100', ['o1', 'o3', 'o4']],
  ['Observation', 'value-quantity=ne120', ['o2', 'o3', 'o4']],
  ['Observation', 'value-quantity=ap125', ['o1', 'o4']],
  ['Observation', 'value-quantity=120.4', []],
  ['Observation', 'value-quantity=lt130|http://unitsofmeasure.org|mm[Hg]', ['o1']],
  ['Observation', 'value-quantity=70|http://unitsofmeasure.org|kg', ['o2', 'o3']],
  ['Observation', 'value-quantity=70000|http://unitsofmeasure.org|g', ['o2', 'o3']],
  ['Observation', 'value-quantity=70||kg', ['o2']],
  ['Observation', 'value-quantity=gt15000|http://unitsofmeasure.org|Pa', ['o1', 'o4']],
  ['RiskAssessment', 'probability=0.25', ['r1']],
  ['RiskAssessment', 'probability=gt0.3', []],
  ['RiskAssessment', 'probability=le0.25', ['r1']],
  // uri
  ['ValueSet', 'url=http://example.org/fhir/ValueSet/abc', ['vs1']],
  ['ValueSet', 'url:below=http://example.org/fhir', ['vs1']],
  ['ValueSet', 'url:above=http://example.org/fhir/ValueSet/abc/extra', ['vs1']],
  ['ValueSet', 'url=http://example.org/fhir', []],
  // composite
  ['Observation', 'code-value-quantity=http://loinc.org|8480-6$gt125', ['o4']],
  ['Observation', 'code-value-quantity=http://loinc.org|8480-6$lt125,http://loinc.org|29463-7$70|http://unitsofmeasure.org|kg', ['o1', 'o2', 'o3']],
  ['Observation', 'component-code-value-quantity=http://loinc.org|8462-4$80', ['o1']],
  ['Observation', 'component-code-value-quantity=http://loinc.org|8480-6$80', []],
  // missing
  ['Patient', 'identifier:missing=true', ['p3']],
  ['Patient', 'identifier:missing=false', ['p1', 'p2']],
  ['Patient', 'organization:missing=true', ['p2']],
  // chains
  ['Observation', 'subject:Patient.name=muller', ['o1', 'o2', 'o3']],
  ['Observation', 'patient.gender=female', ['o2']],
  ['Observation', 'subject:Patient.organization.name=clinique', ['o4']],
  ['Observation', 'patient.organization.partof.name=centre', ['o4']],
  ['Observation', 'patient._id=p2', ['o2']],
  // _has
  ['Patient', '_has:Observation:subject:code=29463-7', ['p1', 'p2']],
  ['Patient', '_has:Observation:patient:status=amended', ['p3']],
  ['Organization', '_has:Patient:organization:_has:Observation:patient:code=8480-6', ['org1', 'org2']],
  ['Patient', '_has:Observation:patient:code=8480-6&gender=male', ['p1', 'p3']],
  // _id, deleted resources, system level
  ['Patient', '_id=p1,p3', ['p1', 'p3']],
  ['Patient', '_id=p4', []],
  [undefined, '_type=Patient,Organization&_id=p1,org1', ['org1', 'p1'], 'ordered'],
  [undefined, '_id=vs1', ['vs1']],
  // sort
  ['Patient', '_sort=birthdate', ['p2', 'p1', 'p3'], 'ordered'],
  ['Patient', '_sort=-birthdate', ['p3', 'p1', 'p2'], 'ordered'],
  ['Patient', '_sort=family,-birthdate', ['p1', 'p2', 'p3'], 'ordered'],
  ['Patient', '_sort=-_lastUpdated', ['p3', 'p2', 'p1'], 'ordered'],
  ['Patient', '_sort=-_id', ['p3', 'p2', 'p1'], 'ordered'],
  ['Observation', '_sort=date', ['o3', 'o1', 'o2', 'o4'], 'ordered'],
  // Descending date order uses each value's upper bound: o2 (the whole day 2021-03-05) ends after o4.
  ['Observation', '_sort=-date', ['o2', 'o4', 'o1', 'o3'], 'ordered'],
  ['Patient', '_sort=identifier', ['p3', 'p1', 'p2'], 'ordered'],
  ['Patient', '_sort=-identifier', ['p2', 'p1', 'p3'], 'ordered'],
  // _text: narrative words (tags stripped, entities decoded, folded), word prefixes, all words of a value
  ['Patient', '_text=diab', ['p1']],
  ['Patient', '_text=HYPER diabete', ['p1']],
  ['Patient', '_text=muller', ['p1']],
  ['Patient', '_text=xyz,paul', ['p1']],
  ['Patient', '_text=div', []],
  ['Patient', '_text=diab&_text=zzz', []],
  ['Patient', '_text=tension', []],
  // _content: every string value (references, systems, ids, base64 data left out)
  ['Patient', '_content=luxem', ['p1']],
  ['Patient', '_content=esch alz', ['p2']],
  ['Patient', '_content=muller', ['p1', 'p2']],
  ['Patient', '_content=org1', []],
  ['Patient', '_content=lu', ['p1']],
  ['DocumentReference', '_content=cardio', ['d1']],
  ['DocumentReference', '_content=SGVsbG8', []],
  ['Observation', 'subject:Patient._text=hypertension', ['o1', 'o3']],
  // near (R4 location.html#positional): km by default, 10 km when no distance is given
  ['Location', 'near=49.6116|6.1319|1|km', ['loc1']],
  ['Location', 'near=49.6116|6.1319', ['loc1']],
  ['Location', 'near=49.6116|6.1319|20', ['loc1', 'loc2']],
  ['Location', 'near=49.6116|6.1319|20000|m', ['loc1', 'loc2']],
  ['Location', 'near=49.6116|6.1319|280|km', ['loc1', 'loc2']],
  ['Location', 'near=49.6116|6.1319|300|km', ['loc1', 'loc2', 'loc3']],
  ['Location', 'near=49.6116|6.1319|200|[mi_i]', ['loc1', 'loc2', 'loc3']],
  ['Location', 'near=48.8566|2.3522|1,49.4958|5.9806|1', ['loc2', 'loc3']],
  // reference :below / :above on strict hierarchies (R4 search.html#recursive)
  ['Location', 'partof:below=loc1', ['loc4', 'loc5']],
  ['Encounter', 'location:below=Location/loc1', ['e1']],
  ['Encounter', 'location:below=Location/loc4', ['e1']],
  ['Encounter', 'location:above=Location/loc5', ['e1']],
  ['Encounter', 'location:below=Location/loc2', ['e2']],
  ['Encounter', 'location:below=Location/loc3', []],
  ['Patient', 'organization:below=Organization/org1', ['p1', 'p3']],
  ['Patient', 'organization:below=Organization/org2', ['p3']],
  ['Patient', 'organization:above=Organization/org2', ['p1', 'p3']],
  ['Patient', 'organization:above=Organization/org1', ['p1']],
  // token :below / :above (subsumption in a CodeSystem held with its hierarchy)
  ['Condition', `code:below=${BODY}|A`, ['c1', 'c2', 'c3']],
  ['Condition', `code:below=${BODY}|B`, ['c1', 'c2']],
  ['Condition', `code:below=${BODY}|D`, ['c3']],
  ['Condition', `code:above=${BODY}|C`, ['c1', 'c2']],
  ['Condition', `code:above=${BODY}|D`, ['c3']],
  ['Condition', `code:below=${BODY}|B,${BODY}|D`, ['c1', 'c2', 'c3']],
];

const bodyScope = (() => {
  const set = new ResourceSet();
  set.add(bodySystem);
  return new Scope([set]);
})();

/** Subsumption and hierarchies filled in (as the interaction layer does) with the same store's searches. */
function expanding(page: (r: SearchRequest) => Page | Promise<Page>): (r: SearchRequest) => Promise<Page> {
  return async (request) => {
    await expandSearchFilters(request, async () => bodyScope, async (r) => (await page({ ...r, count: 1000 })).resources);
    return page(request);
  };
}

const stores: [string, (r: SearchRequest) => Page | Promise<Page>][] = [
  ['sqlite', expanding(sqlitePage)],
  ['mongo (mingo)', expanding(mongoPage)],
];

describe.each(stores)('search on %s', (_name, run) => {
  it.each(table)('%s?%s', async (type, query, expected, ordered) => {
    const page = await run(parse(type, query));
    if (ordered) expect(page.ids).toEqual(expected);
    else expect([...page.ids].sort()).toEqual([...expected].sort());
  });

  async function allPages(type: string, query: string): Promise<string[][]> {
    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const request = parse(type, query);
      if (cursor) request.cursor = cursor;
      const page = await run(request);
      pages.push(page.ids);
      cursor = page.next;
    } while (cursor && pages.length < 20);
    return pages;
  }

  it('pages by cursor in sort order', async () => {
    expect(await allPages('Observation', '_sort=date&_count=1')).toEqual([['o3'], ['o1'], ['o2'], ['o4']]);
    expect(await allPages('Observation', '_sort=-date&_count=3')).toEqual([['o2', 'o4', 'o1'], ['o3']]);
    expect(await allPages('Observation', '_count=2')).toEqual([['o1', 'o2'], ['o3', 'o4']]);
    // Missing values sort lowest, ties broken by id: p3 (no identifier) first ascending, last descending.
    expect(await allPages('Patient', '_sort=identifier&_count=1')).toEqual([['p3'], ['p1'], ['p2']]);
    expect(await allPages('Patient', '_sort=-identifier&_count=1')).toEqual([['p2'], ['p1'], ['p3']]);
    expect(await allPages('Patient', '_sort=family&_count=1')).toEqual([['p1'], ['p2'], ['p3']]);
  });

  it('counts the total when asked', async () => {
    const page = await run(parse('Observation', 'status=final&_total=accurate&_count=1'));
    expect(page.ids).toEqual(['o1']);
    expect(page.total).toBe(2);
    expect((await run(parse('Observation', 'status=final'))).total).toBeUndefined();
  });

  it('resolves _include, _revinclude and :iterate', async () => {
    expect((await run(parse('Observation', '_id=o1&_include=Observation:subject'))).included).toEqual(['Patient/p1']);
    expect((await run(parse('Observation', '_id=o1&_include=Observation:subject:Group'))).included).toEqual([]);
    expect((await run(parse('Patient', '_id=p3&_revinclude=Observation:subject'))).included).toEqual(['Observation/o4']);
    expect((await run(parse('Observation', '_id=o4&_include=Observation:subject&_include:iterate=Patient:organization'))).included).toEqual([
      'Organization/org2',
      'Patient/p3',
    ]);
    expect((await run(parse('Patient', '_id=p1&_revinclude=*'))).included).toEqual(['Observation/o1', 'Observation/o3', 'RiskAssessment/r1']);
  });

  it('selects compartment members through any of their compartment parameters', async () => {
    const { compartmentFilter } = await import('../src/fhir/compartments.ts');
    const obs = parse('Observation', '');
    obs.filters.push(compartmentFilter('Patient', 'p1', ['Observation']));
    expect((await run(obs)).ids.sort()).toEqual(['o1', 'o3']);
    const multi = parse(undefined, '_type=Observation,RiskAssessment');
    multi.filters.push(compartmentFilter('Patient', 'p1', ['Observation', 'RiskAssessment']));
    expect((await run(multi)).ids.sort()).toEqual(['o1', 'o3', 'r1']);
    const none = parse('Observation', '');
    none.filters.push(compartmentFilter('Patient', 'p2', ['Observation']));
    expect((await run(none)).ids.sort()).toEqual(['o2']);
  });

  it('rejects a malformed cursor', async () => {
    const request = parse('Patient', '_sort=birthdate');
    request.cursor = 'not-a-cursor';
    await expect(async () => run(request)).rejects.toThrow(/cursor/);
  });
});

describe('parseSearch', () => {
  const status = (fn: () => unknown): number | undefined => {
    try {
      fn();
    } catch (e) {
      return e instanceof FhirError ? e.status : -1;
    }
    return undefined;
  };

  it('rejects unknown parameters in strict mode, naming them, and lists them in lenient mode', () => {
    expect(() => parseSearch('Patient', [['foo', 'x']], { strict: true })).toThrow(/foo/);
    expect(status(() => parseSearch('Patient', [['foo', 'x']], { strict: true }))).toBe(400);
    const { request, ignored } = parseSearch('Patient', [['foo', 'x'], ['gender', 'male'], ['_summary', 'true'], ['_elements', 'id'], ['_format', 'json'], ['_pretty', 'true']], { strict: false });
    expect(ignored).toEqual(['foo']);
    expect(request.filters).toHaveLength(1);
  });

  it('rejects malformed values and unknown modifiers with a 400 naming the parameter', () => {
    for (const [k, v] of [
      ['birthdate', 'not-a-date'],
      ['birthdate', 'xx2020'],
      ['birthdate', '2024-02-30'],
      ['birthdate', 'ge2024-02-30T10:00:00Z'],
      ['value-quantity', 'abc'],
      ['_count', 'ten'],
      ['name:sounds', 'x'],
      ['identifier:missing', 'maybe'],
      ['_total', 'some'],
      ['subject.foo', 'x'],
      ['_has:Observation:code:status', 'final'],
    ] as [string, string][]) {
      const type = k.startsWith('subject') || k === 'value-quantity' ? 'Observation' : 'Patient';
      expect(status(() => parseSearch(type, [[k, v]], { strict: false })), `${k}=${v}`).toBe(400);
      expect(() => parseSearch(type, [[k, v]], { strict: false })).toThrow(new RegExp(k.split(/[:.]/)[0]!.replace('_', '_?')));
    }
  });

  it('refuses malformed _text, _content, near and :above / :below values with a 400 naming the parameter', () => {
    for (const [type, k, v] of [
      ['Location', 'near', 'abc'],
      ['Location', 'near', '49.6'],
      ['Location', 'near', '91|6'],
      ['Location', 'near', '49.6|181'],
      ['Location', 'near', '49.6|6.1|-5'],
      ['Location', 'near', '49.6|6.1|5|parsec'],
      ['Location', 'near:missing', 'true'],
      ['Location', '_sort', 'near'],
      ['Patient', '_sort', '-_content'],
      ['Patient', '_text', '!!!'],
      ['Patient', '_content:exact', 'x'],
      ['Condition', 'code:below', 'A'],
      ['Condition', 'code:above', `${BODY}|`],
      ['Observation', 'subject:below', 'Patient/p1'],
      ['QuestionnaireResponse', 'questionnaire:below', 'http://example.org/Questionnaire/q|1'],
      ['QuestionnaireResponse', 'questionnaire:above', 'http://example.org/Questionnaire/q'],
    ] as [string, string, string][]) {
      expect(status(() => parseSearch(type, [[k, v]], { strict: true })), `${type}?${k}=${v}`).toBe(400);
      expect(() => parseSearch(type, [[k, v]], { strict: true })).toThrow(new RegExp(k === '_sort' ? v.replace('-', '') : k.split(':')[0]!));
    }
    // A canonical reference: :below matches the URL whatever the version (indexed without it).
    const f = parseSearch('QuestionnaireResponse', [['questionnaire:below', 'http://example.org/Questionnaire/q']], { strict: true }).request.filters[0];
    expect(f).toMatchObject({ kind: 'param', anyOf: [{ type: 'reference', references: ['Questionnaire/q'] }] });
    const g = parseSearch('QuestionnaireResponse', [['questionnaire:below', 'urn:uuid:1234']], { strict: true }).request.filters[0];
    expect(g).toMatchObject({ kind: 'param', anyOf: [{ type: 'reference', references: ['urn:uuid:1234'] }] });
    expect(parseSearch('Location', [['near', '49.6|6.1|2|[mi_i]']], { strict: true }).request.filters[0]).toEqual({
      kind: 'near',
      param: 'near',
      anyOf: [{ latitude: 49.6, longitude: 6.1, distanceKm: 2 * 1.609344 }],
    });
  });

  it('refuses subsumption in a code system without a held hierarchy (400 naming the parameter)', async () => {
    const none = async () => [] as Resource[];
    for (const v of ['http://snomed.info/sct|73211009', 'http://example.org/unknown|A']) {
      const request = parseSearch('Condition', [['code:below', v]], { strict: true }).request;
      const err = await expandSearchFilters(request, async () => bodyScope, none).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FhirError);
      expect((err as FhirError).status).toBe(400);
      expect((err as FhirError).message).toMatch(/code:below/);
    }
    const fragment = new ResourceSet();
    fragment.add({ resourceType: 'CodeSystem', url: 'http://example.org/fragment', status: 'active', content: 'fragment', concept: [{ code: 'x' }] } as CodeSystem);
    const request = parseSearch('Condition', [['code:above', 'http://example.org/fragment|x']], { strict: true }).request;
    await expect(expandSearchFilters(request, async () => new Scope([fragment]), none)).rejects.toThrow(/code:above.*fragment/);
  });

  it('applies _count defaults and caps, _sort keys, escaping and include specs', () => {
    expect(parseSearch('Patient', [], { strict: true }).request.count).toBe(20);
    expect(parseSearch('Patient', [['_count', '5000']], { strict: true, maxCount: 1000 }).request.count).toBe(1000);
    expect(parseSearch('Patient', [['_count', '7']], { strict: true }).request.count).toBe(7);
    expect(parseSearch('Patient', [['_sort', '-birthdate,name']], { strict: true }).request.sort).toEqual([
      { param: 'birthdate', descending: true },
      { param: 'name', descending: false },
    ]);
    const f = parseSearch('Patient', [['identifier', 'a\\|b|c\\,d,e']], { strict: true }).request.filters[0]!;
    expect(f).toMatchObject({ kind: 'param', anyOf: [{ system: 'a|b', code: 'c,d' }, { code: 'e' }] });
    expect(parseSearch('Observation', [['_include:iterate', 'Observation:subject:Patient']], { strict: true }).request.include).toEqual([
      { reverse: false, sourceType: 'Observation', param: 'subject', targetType: 'Patient', iterate: true },
    ]);
    // An empty value is ignored.
    expect(parseSearch('Patient', [['name', '']], { strict: true }).request.filters).toEqual([]);
  });

  it('splits union expressions by base type', async () => {
    const { searchParam } = await import('../src/search/registry.ts');
    expect(searchParam('Observation', 'patient')!.expression).toBe('Observation.subject.where(resolve() is Patient)');
    expect(searchParam('Condition', 'code')!.expression).toBe('Condition.code');
    expect(searchParam('Patient', '_tag')!.expression).toBe('Patient.meta.tag');
  });
});

/**
 * The access matrix: 19 actors (CareTeam and EpisodeOfCare relationships included) × 17 resources × 4
 * interactions (read, vread, instance history, search by _id in the patient's record) = 1,292 allow/deny
 * cases; then the patient's access operations: 20 actors × 16 calls on anna's record = 320 cases. The
 * expectation is computed from the policy as docs/access.md states it, written here independently of src/access.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { seed } from './access-fixture.ts';
import type { DevTokenClaims } from '../src/access/tokens.ts';
import type { Parameters, ParametersParameter } from 'fhir/r4';

interface Item {
  ref: string;
  patient: 'anna' | 'ben';
  label?: 'R' | 'V';
  hidden?: boolean;
  objected?: boolean;
  authors?: string[];
  essential?: boolean;
  private?: boolean;
}

const ITEMS: Item[] = [
  { ref: 'Patient/anna', patient: 'anna', essential: true },
  { ref: 'Patient/ben', patient: 'ben', essential: true },
  { ref: 'Observation/o-normal', patient: 'anna' },
  { ref: 'Observation/o-r', patient: 'anna', label: 'R' },
  { ref: 'Observation/o-v', patient: 'anna', label: 'V', authors: ['Practitioner/dr-author'] },
  { ref: 'Observation/o-enc2', patient: 'anna', objected: true },
  { ref: 'Observation/o-blood', patient: 'anna', essential: true },
  { ref: 'Observation/o-ben', patient: 'ben' },
  { ref: 'DocumentReference/doc-plain', patient: 'anna', authors: ['Practitioner/dr-author'] },
  { ref: 'DocumentReference/doc-hidden', patient: 'anna', hidden: true, authors: ['Practitioner/dr-author'] },
  { ref: 'DocumentReference/doc-v', patient: 'anna', label: 'V', authors: ['Practitioner/dr-author'] },
  { ref: 'DocumentReference/doc-ps', patient: 'anna', essential: true, authors: ['Practitioner/dr-gp'] },
  { ref: 'AllergyIntolerance/allergy', patient: 'anna', essential: true },
  { ref: 'Encounter/enc-2', patient: 'anna', objected: true },
  { ref: 'Consent/c-hide', patient: 'anna', private: true },
  // Declared care relationships: a CareTeam's participants (ended ones too) and a care manager are its authors.
  { ref: 'CareTeam/ct-active', patient: 'anna', authors: ['Practitioner/dr-team', 'PractitionerRole/role-team', 'Practitioner/dr-blocked', 'Practitioner/dr-left'] },
  { ref: 'EpisodeOfCare/eoc-1', patient: 'anna', authors: ['Practitioner/dr-episode'] },
];

interface Actor {
  name: string;
  claims?: DevTokenClaims;
  /** Records fully open to the actor, and whether restricted (R) documents are included. */
  full?: Record<string, { r: boolean }>;
  patientSide?: boolean;
  /** Essential data as in an emergency: of every record, or of the records listed. */
  emergency?: boolean | string[];
  admin?: boolean;
}

const ACTORS: Actor[] = [
  { name: 'admin', admin: true },
  { name: 'patient anna', claims: { role: 'patient', id: 'Patient/anna' }, full: { anna: { r: true } }, patientSide: true },
  { name: 'patient ben', claims: { role: 'patient', id: 'Patient/ben' }, full: { ben: { r: true } }, patientSide: true },
  { name: 'assistant of anna', claims: { role: 'assistant', id: 'RelatedPerson/asst' }, full: { anna: { r: true } }, patientSide: true },
  { name: 'médecin référent', claims: { role: 'practitioner', id: 'Practitioner/dr-gp' }, full: { anna: { r: true }, ben: { r: true } } },
  { name: 'granted (R for anna)', claims: { role: 'practitioner', id: 'Practitioner/dr-grant' }, full: { anna: { r: true }, ben: { r: false } } },
  { name: 'author with grant', claims: { role: 'practitioner', id: 'Practitioner/dr-author' }, full: { anna: { r: false } } },
  { name: 'expired grant', claims: { role: 'practitioner', id: 'Practitioner/dr-expired' } },
  { name: 'blocked (grant too)', claims: { role: 'practitioner', id: 'Practitioner/dr-blocked' } },
  { name: 'no link', claims: { role: 'practitioner', id: 'Practitioner/dr-none' } },
  { name: 'emergency', claims: { role: 'practitioner', id: 'Practitioner/dr-none', purpose: 'EMERGENCY', reason: 'road accident' }, emergency: true },
  { name: 'NCP', claims: { role: 'ncp', id: 'Organization/ncp-be' }, emergency: ['anna'] },
  // Declared care relationships of anna (test/access-fixture.ts seedCareRelationships).
  { name: 'care team member', claims: { role: 'practitioner', id: 'Practitioner/dr-team' }, full: { anna: { r: false } } },
  { name: 'care team member through a role', claims: { role: 'practitioner', id: 'PractitionerRole/role-team' }, full: { anna: { r: false } } },
  { name: 'practitioner of that role', claims: { role: 'practitioner', id: 'Practitioner/dr-team-role' }, full: { anna: { r: false } } },
  { name: 'care manager of an episode', claims: { role: 'practitioner', id: 'Practitioner/dr-episode' }, full: { anna: { r: false } } },
  { name: 'member of an ended care team', claims: { role: 'practitioner', id: 'Practitioner/dr-team-ended' } },
  { name: 'member of an inactive care team', claims: { role: 'practitioner', id: 'Practitioner/dr-team-inactive' } },
  { name: 'left the care team', claims: { role: 'practitioner', id: 'Practitioner/dr-left' } },
];

function allowed(actor: Actor, item: Item): boolean {
  if (actor.admin) return true;
  const ref = actor.claims!.id;
  const own = (item.authors ?? []).includes(ref);
  const record = actor.full?.[item.patient];
  if (record) {
    if (actor.patientSide) return true;
    if (item.private) return false;
    if (own) return true;
    if (item.label === 'V' || (item.label === 'R' && !record.r)) return false;
    return !item.hidden && !item.objected;
  }
  if (Array.isArray(actor.emergency) && !actor.emergency.includes(item.patient)) return false;
  if (actor.emergency) return !!item.essential && !item.label && !item.hidden && !item.objected && !item.private;
  return false;
}

const INTERACTIONS: { name: string; url: (item: Item) => string; found: (res: { status: number; body: { entry?: unknown[] } }) => boolean }[] = [
  { name: 'read', url: (i) => `/fhir/${i.ref}`, found: (r) => r.status === 200 },
  { name: 'vread', url: (i) => `/fhir/${i.ref}/_history/1`, found: (r) => r.status === 200 },
  { name: 'history', url: (i) => `/fhir/${i.ref}/_history`, found: (r) => r.status === 200 && (r.body.entry?.length ?? 0) > 0 },
  {
    name: 'search',
    url: (i) => {
      const [type, id] = i.ref.split('/');
      return `/fhir/${type}?_id=${id}${type === 'Patient' ? '' : `&patient=Patient/${i.patient}`}`;
    },
    found: (r) => r.status === 200 && (r.body.entry?.length ?? 0) === 1,
  },
];

let t: TestApp;
const clients = new Map<string, Http>();

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  for (const a of ACTORS) clients.set(a.name, a.admin ? t.http : await t.as(a.claims!));
});

describe('access matrix', () => {
  it(`${ACTORS.length} actors × ${ITEMS.length} resources × ${INTERACTIONS.length} interactions`, async () => {
    const mismatches: string[] = [];
    let cases = 0;
    let allows = 0;
    for (const actor of ACTORS) {
      for (const item of ITEMS) {
        const expectAllow = allowed(actor, item);
        if (expectAllow) allows += INTERACTIONS.length;
        for (const ia of INTERACTIONS) {
          const res = await clients.get(actor.name)!.get(ia.url(item));
          cases++;
          const got = ia.found(res);
          // Denied reads must look like missing resources (404), never 403 or 410.
          const denialShape = expectAllow || ia.name === 'search' || res.status === 404;
          if (got !== expectAllow || !denialShape) mismatches.push(`${actor.name} ${ia.name} ${item.ref}: expected ${expectAllow ? 'allow' : 'deny'}, got ${res.status}`);
        }
      }
    }
    expect(cases).toBeGreaterThanOrEqual(200);
    // Both outcomes are well represented (the matrix is not vacuous).
    expect(allows).toBeGreaterThan(150);
    expect(cases - allows).toBeGreaterThan(150);
    expect(mismatches).toEqual([]);
  });
});

/** The patient's operations: every actor calls each one on anna's record, in an order that restores the policy. */
interface OpCall {
  name: string;
  method: 'get' | 'post';
  url: string;
  body?: Parameters;
  /** What an allowed call's resulting policy shows. */
  check: (p: Parameters) => boolean;
}

const P = (...parameter: ParametersParameter[]): Parameters => ({ resourceType: 'Parameters', parameter });
const R = (name: string, reference: string): ParametersParameter => ({ name, valueReference: { reference } });
const B = (name: string, valueBoolean: boolean): ParametersParameter => ({ name, valueBoolean });
const refsIn = (p: Parameters, name: string, key: string) => (p.parameter ?? []).filter((x) => x.name === name).map((x) => x.part?.find((y) => y.name === key)?.valueReference?.reference);
const flag = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name)?.valueBoolean;

const OPS: OpCall[] = [
  { name: '$access-policy', method: 'get', url: '$access-policy', check: (p) => flag(p, 'closed') === false },
  { name: '$access-log', method: 'get', url: '$access-log?_count=1', check: (p) => (p as unknown as { resourceType: string }).resourceType === 'Bundle' },
  { name: '$access-grant', method: 'post', url: '$access-grant', body: P(R('practitioner', 'Practitioner/dr-none'), { name: 'end', valueDate: '2099-01-01' }), check: (p) => refsIn(p, 'link', 'actor').includes('Practitioner/dr-none') },
  { name: '$access-revoke', method: 'post', url: '$access-revoke', body: P(R('practitioner', 'Practitioner/dr-none')), check: (p) => !refsIn(p, 'link', 'actor').includes('Practitioner/dr-none') },
  { name: '$access-block', method: 'post', url: '$access-block', body: P(R('practitioner', 'Practitioner/dr-none')), check: (p) => refsIn(p, 'block', 'actor').includes('Practitioner/dr-none') },
  { name: '$access-unblock', method: 'post', url: '$access-unblock', body: P(R('practitioner', 'Practitioner/dr-none')), check: (p) => !refsIn(p, 'block', 'actor').includes('Practitioner/dr-none') },
  { name: '$hide', method: 'post', url: '$hide', body: P(R('resource', 'DocumentReference/doc-plain')), check: (p) => refsIn(p, 'hidden', 'resource').includes('DocumentReference/doc-plain') },
  { name: '$unhide', method: 'post', url: '$unhide', body: P(R('resource', 'DocumentReference/doc-plain')), check: (p) => !refsIn(p, 'hidden', 'resource').includes('DocumentReference/doc-plain') },
  { name: '$object-encounter', method: 'post', url: '$object-encounter', body: P(R('encounter', 'Encounter/enc-1')), check: (p) => refsIn(p, 'objection', 'encounter').includes('Encounter/enc-1') },
  { name: '$withdraw-objection', method: 'post', url: '$withdraw-objection', body: P(R('encounter', 'Encounter/enc-1')), check: (p) => !refsIn(p, 'objection', 'encounter').includes('Encounter/enc-1') },
  { name: '$close', method: 'post', url: '$close', check: (p) => flag(p, 'closed') === true },
  { name: '$reopen', method: 'post', url: '$reopen', check: (p) => flag(p, 'closed') === false },
  { name: '$emergency-access off', method: 'post', url: '$emergency-access', body: P(B('enabled', false)), check: (p) => flag(p, 'emergency-access') === false },
  { name: '$emergency-access on', method: 'post', url: '$emergency-access', body: P(B('enabled', true)), check: (p) => flag(p, 'emergency-access') === true },
  { name: '$cross-border off', method: 'post', url: '$cross-border', body: P(B('enabled', false)), check: (p) => flag(p, 'cross-border') === false },
  { name: '$cross-border on', method: 'post', url: '$cross-border', body: P(B('enabled', true)), check: (p) => flag(p, 'cross-border') === true },
];

/** Patient, assistant and administrator are allowed; another patient finds no such record; everyone else 403. */
function opExpectation(actor: Actor): 200 | 403 | 404 {
  if (actor.admin || (actor.patientSide && actor.full?.anna)) return 200;
  if (actor.patientSide) return 404;
  return 403;
}

describe('the patient’s access operations', () => {
  it('every actor × every operation on anna’s record', async () => {
    const actors: Actor[] = [...ACTORS, { name: 'system client', claims: { role: 'system', id: 'Device/lab-system' } }];
    clients.set('system client', await t.as({ role: 'system', id: 'Device/lab-system' }));
    const mismatches: string[] = [];
    let cases = 0;
    for (const actor of actors) {
      const expected = opExpectation(actor);
      for (const op of OPS) {
        const c = clients.get(actor.name)!;
        const url = `/fhir/Patient/anna/${op.url}`;
        const res = op.method === 'get' ? await c.get(url) : await c.post(url).send(op.body ?? P());
        cases++;
        if (res.status !== expected) mismatches.push(`${actor.name} ${op.name}: expected ${expected}, got ${res.status}`);
        else if (expected === 200 && !op.check(res.body)) mismatches.push(`${actor.name} ${op.name}: the resulting policy does not show the change`);
        else if (expected !== 200 && res.body.resourceType !== 'OperationOutcome') mismatches.push(`${actor.name} ${op.name}: a denial without an OperationOutcome`);
      }
    }
    expect(cases).toBeGreaterThanOrEqual(300);
    expect(mismatches).toEqual([]);
    // The policy is back where it started: the read matrix's expectations still hold for a sample.
    expect((await clients.get('médecin référent')!.get('/fhir/DocumentReference/doc-plain')).status).toBe(200);
    expect((await clients.get('NCP')!.get('/fhir/Patient/anna')).status).toBe(200);
    expect((await clients.get('no link')!.get('/fhir/Observation/o-normal')).status).toBe(404);
  });
});

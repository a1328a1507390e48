/**
 * The access matrix: 12 actors × 15 resources × 4 interactions (read, vread, instance history, search by
 * _id in the patient's record) = 720 allow/deny cases. The expectation is computed from the policy as
 * docs/access.md states it, written here independently of src/access.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { seed } from './access-fixture.ts';
import type { DevTokenClaims } from '../src/access/tokens.ts';

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

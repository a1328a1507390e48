/** Shared fixture of the access tests: a small DSP with two patients, professionals and a policy. */
import type { Resource } from 'fhir/r4';
import type { TestApp } from './support/app.ts';
import { PERMIT } from '../src/operations/patient-access.ts';

export const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
export const POLICY = 'https://dsp.lu/fhir/CodeSystem/access-policy';

export function consent(id: string, patient: string, kind: string, extra: { actor?: string; data?: string; end?: string; restricted?: boolean; status?: string } = {}): Resource {
  return {
    resourceType: 'Consent',
    id,
    status: (extra.status ?? 'active') as 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patient}` },
    policyRule: { coding: [{ system: POLICY, code: kind }] },
    provision: {
      type: PERMIT.has(kind as never) ? 'permit' : 'deny',
      ...(extra.end ? { period: { end: extra.end } } : {}),
      ...(extra.actor ? { actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] }, reference: { reference: extra.actor } }] } : {}),
      ...(extra.data ? { data: [{ meaning: 'instance', reference: { reference: extra.data } }] } : {}),
      ...(extra.restricted ? { securityLabel: [{ system: CONF, code: 'R' }] } : {}),
    },
  } as Resource;
}

export function obs(id: string, patient: string, opts: { author?: string; label?: string; encounter?: string; code?: string } = {}): Resource {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    ...(opts.label ? { meta: { security: [{ system: CONF, code: opts.label }] } } : {}),
    code: { coding: [{ system: 'http://loinc.org', code: opts.code ?? '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    ...(opts.encounter ? { encounter: { reference: `Encounter/${opts.encounter}` } } : {}),
    ...(opts.author ? { performer: [{ reference: opts.author }] } : {}),
  } as Resource;
}

export function doc(id: string, patient: string, author: string, opts: { label?: string; encounter?: string; type?: string } = {}): Resource {
  return {
    resourceType: 'DocumentReference',
    id,
    status: 'current',
    type: { coding: [{ system: 'http://loinc.org', code: opts.type ?? '11506-3' }] },
    subject: { reference: `Patient/${patient}` },
    author: [{ reference: author }],
    ...(opts.label ? { securityLabel: [{ coding: [{ system: CONF, code: opts.label }] }] } : {}),
    ...(opts.encounter ? { context: { encounter: [{ reference: `Encounter/${opts.encounter}` }] } } : {}),
    content: [{ attachment: { contentType: 'text/plain', data: 'aGVsbG8=' } }],
  } as Resource;
}

/**
 * Patients anna (GP: dr-gp) and ben (GP: dr-gp too, but ben blocked dr-blocked and granted dr-grant).
 * anna: grants dr-grant (restricted too) and dr-expired (expired); blocks dr-blocked; hides doc-hidden;
 * objects to visit enc-2; assistant RelatedPerson/asst.
 */
export async function seed(t: TestApp): Promise<void> {
  const put = async (r: Resource) => {
    const res = await t.http.put(`/fhir/${r.resourceType}/${r.id}`).send(r);
    if (res.status >= 300) throw new Error(`seed ${r.resourceType}/${r.id}: ${res.status} ${JSON.stringify(res.body)}`);
  };
  for (const p of ['dr-gp', 'dr-grant', 'dr-expired', 'dr-blocked', 'dr-none', 'dr-author']) await put({ resourceType: 'Practitioner', id: p } as Resource);
  await put({ resourceType: 'Patient', id: 'anna', generalPractitioner: [{ reference: 'Practitioner/dr-gp' }] } as Resource);
  await put({ resourceType: 'Patient', id: 'ben', generalPractitioner: [{ reference: 'Practitioner/dr-gp' }] } as Resource);
  await put({ resourceType: 'Encounter', id: 'enc-1', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/anna' } } as Resource);
  await put({ resourceType: 'Encounter', id: 'enc-2', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/anna' } } as Resource);
  await put(obs('o-normal', 'anna', { encounter: 'enc-1' }));
  await put(obs('o-r', 'anna', { label: 'R' }));
  await put(obs('o-v', 'anna', { label: 'V', author: 'Practitioner/dr-author' }));
  await put(obs('o-enc2', 'anna', { encounter: 'enc-2' }));
  await put(obs('o-blood', 'anna', { code: '882-1' }));
  await put(obs('o-ben', 'ben'));
  await put(doc('doc-plain', 'anna', 'Practitioner/dr-author'));
  await put(doc('doc-hidden', 'anna', 'Practitioner/dr-author'));
  await put(doc('doc-v', 'anna', 'Practitioner/dr-author', { label: 'V' }));
  await put(doc('doc-ps', 'anna', 'Practitioner/dr-gp', { type: '60591-5' }));
  await put({ resourceType: 'AllergyIntolerance', id: 'allergy', patient: { reference: 'Patient/anna' } } as Resource);
  await put(consent('c-grant', 'anna', 'grant', { actor: 'Practitioner/dr-grant', restricted: true }));
  await put(consent('c-author', 'anna', 'grant', { actor: 'Practitioner/dr-author' }));
  await put(consent('c-expired', 'anna', 'grant', { actor: 'Practitioner/dr-expired', end: '2020-01-01' }));
  await put(consent('c-block', 'anna', 'block', { actor: 'Practitioner/dr-blocked' }));
  await put(consent('c-block-grant', 'anna', 'grant', { actor: 'Practitioner/dr-blocked' }));
  await put(consent('c-hide', 'anna', 'hide', { data: 'DocumentReference/doc-hidden' }));
  await put(consent('c-object', 'anna', 'object-encounter', { data: 'Encounter/enc-2' }));
  await put(consent('c-asst', 'anna', 'assistant', { actor: 'RelatedPerson/asst' }));
  await put(consent('c-xborder', 'anna', 'cross-border'));
  await put(consent('c-ben-grant', 'ben', 'grant', { actor: 'Practitioner/dr-grant' }));
  await seedCareRelationships(t);
}

/**
 * Declared care relationships of anna: the active CareTeam ct-active (dr-team, PractitionerRole/role-team of
 * dr-team-role, and dr-blocked, whom anna blocked), an active CareTeam with an ended period (dr-team-ended),
 * an inactive one (dr-team-inactive), an active team member whose own participation ended (dr-left), and an
 * active EpisodeOfCare managed by dr-episode.
 */
export async function seedCareRelationships(t: TestApp): Promise<void> {
  const put = async (r: Resource) => {
    const res = await t.http.put(`/fhir/${r.resourceType}/${r.id}`).send(r);
    if (res.status >= 300) throw new Error(`seed ${r.resourceType}/${r.id}: ${res.status} ${JSON.stringify(res.body)}`);
  };
  for (const p of ['dr-team', 'dr-team-role', 'dr-team-ended', 'dr-team-inactive', 'dr-left', 'dr-episode']) await put({ resourceType: 'Practitioner', id: p } as Resource);
  await put({ resourceType: 'PractitionerRole', id: 'role-team', active: true, practitioner: { reference: 'Practitioner/dr-team-role' } } as Resource);
  await put(careTeam('ct-active', 'anna', ['Practitioner/dr-team', 'PractitionerRole/role-team', 'Practitioner/dr-blocked'], { start: '2020-01-01', left: ['Practitioner/dr-left'] }));
  await put(careTeam('ct-ended', 'anna', ['Practitioner/dr-team-ended'], { start: '2019-01-01', end: '2020-12-31' }));
  await put(careTeam('ct-inactive', 'anna', ['Practitioner/dr-team-inactive'], { status: 'inactive' }));
  await put({ resourceType: 'EpisodeOfCare', id: 'eoc-1', status: 'active', patient: { reference: 'Patient/anna' }, period: { start: '2024-01-01' }, careManager: { reference: 'Practitioner/dr-episode' } } as Resource);
}

export function careTeam(id: string, patient: string, members: string[], opts: { status?: string; start?: string; end?: string; left?: string[] } = {}): Resource {
  return {
    resourceType: 'CareTeam',
    id,
    status: opts.status ?? 'active',
    subject: { reference: `Patient/${patient}` },
    ...(opts.start || opts.end ? { period: { ...(opts.start ? { start: opts.start } : {}), ...(opts.end ? { end: opts.end } : {}) } } : {}),
    participant: [
      ...members.map((m) => ({ member: { reference: m } })),
      ...(opts.left ?? []).map((m) => ({ member: { reference: m }, period: { start: '2020-01-01', end: '2021-01-01' } })),
    ],
  } as Resource;
}

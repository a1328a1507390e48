/**
 * The access model as data: FHIR Consent resources of a patient (docs/access.md), read into a PatientPolicy.
 *
 * A DSP Consent names its kind in `policyRule.coding` (system POLICY_SYSTEM):
 * - `grant`             permit, provision.actor = the professional (provision.period may end it);
 *                       provision.securityLabel R lets that professional see restricted documents too
 * - `care-relationship` the same, declared by a care organisation (hospital stay, ...)
 * - `block`             deny, provision.actor = the professional: beats every grant
 * - `hide`              deny, provision.data.reference = the document (or any resource) to hide
 * - `object-encounter`  deny, provision.data.reference = Encounter/x: that visit and its documents hidden
 * - `close`             deny: the record is closed (only the patient and each author for their own)
 * - `emergency-optout`  deny: no emergency access to this record
 * - `assistant`         permit, provision.actor = the RelatedPerson/Person appointed as DSP assistant
 * - `cross-border`      permit: the national contact point may send the Patient Summary abroad (MyHealth@EU)
 * Only Consents with status `active` count. A Consent of this patient with a DSP policy code that is not
 * known here makes the policy unknown: professionals are then denied (fail closed).
 *
 * Declared care relationships: an `active` CareTeam of the patient whose period covers now gives each of its
 * current participants (`participant.member` Practitioner, or PractitionerRole and that role's practitioner)
 * a link like a `care-relationship` Consent; so does an `active` EpisodeOfCare of the patient (period
 * covering now) for its `careManager` and the members of the active CareTeams in its `team`. A block beats
 * them like any grant.
 */
import type { CareTeam, Consent, EpisodeOfCare, Patient, PractitionerRole, Reference } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import { FhirError } from '../fhir/outcome.ts';
import { ID_SOURCE, TYPE_ID_PATTERN } from '../fhir/model.ts';

export const POLICY_SYSTEM = 'https://dsp.lu/fhir/CodeSystem/access-policy';
export const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
export const KINDS = ['grant', 'care-relationship', 'block', 'hide', 'object-encounter', 'close', 'emergency-optout', 'assistant', 'cross-border'] as const;
export type PolicyKind = (typeof KINDS)[number];
/** Kinds that restrict access: a malformed period on them still applies (fail closed). */
const DENYING = new Set<PolicyKind>(['block', 'hide', 'object-encounter', 'close', 'emergency-optout']);

export interface Grant {
  actor: string;
  /** ISO end of validity, when the grant expires. */
  end?: string;
  start?: string;
  /** The grant also covers restricted (R) documents. */
  restricted: boolean;
  /** Where the link comes from: `Consent/x`, `CareTeam/y` or `EpisodeOfCare/z`. */
  source?: string;
}

export interface PatientPolicy {
  patientId: string;
  exists: boolean;
  generalPractitioners: Set<string>;
  grants: Grant[];
  blocked: Set<string>;
  hidden: Set<string>;
  objectedEncounters: Set<string>;
  closed: boolean;
  emergencyOptOut: boolean;
  assistants: Set<string>;
  /** The patient consented to cross-border sharing of their Patient Summary through the national contact point. */
  crossBorder: boolean;
  /** A DSP Consent with an unknown code (or malformed) exists: deny professionals. */
  unknown: boolean;
}

export function policyKind(consent: Consent): PolicyKind | 'unknown' | undefined {
  const codes = (consent.policyRule?.coding ?? []).filter((c) => c.system === POLICY_SYSTEM).map((c) => c.code);
  if (!codes.length) return undefined;
  if (codes.length > 1) return 'unknown';
  return KINDS.includes(codes[0] as PolicyKind) ? (codes[0] as PolicyKind) : 'unknown';
}

/**
 * The instant a period end stops covering: a date-precision end (`2027-03-31`, `2027-03`, `2027`) covers the
 * whole day / month / year it names (FHIR Period semantics); a dateTime ends at that instant. NaN when unreadable.
 */
export function periodEndMs(end: string): number {
  const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$/.exec(end);
  if (!m) return Date.parse(end);
  const [y, mo, d] = [Number(m[1]), m[2] ? Number(m[2]) : undefined, m[3] ? Number(m[3]) : undefined];
  if (d !== undefined) return Date.UTC(y, mo! - 1, d + 1);
  if (mo !== undefined) return Date.UTC(y, mo, 1);
  return Date.UTC(y + 1, 0, 1);
}

/**
 * A period covers `now` (no period: always). An unreadable bound counts as `unreadable` says: false for
 * what permits (a grant), true for what denies (a block, a closure), so a malformed period fails closed.
 */
export function active(period: { start?: string; end?: string } | undefined, now: number, unreadable = false): boolean {
  const start = period?.start ? Date.parse(period.start) : undefined;
  const end = period?.end ? periodEndMs(period.end) : undefined;
  if (Number.isNaN(start) || Number.isNaN(end)) return unreadable;
  if (start !== undefined && start > now) return false;
  if (end !== undefined && end <= now) return false;
  return true;
}

/**
 * Reads the patient's policy; a store failure becomes a 503 (an unavailable policy never allows). `consents`:
 * the patient's active Consents when the caller has read them already (the patient access operations), so
 * that they are not searched a second time.
 */
export async function loadPolicy(session: StoreSession, patientId: string, now = Date.now(), consents?: readonly Consent[]): Promise<PatientPolicy> {
  const policy: PatientPolicy = {
    patientId,
    exists: false,
    generalPractitioners: new Set(),
    grants: [],
    blocked: new Set(),
    hidden: new Set(),
    objectedEncounters: new Set(),
    closed: false,
    emergencyOptOut: false,
    assistants: new Set(),
    crossBorder: false,
    unknown: false,
  };
  try {
    const record = await session.current('Patient', patientId);
    if (!record || record.deleted) return policy;
    policy.exists = true;
    for (const gp of (record.resource as Patient).generalPractitioner ?? []) if (gp.reference) policy.generalPractitioners.add(gp.reference);
    for (const r of consents ?? (await activeConsents(session, patientId))) applyConsent(policy, r, now);
    await applyCareRelationships(session, policy, now);
  } catch (err) {
    if (err instanceof FhirError) throw err;
    throw new FhirError(503, 'The access policy is unavailable; access is denied', 'transient');
  }
  return policy;
}

/** The patient's Consents with status `active` (every kind, DSP or not). */
export async function activeConsents(session: StoreSession, patientId: string): Promise<Consent[]> {
  const found = await session.search({
    resourceTypes: ['Consent'],
    filters: [
      { kind: 'param', param: 'patient', type: 'reference', anyOf: [{ type: 'reference', reference: `Patient/${patientId}`, targetType: 'Patient', targetId: patientId }] },
      { kind: 'param', param: 'status', type: 'token', anyOf: [{ type: 'token', code: 'active' }] },
    ],
    sort: [],
    count: 10_000,
    total: 'none',
    include: [],
  });
  return found.resources as Consent[];
}

function applyConsent(policy: PatientPolicy, c: Consent, now: number): void {
  const kind = policyKind(c);
  if (kind === undefined) return;
  if (kind === 'unknown') {
    policy.unknown = true;
    return;
  }
  const p = c.provision;
  if (!active(p?.period, now, DENYING.has(kind))) return;
  const actors = (p?.actor ?? []).map((a) => a.reference.reference).filter((r): r is string => !!r);
  const data = (p?.data ?? []).map((d) => d.reference.reference).filter((r): r is string => !!r);
  switch (kind) {
    case 'grant':
    case 'care-relationship':
      for (const actor of actors) {
        policy.grants.push({ actor, start: p?.period?.start, end: p?.period?.end, restricted: (p?.securityLabel ?? []).some((l) => l.system === CONFIDENTIALITY && l.code === 'R'), source: c.id ? `Consent/${c.id}` : undefined });
      }
      break;
    case 'block':
      for (const a of actors) policy.blocked.add(a);
      break;
    case 'hide':
      for (const d of data) policy.hidden.add(d);
      break;
    case 'object-encounter':
      for (const d of data) if (d.startsWith('Encounter/')) policy.objectedEncounters.add(d);
      break;
    case 'close':
      policy.closed = true;
      break;
    case 'emergency-optout':
      policy.emergencyOptOut = true;
      break;
    case 'assistant':
      for (const a of actors) policy.assistants.add(a);
      break;
    case 'cross-border':
      policy.crossBorder = true;
      break;
  }
}

/** A reference to a professional: `Practitioner/id` or `PractitionerRole/id`. */
export const PROFESSIONAL = new RegExp(`^(Practitioner|PractitionerRole)/${ID_SOURCE}$`);
const searchBase = { sort: [], count: 10_000, total: 'none' as const, include: [] };

function refFilter(param: string, reference: string) {
  const [targetType, targetId] = [reference.slice(0, reference.indexOf('/')), reference.slice(reference.indexOf('/') + 1)];
  return { kind: 'param' as const, param, type: 'reference' as const, anyOf: [{ type: 'reference' as const, reference, targetType, targetId }] };
}
const activeStatus = { kind: 'param' as const, param: 'status', type: 'token' as const, anyOf: [{ type: 'token' as const, code: 'active' }] };

/** Links from CareTeam / EpisodeOfCare (see the header): pushed as grants without restricted access. */
async function applyCareRelationships(session: StoreSession, policy: PatientPolicy, now: number): Promise<void> {
  const patient = `Patient/${policy.patientId}`;
  const roles = new Map<string, string | undefined>();
  const add = async (ref: string | undefined, source: string) => {
    if (!ref || !PROFESSIONAL.test(ref)) return;
    policy.grants.push({ actor: ref, restricted: false, source });
    if (ref.startsWith('PractitionerRole/')) {
      if (!roles.has(ref)) {
        const rec = await session.current('PractitionerRole', ref.slice('PractitionerRole/'.length));
        const role = rec && !rec.deleted ? (rec.resource as PractitionerRole) : undefined;
        roles.set(ref, role && role.active !== false && active(role.period, now) ? role.practitioner?.reference : undefined);
      }
      const practitioner = roles.get(ref);
      if (practitioner?.startsWith('Practitioner/')) policy.grants.push({ actor: practitioner, restricted: false, source });
    }
  };
  const addTeam = async (team: CareTeam) => {
    if (team.status !== 'active' || !active(team.period, now)) return;
    for (const p of team.participant ?? []) if (active(p.period, now)) await add(p.member?.reference, `CareTeam/${team.id}`);
  };
  const teams = await session.search({ ...searchBase, resourceTypes: ['CareTeam'], filters: [refFilter('patient', patient), activeStatus] });
  for (const t of teams.resources) await addTeam(t as CareTeam);
  const episodes = await session.search({ ...searchBase, resourceTypes: ['EpisodeOfCare'], filters: [refFilter('patient', patient), activeStatus] });
  for (const r of episodes.resources) {
    const e = r as EpisodeOfCare;
    if (e.status !== 'active' || !active(e.period, now)) continue;
    await add(e.careManager?.reference, `EpisodeOfCare/${e.id}`);
    for (const t of e.team ?? []) {
      const id = teamId(t);
      if (!id || teams.resources.some((x) => x.id === id)) continue;
      const rec = await session.current('CareTeam', id);
      if (rec && !rec.deleted) await addTeam(rec.resource as CareTeam);
    }
  }
}

function teamId(ref: Reference): string | undefined {
  const m = TYPE_ID_PATTERN.exec(ref.reference ?? '');
  return m?.[1] === 'CareTeam' ? m[2] : undefined;
}

/**
 * Patients with whom an actor may have a link (a superset: each candidate's policy decides): the Consents
 * naming them, and the CareTeams / EpisodeOfCares naming them (or one of their PractitionerRoles) with a
 * patient subject. The médecin référent is looked up by the caller.
 */
export async function candidatePatients(session: StoreSession, actor: string, opts: { ownConsents?: boolean } = {}): Promise<Set<string>> {
  const out = new Set<string>();
  const refs = [actor];
  if (actor.startsWith('Practitioner/')) {
    const roles = await session.search({ ...searchBase, resourceTypes: ['PractitionerRole'], filters: [refFilter('practitioner', actor)] });
    for (const r of roles.resources) refs.push(`PractitionerRole/${r.id}`);
  }
  const patientOf = (ref: string | undefined) => {
    if (ref?.startsWith('Patient/')) out.add(ref.slice('Patient/'.length));
  };
  for (const ref of refs) {
    if (ref === actor && opts.ownConsents === false) continue;
    const consents = await session.search({ ...searchBase, resourceTypes: ['Consent'], filters: [refFilter('actor', ref), activeStatus] });
    for (const c of consents.resources) patientOf((c as Consent).patient?.reference);
  }
  for (const ref of refs) {
    const teams = await session.search({ ...searchBase, resourceTypes: ['CareTeam'], filters: [refFilter('participant', ref), activeStatus] });
    for (const t of teams.resources) patientOf((t as CareTeam).subject?.reference);
    const episodes = await session.search({ ...searchBase, resourceTypes: ['EpisodeOfCare'], filters: [refFilter('care-manager', ref), activeStatus] });
    for (const e of episodes.resources) patientOf((e as EpisodeOfCare).patient?.reference);
  }
  return out;
}

/** The therapeutic link of a professional: médecin référent, or an active grant; a block beats both. */
export function linkOf(policy: PatientPolicy, actor: string): { linked: boolean; restricted: boolean } {
  if (!policy.exists || policy.unknown || policy.blocked.has(actor)) return { linked: false, restricted: false };
  if (policy.generalPractitioners.has(actor)) return { linked: true, restricted: true };
  const grants = policy.grants.filter((g) => g.actor === actor);
  return { linked: grants.length > 0, restricted: grants.some((g) => g.restricted) };
}

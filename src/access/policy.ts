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
 */
import type { Consent, Patient } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import { FhirError } from '../fhir/outcome.ts';

export const POLICY_SYSTEM = 'https://dsp.lu/fhir/CodeSystem/access-policy';
export const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
export const KINDS = ['grant', 'care-relationship', 'block', 'hide', 'object-encounter', 'close', 'emergency-optout', 'assistant', 'cross-border'] as const;
export type PolicyKind = (typeof KINDS)[number];

export interface Grant {
  actor: string;
  /** ISO end of validity, when the grant expires. */
  end?: string;
  start?: string;
  /** The grant also covers restricted (R) documents. */
  restricted: boolean;
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

function active(period: { start?: string; end?: string } | undefined, now: number): boolean {
  if (period?.start && Date.parse(period.start) > now) return false;
  if (period?.end && Date.parse(period.end) < now) return false;
  return true;
}

/** Reads the patient's policy; a store failure becomes a 503 (an unavailable policy never allows). */
export async function loadPolicy(session: StoreSession, patientId: string, now = Date.now()): Promise<PatientPolicy> {
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
    const consents = await session.search({
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
    for (const r of consents.resources) applyConsent(policy, r as Consent, now);
  } catch (err) {
    if (err instanceof FhirError) throw err;
    throw new FhirError(503, 'The access policy is unavailable; access is denied', 'transient');
  }
  return policy;
}

function applyConsent(policy: PatientPolicy, c: Consent, now: number): void {
  const kind = policyKind(c);
  if (kind === undefined) return;
  if (kind === 'unknown') {
    policy.unknown = true;
    return;
  }
  const p = c.provision;
  if (!active(p?.period, now)) return;
  const actors = (p?.actor ?? []).map((a) => a.reference.reference).filter((r): r is string => !!r);
  const data = (p?.data ?? []).map((d) => d.reference.reference).filter((r): r is string => !!r);
  switch (kind) {
    case 'grant':
    case 'care-relationship':
      for (const actor of actors) {
        policy.grants.push({ actor, start: p?.period?.start, end: p?.period?.end, restricted: (p?.securityLabel ?? []).some((l) => l.system === CONFIDENTIALITY && l.code === 'R') });
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

/** The therapeutic link of a professional: médecin référent, or an active grant; a block beats both. */
export function linkOf(policy: PatientPolicy, actor: string): { linked: boolean; restricted: boolean } {
  if (!policy.exists || policy.unknown || policy.blocked.has(actor)) return { linked: false, restricted: false };
  if (policy.generalPractitioners.has(actor)) return { linked: true, restricted: true };
  const grants = policy.grants.filter((g) => g.actor === actor);
  return { linked: grants.length > 0, restricted: grants.some((g) => g.restricted) };
}

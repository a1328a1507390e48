/**
 * AuditEvents shaped after IHE Basic Audit Log Patterns (BALP): who (the user, on behalf of which
 * organisation), which patient, what (resource or query), when, purpose of use, outcome. Query entities keep
 * the parameter names only, not their values (no health data in the trail beyond references).
 */
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from 'fhir/r4';
import type { Principal } from '../access/principal.ts';

export const FLAG_SYSTEM = 'https://dsp.lu/fhir/CodeSystem/audit-flag';
const REST = { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' };
const INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';

export interface AuditInput {
  principal: Principal;
  /** restful-interaction code: read, vread, history-instance, search-type, create, update, patch, delete, operation, batch, transaction. */
  interaction: string;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  status: number;
  /** `Observation/1` for instance interactions. */
  entity?: string;
  /** Resource type and parameter names of a search (values left out). */
  query?: string;
  patients: string[];
  emergency: boolean;
  /** Short reason of a failure (never resource content). */
  outcomeText?: string;
  recorded?: string;
}

export function buildAuditEvent(a: AuditInput): AuditEvent {
  const pr = a.principal;
  const emergency = a.emergency || pr.purpose === 'EMERGENCY';
  const purpose: Coding = emergency ? { system: ACT_REASON, code: 'ETREAT', display: 'Emergency treatment' } : pr.role === 'patient' || pr.role === 'assistant' ? { system: ACT_REASON, code: 'PATRQT', display: 'patient requested' } : pr.role === 'admin' ? { system: ACT_REASON, code: 'HOPERAT', display: 'healthcare operations' } : { system: ACT_REASON, code: 'TREAT', display: 'treatment' };
  const agent: AuditEventAgent[] = [
    {
      type: { coding: [{ system: PARTICIPATION, code: 'IRCP', display: 'information recipient' }] },
      role: [{ text: pr.role }],
      who: { reference: pr.ref },
      requestor: true,
      ...(pr.tokenId || pr.clientId ? { policy: [pr.tokenId ?? pr.clientId!] } : {}),
      purposeOfUse: [{ coding: [purpose], ...(emergency && pr.reason ? { text: pr.reason } : {}) }],
    },
  ];
  if (pr.organization) agent.push({ type: { coding: [{ system: PARTICIPATION, code: 'PROV', display: 'healthcare provider' }] }, who: { reference: pr.organization }, requestor: false });
  agent.push({ type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] }, who: { display: 'dsp-fhir-server' }, requestor: false });
  const entity: AuditEventEntity[] = a.patients.map((p) => ({
    what: { reference: `Patient/${p}` },
    type: { system: ENTITY_TYPE, code: '1', display: 'Person' },
    role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
  }));
  if (a.entity && !a.entity.startsWith('Patient/')) entity.push({ what: { reference: a.entity }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } });
  if (a.query !== undefined) entity.push({ type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '24', display: 'Query' }, query: Buffer.from(a.query).toString('base64') });
  const outcome = a.status < 400 ? '0' : a.status < 500 ? '4' : '8';
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    type: REST,
    subtype: [{ system: INTERACTION, code: a.interaction }],
    action: a.action,
    recorded: a.recorded ?? new Date().toISOString(),
    outcome,
    ...(outcome !== '0' ? { outcomeDesc: `HTTP ${a.status}${a.outcomeText ? `: ${a.outcomeText}` : ''}` } : {}),
    purposeOfEvent: [{ coding: [purpose] }],
    agent,
    source: { site: 'dsp-fhir', observer: { display: 'dsp-fhir-server' }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }] },
    ...(entity.length ? { entity } : {}),
  };
  const tags: Coding[] = [];
  if (emergency && a.patients.length) tags.push({ system: FLAG_SYSTEM, code: 'emergency-access', display: 'Emergency access to the record' });
  if (outcome !== '0') tags.push({ system: FLAG_SYSTEM, code: 'denied-or-failed', display: 'Access denied or failed' });
  if (tags.length) event.meta = { tag: tags };
  return event;
}

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

const PERSON = { system: ENTITY_TYPE, code: '1', display: 'Person' };
const PATIENT_ROLE = { system: OBJECT_ROLE, code: '1', display: 'Patient' };
const SYSTEM_OBJECT = { system: ENTITY_TYPE, code: '2', display: 'System Object' };
const DOMAIN_RESOURCE = { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' };
const QUERY_ROLE = { system: OBJECT_ROLE, code: '24', display: 'Query' };
// The entities of transaction entries carry their codes without displays (~60 bytes less per entry: a
// 748-entry transaction's event is ~0.25 MB, stored twice and hashed).
const ENTRY_PERSON = { system: ENTITY_TYPE, code: '1' };
const ENTRY_PATIENT_ROLE = { system: OBJECT_ROLE, code: '1' };
const ENTRY_SYSTEM_OBJECT = { system: ENTITY_TYPE, code: '2' };
const ENTRY_DOMAIN_RESOURCE = { system: OBJECT_ROLE, code: '4' };
const ENTRY_QUERY_ROLE = { system: OBJECT_ROLE, code: '24' };

/**
 * A transaction entry as an entity: what it was about (a resource, or a query by parameter names), and
 * `detail`s `interaction` (restful-interaction code) and `status` (HTTP status of the entry), plus `outcome`
 * (the failure's issue code) for a failed one.
 */
function entryEntity(e: EntryAudit): AuditEventEntity {
  const detail: AuditEventEntity['detail'] = [
    { type: 'interaction', valueString: e.interaction },
    { type: 'status', valueString: String(e.status) },
  ];
  if (e.outcomeText) detail.push({ type: 'outcome', valueString: e.outcomeText });
  if (e.query !== undefined) return { type: ENTRY_SYSTEM_OBJECT, role: ENTRY_QUERY_ROLE, query: Buffer.from(e.query).toString('base64'), detail };
  const patient = e.entity?.startsWith('Patient/') === true;
  return { ...(e.entity ? { what: { reference: e.entity } } : {}), type: patient ? ENTRY_PERSON : ENTRY_SYSTEM_OBJECT, role: patient ? ENTRY_PATIENT_ROLE : ENTRY_DOMAIN_RESOURCE, detail };
}

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
  /** The entries of a transaction Bundle, in the order they ran: one entity each, with its own outcome. */
  entries?: EntryAudit[];
}

/** What one entry of a transaction did, as its own request would have been audited. */
export interface EntryAudit {
  interaction: string;
  status: number;
  /** `Observation/1` (instance interactions). */
  entity?: string;
  /** Resource type and parameter names of a search entry (values left out). */
  query?: string;
  outcomeText?: string;
}

/**
 * The audit of one transaction Bundle: every entry's access check adds what it did here instead of writing an
 * AuditEvent of its own, and the Bundle's own event lists every entry (entity, interaction, status) and every
 * patient the entries touched (docs/decisions.md, "One AuditEvent per transaction"). Found by the Bundle's
 * context (the entries' `ctx`) and by the Bundle itself (the request body the Bundle's own check holds).
 */
export class TransactionAudit {
  entries: EntryAudit[] = [];
  patients = new Set<string>();
  emergency = false;

  add(entry: EntryAudit, patients: Iterable<string>, emergency: boolean): void {
    this.entries.push(entry);
    for (const p of patients) this.patients.add(p);
    if (emergency) this.emergency = true;
  }

  /** Forgets what was added (a store transaction that runs its work again starts from nothing). */
  reset(): void {
    this.entries = [];
    this.patients.clear();
    this.emergency = false;
  }
}

const transactionAudits = new WeakMap<object, TransactionAudit>();

/** Opens the audit of a transaction under each of `keys` (the entries' context, the Bundle). */
export function openTransactionAudit(...keys: object[]): TransactionAudit {
  const audit = new TransactionAudit();
  for (const k of keys) transactionAudits.set(k, audit);
  return audit;
}

/** The transaction audit opened under `key`, if any. */
export function transactionAuditOf(key: unknown): TransactionAudit | undefined {
  return key !== null && typeof key === 'object' ? transactionAudits.get(key) : undefined;
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
    type: PERSON,
    role: PATIENT_ROLE,
  }));
  if (a.entity && !a.entity.startsWith('Patient/')) entity.push({ what: { reference: a.entity }, type: SYSTEM_OBJECT, role: DOMAIN_RESOURCE });
  if (a.query !== undefined) entity.push({ type: SYSTEM_OBJECT, role: QUERY_ROLE, query: Buffer.from(a.query).toString('base64') });
  if (a.entries) for (const e of a.entries) entity.push(entryEntity(e));
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

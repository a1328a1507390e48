/**
 * THE access decision point. dispatch() builds one AccessScope per request (batch and transaction entries
 * included) and asks it, before any store query runs:
 * - `authorize()`: may this principal attempt this interaction at all (scopes, role, resource class)?
 * - `narrow()`: adds filters to a SearchRequest so that the store only ever sees visible data (totals,
 *   paging, chains and _has included; _include results are checked with `canSee`);
 * - `checkInstance()`: a single resource (read, vread, history, update, patch, delete, instance operation),
 *   checked before anything about it is returned; invisible and missing look the same (404);
 * - `checkWrite()`: create / update / patch / delete rules for professionals and patients.
 * The model (Consent resources) is read by policy.ts; the rules are documented in docs/access.md.
 */
import { createHash, createHmac } from 'node:crypto';
import type { DocumentReference, Resource } from 'fhir/r4';
import { ACCESS_FACTS, type CurrentRecord, type StoreSession, type VersionRecord } from '../store/port.ts';
import type { Filter, SearchRequest } from '../search/types.ts';
import { extractReferences } from '../search/indexer.ts';
import { normalizeReference } from '../search/normalize.ts';
import { onRegistryChange, searchParam, searchParamsFor } from '../search/registry.ts';
import { compartmentFilter, compartmentTypes } from '../fhir/compartments.ts';
import { FhirError, forbidden, notFound } from '../fhir/outcome.ts';
import { CONFIDENTIALITY, type PatientPolicy, candidatePatients, linkOf, loadPolicy } from './policy.ts';
import { type Permission, type Principal, hasScope, requireScope } from './principal.ts';
import { ncpCanSeeDocument, ncpNarrow } from '../crossborder/ncp.ts';

/** Shared, non-patient data every authenticated principal may read (directory, terminology, conformance). */
export const DIRECTORY_TYPES = new Set([
  'Practitioner', 'PractitionerRole', 'Organization', 'OrganizationAffiliation', 'Location', 'HealthcareService', 'Endpoint',
  'Medication', 'MedicationKnowledge', 'Substance', 'ValueSet', 'CodeSystem', 'ConceptMap', 'NamingSystem', 'StructureDefinition',
  'SearchParameter', 'OperationDefinition', 'CapabilityStatement', 'CompartmentDefinition', 'StructureMap', 'ImplementationGuide',
  'TerminologyCapabilities', 'Questionnaire', 'PlanDefinition', 'ActivityDefinition', 'Library', 'GraphDefinition', 'MessageDefinition',
]);
/** Patient data only the patient (and assistant) sees: the access model itself and the audit trail. */
const PATIENT_PRIVATE = new Set(['Consent', 'AuditEvent']);
/** Emergency access (and NCP): the essential data. Observation only blood group; Composition/DocumentReference only the Patient Summary. */
const ESSENTIAL_MULTI = ['Patient', 'AllergyIntolerance', 'Condition', 'MedicationStatement', 'MedicationRequest'];
const ESSENTIAL = new Set([...ESSENTIAL_MULTI, 'Observation', 'Composition', 'DocumentReference']);
const BLOOD_GROUP = ['882-1', '883-9', '10331-7'];
const PATIENT_SUMMARY = '60591-5';
const LOINC = 'http://loinc.org';

export type Mode = 'full' | 'own' | 'emergency' | 'none';
export type Interaction = 'read' | 'vread' | 'history' | 'search' | 'create' | 'update' | 'patch' | 'delete' | 'operation' | 'batch' | 'capabilities';

const PERMISSION: Record<Interaction, Permission | undefined> = {
  read: 'r', vread: 'r', history: 'r', search: 's', create: 'c', update: 'u', patch: 'u', delete: 'd', operation: undefined, batch: undefined, capabilities: undefined,
};

let patientTypes: Set<string> | undefined;
/** Types holding patient data: Patient and every member of the Patient compartment. */
export function isPatientData(type: string): boolean {
  patientTypes ??= new Set(['Patient', ...compartmentTypes('Patient')]);
  return patientTypes.has(type);
}

const refMemo = new WeakMap<Resource, { param: string; ref: string }[]>();

/** Reference index values of a resource (memoised per resource object: one extraction per check). */
function refsOf(resource: Resource): { param: string; ref: string }[] {
  const known = refMemo.get(resource);
  if (known) return known;
  const out: { param: string; ref: string }[] = [];
  refMemo.set(resource, out);
  for (const v of extractReferences(resource)) {
    if (v.type === 'reference' && v.targetType && v.targetId) out.push({ param: v.param, ref: `${v.targetType}/${v.targetId}` });
  }
  return out;
}

const paramMemo = new Map<string, ReadonlySet<string>>();

/** The parameters through which a resource type belongs to a compartment (computed once per pair). */
function compartmentParams(compartment: string, type: string): ReadonlySet<string> {
  const key = `${compartment}|${type}`;
  let params = paramMemo.get(key);
  if (!params) {
    const f = compartmentFilter(compartment, '-', [type]);
    params = new Set(f.kind === 'compartment' ? (f.paramsByType[type] ?? []) : []);
    paramMemo.set(key, params);
  }
  return params;
}

/** Patients whose record a resource belongs to (its Patient compartment membership). */
export function patientsOf(resource: Resource): string[] {
  if (resource.resourceType === 'Patient') return [resource.id!];
  const params = compartmentParams('Patient', resource.resourceType);
  const ids = new Set<string>();
  // Only the compartment's parameters are evaluated unless every reference is known already.
  const refs = refMemo.get(resource) ?? extractReferences(resource, params).map((v) => (v.type === 'reference' && v.targetType && v.targetId ? { param: v.param, ref: `${v.targetType}/${v.targetId}` } : undefined));
  for (const r of refs) if (r && params.has(r.param) && r.ref.startsWith('Patient/')) ids.add(r.ref.slice(8));
  return [...ids];
}

/** Authors of a resource: what it references through author-like parameters (the Practitioner compartment's, `author`). */
export function authorsOf(resource: Resource): Set<string> {
  // A Patient resource is nobody's contribution (its general-practitioner is not its author).
  if (resource.resourceType === 'Patient') return new Set();
  const practitionerParams = compartmentParams('Practitioner', resource.resourceType);
  const out = new Set<string>();
  for (const r of refsOf(resource)) {
    if (r.param === 'author' || r.param === 'recorder' || r.param === 'asserter' || (practitionerParams.has(r.param) && /^(Practitioner|PractitionerRole)\//.test(r.ref))) out.add(r.ref);
  }
  return out;
}

export function labelsOf(resource: Resource): string[] {
  const codes = (resource.meta?.security ?? []).filter((c) => c.system === CONFIDENTIALITY).map((c) => c.code!);
  if (resource.resourceType === 'DocumentReference') {
    for (const l of (resource as DocumentReference).securityLabel ?? []) for (const c of l.coding ?? []) if (c.system === CONFIDENTIALITY && c.code) codes.push(c.code);
  }
  return codes;
}

export function encountersOf(resource: Resource): string[] {
  const own = resource.resourceType === 'Encounter' ? [`Encounter/${resource.id}`] : [];
  return [...own, ...refsOf(resource).filter((r) => r.param === 'encounter' && r.ref.startsWith('Encounter/')).map((r) => r.ref)];
}

function isEssential(resource: Resource): boolean {
  const t = resource.resourceType;
  if (!ESSENTIAL.has(t)) return false;
  const codes = (cc: { coding?: { system?: string; code?: string }[] } | undefined) => (cc?.coding ?? []).filter((c) => c.system === LOINC).map((c) => c.code!);
  if (t === 'Observation') return codes((resource as { code?: { coding?: [] } }).code).some((c) => BLOOD_GROUP.includes(c));
  if (t === 'Composition' || t === 'DocumentReference') return codes((resource as { type?: { coding?: [] } }).type).includes(PATIENT_SUMMARY);
  return true;
}

// -- access facts stored beside a version ----------------------------------------------------------------------

/**
 * What `canSee` reads from one resource: its patients, authors, confidentiality labels, encounters and whether
 * it is essential (emergency) data. A source is either the resource itself (each fact computed when asked, as
 * before) or the facts the store kept beside the version when it was written (no parse of the stored JSON).
 */
interface FactSource {
  patients(): string[];
  authors(): ReadonlySet<string>;
  labels(): string[];
  encounters(): string[];
  essential(): boolean;
}

function resourceFacts(resource: Resource): FactSource {
  return {
    patients: () => patientsOf(resource),
    authors: () => authorsOf(resource),
    labels: () => labelsOf(resource),
    encounters: () => encountersOf(resource),
    essential: () => isEssential(resource),
  };
}

/** Layout of the stored facts text: [layout, definitions fingerprint, patients, authors, labels, encounters, essential]. */
const FACTS_LAYOUT = 1;
type StoredFacts = [number, string, string[], string[], string[], string[], 0 | 1];

/**
 * The fingerprint of the definitions and code the facts of a type are computed with: its reference search
 * parameters (code, expression, targets), which patientsOf / authorsOf / encountersOf evaluate, its compartment
 * parameters, and the source text of the functions and constants that compute the facts. A server
 * SearchParameter that changes one of them, or a change of those rules in this file, changes the fingerprint,
 * and facts stored under the old one are not used (the resource is parsed and decided as it is now) until the
 * version is written again.
 */
const fingerprints = new Map<string, string>();
onRegistryChange(() => fingerprints.clear());
let rulesText: string | undefined;
function definitionsOf(type: string): string {
  let f = fingerprints.get(type);
  if (f === undefined) {
    rulesText ??= [patientsOf, authorsOf, labelsOf, encountersOf, isEssential, referenceFacts, compartmentParams, isPatientData, extractReferences, normalizeReference].map(String).join('\u0000') + JSON.stringify([ESSENTIAL_MULTI, [...ESSENTIAL], BLOOD_GROUP, PATIENT_SUMMARY, LOINC, CONFIDENTIALITY]);
    const h = createHash('sha256').update(`${FACTS_LAYOUT}\u0000${rulesText}`);
    h.update(`\u0000${[...compartmentParams('Patient', type)].join(',')}\u0000${[...compartmentParams('Practitioner', type)].join(',')}`);
    for (const d of searchParamsFor(type)) if (d.type === 'reference' && !d.components) h.update(`\u0000${d.code}\u0001${d.expression}\u0001${d.targets.join(',')}`);
    f = h.digest('base64url').slice(0, 12);
    fingerprints.set(type, f);
  }
  return f;
}

/**
 * The access facts of a resource about to be stored, as the text the store keeps beside it (SqliteStore
 * `accessFacts`, set in service.ts): only for patient data (other types are decided by their type alone), and
 * undefined when they cannot be computed (the reader then decides on the resource).
 */
export function storedFactsOf(resource: Resource): string | undefined {
  if (!resource.id || !isPatientData(resource.resourceType)) return undefined;
  try {
    const { patients, authors, encounters } = referenceFacts(resource);
    const facts: StoredFacts = [FACTS_LAYOUT, definitionsOf(resource.resourceType), patients, authors, labelsOf(resource), encounters, isEssential(resource) ? 1 : 0];
    return JSON.stringify(facts);
  } catch {
    return undefined;
  }
}

const factParams = new Map<string, { patient: ReadonlySet<string>; practitioner: ReadonlySet<string>; all: ReadonlySet<string> }>();

/**
 * patientsOf, authorsOf and encountersOf of a resource in one extraction limited to the parameters they read
 * (the Patient and Practitioner compartments', author, recorder, asserter, encounter): the same values in the
 * same order as those functions give, without evaluating the type's other reference parameters (authorsOf
 * extracts them all), which a write would otherwise pay for (~25 against ~10 µs per Synthea resource).
 */
function referenceFacts(resource: Resource): { patients: string[]; authors: string[]; encounters: string[] } {
  const type = resource.resourceType;
  if (type === 'Patient') return { patients: [resource.id!], authors: [], encounters: [] };
  let params = factParams.get(type);
  if (!params) {
    const patient = compartmentParams('Patient', type);
    const practitioner = compartmentParams('Practitioner', type);
    params = { patient, practitioner, all: new Set([...patient, ...practitioner, 'author', 'recorder', 'asserter', 'encounter']) };
    factParams.set(type, params);
  }
  const patients = new Set<string>();
  const authors = new Set<string>();
  const encounters = type === 'Encounter' ? [`Encounter/${resource.id}`] : [];
  for (const v of extractReferences(resource, params.all)) {
    if (v.type !== 'reference' || !v.targetType || !v.targetId) continue;
    const ref = `${v.targetType}/${v.targetId}`;
    if (params.patient.has(v.param) && ref.startsWith('Patient/')) patients.add(ref.slice(8));
    if (v.param === 'author' || v.param === 'recorder' || v.param === 'asserter' || (params.practitioner.has(v.param) && /^(Practitioner|PractitionerRole)\//.test(ref))) authors.add(ref);
    if (v.param === 'encounter' && ref.startsWith('Encounter/')) encounters.push(ref);
  }
  return { patients: [...patients], authors: [...authors], encounters };
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * The facts stored beside a live record (src/store/sqlite/store.ts ACCESS_FACTS), when they are there, well
 * formed and computed with today's definitions; undefined otherwise (the caller decides on the resource).
 */
function recordFacts(record: VersionRecord): FactSource | undefined {
  const text = (record as VersionRecord & { [ACCESS_FACTS]?: unknown })[ACCESS_FACTS];
  if (typeof text !== 'string' || record.deleted || !isPatientData(record.resourceType)) return undefined;
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(f) || f.length !== 7 || f[0] !== FACTS_LAYOUT || f[1] !== definitionsOf(record.resourceType)) return undefined;
  const [, , patients, authors, labels, encounters, essential] = f as unknown[];
  if (!isStrings(patients) || !isStrings(authors) || !isStrings(labels) || !isStrings(encounters) || (essential !== 0 && essential !== 1)) return undefined;
  return { patients: () => patients, authors: () => new Set(authors), labels: () => labels, encounters: () => encounters, essential: () => essential === 1 };
}

/** Patients whose record a stored record belongs to, from its stored facts (undefined without them). */
export function storedPatientsOf(record: VersionRecord): string[] | undefined {
  return recordFacts(record)?.patients();
}

const never = (): Filter => ({ kind: 'id', ids: [] });
const token = (param: string, codes: string[], system?: string): Filter => ({ kind: 'param', param, type: 'token', anyOf: codes.map((code) => ({ type: 'token', system, code })) });

export interface AuditFacts {
  patients: Set<string>;
  emergency: boolean;
  entity?: string;
}

export class AccessScope {
  readonly principal: Principal;
  readonly unrestricted: boolean;
  private readonly session: StoreSession;
  private readonly cursorKey: Buffer;
  private readonly policies = new Map<string, Promise<PatientPolicy>>();
  private readonly restricted = new Map<string, Promise<Restriction[]>>();
  private readonly sessions = new WeakMap<StoreSession, AccessScope>();
  /** What the audit trail records about this request. */
  readonly facts: AuditFacts;

  private readonly policyCache?: PolicyCache;

  constructor(principal: Principal, session: StoreSession, cursorKey: Buffer, policyCache?: PolicyCache, facts?: AuditFacts) {
    this.policyCache = policyCache;
    this.principal = principal;
    this.session = session;
    this.cursorKey = cursorKey;
    this.unrestricted = principal.role === 'admin' || principal.role === 'system';
    this.facts = facts ?? { patients: new Set(), emergency: false };
  }

  /**
   * The same principal deciding on what `session` holds (a write's own transaction): policies and
   * restrictions are read there, not from the shared cache; what it learns goes to this request's audit facts.
   */
  within(session: StoreSession): AccessScope {
    if (session === this.session && !this.policyCache) return this;
    // One per transaction: the target check and the write rules of a write share the policies they read.
    let scope = this.sessions.get(session);
    if (!scope) {
      scope = new AccessScope(this.principal, session, this.cursorKey, undefined, this.facts);
      this.sessions.set(session, scope);
    }
    return scope;
  }

  policy(patientId: string): Promise<PatientPolicy> {
    let p = this.policies.get(patientId);
    if (!p) {
      p = this.policyCache ? this.policyCache.get(patientId, () => loadPolicy(this.session, patientId)) : loadPolicy(this.session, patientId);
      this.policies.set(patientId, p);
    }
    return p;
  }

  /** How much of a patient's record this principal sees. */
  async modeFor(patientId: string): Promise<Mode> {
    const pr = this.principal;
    if (this.unrestricted) return 'full';
    // A token bound to one patient (SMART patient context) sees no other record.
    if (pr.patient && pr.patient !== patientId && pr.scopes.every((s) => s.context === 'patient')) return 'none';
    const policy = await this.policy(patientId);
    if (!policy.exists) return 'none';
    switch (pr.role) {
      case 'patient':
        return pr.ref === `Patient/${patientId}` ? 'full' : 'none';
      case 'assistant':
        return policy.assistants.has(pr.ref) && !policy.unknown ? 'full' : 'none';
      case 'ncp':
        // Cross-border sharing needs the patient's explicit consent; a closed record is never sent.
        return policy.unknown || policy.closed || !policy.crossBorder ? 'none' : 'emergency';
      case 'practitioner': {
        if (policy.unknown || policy.blocked.has(pr.ref)) return 'none';
        if (policy.closed) return 'own';
        if (linkOf(policy, pr.ref).linked) return 'full';
        if (pr.purpose === 'EMERGENCY' && pr.reason && !policy.emergencyOptOut) return 'emergency';
        return 'none';
      }
      default:
        return 'none';
    }
  }

  private isPatientSide(): boolean {
    return this.principal.role === 'patient' || this.principal.role === 'assistant';
  }

  private labelsAllowed(mode: Mode, policy: PatientPolicy): Set<string> {
    if (this.isPatientSide()) return new Set(['N', 'R', 'V', 'L', 'U', 'M']);
    if (mode === 'full' && linkOf(policy, this.principal.ref).restricted) return new Set(['N', 'R', 'L', 'U', 'M']);
    return new Set(['N', 'L', 'U', 'M']);
  }

  /** The JS check of one resource (reads, includes, history entries, writes). */
  async canSee(resource: Resource): Promise<boolean> {
    if (this.unrestricted) return true;
    const type = resource.resourceType;
    if (DIRECTORY_TYPES.has(type)) return true;
    if (type === 'Binary') return false;
    // The national contact point reads the Patient Summary document of a record it sees (crossborder/ncp.ts).
    if (type === 'Bundle' && this.principal.role === 'ncp') return ncpCanSeeDocument(this, this.session, resource);
    return this.canSeeData(type, resource.id, resourceFacts(resource));
  }

  /** canSee's rules for patient data, on the facts of a resource or those stored beside a version. */
  private async canSeeData(type: string, id: string | undefined, facts: FactSource): Promise<boolean> {
    if (!isPatientData(type)) return false;
    if (PATIENT_PRIVATE.has(type) && !this.isPatientSide()) return false;
    const patients = facts.patients();
    const own = facts.authors().has(this.principal.ref);
    if (!patients.length) return own && this.principal.role === 'practitioner';
    for (const p of patients) {
      const mode = await this.modeFor(p);
      if (mode === 'none') return false;
      this.facts.patients.add(p);
      if (this.isPatientSide()) continue;
      if (mode === 'own') {
        if (!own) return false;
        continue;
      }
      if (own && mode === 'full') continue;
      const policy = await this.policy(p);
      const allowed = this.labelsAllowed(mode, policy);
      if (facts.labels().some((l) => !allowed.has(l))) return false;
      if (policy.hidden.has(`${type}/${id}`)) return false;
      if (facts.encounters().some((e) => policy.objectedEncounters.has(e))) return false;
      if (mode === 'emergency') {
        if (!facts.essential()) return false;
        this.facts.emergency = true;
      }
    }
    return true;
  }

  /** Role- and scope-level check of an interaction on a type (403: telling leaks nothing about data). */
  authorize(interaction: Interaction, type: string | undefined): void {
    const pr = this.principal;
    const perm = PERMISSION[interaction];
    if (type === 'AuditEvent' && (interaction === 'create' || interaction === 'update' || interaction === 'patch' || interaction === 'delete')) {
      throw new FhirError(405, 'AuditEvent resources are written by the server only; they cannot be created, changed or deleted', 'not-supported');
    }
    if (perm && type) requireScope(pr, type, perm);
    if (this.unrestricted) return;
    if (interaction === 'history' && !type) throw forbidden('System-wide history is available to administrators only');
    if (pr.role === 'ncp' && perm && perm !== 'r' && perm !== 's') throw forbidden('A national contact point reads only');
    if (type && !DIRECTORY_TYPES.has(type) && !isPatientData(type) && type !== 'Binary' && type !== 'Bundle') {
      throw forbidden(`${type} resources are available to administrators and system clients only`);
    }
    if (type && DIRECTORY_TYPES.has(type) && perm && perm !== 'r' && perm !== 's') {
      throw forbidden(`${type} resources are maintained by administrators and system clients only`);
    }
  }

  /** Instance check before anything about it is returned or changed: invisible and missing look alike. */
  async checkInstance(type: string, id: string, resource: Resource | undefined): Promise<void> {
    if (this.unrestricted) return;
    this.facts.entity = `${type}/${id}`;
    if (!resource) throw notFound(`${type}/${id} is not known`);
    if (!(await this.canSee(resource))) {
      // The caller gets the same 404 as for a missing resource; the refused attempt is in the audit trail of
      // the patients whose record it belongs to (which only they and administrators read).
      if (isPatientData(resource.resourceType)) for (const p of patientsOf(resource)) this.facts.patients.add(p);
      throw notFound(`${type}/${id} is not known`);
    }
  }

  /**
   * Visibility of a stored record (`current` as read from `session`) before anything about it is told or
   * changed: a live resource is checked as it is, a tombstone as its last live version (so that 410 and 404
   * answer the same callers as before the delete). Invisible and missing look alike (404). Returns the
   * tombstone's last live version when it read one, so that the interaction that follows need not read it again.
   */
  async checkStored(session: StoreSession, type: string, id: string, current: CurrentRecord | undefined): Promise<VersionRecord | undefined> {
    if (this.unrestricted) return undefined;
    const lastLive = current?.deleted && current.versionId > 1 ? await session.version(type, id, current.versionId - 1) : undefined;
    const stored = current && type !== 'Binary' && current.resourceType === type && current.id === id ? recordFacts(current) : undefined;
    if (stored) {
      // A live record with stored access facts: decided on them, its JSON never parsed (checkInstance's rules).
      this.facts.entity = `${type}/${id}`;
      if (!(await this.canSeeData(type, id, stored))) {
        for (const p of stored.patients()) this.facts.patients.add(p);
        throw notFound(`${type}/${id} is not known`);
      }
      return undefined;
    }
    const res = current?.deleted ? lastLive?.resource : current?.resource;
    if (type === 'Binary') {
      this.facts.entity = `${type}/${id}`;
      if (!res || !(await this.canSeeBinary(res))) throw notFound(`Binary/${id} is not known`);
    } else await this.checkInstance(type, id, res);
    return lastLive;
  }

  // -- the write hooks (FhirRequest.access): called by the interactions inside their store transaction --------

  /** Update, patch, delete: the target as the write's transaction read it must be visible (else 404). */
  async checkWriteTarget(session: StoreSession, type: string, id: string, current: CurrentRecord | undefined): Promise<void> {
    if (this.unrestricted) return;
    await this.within(session).checkStored(session, type, id, current);
  }

  /** Binary: visible through its securityContext (the resource it belongs to). */
  async canSeeBinary(resource: Resource & { securityContext?: { reference?: string } }): Promise<boolean> {
    if (this.unrestricted) return true;
    const ref = resource.securityContext?.reference;
    if (!ref || !/^[A-Z][A-Za-z]+\/[^/]+$/.test(ref)) return false;
    const [t, i] = ref.split('/');
    const rec = await this.session.current(t, i);
    return !!rec?.resource && t !== 'Binary' && (await this.canSee(rec.resource));
  }

  /**
   * Write rules: a professional writes only into records they fully access, and does not change the
   * patient, authors or security labels of a resource they did not write (nor delete it); patients and
   * assistants write in their own record; Consent is the patient's.
   */
  async checkWrite(interaction: 'create' | 'update' | 'patch' | 'delete', before: Resource | undefined, after: Resource | undefined, session: StoreSession): Promise<void> {
    if (this.unrestricted) return;
    // Decided on the write's own transaction (see within): never on the shared policy cache.
    const decider = this.within(session);
    try {
      await decider.writeRules(interaction, before, after);
    } catch (err) {
      if (err instanceof FhirError && (err.status === 403 || err.status === 404)) await decider.attributeRefusal(before, after);
      throw err;
    }
  }

  /**
   * A refused write is in the audit trail of the patients whose record it targeted: those of the stored
   * resource and of the body, when they exist (a body naming an unknown patient is nobody's record). The caller
   * is told nothing more (the same 403 / 404).
   */
  private async attributeRefusal(before: Resource | undefined, after: Resource | undefined): Promise<void> {
    for (const r of [before, after]) {
      if (!r || !isPatientData(r.resourceType)) continue;
      for (const p of patientsOf(r)) if (!this.facts.patients.has(p) && (await this.policy(p)).exists) this.facts.patients.add(p);
    }
  }

  private async writeRules(interaction: 'create' | 'update' | 'patch' | 'delete', before: Resource | undefined, after: Resource | undefined): Promise<void> {
    const pr = this.principal;
    const subject = (after ?? before)!;
    const type = subject.resourceType;
    if (type === 'Binary' || type === 'Bundle') throw forbidden(`${type} resources are written by administrators and system clients only`);
    if (type === 'Consent' && !this.isPatientSide()) throw forbidden('Consents are managed by the patient or their assistant');
    if (type === 'Patient' && !this.isPatientSide()) throw forbidden('Patient resources are maintained by the patient, their assistant or administrators');
    for (const r of [before, after]) {
      if (!r) continue;
      const patients = patientsOf(r);
      if (!patients.length) throw forbidden(`A ${type} written by a ${pr.role} must belong to a patient's record`);
      for (const p of patients) {
        if ((await this.modeFor(p)) !== 'full') {
          // The target record: not allowed and not existing look the same.
          throw notFound(`Patient/${p} is not known`);
        }
        this.facts.patients.add(p);
      }
    }
    if (before && !this.isPatientSide() || (before && this.isPatientSide() && type !== 'Consent' && type !== 'Patient')) {
      const authors = authorsOf(before);
      const own = authors.has(pr.ref) || (authors.size === 0 && !this.isPatientSide());
      if (!own) {
        if (interaction === 'delete') throw forbidden('Only the author can delete this resource');
        const same = (f: (r: Resource) => Iterable<string>) => JSON.stringify([...f(before)].sort()) === JSON.stringify([...f(after!)].sort());
        if (!same(patientsOf) || !same(authorsOf) || !same(labelsOf)) {
          throw forbidden('The patient, authors and security labels of a resource written by someone else cannot be changed');
        }
      }
    }
  }

  // -- search narrowing ---------------------------------------------------------------------------------

  /** Narrows a search before it runs (the only way a restricted principal's search reaches the store). */
  async narrow(request: SearchRequest): Promise<void> {
    // SMART scopes first, for every principal: a search over several types (`_type`, `Patient/1/*`,
    // $everything) keeps only the types the token may search; none left is a 403.
    const scoped = request.resourceTypes.filter((t) => hasScope(this.principal, t, 's'));
    if (scoped.length < request.resourceTypes.length) {
      if (!scoped.length) requireScope(this.principal, request.resourceTypes[0], 's');
      request.resourceTypes = scoped;
    }
    if (this.unrestricted) return;
    await this.narrowNested(request.filters);
    const { types, filters } = await this.narrowTypes(request.resourceTypes, request.filters);
    request.resourceTypes = types;
    request.filters.push(...filters);
  }

  /** Chains and _has are evaluated over visible data only: their inner searches are narrowed too. */
  private async narrowNested(filters: Filter[]): Promise<void> {
    for (const f of filters) {
      if (f.kind === 'chain') {
        await this.narrowNested(f.where);
        const n = await this.narrowTypes(f.targetTypes, f.where);
        f.targetTypes = n.types;
        f.where.push(...n.filters);
      } else if (f.kind === 'has') {
        await this.narrowNested(f.where);
        const n = await this.narrowTypes([f.sourceType], f.where);
        if (!n.types.length) f.where.push(never());
        f.where.push(...n.filters);
      }
    }
  }

  private pinned(types: string[], filters: Filter[]): string | undefined {
    for (const f of filters) {
      if (f.kind === 'compartment' && f.targetType === 'Patient') return f.targetId;
      if (f.kind === 'param' && !f.not && (f.param === 'patient' || f.param === 'subject') && f.anyOf.length === 1) {
        const p = f.anyOf[0];
        if (p.type === 'reference' && !p.modifier && p.targetType === 'Patient' && p.targetId) return p.targetId;
      }
      if (f.kind === 'id' && types.length === 1 && types[0] === 'Patient' && f.ids.length === 1) return f.ids[0];
    }
    if (this.principal.role === 'patient') return this.principal.ref.slice('Patient/'.length);
    return this.principal.patient;
  }

  private async narrowTypes(requested: string[], filters: Filter[]): Promise<{ types: string[]; filters: Filter[] }> {
    let types = requested.filter((t) => !(PATIENT_PRIVATE.has(t) && !this.isPatientSide()));
    const other = types.filter((t) => !DIRECTORY_TYPES.has(t) && !isPatientData(t));
    if (other.length) throw forbidden(`Searching ${other.slice(0, 3).join(', ')}${other.length > 3 ? '...' : ''} is available to administrators and system clients only; name the resource types (_type)`);
    const data = types.filter((t) => isPatientData(t));
    if (!data.length) return { types: types.length ? types : requested, filters: types.length ? [] : [never()] };
    types = data; // directory types never match a record's filters: leave them out of a mixed search
    const pinned = this.pinned(types, filters);
    if (pinned) return this.narrowToPatient(pinned, types);
    // The national contact point names no id: it identifies the patient (crossborder/ncp.ts).
    if (this.principal.role === 'ncp') return ncpNarrow(this, this.session, types, filters, (id, t) => this.narrowToPatient(id, t));
    // Unpinned: every record the principal fully accesses, minus what it may not see in them.
    const spanned = await this.unpinned(types);
    if (!spanned) return { types, filters: [never()] };
    if ('single' in spanned) return this.narrowToPatient(spanned.single, types);
    const { ids, excluded } = spanned;
    const out: Filter[] = [];
    if (types.length === 1 && types[0] === 'Patient') out.push({ kind: 'id', ids: [...ids] });
    else {
      const param = ['patient', 'subject'].find((p) => types.every((t) => searchParam(t, p)?.type === 'reference'));
      if (!param) throw forbidden('This search spans several records: name the patient (patient=Patient/...)');
      out.push({ kind: 'chain', param, targetTypes: ['Patient'], where: [{ kind: 'id', ids: [...ids] }] });
    }
    for (const id of ids) this.facts.patients.add(id);
    if (excluded.length) out.push({ kind: 'not-refs', refs: [...excluded] });
    return { types, filters: out };
  }

  /**
   * The records an unpinned search spans and the resources excluded in them (sorted `Type/id`), or the one
   * record it spans, or undefined for none. Computed from the cached links, policies and restrictions, and
   * kept in the PolicyCache per (role, principal, types) for as long as the oldest of those inputs is, so a
   * repeated search costs one synchronous look-up instead of a policy and a restriction look-up per record.
   */
  private async unpinned(types: string[]): Promise<{ ids: readonly string[]; excluded: readonly string[] } | { single: string } | undefined> {
    const pr = this.principal;
    const cache = this.policyCache;
    // Only the role and the reference decide (an unpinned search has no patient context; 'full' needs no
    // emergency purpose): see modeFor and exclusions.
    const key = `${pr.role}\u0000${pr.ref}\u0000${types.join(',')}`;
    const hit = cache?.spanned(key);
    if (hit) return hit.ids.length === 0 ? undefined : hit.ids.length === 1 ? { single: hit.ids[0] } : hit;
    const generation = cache?.generation;
    const started = Date.now();
    const { candidates, ids } = await this.fullRecords();
    if (ids.length <= 1) {
      // narrowToPatient reads this record's restrictions itself (per request, cached per patient).
      cache?.keepSpanned(key, generation!, started, `${pr.role}\u0000${pr.ref}`, candidates, [], { ids, excluded: [] });
      return ids.length ? { single: ids[0] } : undefined;
    }
    const excluded = new Set<string>();
    for (const id of ids) for (const e of await this.exclusions(id, 'full', types)) excluded.add(e);
    const value = { ids, excluded: [...excluded].sort() };
    // Restrictions are read only for professionals (patient-side principals see every label of the record).
    cache?.keepSpanned(key, generation!, started, `${pr.role}\u0000${pr.ref}`, candidates, this.isPatientSide() ? [] : ids, value);
    return value;
  }

  /**
   * Records a professional or assistant fully accesses (médecin référent, grants, assistant appointments).
   * The candidates (several searches) are kept in the PolicyCache per principal, cleared with the policies;
   * each candidate's mode is decided from the (cached) policies; `unpinned` keeps the outcome with the span.
   */
  private async fullRecords(): Promise<{ candidates: string[]; ids: string[] }> {
    const pr = this.principal;
    if (pr.role !== 'practitioner' && pr.role !== 'assistant') return { candidates: [], ids: [] };
    const candidates = this.policyCache ? await this.policyCache.linked(`${pr.role}\u0000${pr.ref}`, () => this.linkCandidates()) : await this.linkCandidates();
    const out: string[] = [];
    for (const id of candidates) if ((await this.modeFor(id)) === 'full') out.push(id);
    return { candidates: [...candidates], ids: out.sort() };
  }

  /** Patients with whom this professional or assistant may have a link (a superset; modeFor decides). */
  private async linkCandidates(): Promise<Set<string>> {
    const pr = this.principal;
    const candidates = new Set<string>();
    const ref = { type: 'reference' as const, reference: pr.ref, targetType: pr.ref.split('/')[0], targetId: pr.ref.split('/')[1] };
    const base = { sort: [], count: 10_000, total: 'none' as const, include: [] };
    if (pr.role === 'practitioner') {
      const gp = await this.session.search({ ...base, resourceTypes: ['Patient'], filters: [{ kind: 'param', param: 'general-practitioner', type: 'reference', anyOf: [ref] }] });
      for (const r of gp.resources) candidates.add(r.id!);
    }
    const consents = await this.session.search({ ...base, resourceTypes: ['Consent'], filters: [{ kind: 'param', param: 'actor', type: 'reference', anyOf: [ref] }, token('status', ['active'])] });
    for (const c of consents.resources) {
      const p = (c as { patient?: { reference?: string } }).patient?.reference;
      if (p?.startsWith('Patient/')) candidates.add(p.slice(8));
    }
    // Declared care relationships (CareTeam, EpisodeOfCare), also through the practitioner's roles.
    if (pr.role === 'practitioner') for (const id of await candidatePatients(this.session, pr.ref, { ownConsents: false })) candidates.add(id);
    return candidates;
  }

  private async narrowToPatient(patientId: string, requested: string[]): Promise<{ types: string[]; filters: Filter[] }> {
    const mode = await this.modeFor(patientId);
    if (mode === 'none') return { types: requested, filters: [never()] };
    this.facts.patients.add(patientId);
    let types = requested;
    const out: Filter[] = [];
    if (mode === 'emergency') {
      this.facts.emergency = true;
      if (types.length === 1 && ESSENTIAL.has(types[0])) {
        if (types[0] === 'Observation') out.push(token('code', BLOOD_GROUP, LOINC));
        if (types[0] === 'Composition' || types[0] === 'DocumentReference') out.push(token('type', [PATIENT_SUMMARY], LOINC));
      } else types = types.filter((t) => ESSENTIAL_MULTI.includes(t));
      if (!types.length) return { types: requested, filters: [never()] };
    }
    if (types.length === 1 && types[0] === 'Patient') out.push({ kind: 'id', ids: [patientId] });
    else out.push(compartmentFilter('Patient', patientId, types));
    if (mode === 'own') {
      out.push(compartmentFilter(this.principal.ref.split('/')[0], this.principal.ref.split('/')[1], types));
      return { types, filters: out };
    }
    const excluded = await this.exclusions(patientId, mode, types);
    if (excluded.length) out.push({ kind: 'not-refs', refs: excluded });
    return { types, filters: out };
  }

  /**
   * Resources of a record this principal may not see although the record is open to them: security labels
   * above their level, hidden resources, resources of objected visits; minus what they wrote themselves.
   * `Type/id` of the requested types, for a `not-refs` filter. The record's restricted resources are the
   * same for every principal (restrictionsOf, cached per patient); only the choice among them is per request.
   */
  private async exclusions(patientId: string, mode: Mode, types: string[]): Promise<string[]> {
    if (this.isPatientSide() || mode === 'own' || mode === 'none') return [];
    const policy = await this.policy(patientId);
    const allowed = this.labelsAllowed(mode, policy);
    const wanted = new Set(types);
    const out: string[] = [];
    for (const r of await this.restrictions(patientId, policy)) {
      if (!wanted.has(r.type)) continue;
      if (!r.hidden && !r.objected && r.labels.every((l) => allowed.has(l))) continue;
      if (mode === 'full' && r.authors.includes(this.principal.ref)) continue;
      out.push(r.ref);
    }
    return out;
  }

  private restrictions(patientId: string, policy: PatientPolicy): Promise<Restriction[]> {
    let known = this.restricted.get(patientId);
    if (!known) {
      const load = () => restrictionsOf(this.session, patientId, policy);
      known = this.policyCache ? this.policyCache.restrictions(patientId, load) : load();
      this.restricted.set(patientId, known);
    }
    return known;
  }

  /** _include / _revinclude results: each one checked like a read. */
  async filterIncluded(resources: Resource[]): Promise<Resource[]> {
    const inScope = resources.filter((r) => hasScope(this.principal, r.resourceType, 'r'));
    if (this.unrestricted) return inScope;
    const out: Resource[] = [];
    for (const r of inScope) if (r.resourceType === 'Binary' ? await this.canSeeBinary(r) : await this.canSee(r)) out.push(r);
    return out;
  }

  // -- paging links bound to the principal ----------------------------------------------------------------

  private mac(cursor: string): string {
    return createHmac('sha256', this.cursorKey).update(this.principal.ref).update('\u0000').update(this.principal.role).update('\u0000').update(cursor).digest('base64url').slice(0, 22);
  }

  sealCursor(cursor: string): string {
    return `${cursor}~${this.mac(cursor)}`;
  }

  openCursor(sealed: string): string {
    const i = sealed.lastIndexOf('~');
    const cursor = i < 0 ? '' : sealed.slice(0, i);
    if (i < 0 || sealed.slice(i + 1) !== this.mac(cursor)) throw new FhirError(400, 'This paging link belongs to another user or has been altered', 'invalid');
    return cursor;
  }
}

/**
 * A resource of a record that some principals with access to the record may not see: labelled R or V (the
 * labels kept here), hidden by a `hide` Consent, or part of an objected visit. What a principal is denied
 * of it depends on their level and authorship (AccessScope.exclusions).
 */
export interface Restriction {
  ref: string;
  type: string;
  labels: string[];
  hidden: boolean;
  objected: boolean;
  authors: string[];
}

/**
 * The restricted resources of a patient's record, over every type of the Patient compartment: a few searches
 * (labels, DocumentReference labels, resources of objected visits) and reads (hidden resources, objected
 * Encounters). Depends on the policy (Consents) and on the record's resources only.
 */
export async function restrictionsOf(session: StoreSession, patientId: string, policy: PatientPolicy): Promise<Restriction[]> {
  const byRef = new Map<string, Restriction>();
  const add = (r: Resource, reason: { hidden?: boolean; objected?: boolean }) => {
    const ref = `${r.resourceType}/${r.id}`;
    let x = byRef.get(ref);
    if (!x) {
      x = { ref, type: r.resourceType, labels: labelsOf(r).filter((l) => l === 'R' || l === 'V'), hidden: false, objected: false, authors: [...authorsOf(r)] };
      byRef.set(ref, x);
    }
    if (reason.hidden) x.hidden = true;
    if (reason.objected) x.objected = true;
  };
  const dataTypes = compartmentTypes('Patient').filter((t) => t !== 'Patient');
  const inRecord = compartmentFilter('Patient', patientId, dataTypes);
  const base = { sort: [], count: 100_000, total: 'none' as const, include: [] };
  // Labels: not on the Patient resource itself (its search is narrowed by id).
  for (const r of (await session.search({ ...base, resourceTypes: dataTypes, filters: [inRecord, token('_security', ['R', 'V'], CONFIDENTIALITY)] })).resources) add(r, {});
  const docFilter = compartmentFilter('Patient', patientId, ['DocumentReference']);
  for (const r of (await session.search({ ...base, resourceTypes: ['DocumentReference'], filters: [docFilter, token('security-label', ['R', 'V'], CONFIDENTIALITY)] })).resources) add(r, {});
  for (const ref of policy.hidden) {
    const [t, i] = ref.split('/');
    if (!t || !i) continue;
    const rec = await session.current(t, i);
    if (rec?.resource && !rec.deleted) add(rec.resource, { hidden: true });
  }
  if (policy.objectedEncounters.size) {
    const encTypes = dataTypes.filter((t) => searchParam(t, 'encounter')?.type === 'reference');
    const anyOf = [...policy.objectedEncounters].map((e) => ({ type: 'reference' as const, reference: e, targetType: 'Encounter', targetId: e.slice(10) }));
    const inEncRecord = compartmentFilter('Patient', patientId, encTypes);
    if (encTypes.length) {
      for (const r of (await session.search({ ...base, resourceTypes: encTypes, filters: [inEncRecord, { kind: 'param', param: 'encounter', type: 'reference', anyOf }] })).resources) add(r, { objected: true });
    }
    for (const e of policy.objectedEncounters) {
      const rec = await session.current('Encounter', e.slice(10));
      if (rec?.resource && !rec.deleted) add(rec.resource, { objected: true });
    }
  }
  return [...byRef.values()];
}

/** What an unpinned search of a principal spans: the records (sorted ids) and the excluded `Type/id` (sorted). */
interface Spanned {
  ids: readonly string[];
  excluded: readonly string[];
}

interface Cached<T> {
  at: number;
  value: Promise<T>;
}

/**
 * What access decisions read from the store, shared between requests of one process: patient policies, the
 * restricted resources of each record (restrictionsOf), and the records each professional or assistant may
 * be linked to. Entries live at most `ttlMs`, so a change made by another process (several servers on one
 * MongoDB) is seen after that delay at worst; inside a transaction the cache is not used. enforce.ts, after
 * a write that succeeded: `clear()` for a change to what links or policies are made of (Patient, Consent,
 * care relationships) and for batches; `written()` for any other write.
 */
export class PolicyCache {
  private readonly entries = new Map<string, Cached<PatientPolicy>>();
  private readonly restricted = new Map<string, Cached<Restriction[]>>();
  private readonly links = new Map<string, Cached<Set<string>>>();
  private readonly spans = new Map<string, { at: number; generation: number; value: Spanned }>();
  private readonly ttlMs: number;
  /** Bumped whenever an entry is dropped before its time (clear, written): older spans are void. */
  generation = 0;
  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }
  private cached<T>(map: Map<string, Cached<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const hit = map.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.value;
    if (map.size > 50_000) map.clear();
    const value = load();
    value.catch(() => map.delete(key));
    map.set(key, { at: now, value });
    return value;
  }
  get(patientId: string, load: () => Promise<PatientPolicy>): Promise<PatientPolicy> {
    return this.cached(this.entries, patientId, load);
  }
  /** The restricted resources of a record (labels, hidden, objected visits). */
  restrictions(patientId: string, load: () => Promise<Restriction[]>): Promise<Restriction[]> {
    return this.cached(this.restricted, patientId, load);
  }
  /** The patients a principal may be linked to (`role NUL ref`). */
  linked(principalKey: string, load: () => Promise<Set<string>>): Promise<Set<string>> {
    return this.cached(this.links, principalKey, load);
  }
  /**
   * The records an unpinned search of a principal spans and its exclusions (key: role, reference, types), when
   * they were computed from entries that are all still valid: nothing was dropped since (generation) and the
   * oldest of them is younger than the TTL.
   */
  spanned(key: string): Spanned | undefined {
    const hit = this.spans.get(key);
    if (!hit) return undefined;
    if (hit.generation === this.generation && Date.now() - hit.at < this.ttlMs) return hit.value;
    this.spans.delete(key);
    return undefined;
  }
  /**
   * Keeps a span computed from the principal's links, the policies of `policiesOf` and the restrictions of
   * `restrictionsOf`, as of `generation` and `started` (read before the computation began). Not kept when one
   * of those entries is missing or was loaded after `started` (a miss or a TTL expiry during the computation:
   * the request may have used an older value than the entry's time says); the next request keeps it.
   */
  keepSpanned(key: string, generation: number, started: number, principalKey: string, policiesOf: string[], restrictionsOf: string[], value: Spanned): void {
    if (generation !== this.generation) return;
    const stamps = [this.links.get(principalKey)?.at, ...policiesOf.map((id) => this.entries.get(id)?.at), ...restrictionsOf.map((id) => this.restricted.get(id)?.at)];
    let at = Infinity;
    for (const t of stamps) {
      if (t === undefined || t >= started) return;
      at = Math.min(at, t);
    }
    if (Date.now() - at >= this.ttlMs) return;
    if (this.spans.size > 10_000) this.spans.clear();
    this.spans.set(key, { at, generation, value });
  }
  clear(): void {
    this.generation++;
    this.entries.clear();
    this.restricted.clear();
    this.links.clear();
    this.spans.clear();
  }
  /**
   * After a successful write of something other than a policy: a resource that becomes restricted (labelled,
   * in an objected visit) or enters a record is in the record of its new version, whose restrictions are
   * dropped; a delete only lifts restrictions (a stale entry excludes a resource that is gone). When the
   * written resource is not in the response (return=minimal, operations), every record's are dropped.
   */
  written(interaction: Interaction, type: string | undefined, body: unknown): void {
    if (interaction === 'delete') return;
    if (type && (interaction === 'operation' ? DIRECTORY_TYPES.has(type) : !isPatientData(type))) return;
    const r = body as Resource | undefined;
    // Spans include exclusions computed from the restrictions dropped here: void them all.
    this.generation++;
    this.spans.clear();
    if (type && interaction !== 'operation' && r && typeof r === 'object' && r.resourceType === type && typeof r.id === 'string') {
      for (const p of patientsOf(r)) this.restricted.delete(p);
      return;
    }
    this.restricted.clear();
  }
}

/** Defined in fhir/outcome.ts (ncp.ts, which this module imports, needs it too: no import cycle); kept here for enforce.ts. */
export { forbidden };


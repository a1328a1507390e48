/**
 * Where dispatch() meets the access decision point: classifies the request, asks AccessScope before any
 * store query of the interaction runs, hands the scope to search() for narrowing, checks what a read or an
 * instance interaction is about, and records the outcome in the audit trail (allowed or denied).
 */
import type { Bundle, BundleEntry, Resource } from 'fhir/r4';
import type { CurrentRecord, StoreSession, VersionRecord } from '../store/port.ts';
import type { Context } from '../fhir/interactions.ts';
import type { FhirRequest, FhirResponse } from '../fhir/request.ts';
import { FhirError } from '../fhir/outcome.ts';
import { ID_PATTERN, TYPE_ID_PATTERN, fhirModel } from '../fhir/model.ts';
import { buildAuditEvent, transactionAuditOf } from '../audit/event.ts';
import { AccessScope, type Interaction, forbidden, isPatientData, patientsOf, storedPatientsOf } from './decision.ts';
import { storedRecord } from '../formats/negotiate.ts';
import { type Permission, type Principal, type Role, hasScope, requireScope } from './principal.ts';
import { type Operation, type OperationTarget, operationRegistry } from '../operations/registry.ts';
import { accessRuntime } from './service.ts';
import { ncpView } from '../crossborder/ncp.ts';
import { mayWriteTerminology, terminologyResourcesWritten } from '../terminology/service.ts';

type Route = (ctx: Context, req: FhirRequest, session?: StoreSession) => Promise<FhirResponse>;

interface Classified {
  interaction: Interaction;
  /** restful-interaction code for the audit trail. */
  code: string;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  type?: string;
  id?: string;
  vid?: string;
  conditional?: boolean;
  compartment?: { type: string; id: string };
  operation?: string;
}

const WRITES = new Set<Interaction>(['create', 'update', 'patch', 'delete', 'batch', 'operation']);
/** Types whose writes can change an access decision: the shared policy cache is cleared after them. */
const POLICY_TYPES = new Set(['Patient', 'Consent', 'CareTeam', 'EpisodeOfCare', 'PractitionerRole']);
/** The target of an operation request, as the operation registry will see it. */
function operationTarget(info: Classified): OperationTarget {
  return info.id ? { level: 'instance', resourceType: info.type, id: info.id } : info.type ? { level: 'type', resourceType: info.type } : { level: 'system' };
}

/** Whether an operation changes stored data (the patient's access operations); reading ones never clear caches. */
function operationWrites(name: string): boolean {
  return operationRegistry.get(name)?.affectsState ?? true;
}

/** Patients whose records a response or request body belongs to: a resource, or the entries of a Bundle. */
function patientsTouched(body: unknown, into: Set<string>): void {
  const r = body as Resource | undefined;
  if (!r || typeof r !== 'object' || typeof r.resourceType !== 'string') return;
  if (r.resourceType === 'Bundle') {
    for (const e of (r as Bundle).entry ?? []) if (e?.resource && e.resource.resourceType !== 'Bundle' && isPatientData(e.resource.resourceType)) for (const p of patientsOf(e.resource)) into.add(p);
    return;
  }
  if (isPatientData(r.resourceType) && (r.resourceType !== 'Patient' || r.id)) for (const p of patientsOf(r)) into.add(p);
}

/**
 * patientsTouched of a response: for a stored record as the body (a read), its patients come from its type and
 * id or from the access facts stored beside it, without parsing it; anything else as patientsTouched says.
 */
function patientsAnswered(res: FhirResponse, fallback: unknown, into: Set<string>): void {
  const rec = storedRecord(res);
  if (rec && !rec.deleted && rec.resourceType !== 'Bundle') {
    if (!isPatientData(rec.resourceType)) return;
    const known = rec.resourceType === 'Patient' ? [rec.id] : storedPatientsOf(rec);
    if (known) {
      for (const p of known) into.add(p);
      return;
    }
  }
  patientsTouched(res.body ?? fallback, into);
}

/** How a refusal names the roles an operation is for. */
const ROLE_NAMES: Record<Role, string> = {
  admin: 'administrators',
  system: 'system clients',
  practitioner: 'professionals',
  patient: 'patients',
  assistant: 'assistants',
  ncp: 'national contact points',
};

function requireAnyScope(principal: Principal, type: string, perms: Permission[]): void {
  if (perms.some((p) => hasScope(principal, type, p))) return;
  requireScope(principal, type, perms[0]);
}

function classify(req: FhirRequest): Classified {
  const parts = req.path.split('/').filter((p) => p.length > 0).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const m = req.method === 'HEAD' ? 'GET' : req.method;
  const last = parts[parts.length - 1];
  if (last?.startsWith('$')) {
    return { interaction: 'operation', code: 'operation', action: 'E', operation: last.slice(1), type: parts.length > 1 ? parts[0] : undefined, id: parts.length > 2 ? parts[1] : undefined };
  }
  const [a, b, c, d] = parts;
  if (!parts.length) return m === 'POST' ? { interaction: 'batch', code: 'batch', action: 'E' } : { interaction: 'search', code: 'search-system', action: 'E' };
  if (a === 'metadata') return { interaction: 'capabilities', code: 'capabilities', action: 'R' };
  if (a === '_history') return { interaction: 'history', code: 'history-system', action: 'R' };
  if (a === '_search') return { interaction: 'search', code: 'search-system', action: 'E' };
  if (parts.length === 1) {
    if (m === 'GET') return { interaction: 'search', code: 'search-type', action: 'E', type: a };
    if (m === 'POST') return { interaction: 'create', code: 'create', action: 'C', type: a };
    if (m === 'PUT') return { interaction: 'update', code: 'update', action: 'U', type: a, conditional: true };
    if (m === 'PATCH') return { interaction: 'patch', code: 'patch', action: 'U', type: a, conditional: true };
    return { interaction: 'delete', code: 'delete', action: 'D', type: a, conditional: true };
  }
  if (b === '_search') return { interaction: 'search', code: 'search-type', action: 'E', type: a };
  if (b === '_history') return { interaction: 'history', code: 'history-type', action: 'R', type: a };
  if (parts.length === 2) {
    if (m === 'PUT') return { interaction: 'update', code: 'update', action: 'U', type: a, id: b };
    if (m === 'PATCH') return { interaction: 'patch', code: 'patch', action: 'U', type: a, id: b };
    if (m === 'DELETE') return { interaction: 'delete', code: 'delete', action: 'D', type: a, id: b };
    return { interaction: 'read', code: 'read', action: 'R', type: a, id: b };
  }
  if (c === '_history') {
    if (parts.length === 4) return { interaction: 'vread', code: 'vread', action: 'R', type: a, id: b, vid: d };
    return { interaction: 'history', code: 'history-instance', action: 'R', type: a, id: b };
  }
  return { interaction: 'search', code: 'search-type', action: 'E', type: c === '*' ? undefined : c, compartment: { type: a, id: b } };
}

function statusOf(err: unknown): number {
  return err instanceof FhirError ? err.status : 500;
}

export async function enforce(ctx: Context, req: FhirRequest, session: StoreSession | undefined, route: Route): Promise<FhirResponse> {
  // A top-level write that may touch a CodeSystem, ValueSet or ConceptMap renews the terminology layer once it
  // has committed (src/terminology/service.ts); a refused or failed one wrote nothing.
  if (session || !mayWriteTerminology(req)) return enforceRequest(ctx, req, session, route);
  const res = await enforceRequest(ctx, req, session, route);
  terminologyResourcesWritten();
  return res;
}

async function enforceRequest(ctx: Context, req: FhirRequest, session: StoreSession | undefined, route: Route): Promise<FhirResponse> {
  // In-process callers (example loading, CLI tools) carry no principal; the network never reaches here
  // without one (src/http/app.ts answers 401 first).
  if (!req.principal) return route(ctx, req, session);
  const rt = await accessRuntime(ctx);
  // Inside a transaction the policy is read from the transaction itself (no shared cache).
  const scope = new AccessScope(req.principal, session ?? ctx.store, rt.cursorKey, session ? undefined : rt.policies);
  const info = classify(req);
  let status = 500;
  let failure: string | undefined;
  let created: string | undefined;
  try {
    // AuditEvents live in the audit trail's own store: their interactions run there. Their search index rows
    // are written after the entries (src/audit/chain.ts): a search waits until every entry has them.
    if (info.type === 'AuditEvent' && info.interaction === 'search') await rt.audit.indexed();
    const res =
      info.type === 'AuditEvent'
        ? await guarded({ ...ctx, store: rt.auditStore }, { ...req, access: scope }, undefined, route, scope, info)
        : await guarded(ctx, { ...req, access: scope }, session, route, scope, info);
    // What a national contact point receives: minimal Patients, Patient Summary representations (crossborder/ncp.ts).
    if (req.principal.role === 'ncp') res.body = await ncpView(session ?? ctx.store, res.body);
    status = res.status;
    if (info.interaction === 'create') created = res.headers.Location;
    // A changed Patient or Consent can change any decision: the shared policy cache starts over.
    // CareTeam, EpisodeOfCare and PractitionerRole declare care relationships (policy.ts).
    const writes = WRITES.has(info.interaction) && (info.interaction !== 'operation' || operationWrites(info.operation!));
    if (writes && (POLICY_TYPES.has(info.type ?? '') || info.interaction === 'batch')) rt.policies.clear();
    // Any other write can make a resource restricted (a label, an objected visit): that record's cached exclusions go.
    else if (writes) rt.policies.written(info.interaction, info.type, res.body);
    // Administrators and system clients pass no per-resource check: the patients their request touched are
    // taken from what was read or written, so that the access is in each patient's own audit trail too.
    if (scope.unrestricted) patientsAnswered(res, WRITES.has(info.interaction) ? (req.body as Resource | undefined) : undefined, scope.facts.patients);
    return res;
  } catch (err) {
    status = statusOf(err);
    failure = err instanceof FhirError ? err.issues[0]?.code : 'exception';
    throw err;
  } finally {
    if (info.interaction !== 'capabilities') {
      const names = [...new Set(req.query.map(([k]) => k))].join('&');
      // A read of shared, non-patient data (terminology, conformance, directory resources) is audited like
      // every request, but its answer need not wait for the entry's commit, nor that commit for the disk
      // (docs/decisions.md).
      const noWait = !session && status < 500 && scope.facts.patients.size === 0 && !scope.facts.emergency && readsSharedData(info);
      const entity = info.type && info.id ? `${info.type}/${info.id}${info.vid ? `/_history/${info.vid}` : ''}` : info.compartment ? `${info.compartment.type}/${info.compartment.id}` : undefined;
      const query = info.interaction === 'search' || info.interaction === 'operation' ? `${req.path}${names ? `?${names}` : ''}` : undefined;
      // An entry of a transaction Bundle goes into the Bundle's own event (one AuditEvent per transaction,
      // docs/decisions.md); a create names the resource it made.
      const tx = session ? transactionAuditOf(ctx) : undefined;
      if (tx) tx.add({ interaction: info.code, status, entity: entity ?? createdEntity(created), query, outcomeText: failure }, scope.facts.patients, scope.facts.emergency);
      else {
        const entries = info.interaction === 'batch' ? transactionAuditOf(req.body) : undefined;
        if (entries) for (const p of entries.patients) scope.facts.patients.add(p);
        rt.audit.record(
          buildAuditEvent({
            principal: req.principal,
            interaction: info.code === 'batch' ? ((req.body as Bundle | undefined)?.type === 'transaction' ? 'transaction' : 'batch') : info.code,
            action: info.action,
            status,
            entity,
            query,
            patients: [...scope.facts.patients],
            emergency: scope.facts.emergency || entries?.emergency === true,
            outcomeText: failure,
            ...(entries ? { entries: entries.entries } : {}),
          }),
          { durable: !noWait },
        );
        if (noWait) req.auditNoWait = true;
      }
    }
  }
}

/** `Type/id` of the resource a create answered with (its Location), for the audit of a transaction entry. */
function createdEntity(location: string | undefined): string | undefined {
  const end = location ? location.lastIndexOf('/_history/') : -1;
  if (end < 0) return undefined;
  const slash = location!.lastIndexOf('/', end - 1);
  const start = slash < 0 ? -1 : location!.lastIndexOf('/', slash - 1);
  const entity = location!.slice(start + 1, end);
  return TYPE_ID_PATTERN.test(entity) ? entity : undefined;
}

/** Reads, searches and operations whose target is a type holding no patient's data. */
function readsSharedData(info: Classified): boolean {
  if (!info.type || info.compartment || info.type === 'AuditEvent' || info.type === 'Binary' || info.type === 'Bundle' || isPatientData(info.type)) return false;
  if (info.interaction === 'operation') return operationRegistry.get(info.operation!)?.access?.sharedData === true;
  return info.interaction === 'read' || info.interaction === 'vread' || info.interaction === 'search' || info.interaction === 'history';
}

/** Records the access check read, handed to the interaction so that it does not read them again. */
interface Seen {
  current?: CurrentRecord;
  versions: VersionRecord[];
}

/**
 * `reads` for the interaction that follows an access check: the records the check read for `type/id` are
 * answered from memory (the same snapshot the decision was made on), everything else goes to `reads`.
 */
function reuse(reads: StoreSession, type: string, id: string, seen: Seen): StoreSession {
  return {
    current: (t, i) => (t === type && i === id ? Promise.resolve(seen.current) : reads.current(t, i)),
    version: (t, i, v) => {
      const hit = t === type && i === id ? (seen.current?.versionId === v ? seen.current : seen.versions.find((r) => r.versionId === v)) : undefined;
      return hit ? Promise.resolve(hit) : reads.version(t, i, v);
    },
    search: (request) => reads.search(request),
    put: (resource, options) => reads.put(resource, options),
    delete: (t, i, options) => reads.delete(t, i, options),
  };
}

/**
 * The instance check of a read, history, compartment or operation target, on the record as `reads` holds it.
 * With `seen`, what it read (the current record, a tombstone's last live version) is kept for the interaction.
 */
async function checkInstance(scope: AccessScope, reads: StoreSession, type: string, id: string, seen?: Seen): Promise<void> {
  if (scope.unrestricted || !fhirModel().isResourceType(type) || !ID_PATTERN.test(id)) return;
  const current = await reads.current(type, id);
  if (seen) seen.current = current;
  const lastLive = await scope.checkStored(reads, type, id, current);
  if (seen && lastLive) seen.versions.push(lastLive);
}

async function guarded(ctx: Context, req: FhirRequest, session: StoreSession | undefined, route: Route, scope: AccessScope, info: Classified): Promise<FhirResponse> {
  const reads = session ?? ctx.store;
  const restricted = !scope.unrestricted;
  const type = info.type && fhirModel().isResourceType(info.type) ? info.type : undefined;
  if (info.type && !type && info.interaction !== 'operation') return route(ctx, req, session); // unknown type: 404 from the router
  switch (info.interaction) {
    case 'capabilities':
      return route(ctx, req, session);
    case 'batch': {
      const bundle = req.body as Bundle | undefined;
      if (restricted && bundle?.type === 'transaction' && (bundle.entry ?? []).some(conditionalEntry)) {
        throw forbidden('Conditional entries (ifNoneExist, conditional URLs or references) are available to administrators and system clients only');
      }
      return route(ctx, req, session);
    }
    case 'search': {
      if (type) scope.authorize('search', type);
      if (info.compartment && restricted && fhirModel().isResourceType(info.compartment.type) && isPatientData(info.compartment.type)) {
        await checkInstance(scope, reads, info.compartment.type, info.compartment.id);
      }
      return route(ctx, req, session);
    }
    case 'read': {
      scope.authorize('read', type);
      // The interaction reads what the check read (no second store read).
      const seen: Seen = { versions: [] };
      await checkInstance(scope, reads, type!, info.id!, seen);
      return route(ctx, req, 'current' in seen ? reuse(reads, type!, info.id!, seen) : session);
    }
    case 'vread': {
      scope.authorize('vread', type);
      const seen: Seen = { versions: [] };
      await checkInstance(scope, reads, type!, info.id!, seen);
      const res = await route(ctx, req, 'current' in seen ? reuse(reads, type!, info.id!, seen) : session);
      if (restricted && res.body && !(await scope.canSee(res.body))) throw new FhirError(404, `Version ${info.vid} of ${type}/${info.id} is not known`, 'not-found');
      return res;
    }
    case 'history': {
      scope.authorize('history', type);
      if (!info.id) {
        if (restricted) throw forbidden('History of a type or of the whole server is available to administrators only');
        return route(ctx, req, session);
      }
      await checkInstance(scope, reads, type!, info.id);
      const res = await route(ctx, req, session);
      if (restricted && res.body?.resourceType === 'Bundle') {
        const bundle = res.body as Bundle;
        const kept: BundleEntry[] = [];
        for (const e of bundle.entry ?? []) if (!e.resource || (await scope.canSee(e.resource))) kept.push(e);
        if (kept.length !== (bundle.entry ?? []).length) delete bundle.total;
        bundle.entry = kept;
      }
      return res;
    }
    // Create, update, patch and delete are decided inside the interaction's store transaction, on the state
    // it reads there (FhirRequest.access: checkWriteTarget, checkWrite): a decision made here, before the
    // transaction, could be stale by the time the write commits (a record closed, a professional blocked).
    case 'create': {
      scope.authorize('create', type);
      if (restricted && req.headers['if-none-exist']) throw forbidden('Conditional create is available to administrators and system clients only');
      return route(ctx, req, session);
    }
    case 'update':
    case 'patch':
    case 'delete': {
      scope.authorize(info.interaction, type);
      if (restricted && info.conditional) throw forbidden(`Conditional ${info.interaction} is available to administrators and system clients only`);
      return route(ctx, req, session);
    }
    case 'operation': {
      const name = info.operation!;
      // An operation on a patient's record is in that patient's audit trail, allowed or not, whoever calls it.
      if (info.type === 'Patient' && info.id && ID_PATTERN.test(info.id)) scope.facts.patients.add(info.id);
      const op = operationRegistry.get(name);
      if (!op) return route(ctx, req, session); // the registry's 404: nothing runs
      // Each operation declares its own rule (src/operations/registry.ts); one without is refused (fail closed).
      const rule = (op as Partial<Operation>).access;
      if (!rule) throw forbidden(`Operation $${name} declares no access rule and is refused`);
      const target = operationTarget(info);
      // SMART scopes first, for every principal (administrators and system clients included).
      for (const need of rule.scopes(target, req)) requireAnyScope(scope.principal, need.type, need.perms);
      // A rule that lists roles refuses every other role (system clients too, although they are unrestricted).
      if (rule.roles && !rule.roles.includes(scope.principal.role) && !rule.alsoAllows?.(scope.principal, target)) {
        throw forbidden(`Operation $${name} is available to ${rule.roles.map((r) => ROLE_NAMES[r]).join(' and ')} only`);
      }
      if (rule.audience === 'patient') {
        // The patient's own policy: the patient, their appointed assistant, or an administrator.
        const role = scope.principal.role;
        if (role !== 'admin' && role !== 'patient' && role !== 'assistant') throw forbidden(`Operation $${name} is for the patient, their assistant or an administrator`);
        if (type === 'Patient' && info.id && restricted) await checkInstance(scope, reads, 'Patient', info.id);
        return route(ctx, req, session);
      }
      if (!restricted) return route(ctx, req, session);
      if (rule.audience === 'admin' && !rule.alsoAllows?.(scope.principal, target)) throw forbidden(`Operation $${name} is available to administrators and system clients only`);
      // An instance target is checked like a read of it.
      if (type && info.id) await checkInstance(scope, reads, type, info.id);
      return route(ctx, req, session);
    }
  }
}

function conditionalEntry(e: BundleEntry): boolean {
  if (e.request?.ifNoneExist) return true;
  if (e.request?.url?.includes('?') && e.request.method !== 'GET') return true;
  return /"reference":"[A-Z][A-Za-z]+\?/.test(JSON.stringify(e.resource ?? {}));
}

/**
 * The patient's own access operations (issue 6), on `Patient/[id]/$...`, for the patient, their appointed
 * assistant and administrators (src/access/enforce.ts refuses everyone else with a 403):
 *
 * | Operation | Parameters | Effect on the Consents (policy code) |
 * |---|---|---|
 * | `$access-grant` | `practitioner` Reference, `end` date/dateTime?, `restricted` boolean? | one active `grant` for that professional, with that end and R access |
 * | `$access-revoke` | `practitioner` | every `grant` naming them inactive (or the actor taken out of a shared one) |
 * | `$access-block` / `$access-unblock` | `practitioner` | a `block` / none |
 * | `$hide` / `$unhide` | `resource` Reference (a resource of the record) | a `hide` / none |
 * | `$object-encounter` / `$withdraw-objection` | `encounter` Reference | an `object-encounter` / none |
 * | `$close` / `$reopen` | — | a `close` / none |
 * | `$emergency-access` | `enabled` boolean | none / an `emergency-optout` |
 * | `$cross-border` | `enabled` boolean | a `cross-border` / none |
 * | `$access-policy` (GET) | — | reads the policy |
 * | `$access-log` (GET) | `_count`, `self`, `emergency` | the record's AuditEvents, newest first, paged |
 *
 * The Consents stay the source of truth (readable and writable through the API as before). Every write
 * operation is idempotent: it brings the Consents to the asked state (creating, updating or setting
 * `inactive` only what differs) and answers 200 with a Parameters: `outcome` (created | updated |
 * unchanged), the `consent`s it touched, and the resulting policy (the same parameters as `$access-policy`).
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, Consent, ConsentProvisionActor, Parameters, ParametersParameter, Reference, Resource } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import type { Filter } from '../search/types.ts';
import type { FhirRequest, FhirResponse } from '../fhir/request.ts';
import type { Context } from '../fhir/interactions.ts';
import type { Principal } from '../access/principal.ts';
import { FhirError, badRequest, gone, notFound } from '../fhir/outcome.ts';
import { TYPE_ID_PATTERN, fhirModel } from '../fhir/model.ts';
import { compartmentFilter } from '../fhir/compartments.ts';
import { search, withoutServerMeta } from '../fhir/interactions.ts';
import { extractIndex } from '../search/indexer.ts';
import { CONFIDENTIALITY, POLICY_SYSTEM, PROFESSIONAL, type PatientPolicy, type PolicyKind, active, activeConsents, loadPolicy, periodEndMs, policyKind } from '../access/policy.ts';
import { patientsOf } from '../access/decision.ts';
import { accessRuntime } from '../access/service.ts';
import { FLAG_SYSTEM } from '../audit/event.ts';
import { type OperationAccess, type ScopeNeed, operationRegistry } from './registry.ts';

const BASE = 'https://dsp.lu/fhir/OperationDefinition/';

/**
 * Their access rules (src/access/enforce.ts applies them): the patient, their assistant or an administrator;
 * changing ones need create and update on Consent, $access-policy read on Consent, $access-log search on AuditEvent.
 */
const patientRule = (scopes: ScopeNeed[]): OperationAccess => ({ audience: 'patient', scopes: () => scopes });
const WRITE_RULE = patientRule([
  { type: 'Consent', perms: ['c'] },
  { type: 'Consent', perms: ['u'] },
]);

// -- parameters -----------------------------------------------------------------------------------------------

const where = (name: string) => `Parameters.parameter.where(name='${name}')`;

/** Every value given for a parameter: from a Parameters body, else from the query. */
function values(req: FhirRequest, name: string): ParametersParameter[] {
  const body = req.body as Resource | undefined;
  if (body !== undefined) {
    if (body.resourceType !== 'Parameters') throw badRequest(`The body must be a Parameters resource, not ${body.resourceType}`, ['Parameters']);
    return ((body as Parameters).parameter ?? []).filter((p) => p.name === name);
  }
  return req.query.filter(([k]) => k === name).map(([, v]) => ({ name, valueString: v }));
}

function single(req: FhirRequest, name: string, required: true): ParametersParameter;
function single(req: FhirRequest, name: string, required: false): ParametersParameter | undefined;
function single(req: FhirRequest, name: string, required: boolean): ParametersParameter | undefined {
  const found = values(req, name);
  if (found.length > 1) throw badRequest(`Parameter ${name} is given ${found.length} times; it takes one value`, [where(name)]);
  if (!found.length && required) throw badRequest(`Parameter ${name} is required`, [where(name)]);
  return found[0];
}

function referenceParam(req: FhirRequest, name: string): string {
  const p = single(req, name, true);
  const ref = p.valueReference?.reference ?? p.valueString;
  if (typeof ref !== 'string' || !TYPE_ID_PATTERN.test(ref)) throw badRequest(`Parameter ${name} must be a reference Type/id (valueReference)`, [where(name)]);
  return ref;
}

function professionalParam(req: FhirRequest): string {
  const ref = referenceParam(req, 'practitioner');
  if (!PROFESSIONAL.test(ref)) throw new FhirError(422, [{ severity: 'error', code: 'invalid', diagnostics: `Parameter practitioner must name a Practitioner or PractitionerRole, not ${ref.split('/')[0]}`, expression: [where('practitioner')] }]);
  return ref;
}

function booleanParam(req: FhirRequest, name: string, required: boolean): boolean | undefined {
  const p = single(req, name, false);
  if (!p) {
    if (required) throw badRequest(`Parameter ${name} (true or false) is required`, [where(name)]);
    return undefined;
  }
  if (typeof p.valueBoolean === 'boolean') return p.valueBoolean;
  if (p.valueString === 'true' || p.valueString === 'false') return p.valueString === 'true';
  throw badRequest(`Parameter ${name} must be a boolean`, [where(name)]);
}

/** A FHIR date or dateTime (a time needs seconds and a zone), with real calendar values. */
function validDateTime(v: string): boolean {
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(?:\.\d{1,9})?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d))?)?)?$/.exec(v);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), m[2] ? Number(m[2]) : 1, m[3] ? Number(m[3]) : 1];
  if (mo < 1 || mo > 12) return false;
  const date = new Date(Date.UTC(y, mo - 1, d));
  return date.getUTCMonth() === mo - 1 && date.getUTCDate() === d && !Number.isNaN(periodEndMs(v));
}

function unprocessable(message: string, name: string): FhirError {
  return new FhirError(422, [{ severity: 'error', code: 'processing', diagnostics: message, expression: [where(name)] }]);
}

// -- Consents -------------------------------------------------------------------------------------------------

interface Target {
  actor?: string;
  data?: string;
}

interface Shape {
  end?: string;
  restricted?: boolean;
}

/** Policy kinds whose Consent provision permits (the others deny). */
export const PERMIT = new Set<PolicyKind>(['grant', 'care-relationship', 'assistant', 'cross-border']);

/** Writes Consents of one patient inside one store transaction and remembers what changed. */
class ConsentWriter {
  readonly session: StoreSession;
  readonly patientId: string;
  readonly principal?: Principal;
  readonly now: number;
  readonly touched: string[] = [];
  created = false;
  updated = false;
  private consents?: Consent[];

  constructor(session: StoreSession, patientId: string, principal: Principal | undefined, now: number) {
    this.session = session;
    this.patientId = patientId;
    this.principal = principal;
    this.now = now;
  }

  /**
   * The patient's active Consents, DSP or not (searched once per operation, kept in step with the writes):
   * what the operation changes and what the resulting policy is read from. Callers pick kinds with policyKind.
   */
  async active(): Promise<Consent[]> {
    this.consents ??= (await activeConsents(this.session, this.patientId)).sort((a, b) => (a.id! < b.id! ? -1 : 1));
    return this.consents;
  }

  private async write(consent: Consent, isNew: boolean): Promise<void> {
    // The Consent's own meta (tags, security labels, profiles) is kept; the server's versioning fields are not.
    const expected = !isNew && consent.meta?.versionId ? Number(consent.meta.versionId) : undefined;
    const rest = withoutServerMeta(consent);
    const record = await this.session.put(rest, { method: isNew ? 'POST' : 'PUT', expectedVersion: expected, index: extractIndex(rest) });
    this.touched.push(`Consent/${consent.id}`);
    if (isNew) this.created = true;
    else this.updated = true;
    const list = await this.active();
    const i = list.findIndex((c) => c.id === consent.id);
    const stored = record.resource as Consent;
    if (stored.status !== 'active') {
      if (i >= 0) list.splice(i, 1);
    } else if (i >= 0) list[i] = stored;
    else list.push(stored);
  }

  /** Consents of `kind` that concern the target (any of them for record-wide kinds). */
  private async concerning(kind: PolicyKind, target: Target): Promise<Consent[]> {
    return (await this.active()).filter((c) => policyKind(c) === kind && (!target.actor || actorsOf(c).includes(target.actor)) && (!target.data || dataOf(c).includes(target.data)));
  }

  /** Brings the Consents to: exactly one active Consent of `kind` for the target with this shape. */
  async ensure(kind: PolicyKind, target: Target, shape: Shape = {}): Promise<void> {
    const found = await this.concerning(kind, target);
    const sole = (c: Consent) => actorsOf(c).length === (target.actor ? 1 : 0) && dataOf(c).length === (target.data ? 1 : 0);
    const keeper = found.find((c) => sole(c) && matches(c, shape, this.now)) ?? found.find(sole);
    for (const c of found) if (c !== keeper) await this.takeOut(c, target);
    if (keeper && matches(keeper, shape, this.now)) return;
    const consent: Consent = keeper ? { ...keeper, provision: provision(kind, target, shape) } : this.build(kind, target, shape);
    if (keeper) consent.dateTime = new Date(this.now).toISOString();
    await this.write(consent, !keeper);
  }

  /** Brings the Consents to: no active Consent of `kind` for the target. */
  async remove(kind: PolicyKind, target: Target): Promise<void> {
    for (const c of await this.concerning(kind, target)) await this.takeOut(c, target);
  }

  /** A Consent shared with other actors / resources loses the target only; otherwise it becomes inactive. */
  private async takeOut(c: Consent, target: Target): Promise<void> {
    const p = c.provision ?? {};
    const actors = (p.actor ?? []).filter((a) => a.reference.reference !== target.actor);
    const data = (p.data ?? []).filter((d) => d.reference.reference !== target.data);
    const shared = (target.actor && actors.length) || (target.data && data.length);
    if (shared) {
      const next: Consent = { ...c, provision: { ...p, ...(target.actor ? { actor: actors } : {}), ...(target.data ? { data } : {}) } };
      await this.write(next, false);
    } else {
      await this.write({ ...c, status: 'inactive' }, false);
    }
  }

  private build(kind: PolicyKind, target: Target, shape: Shape): Consent {
    const by = this.principal?.ref;
    return {
      resourceType: 'Consent',
      id: randomUUID(),
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy', display: 'Privacy Consent' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
      patient: { reference: `Patient/${this.patientId}` },
      dateTime: new Date(this.now).toISOString(),
      ...(by && /^(Patient|RelatedPerson)\//.test(by) ? { performer: [{ reference: by }] } : {}),
      policyRule: { coding: [{ system: POLICY_SYSTEM, code: kind }] },
      provision: provision(kind, target, shape),
    };
  }
}

function actorsOf(c: Consent): string[] {
  return (c.provision?.actor ?? []).map((a) => a.reference?.reference).filter((r): r is string => !!r);
}

function dataOf(c: Consent): string[] {
  return (c.provision?.data ?? []).map((d) => d.reference?.reference).filter((r): r is string => !!r);
}

function restrictedOf(c: Consent): boolean {
  return (c.provision?.securityLabel ?? []).some((l) => l.system === CONFIDENTIALITY && l.code === 'R');
}

/** The Consent already says what is asked: in effect now, same end, same restricted access. */
function matches(c: Consent, shape: Shape, now: number): boolean {
  const period = c.provision?.period;
  return active(period, now) && !period?.start && (period?.end ?? undefined) === shape.end && restrictedOf(c) === !!shape.restricted;
}

function provision(kind: PolicyKind, target: Target, shape: Shape): Consent['provision'] {
  const actor: ConsentProvisionActor[] | undefined = target.actor
    ? [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP', display: 'primary information recipient' }] }, reference: { reference: target.actor } }]
    : undefined;
  return {
    type: PERMIT.has(kind) ? 'permit' : 'deny',
    ...(shape.end ? { period: { end: shape.end } } : {}),
    ...(actor ? { actor } : {}),
    ...(shape.restricted ? { securityLabel: [{ system: CONFIDENTIALITY, code: 'R', display: 'restricted' }] } : {}),
    ...(target.data ? { data: [{ meaning: 'instance' as const, reference: { reference: target.data } }] } : {}),
  };
}

// -- the policy as Parameters ---------------------------------------------------------------------------------

const ref = (reference: string): Reference => ({ reference });

/** The patient's effective policy, with where each part comes from. */
export async function policyParameters(session: StoreSession, patientId: string, now = Date.now(), writer?: ConsentWriter): Promise<ParametersParameter[]> {
  // One search of the active Consents: the writer's (in step with what it wrote), handed to loadPolicy.
  const all = await (writer ?? new ConsentWriter(session, patientId, undefined, now)).active();
  const policy: PatientPolicy = await loadPolicy(session, patientId, now, all);
  const consents = all.filter((c) => active(c.provision?.period, now, true));
  const byKind = (kind: PolicyKind) => consents.filter((c) => policyKind(c) === kind);
  const out: ParametersParameter[] = [{ name: 'patient', valueReference: ref(`Patient/${patientId}`) }];
  if (policy.unknown) out.push({ name: 'unknown-policy', valueBoolean: true });
  out.push({ name: 'closed', valueBoolean: policy.closed });
  out.push({ name: 'emergency-access', valueBoolean: !policy.emergencyOptOut });
  out.push({ name: 'cross-border', valueBoolean: policy.crossBorder });
  const closedBy = byKind('close')[0];
  if (closedBy) out.push({ name: 'closed-by', valueReference: ref(`Consent/${closedBy.id}`) });
  for (const gp of [...policy.generalPractitioners].sort()) {
    out.push({ name: 'link', part: [{ name: 'actor', valueReference: ref(gp) }, { name: 'basis', valueCode: 'general-practitioner' }, { name: 'restricted', valueBoolean: true }, ...(policy.blocked.has(gp) ? [{ name: 'blocked', valueBoolean: true }] : [])] });
  }
  for (const g of policy.grants) {
    const source = g.source ?? '';
    const consent = source.startsWith('Consent/') ? consents.find((c) => `Consent/${c.id}` === source) : undefined;
    const basis = consent ? policyKind(consent)! : source.startsWith('CareTeam/') ? 'care-team' : source.startsWith('EpisodeOfCare/') ? 'episode-of-care' : 'grant';
    out.push({
      name: 'link',
      part: [
        { name: 'actor', valueReference: ref(g.actor) },
        { name: 'basis', valueCode: basis },
        ...(source ? [{ name: 'source', valueReference: ref(source) }] : []),
        ...(g.end ? [{ name: 'end', valueDateTime: g.end }] : []),
        { name: 'restricted', valueBoolean: g.restricted },
        ...(policy.blocked.has(g.actor) ? [{ name: 'blocked', valueBoolean: true }] : []),
      ],
    });
  }
  const parts = (name: string, kind: PolicyKind, key: string, list: (c: Consent) => string[]) => {
    for (const c of byKind(kind)) for (const v of list(c)) out.push({ name, part: [{ name: key, valueReference: ref(v) }, { name: 'source', valueReference: ref(`Consent/${c.id}`) }] });
  };
  parts('block', 'block', 'actor', actorsOf);
  parts('hidden', 'hide', 'resource', dataOf);
  parts('objection', 'object-encounter', 'encounter', dataOf);
  parts('assistant', 'assistant', 'actor', actorsOf);
  return out;
}

// -- operations -----------------------------------------------------------------------------------------------

type Change = (w: ConsentWriter, req: FhirRequest) => Promise<void>;

/** A resource of this patient's record (live); anything else is a 422 that does not tell whether it exists. */
async function inRecord(session: StoreSession, patientId: string, reference: string, name: string, type?: string): Promise<void> {
  const [, t, id] = TYPE_ID_PATTERN.exec(reference)!;
  if (type && t !== type) throw unprocessable(`Parameter ${name} must be a reference to ${type}, not ${t}`, name);
  if (!fhirModel().isResourceType(t)) throw unprocessable(`${t} is not a resource type`, name);
  if (t === 'Patient') throw unprocessable('The Patient resource itself cannot be hidden: use $close to close the record', name);
  const rec = await session.current(t, id);
  if (!rec || rec.deleted || !rec.resource || !patientsOf(rec.resource).includes(patientId)) {
    throw unprocessable(`${reference} is not a resource of the record of Patient/${patientId}`, name);
  }
}

const CHANGES: Record<string, Change> = {
  async 'access-grant'(w, req) {
    const actor = professionalParam(req);
    const endParam = single(req, 'end', false);
    let end: string | undefined;
    if (endParam) {
      end = endParam.valueDateTime ?? endParam.valueDate ?? endParam.valueInstant ?? endParam.valueString;
      if (typeof end !== 'string' || !validDateTime(end)) {
        throw badRequest('Parameter end must be a date or a dateTime with a time zone', [where('end')]);
      }
      if (periodEndMs(end) <= w.now) throw unprocessable(`Parameter end (${end}) is not in the future`, 'end');
    }
    const restricted = booleanParam(req, 'restricted', false) ?? false;
    const [t, id] = actor.split('/');
    const known = await w.session.current(t, id);
    if (!known || known.deleted) throw unprocessable(`${actor} is not known: access is granted to known professionals only`, 'practitioner');
    await w.ensure('grant', { actor }, { end, restricted });
  },
  async 'access-revoke'(w, req) {
    await w.remove('grant', { actor: professionalParam(req) });
  },
  async 'access-block'(w, req) {
    await w.ensure('block', { actor: professionalParam(req) });
  },
  async 'access-unblock'(w, req) {
    await w.remove('block', { actor: professionalParam(req) });
  },
  async hide(w, req) {
    const data = referenceParam(req, 'resource');
    await inRecord(w.session, w.patientId, data, 'resource');
    await w.ensure('hide', { data });
  },
  async unhide(w, req) {
    await w.remove('hide', { data: referenceParam(req, 'resource') });
  },
  async 'object-encounter'(w, req) {
    const data = referenceParam(req, 'encounter');
    await inRecord(w.session, w.patientId, data, 'encounter', 'Encounter');
    await w.ensure('object-encounter', { data });
  },
  async 'withdraw-objection'(w, req) {
    const data = referenceParam(req, 'encounter');
    if (!data.startsWith('Encounter/')) throw unprocessable(`Parameter encounter must be a reference to Encounter, not ${data.split('/')[0]}`, 'encounter');
    await w.remove('object-encounter', { data });
  },
  async close(w) {
    await w.ensure('close', {});
  },
  async reopen(w) {
    await w.remove('close', {});
  },
  async 'emergency-access'(w, req) {
    if (booleanParam(req, 'enabled', true)) await w.remove('emergency-optout', {});
    else await w.ensure('emergency-optout', {});
  },
  async 'cross-border'(w, req) {
    if (booleanParam(req, 'enabled', true)) await w.ensure('cross-border', {});
    else await w.remove('cross-border', {});
  },
};

async function livePatient(session: StoreSession, id: string): Promise<void> {
  const rec = await session.current('Patient', id);
  if (!rec) throw notFound(`Patient/${id} is not known`);
  if (rec.deleted) throw gone(`Patient/${id} was deleted`);
}

function ok(parameter: ParametersParameter[]): FhirResponse {
  const body: Parameters = { resourceType: 'Parameters', parameter };
  return { status: 200, headers: {}, body };
}

/** The parameters each changing operation takes: anything else is refused (400), not silently ignored. */
const ACCEPTS: Record<string, string[]> = {
  'access-grant': ['practitioner', 'end', 'restricted'],
  'access-revoke': ['practitioner'],
  'access-block': ['practitioner'],
  'access-unblock': ['practitioner'],
  hide: ['resource'],
  unhide: ['resource'],
  'object-encounter': ['encounter'],
  'withdraw-objection': ['encounter'],
  close: [],
  reopen: [],
  'emergency-access': ['enabled'],
  'cross-border': ['enabled'],
};
const FORMAT = new Set(['_format', '_pretty', '_summary', '_elements']);

function refuseUnknown(req: FhirRequest, op: string, accepted: string[]): void {
  const body = req.body as Parameters | undefined;
  const names = body?.resourceType === 'Parameters' ? (body.parameter ?? []).map((p) => p.name) : req.query.map(([k]) => k).filter((k) => !FORMAT.has(k));
  const unknown = names.find((n) => !accepted.includes(n));
  if (unknown !== undefined) throw badRequest(`Parameter ${String(unknown)} is not a parameter of $${op}${accepted.length ? ` (${accepted.join(', ')})` : ' (it takes none)'}`, [where(String(unknown))]);
}

for (const [name, change] of Object.entries(CHANGES)) {
  operationRegistry.register({
    name,
    definition: `${BASE}Patient-${name}`,
    resourceTypes: ['Patient'],
    levels: ['instance'],
    affectsState: true,
    access: WRITE_RULE,
    async handler(ctx, req, target, session) {
      const patientId = target.id!;
      refuseUnknown(req, name, ACCEPTS[name]);
      const run = async (s: StoreSession) => {
        await livePatient(s, patientId);
        const w = new ConsentWriter(s, patientId, req.principal, Date.now());
        await change(w, req);
        const outcome = w.created ? 'created' : w.updated ? 'updated' : 'unchanged';
        return [
          { name: 'outcome', valueCode: outcome },
          ...[...new Set(w.touched)].map((c) => ({ name: 'consent', valueReference: ref(c) })),
          ...(await policyParameters(s, patientId, w.now, w)),
        ] as ParametersParameter[];
      };
      return ok(session ? await run(session) : await ctx.store.transaction(run));
    },
  });
}

operationRegistry.register({
  name: 'access-policy',
  definition: `${BASE}Patient-access-policy`,
  resourceTypes: ['Patient'],
  levels: ['instance'],
  affectsState: false,
  access: patientRule([{ type: 'Consent', perms: ['r'] }]),
  async handler(ctx, _req, target, session) {
    const s = session ?? ctx.store;
    await livePatient(s, target.id!);
    return ok(await policyParameters(s, target.id!));
  },
});

/**
 * Who accessed the record: the AuditEvents concerning the patient (as agent or entity), newest first, paged
 * with `_count` and the `next` link. `self=false` (default) leaves out the patient's and their assistants'
 * own requests; `emergency=true` keeps only emergency accesses. Emergency accesses carry the tag
 * `audit-flag|emergency-access` and purpose of use ETREAT with the reason given.
 */
operationRegistry.register({
  name: 'access-log',
  definition: `${BASE}Patient-access-log`,
  resourceTypes: ['Patient'],
  levels: ['instance'],
  affectsState: false,
  access: patientRule([{ type: 'AuditEvent', perms: ['s'] }]),
  async handler(ctx: Context, req, target, session) {
    const patientId = target.id!;
    await livePatient(session ?? ctx.store, patientId);
    const self = booleanParam(req, 'self', false) ?? false;
    const emergency = booleanParam(req, 'emergency', false) ?? false;
    const params: [string, string][] = [['_sort', '-date']];
    for (const k of ['_count', '_cursor', '_format', '_pretty', '_summary', '_elements']) {
      const v = single(req, k, false);
      if (v) params.push([k, String(v.valueInteger ?? v.valueString ?? '')]);
    }
    const known = new Set(['self', 'emergency', '_count', '_cursor', '_format', '_pretty', '_summary', '_elements']);
    const unknown = req.body === undefined ? req.query.map(([k]) => k).filter((k) => !known.has(k)) : ((req.body as Parameters).parameter ?? []).map((p) => p.name).filter((k) => !known.has(k));
    if (unknown.length) throw badRequest(`Parameter ${unknown[0]} is not supported by $access-log`, [unknown[0]]);
    const filters: Filter[] = [compartmentFilter('Patient', patientId, ['AuditEvent'])];
    if (!self) {
      const policy = await loadPolicy(session ?? ctx.store, patientId);
      const own = [`Patient/${patientId}`, ...policy.assistants];
      filters.push({ kind: 'param', param: 'agent', type: 'reference', not: true, anyOf: own.map((r) => ({ type: 'reference', reference: r, targetType: r.split('/')[0], targetId: r.slice(r.indexOf('/') + 1) })) });
    }
    if (emergency) filters.push({ kind: 'param', param: '_tag', type: 'token', anyOf: [{ type: 'token', system: FLAG_SYSTEM, code: 'emergency-access' }] });
    const rt = await accessRuntime(ctx);
    // Entries whose search rows are built in the background are indexed before the trail is searched.
    await rt.audit.indexed();
    const res = await search({ ...ctx, store: rt.auditStore }, rt.auditStore, req, 'AuditEvent', params, { path: `Patient/${patientId}/$access-log`, filters });
    // The paging links keep the operation's own parameters.
    const bundle = res.body as Bundle;
    for (const l of bundle.link ?? []) {
      const u = new URL(l.url);
      u.searchParams.delete('_sort');
      if (self) u.searchParams.set('self', 'true');
      if (emergency) u.searchParams.set('emergency', 'true');
      l.url = u.toString();
    }
    return res;
  },
});

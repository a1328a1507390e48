/**
 * The national contact point (NCP) interface of the cross-border module (issue 7), shaped after the
 * MyHealth@EU NCPeH FHIR API: plain FHIR interactions, no NCP-specific endpoint.
 *
 * 1. Patient identification: `GET Patient?identifier=urn:oid:1.3.182.4.4|<matricule>[&family=&given=
 *    &birthdate=&gender=]`. The NCP never names a patient id: the identifier finds the candidates, and only
 *    those the NCP may see (an active `cross-border` Consent, record not closed: decision.ts modeFor) remain;
 *    the others are simply not found (an empty searchset). The answer is a minimal Patient.
 * 2. Document metadata: `GET DocumentReference?patient.identifier=...&type=http://loinc.org|60591-5&date=ge...`:
 *    the chain is resolved to the one identified, visible patient and the search then runs like any NCP
 *    search of that record (Patient Summary only, nothing labelled or hidden).
 * 3. Retrieval: a Patient Summary DocumentReference names its document by `masterIdentifier` = the FHIR
 *    document Bundle's `identifier`. The NCP's view of such a DocumentReference lists two more
 *    representations: `Bundle/<id>` (application/fhir+json) and `Bundle/<id>/$to-cda` (the eHDSI pivot CDA,
 *    application/xml, answered as a Binary). The NCP may read that Bundle, and run `$to-cda` on it, when it
 *    may see a current Patient Summary DocumentReference of the same patient that names it.
 *
 * The access decision point (src/access/decision.ts) calls `ncpNarrow` and `ncpCanSeeDocument`; enforce.ts
 * calls `ncpOperationAllowed` and `ncpView`. Every request is audited there like any other.
 */
import type { Bundle, BundleEntry, Composition, DocumentReference, Identifier, Patient, Resource } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import type { Filter } from '../search/types.ts';
import type { Principal } from '../access/principal.ts';
import type { AccessScope } from '../access/decision.ts';
import { FhirError, forbidden } from '../fhir/outcome.ts';
import { LOINC_URI as LOINC, MATRICULE_SYSTEM, PATIENT_SUMMARY_LOINC as PATIENT_SUMMARY } from './transcode.ts';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };
/** At most this many records share the identifiers of one identification request (duplicates of one person). */
const MAX_CANDIDATES = 20;

type Narrowed = { types: string[]; filters: Filter[] };
const never = (): Filter => ({ kind: 'id', ids: [] });
const base = { sort: [], total: 'none' as const, include: [] };


function isNcp(principal: Principal | undefined): boolean {
  return principal?.role === 'ncp';
}

// -- identification -------------------------------------------------------------------------------------

/**
 * An identification request names the patient by business identifier: at least one `identifier` parameter,
 * no modifier, every value `system|value`. Anything looser (no identifier, `:not`, a bare value) could list
 * other people: refused for the NCP (403, it depends on the request only).
 */
function requireIdentifier(filters: Filter[]): void {
  const ids = filters.filter((f): f is Extract<Filter, { kind: 'param' }> => f.kind === 'param' && f.param === 'identifier');
  if (!ids.length) {
    throw forbidden(`A national contact point identifies a patient by identifier: Patient?identifier=${MATRICULE_SYSTEM}|<matricule> (family, given, birthdate and gender may narrow it)`);
  }
  for (const f of ids) {
    const exact = !f.not && f.anyOf.every((p) => p.type === 'token' && !p.modifier && !!p.system && !!p.code);
    if (!exact) throw forbidden('A national contact point gives the identifier as system|value, without modifier');
  }
}

/** Patients matching an identification request (all of its parameters) that this NCP may see. */
async function identified(scope: AccessScope, session: StoreSession, filters: Filter[]): Promise<string[]> {
  requireIdentifier(filters);
  const found = await session.search({ ...base, resourceTypes: ['Patient'], filters: [...filters], count: MAX_CANDIDATES });
  const out: string[] = [];
  for (const r of found.resources) if ((await scope.modeFor(r.id!)) !== 'none') out.push(r.id!);
  return out.sort();
}

/**
 * Narrowing of an NCP search that names no patient id (decision.ts narrowTypes calls it where a
 * professional's search would fall back on the records they are linked to):
 * - over Patient (a search, or the inner search of a `patient.` chain): the identified, visible patients;
 * - over other types: the patient the `patient`/`subject` chain(s) identify, then that record's NCP view
 *   (`toPatient`, decision.ts narrowToPatient). No chain: nothing.
 */
export async function ncpNarrow(scope: AccessScope, session: StoreSession, types: string[], filters: Filter[], toPatient: (id: string, types: string[]) => Promise<Narrowed>): Promise<Narrowed> {
  if (types.includes('Patient')) {
    // A chain over several target types (`subject.identifier`) identifies Patients only.
    const ids = await identified(scope, session, filters);
    if (ids.length === 1) return toPatient(ids[0], ['Patient']);
    if (!ids.length) return { types: ['Patient'], filters: [never()] };
    for (const id of ids) scope.facts.patients.add(id);
    scope.facts.emergency = true;
    return { types: ['Patient'], filters: [{ kind: 'id', ids }] };
  }
  const chains = filters.filter((f): f is Extract<Filter, { kind: 'chain' }> => f.kind === 'chain' && (f.param === 'patient' || f.param === 'subject') && f.targetTypes.length === 1 && f.targetTypes[0] === 'Patient');
  if (!chains.length) return { types, filters: [never()] };
  let ids: Set<string> | undefined;
  for (const c of chains) {
    // The chain's inner search is already narrowed (decision.ts narrowNested): what it finds is visible.
    const found = await session.search({ ...base, resourceTypes: ['Patient'], filters: c.where, count: MAX_CANDIDATES });
    const these = new Set(found.resources.map((r) => r.id!));
    ids = ids ? new Set([...ids].filter((i) => these.has(i))) : these;
  }
  const list = [...(ids ?? [])];
  if (!list.length) return { types, filters: [never()] };
  if (list.length > 1) {
    throw new FhirError(409, `The identifier matches ${list.length} records; identify the patient first (Patient?identifier=...) and search with patient=Patient/<id>`, 'conflict');
  }
  return toPatient(list[0], types);
}

// -- the Patient Summary document ----------------------------------------------------------------------

/** The Composition of a Patient Summary document Bundle and the Patient it is about, if it is one. */
export function patientSummaryParts(bundle: Bundle): { composition: Composition; patient?: Patient } | undefined {
  if (bundle.type !== 'document') return undefined;
  const composition = bundle.entry?.[0]?.resource;
  if (composition?.resourceType !== 'Composition') return undefined;
  if (!(composition.type?.coding ?? []).some((c) => c.system === LOINC && c.code === PATIENT_SUMMARY)) return undefined;
  const ref = composition.subject?.reference;
  const entry = ref ? bundle.entry?.find((e) => e.fullUrl === ref || (e.resource && `${e.resource.resourceType}/${e.resource.id}` === ref)) : undefined;
  const patient = entry?.resource?.resourceType === 'Patient' ? entry.resource : undefined;
  return { composition, patient };
}

const identifierKey = (i: Identifier) => (i.system && i.value ? `${i.system}|${i.value}` : undefined);

function sameIdentifier(a: Identifier | undefined, b: Identifier | undefined): boolean {
  return !!a && !!b && !!identifierKey(a) && identifierKey(a) === identifierKey(b);
}

/** DocumentReferences naming a document identifier (masterIdentifier or identifier). */
async function referencesTo(session: StoreSession, id: Identifier): Promise<DocumentReference[]> {
  const found = await session.search({
    ...base,
    resourceTypes: ['DocumentReference'],
    filters: [{ kind: 'param', param: 'identifier', type: 'token', anyOf: [{ type: 'token', system: id.system, code: id.value }] }],
    count: 50,
  });
  return found.resources as DocumentReference[];
}

/**
 * May the NCP read this stored Bundle? Only a Patient Summary document named (masterIdentifier = its
 * identifier) by a current Patient Summary DocumentReference the NCP sees, and whose own patient carries an
 * identifier of that record's Patient (a document filed under the wrong record is not sent).
 */
export async function ncpCanSeeDocument(scope: AccessScope, session: StoreSession, bundle: Resource): Promise<boolean> {
  if (!isNcp(scope.principal) || bundle.resourceType !== 'Bundle') return false;
  const doc = bundle as Bundle;
  const parts = patientSummaryParts(doc);
  if (!parts || !identifierKey(doc.identifier ?? {})) return false;
  for (const ref of await referencesTo(session, doc.identifier!)) {
    if (ref.status !== 'current' || !sameIdentifier(ref.masterIdentifier, doc.identifier)) continue;
    const subject = ref.subject?.reference;
    if (!subject?.startsWith('Patient/')) continue;
    const record = await session.current('Patient', subject.slice(8));
    if (!record || record.deleted) continue;
    const own = new Set(((record.resource as Patient).identifier ?? []).map(identifierKey).filter(Boolean));
    if (!(parts.patient?.identifier ?? []).some((i) => own.has(identifierKey(i)))) continue;
    if (await scope.canSee(ref)) return true;
  }
  return false;
}

/** Operations the NCP may run: `$to-cda` on a stored Bundle (its visibility is checked like a read). */
export function ncpOperationAllowed(principal: Principal | undefined, operation: string, type: string | undefined, id: string | undefined): boolean {
  return isNcp(principal) && operation === 'to-cda' && type === 'Bundle' && !!id;
}

// -- what the NCP receives -----------------------------------------------------------------------------

/** The minimal Patient of an identification answer: id, identifier, name, birthDate, gender (SUBSETTED). */
export function minimalPatient(p: Patient): Patient {
  const tags = (p.meta?.tag ?? []).filter((t) => t.code === 'SUBSETTED');
  const meta = { ...(p.meta?.versionId ? { versionId: p.meta.versionId } : {}), ...(p.meta?.lastUpdated ? { lastUpdated: p.meta.lastUpdated } : {}), tag: tags.length ? tags : [SUBSETTED] };
  return {
    resourceType: 'Patient',
    ...(p.id ? { id: p.id } : {}),
    meta,
    ...(p.identifier ? { identifier: p.identifier } : {}),
    ...(p.name ? { name: p.name } : {}),
    ...(p.birthDate ? { birthDate: p.birthDate } : {}),
    ...(p.gender ? { gender: p.gender } : {}),
  };
}

const isPatientSummary = (d: DocumentReference) => (d.type?.coding ?? []).some((c) => c.system === LOINC && c.code === PATIENT_SUMMARY);

/** A Patient Summary DocumentReference with the representations the server can deliver added. */
async function withRepresentations(session: StoreSession, d: DocumentReference): Promise<DocumentReference> {
  // `content` is 1..*: absent means the client subsetted it away (_elements); leave it so.
  if (!isPatientSummary(d) || !d.content || !identifierKey(d.masterIdentifier ?? {})) return d;
  const found = await session.search({
    ...base,
    resourceTypes: ['Bundle'],
    filters: [{ kind: 'param', param: 'identifier', type: 'token', anyOf: [{ type: 'token', system: d.masterIdentifier!.system, code: d.masterIdentifier!.value }] }],
    count: 2,
  });
  const doc = (found.resources as Bundle[]).find((b) => patientSummaryParts(b));
  if (!doc) return d;
  const known = new Set(d.content.map((c) => c.attachment.url));
  const added = [
    { attachment: { contentType: 'application/fhir+json', url: `Bundle/${doc.id}`, title: 'Patient Summary (FHIR document)', ...(doc.timestamp ? { creation: doc.timestamp } : {}) } },
    { attachment: { contentType: 'application/xml', url: `Bundle/${doc.id}/$to-cda`, title: 'Patient Summary (eHDSI pivot CDA: raw XML with Accept: application/xml, else a Binary)', ...(doc.timestamp ? { creation: doc.timestamp } : {}) } },
  ].filter((c) => !known.has(c.attachment.url));
  return added.length ? { ...d, content: [...d.content, ...added] } : d;
}

const RESPONSE_BUNDLES = new Set(['searchset', 'history', 'batch-response', 'transaction-response']);

/**
 * The NCP's view of an answer: every Patient minimal, Patient Summary DocumentReferences with their
 * representations; response Bundles entry by entry. Documents (a stored Bundle) are sent as they are.
 * Returns new objects; the store's are never changed.
 */
export async function ncpView(session: StoreSession, body: Resource | undefined): Promise<Resource | undefined> {
  if (!body) return body;
  if (body.resourceType === 'Patient') return minimalPatient(body as Patient);
  if (body.resourceType === 'DocumentReference') return withRepresentations(session, body as DocumentReference);
  if (body.resourceType === 'Bundle' && RESPONSE_BUNDLES.has((body as Bundle).type)) {
    const bundle = body as Bundle;
    if (!bundle.entry?.length) return bundle;
    const entry: BundleEntry[] = [];
    for (const e of bundle.entry) entry.push(e.resource ? ({ ...e, resource: await ncpView(session, e.resource) } as BundleEntry) : e);
    return { ...bundle, entry } as Bundle;
  }
  return body;
}

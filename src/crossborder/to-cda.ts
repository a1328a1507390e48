/**
 * Luxembourg Patient Summary (FHIR document Bundle, IPS shape) -> eHDSI Patient Summary pivot CDA level 3
 * (templateId 1.3.6.1.4.1.12559.11.10.1.3.1.1.3), release 8.0.0 rules.
 *
 * Header from the Composition and the resources it references; one CDA section per Composition section (the
 * five mandatory sections are always written, with the eHDSI "no known" / "no information" entry when the FHIR
 * side has none or an emptyReason). Section narrative is generated in the document language and every entry
 * references its row through originalText/reference.
 */
import { randomUUID } from 'node:crypto';
import type {
  Address, AllergyIntolerance, Bundle, CodeableConcept, Coding, Composition, CompositionSection, Condition, ContactPoint, Device,
  DeviceUseStatement, HumanName, Identifier, Immunization, Medication, MedicationStatement, Observation, Organization, Patient,
  Practitioner, PractitionerRole, Procedure, Quantity, Reference, RelatedPerson, Resource, CarePlan, CareTeam, Extension, Consent, Ratio, Range, Timing, ClinicalImpression, Dosage, Annotation,
} from 'fhir/r4';
import { badRequest, unprocessable } from '../fhir/outcome.ts';
import { isOid } from '../terminology/codesystems.ts';
import { serialize, type X } from './cda/xml.ts';
import { fhirToTs } from './dates.ts';
import { labels, paragraph, table, type Cell } from './narrative.ts';
import { codingAttrs, describeCodeSystem, designation, distinctTranslations, inValueSet, isUuid, keptCdaUid, LOINC_URI, MATRICULE_OID, MATRICULE_SYSTEM, PATIENT_SUMMARY_LOINC, toCD, valueSetMembers, VS, withDisplay } from './transcode.ts';
import { IPS_ABSENT_URI, PS_TEMPLATE, readCdaExt, readCdaExts } from './from-cda.ts';

const T = (n: string) => `1.3.6.1.4.1.12559.11.10.1.3.1.${n}`;
const LOINC = '2.16.840.1.113883.6.1';
const SCT = '2.16.840.1.113883.6.96';
const IPS_ABSENT = '2.16.840.1.113883.5.1150.1';
export { MATRICULE_OID };
/** The IHE act code system as the eHDSI immunization template fixes it (1.3.5.1.4..., sic). */
const IHE_ACT_CODE = '1.3.5.1.4.1.19376.1.5.3.2';

export interface ToCdaOptions {
  /** Document language (BCP 47) when the Composition has none; default fr-LU. */
  language?: string;
  /** Pretty-print the XML (default true). */
  pretty?: boolean;
}

/** Section kinds by LOINC code. */
export const SECTIONS: Record<string, { key: string; template: string; title: string; extra?: string[] }> = {
  '10160-0': { key: 'medication', template: T('2.3'), title: 'History of Medication use', extra: ['2.16.840.1.113883.10.20.1.8'] },
  '48765-2': { key: 'allergies', template: T('2.12'), title: 'Allergies, adverse reactions, alerts' },
  '11450-4': { key: 'problems', template: T('2.9'), title: 'Problem list', extra: ['2.16.840.1.113883.10.20.1.11'] },
  '47519-4': { key: 'procedures', template: T('2.11'), title: 'History of Procedures' },
  '46264-8': { key: 'devices', template: T('2.4'), title: 'History of medical device use', extra: ['2.16.840.1.113883.10.20.1.7'] },
  '11348-0': { key: 'pastIllness', template: T('2.10'), title: 'History of past illness' },
  '11369-6': { key: 'immunizations', template: T('2.15'), title: 'History of immunization', extra: ['2.16.840.1.113883.10.20.1.6'] },
  '10162-6': { key: 'pregnancy', template: T('2.7'), title: 'History of pregnancies' },
  '29762-2': { key: 'social', template: T('2.13'), title: 'Social history', extra: ['2.16.840.1.113883.10.20.1.15'] },
  '8716-3': { key: 'vitals', template: T('2.6'), title: 'Vital signs' },
  '30954-2': { key: 'results', template: T('2.5'), title: 'Relevant diagnostic tests/laboratory data' },
  '47420-5': { key: 'functional', template: T('2.14'), title: 'Functional status assessment' },
  '18776-5': { key: 'plan', template: T('2.8'), title: 'Plan of care note' },
  '42348-3': { key: 'advance', template: T('2.16'), title: 'Advance directives' },
};
const MANDATORY = ['10160-0', '48765-2', '11450-4', '47519-4', '46264-8'];

// -- small builders ---------------------------------------------------------------------------------------------

const el = (n: string, a?: X['a'], ...c: X['c'] & unknown[]): X => ({ n, ...(a ? { a } : {}), ...(c.length ? { c } : {}) });
const tid = (root: string): X => el('templateId', { root });

function uuidRoot(v: string): string {
  return v.replace(/^urn:uuid:/i, '').toUpperCase();
}

/**
 * II for a FHIR Identifier: an OID or UUID namespace is the root (urn:ietf:rfc:3986 values: the uid itself).
 * A namespace that is neither (an RUID such as `PRT00000009` kept under CDA_UID_NS, which dtr1-10a-II forbids as a
 * root; a URL) cannot be the root: the identifier is `nullFlavor="OTH"` (its namespace is outside the permitted
 * forms) with its value kept as the extension, which dtr1-1-ANY allows under OTH (and dtr1-2-II wants no root).
 */
function ii(id: Identifier | undefined, tag = 'id'): X {
  if (!id?.value) return el(tag, { nullFlavor: 'NI' });
  if (id.system === 'urn:ietf:rfc:3986') {
    if (/^urn:uuid:/i.test(id.value)) return el(tag, { root: uuidRoot(id.value) });
    if (/^urn:oid:/i.test(id.value)) return el(tag, { root: id.value.slice(8) });
    return el(tag, { nullFlavor: 'NI' });
  }
  // describeCodeSystem gives a uid kept under CDA_UID_NS as it came (an RUID: neither OID nor UUID, hence OTH below).
  const oid = id.system ? describeCodeSystem(id.system).oid : undefined;
  if (oid && (isOid(oid) || isUuid(oid))) return el(tag, { root: oid.toUpperCase(), extension: id.value });
  return el(tag, { nullFlavor: 'OTH', extension: id.value });
}

function idForResource(r: Resource | undefined, root: string): X {
  const id = (r as { identifier?: Identifier[] } | undefined)?.identifier?.find((i) => i.value && (i.system?.startsWith('urn:oid:') || i.system === 'urn:ietf:rfc:3986' || keptCdaUid(i.system)));
  if (id) return ii(id);
  if (isUuid(r?.id)) return el('id', { root: r!.id!.toUpperCase() });
  return el('id', { root, extension: r?.id });
}

function name(n: HumanName | undefined): X {
  if (!n || (!n.family && !n.given?.length && !n.text)) return el('name', { nullFlavor: 'UNK' });
  if (!n.family && !n.given?.length) return el('name', undefined, n.text!);
  return el('name', undefined, ...(n.prefix ?? []).map((p) => el('prefix', undefined, p)), ...(n.given?.length ? n.given.map((g) => el('given', undefined, g)) : [el('given', { nullFlavor: 'UNK' })]), n.family ? el('family', undefined, n.family) : el('family', { nullFlavor: 'UNK' }), ...(n.suffix ?? []).map((s) => el('suffix', undefined, s)));
}

function addr(a: Address | undefined): X {
  if (!a) return el('addr', { nullFlavor: 'NI' });
  const use = a.use === 'home' ? 'H' : a.use === 'work' ? 'WP' : a.use === 'temp' ? 'TMP' : a.use === 'old' ? 'OLD' : undefined;
  const parts = [
    ...(a.line ?? []).map((l) => el('streetAddressLine', undefined, l)),
    a.postalCode && el('postalCode', undefined, a.postalCode),
    a.city && el('city', undefined, a.city),
    a.state && el('state', undefined, a.state),
    el('country', undefined, a.country ?? 'LU'),
  ];
  return el('addr', { use }, ...parts);
}

function telecom(t: ContactPoint): X | undefined {
  if (!t.value) return undefined;
  const scheme = t.system === 'email' ? 'mailto:' : t.system === 'fax' ? 'fax:' : t.system === 'url' ? '' : 'tel:';
  const value = scheme === 'tel:' || scheme === 'fax:' ? t.value.replace(/[^\d+]/g, '') : t.value;
  const use = t.use === 'home' ? 'H' : t.use === 'work' ? 'WP' : t.use === 'mobile' ? 'MC' : t.use === 'temp' ? 'TMP' : undefined;
  return el('telecom', { value: scheme + value, use });
}

function telecoms(list: ContactPoint[] | undefined): X[] {
  const out = (list ?? []).map(telecom).filter((x): x is X => !!x);
  return out.length ? out : [el('telecom', { nullFlavor: 'NI' })];
}


function ts(tag: string, v: string | undefined, attrs?: X['a']): X {
  const t = fhirToTs(v);
  return t ? el(tag, { ...attrs, value: t }) : el(tag, { ...attrs, nullFlavor: 'UNK' });
}

function ivl(tag: string, low: string | undefined, high: string | undefined, xsi = true): X {
  // A null interval is written as a null low (RIM-001 forbids a null effectiveTime next to a non-null one).
  if (!low && !high) return el(tag, xsi ? { 'xsi:type': 'IVL_TS' } : undefined, el('low', { nullFlavor: 'UNK' }));
  // low equal to high is refused (dtr1-6-IVL_TS): the point in time is given once.
  if (low && high && fhirToTs(low) === fhirToTs(high)) high = undefined;
  return el(tag, xsi ? { 'xsi:type': 'IVL_TS' } : undefined, ts('low', low), high ? ts('high', high) : undefined);
}

function displayed(cc: CodeableConcept | undefined): CodeableConcept | undefined {
  if (!cc) return cc;
  return { ...cc, coding: cc.coding?.map((c) => withDisplay(c)!) };
}
function fixed(tag: string, code: string, system: string, display: string, extra?: X['a']): X {
  const d = describeCodeSystem(system);
  return el(tag, { ...extra, code, codeSystem: d.oid ?? system, codeSystemName: d.cdaName, displayName: display });
}

let unitsByLowerCase: Map<string, string> | undefined;
/**
 * The eHDSIUnit spelling of a UCUM unit written with the wrong case (`ml` for `mL`), or undefined when the unit
 * is in eHDSIUnit already or has no case-insensitive equivalent there. UCUM units are case-sensitive, but no
 * two units of eHDSIUnit differ by case only except where listed, so a unique match is the unit meant.
 */
export function normalUnit(unit: string): string | undefined {
  if (!unitsByLowerCase) {
    unitsByLowerCase = new Map();
    const dup = new Set<string>();
    for (const k of valueSetMembers(VS.unit) ?? []) {
      if (!k.startsWith('http://unitsofmeasure.org|')) continue;
      const u = k.slice('http://unitsofmeasure.org|'.length);
      const l = u.toLowerCase();
      if (unitsByLowerCase.has(l)) dup.add(l);
      unitsByLowerCase.set(l, u);
    }
    for (const l of dup) unitsByLowerCase.delete(l);
  }
  if (inValueSet(VS.unit, 'http://unitsofmeasure.org', unit) !== false) return undefined;
  const u = unitsByLowerCase.get(unit.toLowerCase());
  return u && u !== unit ? u : undefined;
}

/**
 * A PQ. `unitBound`: the element's unit is bound to eHDSIUnit (a medication's doseQuantity): a UCUM unit that is
 * neither in it, nor a case variant of one of its units, nor an annotation or `1`, cannot be written as the unit;
 * the quantity is then `nullFlavor="OTH"` (the value is outside the permitted set) with the quantity as the source
 * wrote it in a PQR translation (dtr1-1-ANY allows a translation under OTH).
 */
function pq(tag: string, q: Quantity | undefined, xsiType?: string, unitBound = false): X {
  if (!q || q.value === undefined) return el(tag, { ...(xsiType ? { 'xsi:type': xsiType } : {}), nullFlavor: 'UNK' });
  const ucum = !q.system || q.system === 'http://unitsofmeasure.org';
  let unit = ucum ? (q.code ?? q.unit ?? '1') : '1';
  const tr = !ucum && q.code ? [el('translation', { value: q.value, code: q.code, codeSystem: describeCodeSystem(q.system!).oid ?? '2.999' })] : [];
  const asWritten = () => el('translation', { value: q.value, code: unit, codeSystem: UCUM_OID, codeSystemName: 'UCUM', displayName: unit });
  // A UCUM unit outside eHDSIUnit only by its case is written in the eHDSIUnit form, the original kept as a
  // PQR translation (same value, the unit as written in the source).
  const fixedCase = ucum ? normalUnit(unit) : undefined;
  if (fixedCase) {
    tr.push(asWritten());
    unit = fixedCase;
  } else if (unitBound && ucum && unit !== '1' && !/^\{.*\}$/.test(unit) && inValueSet(VS.unit, 'http://unitsofmeasure.org', unit) === false) {
    return el(tag, { ...(xsiType ? { 'xsi:type': xsiType } : {}), nullFlavor: 'OTH' }, asWritten());
  }
  return el(tag, { ...(xsiType ? { 'xsi:type': xsiType } : {}), value: q.value, unit }, ...tr);
}
const UCUM_OID = '2.16.840.1.113883.6.8';

function textOfConcept(cc: CodeableConcept | undefined, lang: string): string {
  if (!cc) return '';
  if (cc.text) return cc.text;
  const c = cc.coding?.[0];
  if (!c) return '';
  return (c.system && c.code ? designation(c.system, c.code, lang) : undefined) ?? c.display ?? c.code ?? '';
}

const fmtDate = (v: string | undefined) => v ?? '';
const fmtQ = (q: Quantity | undefined) => (q?.value !== undefined ? `${q.value} ${q.unit ?? q.code ?? ''}`.trim() : '');

// -- the document -------------------------------------------------------------------------------------------------

class Resolver {
  private readonly byRef = new Map<string, Resource>();
  constructor(bundle: Bundle) {
    for (const e of bundle.entry ?? []) {
      const r = e.resource;
      if (!r) continue;
      if (e.fullUrl) this.byRef.set(e.fullUrl, r);
      if (r.id) this.byRef.set(`${r.resourceType}/${r.id}`, r);
    }
  }
  get<T extends Resource>(ref: Reference | undefined): T | undefined {
    if (!ref?.reference) return undefined;
    return this.byRef.get(ref.reference) as T | undefined;
  }
}

interface Ctx {
  lang: string;
  L: ReturnType<typeof labels>;
  res: Resolver;
  sectionIndex: number;
  n: number;
  authorRef?: Reference;
  /** CareTeams of the Bundle by the Condition they look after (reasonReference): eHDSI care team acts (3.48). */
  careTeams: Map<Resource, CareTeam[]>;
}

/** Converts a LU PS document Bundle into the pivot CDA XML string. */
export function bundleToCda(bundle: Bundle, opts: ToCdaOptions = {}): string {
  return serialize(bundleToCdaTree(bundle, opts), opts.pretty ?? true);
}

export function bundleToCdaTree(bundle: Bundle, opts: ToCdaOptions = {}): X {
  if (bundle?.resourceType !== 'Bundle') throw badRequest('Expected a Bundle resource', ['Bundle']);
  if (bundle.type !== 'document') throw badRequest(`Bundle.type is '${bundle.type}': a Patient Summary is a document Bundle`, ['Bundle.type']);
  const comp = bundle.entry?.[0]?.resource as Composition | undefined;
  if (comp?.resourceType !== 'Composition') throw badRequest('The first entry of a document Bundle must be a Composition', ['Bundle.entry[0].resource']);
  const typeCode = comp.type?.coding?.find((c) => c.system === LOINC_URI)?.code;
  if (typeCode !== PATIENT_SUMMARY_LOINC) throw unprocessable([{ severity: 'error', code: 'business-rule', diagnostics: `Composition.type is ${typeCode ?? 'not LOINC'}: only a Patient Summary (LOINC 60591-5) becomes an eHDSI pivot`, expression: ['Composition.type'] }]);
  const res = new Resolver(bundle);
  const patient = res.get<Patient>(comp.subject);
  if (patient?.resourceType !== 'Patient') throw unprocessable([{ severity: 'error', code: 'required', diagnostics: 'Composition.subject does not resolve to a Patient in the Bundle', expression: ['Composition.subject'] }]);
  const lang = comp.language ?? bundle.language ?? opts.language ?? 'fr-LU';
  const ctx: Ctx = { lang, L: labels(lang), res, sectionIndex: 0, n: 0, authorRef: comp.author?.[0], careTeams: new Map() };
  for (const e of bundle.entry ?? []) {
    // A team entered in error never looked after the condition: the pivot has no status that says "void" for a
    // care team act (statusCode normal/active/completed/suspended all assert it existed), so it is not written.
    if (e.resource?.resourceType !== 'CareTeam' || e.resource.status === 'entered-in-error') continue;
    for (const r of e.resource.reasonReference ?? []) {
      const c = res.get<Condition>(r);
      if (c?.resourceType !== 'Condition') continue;
      // One act per team and condition, however often the team's reasonReference names it.
      const teams = ctx.careTeams.get(c) ?? [];
      if (!teams.includes(e.resource)) ctx.careTeams.set(c, [...teams, e.resource]);
    }
  }

  const header: X[] = [
    el('typeId', { root: '2.16.840.1.113883.1.3', extension: 'POCD_HD000040' }),
    tid(PS_TEMPLATE),
    bundle.identifier?.value ? ii(bundle.identifier) : el('id', { root: randomUUID().toUpperCase() }),
    fixed('code', PATIENT_SUMMARY_LOINC, LOINC_URI, 'Patient summary Document'),
    el('title', undefined, comp.title ?? 'Patient Summary'),
    ts('effectiveTime', comp.date ?? bundle.timestamp),
    fixed('confidentialityCode', comp.confidentiality ?? 'N', 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', { N: 'normal', R: 'restricted', V: 'very restricted', L: 'low', M: 'moderate', U: 'unrestricted' }[comp.confidentiality ?? 'N'] ?? 'normal'),
    el('languageCode', { code: lang }),
    comp.identifier?.value ? ii(comp.identifier, 'setId') : undefined,
    recordTarget(patient, ctx),
    ...author(comp, ctx),
    custodian(comp, ctx),
    legalAuthenticator(comp, ctx),
    ...participants(patient, ctx),
    documentationOf(comp, ctx),
    el('relatedDocument', { typeCode: 'XFRM' }, el('parentDocument', undefined, bundle.identifier?.value ? ii(bundle.identifier) : el('id', { root: isUuid(comp.id) ? comp.id.toUpperCase() : randomUUID().toUpperCase() }))),
  ].filter((h): h is X => !!h);

  const present = new Map<string, CompositionSection>();
  for (const s of comp.section ?? []) {
    const code = s.code?.coding?.find((c) => c.system === LOINC_URI)?.code;
    if (code && SECTIONS[code] && !present.has(code)) present.set(code, s);
  }
  const order = [...MANDATORY, ...Object.keys(SECTIONS).filter((c) => !MANDATORY.includes(c))];
  const sections: X[] = [];
  for (const code of order) {
    const s = present.get(code);
    if (!s && !MANDATORY.includes(code)) continue;
    ctx.sectionIndex++;
    const built = section(code, s, ctx);
    if (built) sections.push(el('component', undefined, built));
  }
  return el(
    'ClinicalDocument',
    { xmlns: 'urn:hl7-org:v3', 'xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance', 'xmlns:pharm': 'urn:hl7-org:pharm', classCode: 'DOCCLIN', moodCode: 'EVN' },
    ...header,
    el('component', undefined, el('structuredBody', undefined, ...sections)),
  );
}

function recordTarget(p: Patient, ctx: Ctx): X {
  const ids = (p.identifier ?? []).filter((i) => i.value);
  // The national identification number (matricule) first.
  ids.sort((a, b) => Number(b.system === MATRICULE_SYSTEM) - Number(a.system === MATRICULE_SYSTEM));
  const gender = ({ male: 'M', female: 'F', other: 'UN' } as Record<string, string>)[p.gender ?? ''];
  const genderName = ({ M: 'Male', F: 'Female', UN: 'Undifferentiated' } as Record<string, string>)[gender ?? ''];
  const langs = (p.communication ?? []).map((c) => ({ code: c.language.coding?.[0]?.code, mode: readCdaExt(c, 'modeCode') })).filter((c): c is { code: string; mode: CodeableConcept | undefined } => !!c.code);
  // A gender code FHIR has no value for (2-5678-W2 `MM`, kept in cda-code `administrativeGender`) is not written:
  // eHDSIAdministrativeGender has M, F, UN only and its rule refuses nullFlavor OTH, the one null that could carry
  // the code as translation; it stays in FHIR and the CDA says UNK.
  void ctx;
  return el(
    'recordTarget',
    undefined,
    el(
      'patientRole',
      undefined,
      ...(ids.length ? ids.map((i) => ii(i)) : [el('id', { nullFlavor: 'NI' })]),
      addr(p.address?.[0]),
      ...telecoms(p.telecom),
      el(
        'patient',
        undefined,
        name(p.name?.find((n) => n.use === 'official') ?? p.name?.[0]),
        gender ? el('administrativeGenderCode', { code: gender, codeSystem: '2.16.840.1.113883.5.1', codeSystemName: 'AdministrativeGender', displayName: genderName }) : el('administrativeGenderCode', { nullFlavor: 'UNK' }),
        p.birthDate ? ts('birthTime', p.birthDate) : el('birthTime', { nullFlavor: 'NI' }),
        p.maritalStatus?.coding?.length ? toCD(displayed(p.maritalStatus), { tag: 'maritalStatusCode', noOriginalText: true }) : undefined,
        ...(p.contact ?? []).filter(isGuardian).map(guardian),
        ...langs.map((l) =>
          el(
            'languageCommunication',
            undefined,
            el('languageCode', { code: l.code.length === 2 ? `${l.code}-${(p.address?.[0]?.country ?? 'LU').toUpperCase()}` : l.code }),
            l.mode?.coding?.length ? toCD(displayed(l.mode), { tag: 'modeCode', noOriginalText: true }) : undefined,
          ),
        ),
      ),
    ),
  );
}

const ROLE_CLASS = 'http://terminology.hl7.org/CodeSystem/v3-RoleClass';
/** A Patient.contact read from a CDA guardian (role class GUARD). */
const isGuardian = (c: NonNullable<Patient['contact']>[number]) => !!c.relationship?.some((r) => r.coding?.some((k) => k.system === ROLE_CLASS && k.code === 'GUARD'));

/**
 * A guardian (IHE template 1.3.6.1.4.1.19376.1.5.3.1.2.4, as eHDSIRecordTarget wants it): relationship code bound to
 * eHDSIPersonalRelationship (another code, e.g. RoleCode GUARD, is nullFlavor OTH with the code as translation),
 * address, telecoms, the guardian's name.
 */
function guardian(c: NonNullable<Patient['contact']>[number]): X {
  const codings = (c.relationship ?? []).flatMap((r) => r.coding ?? []).filter((k) => k.system !== ROLE_CLASS);
  return el(
    'guardian',
    { classCode: 'GUARD' },
    tid('1.3.6.1.4.1.19376.1.5.3.1.2.4'),
    codings.length ? toCD({ coding: codings.map((k) => withDisplay(k)) }, { tag: 'code', valueSet: VS.personalRelationship, noOriginalText: true }) : undefined,
    addr(c.address),
    ...telecoms(c.telecom),
    el('guardianPerson', undefined, name(c.name)),
  );
}

function organization(o: Organization | undefined, tag: string): X {
  const tels = telecoms(o?.telecom);
  return el(
    tag,
    undefined,
    idForResource(o, '1.3.182.4.11'),
    el('name', undefined, o?.name ?? 'Unknown'),
    // The custodian carries at most one telecom (eHDSICustodian).
    ...(tag === 'representedCustodianOrganization' ? tels.slice(0, 1) : tels),
    addr(o?.address?.[0] ?? { country: 'LU' }),
  );
}

function person(ref: Reference | undefined, ctx: Ctx): { pract?: Practitioner; org?: Organization; role?: PractitionerRole } {
  const r = ctx.res.get<Practitioner | PractitionerRole | Organization>(ref);
  if (r?.resourceType === 'PractitionerRole') return { role: r, pract: ctx.res.get<Practitioner>(r.practitioner), org: ctx.res.get<Organization>(r.organization) };
  if (r?.resourceType === 'Practitioner') return { pract: r };
  if (r?.resourceType === 'Organization') return { org: r };
  return {};
}

function assigned(tag: string, who: ReturnType<typeof person>, ctx: Ctx, custodianOrg: Organization | undefined, withCode: boolean): X {
  const p = who.pract;
  const org = who.org ?? custodianOrg;
  const role = who.role?.code?.[0]?.coding?.find((c) => inValueSet(VS.healthcareProfessionalRole, c.system, c.code));
  void ctx;
  return el(
    tag,
    undefined,
    idForResource(p ?? org, '1.3.182.4.10'),
    withCode ? (role ? toCD({ coding: [withDisplay(role)!] }, { tag: 'code', noOriginalText: true }) : fixed('code', '221', 'urn:oid:2.16.840.1.113883.2.9.6.2.7', 'Medical doctors')) : undefined,
    addr(p?.address?.[0] ?? org?.address?.[0] ?? { country: 'LU' }),
    ...telecoms(p?.telecom ?? org?.telecom),
    el('assignedPerson', undefined, name(p?.name?.[0] ?? { family: 'Unknown', given: ['Unknown'] })),
    organization(org, 'representedOrganization'),
  );
}

function author(comp: Composition, ctx: Ctx): X[] {
  const custodianOrg = ctx.res.get<Organization>(comp.custodian);
  const list = comp.author?.length ? comp.author : [undefined];
  return list.map((a) => el('author', undefined, ts('time', comp.date), assigned('assignedAuthor', person(a, ctx), ctx, custodianOrg, true)));
}

function custodian(comp: Composition, ctx: Ctx): X {
  const org = ctx.res.get<Organization>(comp.custodian);
  return el('custodian', undefined, el('assignedCustodian', undefined, organization(org, 'representedCustodianOrganization')));
}

function legalAuthenticator(comp: Composition, ctx: Ctx): X | undefined {
  const att = comp.attester?.find((a) => a.mode === 'legal') ?? comp.attester?.[0];
  const custodianOrg = ctx.res.get<Organization>(comp.custodian);
  const who = person(att?.party ?? comp.author?.[0], ctx);
  return el('legalAuthenticator', undefined, ts('time', att?.time ?? comp.date), el('signatureCode', { code: 'S' }), assigned('assignedEntity', who, ctx, custodianOrg, false));
}

function participants(p: Patient, ctx: Ctx): X[] {
  const out: X[] = [];
  for (const c of p.contact ?? []) {
    // Guardians are written in recordTarget (guardian), not as participants.
    if (isGuardian(c)) continue;
    const rel = c.relationship?.flatMap((r) => r.coding ?? []).find((k) => inValueSet(VS.personalRelationship, k.system, k.code));
    const ecn = c.relationship?.some((r) => r.coding?.some((k) => ['C', 'EP'].includes(k.code ?? '')));
    out.push(
      el(
        'participant',
        { typeCode: 'IND' },
        tid('1.3.6.1.4.1.19376.1.5.3.1.2.4'),
        el(
          'associatedEntity',
          { classCode: rel ? 'NOK' : ecn ? 'ECON' : 'PRS' },
          rel ? toCD({ coding: [withDisplay(rel)!] }, { tag: 'code', noOriginalText: true }) : undefined,
          addr(c.address ?? { country: 'LU' }),
          ...telecoms(c.telecom),
          el('associatedPerson', undefined, name(c.name ?? { family: 'Unknown', given: ['Unknown'] })),
        ),
      ),
    );
  }
  for (const gp of p.generalPractitioner ?? []) {
    const who = person(gp, ctx);
    if (!who.pract) continue;
    out.push(
      el(
        'participant',
        { typeCode: 'IND' },
        tid('1.3.6.1.4.1.19376.1.5.3.1.2.4'),
        el('associatedEntity', { classCode: 'PRS' }, addr(who.pract.address?.[0] ?? { country: 'LU' }), ...telecoms(who.pract.telecom), el('associatedPerson', undefined, name(who.pract.name?.[0]))),
      ),
    );
  }
  if (!out.length) {
    // eHDSI requires a contact participant: with no patient contact and no GP, the document author is given as the
    // health professional to contact about the patient.
    const who = person(ctx.authorRef, ctx);
    const pr = who.pract;
    out.push(
      el(
        'participant',
        { typeCode: 'IND' },
        tid('1.3.6.1.4.1.19376.1.5.3.1.2.4'),
        el('associatedEntity', { classCode: 'PRS' }, addr(pr?.address?.[0] ?? who.org?.address?.[0] ?? { country: 'LU' }), ...telecoms(pr?.telecom ?? who.org?.telecom), el('associatedPerson', undefined, name(pr?.name?.[0] ?? { family: 'Unknown', given: ['Unknown'] }))),
      ),
    );
  }
  return out;
}

function documentationOf(comp: Composition, ctx: Ctx): X {
  const ev = comp.event?.[0]?.period;
  const who = person(comp.author?.[0], ctx);
  const custodianOrg = ctx.res.get<Organization>(comp.custodian);
  return el(
    'documentationOf',
    { typeCode: 'DOC' },
    el(
      'serviceEvent',
      { classCode: 'PCPR', moodCode: 'EVN' },
      el('effectiveTime', undefined, ev?.start && fhirToTs(ev.start) !== fhirToTs(ev?.end ?? comp.date) ? ts('low', ev.start) : undefined, ts('high', ev?.end ?? comp.date)),
      who.pract ? el('performer', { typeCode: 'PRF' }, fixed('functionCode', '221', 'urn:oid:2.16.840.1.113883.2.9.6.2.7', 'Medical doctors'), assigned('assignedEntity', who, ctx, custodianOrg, false)) : undefined,
    ),
  );
}

// -- sections -------------------------------------------------------------------------------------------------------

function entries(s: CompositionSection | undefined, ctx: Ctx): Resource[] {
  return (s?.entry ?? []).map((r) => ctx.res.get(r)).filter((r): r is Resource => !!r);
}

/** An IPS "absent/unknown" code on a resource (no-known-*, no-*-info). */
function absentCode(cc: CodeableConcept | undefined): Coding | undefined {
  return cc?.coding?.find((c) => c.system === IPS_ABSENT_URI);
}

function section(code: string, s: CompositionSection | undefined, ctx: Ctx): X | undefined {
  const def = SECTIONS[code]!;
  const L = ctx.L;
  const title = s?.title ?? L[def.key] ?? def.title;
  const built = buildEntries(def.key, entries(s, ctx), s, ctx);
  // eHDSIResults needs at least one entry (a blood group or a result organizer): a results section with none is left out.
  if (def.key === 'results' && !built.entries.length) return undefined;
  return el(
    'section',
    { classCode: 'DOCSECT', moodCode: 'EVN' },
    tid(def.template),
    ...(def.extra ?? []).map(tid),
    el('id', { root: randomUUID().toUpperCase() }),
    fixed('code', code, LOINC_URI, def.title),
    el('title', undefined, title),
    el('text', undefined, ...built.narrative),
    ...built.entries.map((e) => (e.n === 'entry' ? e : el('entry', { typeCode: e.n === 'observation' && def.key === 'pregnancy' ? 'COMP' : undefined }, e))),
  );
}

interface Built {
  narrative: X[];
  entries: X[];
}

function buildEntries(key: string, rs: Resource[], s: CompositionSection | undefined, ctx: Ctx): Built {
  const sid = `s${ctx.sectionIndex}`;
  const empty = (kind: 'none' | 'noinfo', r?: Resource) => emptyEntry(key, kind, sid, ctx, r);
  const emptyReason = s?.emptyReason?.coding?.[0]?.code;
  if (!rs.length) {
    if (['medication', 'allergies', 'problems', 'procedures', 'devices'].includes(key)) return empty(emptyReason === 'nilknown' ? 'none' : 'noinfo');
    const text = s?.text?.div ? stripXhtml(s.text.div) : ctx.L.noInfo;
    return { narrative: [paragraph(text || ctx.L.noInfo, `${sid}-none`)], entries: [] };
  }
  switch (key) {
    case 'medication': {
      const abs = rs.find((r) => r.resourceType === 'MedicationStatement' && absentCode((r as MedicationStatement).medicationCodeableConcept));
      if (abs) return empty(absentKind(absentCode((abs as MedicationStatement).medicationCodeableConcept)), abs);
      return medications(rs.filter((r): r is MedicationStatement => r.resourceType === 'MedicationStatement'), sid, ctx);
    }
    case 'allergies': {
      const abs = rs.find((r) => r.resourceType === 'AllergyIntolerance' && absentCode((r as AllergyIntolerance).code));
      if (abs) return empty(absentKind(absentCode((abs as AllergyIntolerance).code)), abs);
      return allergies(rs.filter((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance'), sid, ctx);
    }
    case 'problems':
    case 'pastIllness': {
      const abs = rs.find((r) => r.resourceType === 'Condition' && absentCode((r as Condition).code));
      if (abs && key === 'problems') return empty(absentKind(absentCode((abs as Condition).code)), abs);
      return problems(rs.filter((r): r is Condition => r.resourceType === 'Condition' && !absentCode((r as Condition).code)), sid, ctx, key === 'pastIllness');
    }
    case 'procedures': {
      const abs = rs.find((r) => r.resourceType === 'Procedure' && absentCode((r as Procedure).code));
      if (abs) return empty(absentKind(absentCode((abs as Procedure).code)), abs);
      return procedures(rs.filter((r): r is Procedure => r.resourceType === 'Procedure'), sid, ctx);
    }
    case 'devices': {
      const dus = rs.filter((r): r is DeviceUseStatement => r.resourceType === 'DeviceUseStatement');
      const abs = dus.find((d) => absentCode(ctx.res.get<Device>(d.device)?.type));
      if (abs) return empty(absentKind(absentCode(ctx.res.get<Device>(abs.device)?.type)), abs);
      return devices(dus, sid, ctx);
    }
    case 'immunizations':
      return immunizations(rs.filter((r): r is Immunization => r.resourceType === 'Immunization'), sid, ctx);
    case 'vitals':
      return vitals(rs.filter((r): r is Observation => r.resourceType === 'Observation'), sid, ctx);
    case 'functional':
      return observations(key, rs.map(impressionAsObservation).filter((r): r is Observation => r?.resourceType === 'Observation'), sid, ctx);
    case 'results':
      return results(rs.filter((r): r is Observation => r.resourceType === 'Observation'), sid, ctx);
    case 'social':
    case 'pregnancy':
      return observations(key, rs.filter((r): r is Observation => r.resourceType === 'Observation'), sid, ctx);
    default: {
      // Plan of care and advance directives: narrative only (the eHDSI templates have no coded entries for them).
      const text = s?.text?.div ? stripXhtml(s.text.div) : rs.map((r) => describe(r, ctx)).join('; ');
      return { narrative: [paragraph(text || ctx.L.noInfo, `${sid}-text`)], entries: [] };
    }
  }
}

/** Functional status: a ClinicalImpression (IPS) is written as the assessed observation it records. */
function impressionAsObservation(r: Resource): Observation | undefined {
  if (r.resourceType === 'Observation') return r as Observation;
  if (r.resourceType !== 'ClinicalImpression') return undefined;
  const ci = r as ClinicalImpression;
  return {
    resourceType: 'Observation',
    id: ci.id,
    status: 'final',
    code: ci.code ?? { text: ci.description ?? 'Functional status' },
    ...(ci.effectiveDateTime ? { effectiveDateTime: ci.effectiveDateTime } : {}),
    ...(ci.effectivePeriod ? { effectivePeriod: ci.effectivePeriod } : {}),
    ...(ci.finding?.[0]?.itemCodeableConcept ? { valueCodeableConcept: ci.finding[0].itemCodeableConcept } : {}),
  };
}

function describe(r: Resource, ctx: Ctx): string {
  if (r.resourceType === 'CarePlan') return (r as CarePlan).title ?? (r as CarePlan).description ?? '';
  if (r.resourceType === 'Consent') return textOfConcept((r as Consent).category?.[0], ctx.lang);
  const div = (r as unknown as { text?: { div?: string } }).text?.div;
  return div ? stripXhtml(div) : r.resourceType;
}

function stripXhtml(div: string): string {
  return div.replace(/<[^>]+>/g, ' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&').replace(/\s+/g, ' ').trim();
}

function nid(ctx: Ctx, sid: string): string {
  ctx.n++;
  return `${sid}-${ctx.n}`;
}

function entryId(r: Resource): X {
  return isUuid(r.id) ? el('id', { root: r.id!.toUpperCase() }) : el('id', { root: randomUUID().toUpperCase() });
}

const absentDisplay: Record<string, string> = {
  'no-known-medications': 'No known medications', 'no-medication-info': 'No information about medications',
  'no-known-allergies': 'No known allergies', 'no-allergy-info': 'No information about allergies',
  'no-known-problems': 'No known problems', 'no-problem-info': 'No information about problems',
  'no-known-procedures': 'No known procedures', 'no-procedure-info': 'No information about procedures',
  'no-known-devices': 'No known devices in use', 'no-device-info': 'No information about devices',
  'no-known-medication-allergies': 'No known medication allergies', 'no-known-environmental-allergies': 'No known environmental allergies', 'no-known-food-allergies': 'No known food allergies',
};

/** 'none' for an IPS no-known-* code (including a misspelt one such as `no-known-procedure`), else 'noinfo'. */
function absentKind(c: Coding | undefined): 'none' | 'noinfo' {
  return c?.code?.startsWith('no-known') ? 'none' : 'noinfo';
}

/** The absent/unknown concept of an IPS "no known" / "no information" resource. */
function absentConcept(r: Resource | undefined, ctx: Ctx): CodeableConcept | undefined {
  switch (r?.resourceType) {
    case 'MedicationStatement':
      return (r as MedicationStatement).medicationCodeableConcept;
    case 'AllergyIntolerance':
      return (r as AllergyIntolerance).code;
    case 'Condition':
      return (r as Condition).code;
    case 'Procedure':
      return (r as Procedure).code;
    case 'DeviceUseStatement':
      return ctx.res.get<Device>((r as DeviceUseStatement).device)?.type;
    default:
      return undefined;
  }
}

const ABSENT_VS: Record<string, string> = { medication: VS.absentMedication, allergies: VS.absentAllergy, problems: VS.absentProblem, procedures: VS.absentProcedure, devices: VS.absentDevice };

/**
 * The eHDSI "no known" / "no information" entry of a mandatory section. The code is the resource's own IPS code
 * when eHDSI's value set has it (no-known-medication-allergies...), else the generic one of the kind; every other
 * coding of the resource (an older wave's SNOMED CT code, a misspelt IPS code) travels as translation, and the
 * structural codes an older wave wrote (allergy type, problem type, kept in cda-code) come back as they were.
 */
function emptyEntry(key: string, kind: 'none' | 'noinfo', sid: string, ctx: Ctx, r?: Resource): Built {
  const L = ctx.L;
  const id = `${sid}-none`;
  const concept = absentConcept(r, ctx);
  const own = absentCode(concept)?.code;
  const code = (known: string, info: string) => (own && ABSENT_VS[key] && inValueSet(ABSENT_VS[key]!, IPS_ABSENT_URI, own) ? own : kind === 'none' ? known : info);
  const absent = (tag: string, c: string, extra?: X['a']) =>
    el(tag, { ...extra, code: c, codeSystem: IPS_ABSENT, codeSystemName: 'IPS Absent and Unknown Data', displayName: absentDisplay[c] ?? c }, ...distinctTranslations({ system: IPS_ABSENT_URI, code: c }, concept?.coding ?? []));
  const ref = el('text', undefined, el('reference', { value: `#${id}` }));
  switch (key) {
    case 'medication': {
      const c = code('no-known-medications', 'no-medication-info');
      return {
        narrative: [paragraph(kind === 'none' ? L.noKnownMedication : L.noInfo, id)],
        entries: [
          el('substanceAdministration', { classCode: 'SBADM', moodCode: 'INT' }, tid(T('3.4')), tid('2.16.840.1.113883.10.20.1.24'), el('id', { root: randomUUID().toUpperCase() }), absent('code', c), ref, el('statusCode', { code: 'completed' }), el('effectiveTime', { 'xsi:type': 'IVL_TS', nullFlavor: 'UNK' }), el('effectiveTime', { nullFlavor: 'NA' }), el('consumable', undefined, el('manufacturedProduct', { classCode: 'MANU' }, tid(T('3.31')), el('manufacturedMaterial', { classCode: 'MMAT', determinerCode: 'KIND', nullFlavor: 'NA' }, tid(T('3.32')))))),
        ],
      };
    }
    case 'allergies': {
      const c = code('no-known-allergies', 'no-allergy-info');
      return {
        narrative: [paragraph(kind === 'none' ? L.noKnownAllergy : L.noInfo, id)],
        entries: [
          el('act', { classCode: 'ACT', moodCode: 'EVN' }, tid(T('3.16')), el('id', { root: randomUUID().toUpperCase() }), el('code', { code: 'CONC', codeSystem: '2.16.840.1.113883.5.6', codeSystemName: 'ActClass', displayName: 'Concern' }), el('statusCode', { code: 'active' }), el('effectiveTime', undefined, el('low', { nullFlavor: 'NA' })),
            el('entryRelationship', { typeCode: 'SUBJ', inversionInd: 'false' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.17')), el('id', { root: randomUUID().toUpperCase() }), keptCode(readCdaExt(r as AllergyIntolerance | undefined, 'type'), VS.adverseEventType, { system: 'http://snomed.info/sct', code: '609328004', display: 'Allergic disposition' }), ref, el('statusCode', { code: 'completed' }), el('effectiveTime', undefined, el('low', { nullFlavor: 'NA' })), absent('value', c, { 'xsi:type': 'CD' })))),
        ],
      };
    }
    case 'problems': {
      const c = code('no-known-problems', 'no-problem-info');
      return {
        narrative: [paragraph(kind === 'none' ? L.noKnownProblem : L.noInfo, id)],
        entries: [
          el('act', { classCode: 'ACT', moodCode: 'EVN' }, tid(T('3.15')), tid('2.16.840.1.113883.10.20.1.27'), el('id', { root: randomUUID().toUpperCase() }), el('code', { code: 'CONC', codeSystem: '2.16.840.1.113883.5.6', codeSystemName: 'ActClass', displayName: 'Concern' }), el('statusCode', { code: 'active' }), el('effectiveTime', undefined, el('low', { nullFlavor: 'NA' })),
            el('entryRelationship', { typeCode: 'SUBJ', inversionInd: 'false' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.7')), el('id', { root: randomUUID().toUpperCase() }), keptCode(readCdaExt(r as Condition | undefined, 'problemType'), VS.codeProb, { system: 'http://snomed.info/sct', code: '404684003', display: 'Clinical finding' }), ref, el('statusCode', { code: 'completed' }), el('effectiveTime', undefined, el('low', { nullFlavor: 'NA' })), absent('value', c, { 'xsi:type': 'CD' })))),
        ],
      };
    }
    case 'procedures': {
      const c = code('no-known-procedures', 'no-procedure-info');
      return {
        narrative: [paragraph(kind === 'none' ? L.noKnownProcedure : L.noInfo, id)],
        entries: [el('procedure', { classCode: 'PROC', moodCode: 'EVN' }, tid(T('3.26')), el('id', { root: randomUUID().toUpperCase() }), absent('code', c), ref, el('statusCode', { code: 'completed' }), el('effectiveTime', { nullFlavor: 'NA' }))],
      };
    }
    default: {
      const c = code('no-known-devices', 'no-device-info');
      return {
        narrative: [paragraph(kind === 'none' ? L.noKnownDevice : L.noInfo, id)],
        entries: [
          el('supply', { classCode: 'SPLY', moodCode: 'EVN' }, tid(T('3.5')), el('id', { root: randomUUID().toUpperCase() }), ref, el('effectiveTime', { 'xsi:type': 'IVL_TS' }, el('low', { nullFlavor: 'NA' })),
            el('participant', { typeCode: 'DEV' }, el('participantRole', { classCode: 'MANU' }, el('playingDevice', { classCode: 'DEV', determinerCode: 'INSTANCE' }, absent('code', c))))),
        ],
      };
    }
  }
}

/** The second effectiveTime of a medication (frequency): PIVL_TS, EIVL_TS from a timing event code, or null. */
function frequency(t: Timing | undefined): X {
  const r = t?.repeat;
  if (r?.period !== undefined && r.periodUnit) return el('effectiveTime', { 'xsi:type': 'PIVL_TS', institutionSpecified: 'true', operator: 'A' }, el('period', { value: Number((r.period / (r.frequency ?? 1)).toPrecision(12)), unit: r.periodUnit }));
  const ev = t?.code?.coding?.find((c) => c.system === 'http://terminology.hl7.org/CodeSystem/v3-TimingEvent' && c.code);
  if (ev) return el('effectiveTime', { 'xsi:type': 'EIVL_TS', operator: 'A' }, el('event', { code: ev.code, codeSystem: '2.16.840.1.113883.5.139', codeSystemName: 'TimingEvent' }));
  return el('effectiveTime', { 'xsi:type': 'PIVL_TS', institutionSpecified: 'true', operator: 'A' }, el('period', { nullFlavor: 'UNK' }));
}

function ratio(r: Ratio | undefined): X {
  if (!r?.numerator) return el('pharm:quantity', undefined, el('numerator', { 'xsi:type': 'PQ', nullFlavor: 'UNK' }), el('denominator', { 'xsi:type': 'PQ', nullFlavor: 'UNK' }));
  return el('pharm:quantity', undefined, pq('numerator', r.numerator, 'PQ'), pq('denominator', r.denominator ?? { value: 1, code: '1' }, 'PQ'));
}

/**
 * The package of a product (pharm:asContent): size (pharm:quantity) from Medication.amount, form from the extension
 * cda-code `packageForm` (eHDSIPackage).
 */
function packageOf(med: Medication | undefined): X | undefined {
  const form = readCdaExt(med, 'packageForm');
  const size = med?.amount?.numerator;
  // eHDSIPSManufacturedMaterial needs a non-null package quantity: without a size the package is not written.
  if (size?.value === undefined) return undefined;
  return el(
    'pharm:asContent',
    { classCode: 'CONT' },
    pq('pharm:quantity', size, 'PQ'),
    el('pharm:containerPackagedProduct', { classCode: 'CONT', determinerCode: 'KIND' }, form ? toCD(displayed(form), { tag: 'pharm:formCode', valueSet: VS.package }) : el('pharm:formCode', { nullFlavor: 'UNK' })),
  );
}

/**
 * The author of a medication entry (eHDSIAuthorPrescriber) from MedicationStatement.informationSource when it is a
 * PractitionerRole whose code is in eHDSIHealthcareProfessionalRole (the author's functionCode; no function code is
 * invented) with a Practitioner: time (dateAsserted), id, address, telecoms, the person's name (family and given
 * nullFlavored when unknown), the represented organization (nullFlavor NI when there is none).
 */
function prescriber(ms: MedicationStatement, ctx: Ctx): X | undefined {
  const who = person(ms.informationSource, ctx);
  const fn = who.role?.code?.flatMap((c) => c.coding ?? []).find((c) => inValueSet(VS.healthcareProfessionalRole, c.system, c.code));
  const p = who.pract;
  if (!fn || !p) return undefined;
  const n = p.name?.[0];
  const personName = n && (n.family || n.given?.length) ? name(n) : el('name', undefined, ...(n?.text ? [n.text] : []), el('given', { nullFlavor: 'UNK' }), el('family', { nullFlavor: 'UNK' }));
  return el(
    'author',
    { typeCode: 'AUT' },
    toCD({ coding: [withDisplay(fn)] }, { tag: 'functionCode', noOriginalText: true }),
    ts('time', ms.dateAsserted),
    el(
      'assignedAuthor',
      { classCode: 'ASSIGNED' },
      idForResource(p, '1.3.182.4.10'),
      addr(p.address?.[0]),
      ...telecoms(p.telecom),
      el('assignedPerson', { classCode: 'PSN', determinerCode: 'INSTANCE' }, personName),
      who.org ? organization(who.org, 'representedOrganization') : el('representedOrganization', { nullFlavor: 'NI' }),
    ),
  );
}

/** IHE and CCD templates of the instruction acts. */
const INSTRUCTION_TEMPLATES: Record<string, [string, string]> = { PINSTRUCT: ['1.3.6.1.4.1.19376.1.5.3.1.4.3', '2.16.840.1.113883.10.20.1.49'], FINSTRUCT: ['1.3.6.1.4.1.19376.1.5.3.1.4.3.1', '2.16.840.1.113883.10.20.1.43'] };

/** IHE instruction acts (patient / fulfillment instructions) from Dosage.additionalInstruction coded PINSTRUCT / FINSTRUCT, else patientInstruction. */
function instructionActs(dose: Dosage | undefined): X[] {
  const coded = (dose?.additionalInstruction ?? []).map((ai) => ({ ai, c: ai.coding?.find((c) => c.code === 'PINSTRUCT' || c.code === 'FINSTRUCT') })).filter((x) => x.c?.system);
  const items = coded.map(({ ai, c }) => ({ code: c!, text: ai.text }));
  if (!items.some((i) => i.code.code === 'PINSTRUCT') && dose?.patientInstruction) items.push({ code: { system: 'urn:oid:1.3.6.1.4.1.19376.1.5.3.2', code: 'PINSTRUCT' }, text: dose.patientInstruction });
  return items.map(({ code, text }) => {
    const d = describeCodeSystem(code.system!);
    return el(
      'entryRelationship',
      { typeCode: 'SUBJ', inversionInd: 'true' },
      el('act', { classCode: 'ACT', moodCode: 'INT' }, ...INSTRUCTION_TEMPLATES[code.code!]!.map(tid), el('code', { code: code.code, codeSystem: d.oid ?? '1.3.6.1.4.1.19376.1.5.3.2', displayName: code.code === 'PINSTRUCT' ? 'Patient instructions' : 'Fulfillment instructions' }), text ? el('text', undefined, text) : undefined, el('statusCode', { code: 'completed' })),
    );
  });
}

function medications(list: MedicationStatement[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  const notes: X[] = [];
  for (const ms of list) {
    const med = ctx.res.get<Medication>(ms.medicationReference);
    const code = med?.code ?? ms.medicationCodeableConcept;
    const rowId = nid(ctx, sid);
    const dose = ms.dosage?.[0];
    const routeId = `${rowId}-route`;
    const formId = `${rowId}-form`;
    const dq = dose?.doseAndRate?.[0]?.doseQuantity;
    const dr = dose?.doseAndRate?.[0]?.doseRange as Range | undefined;
    rows.push([
      { text: textOfConcept(code, ctx.lang) || (ms.medicationReference?.display ?? ''), id: `${rowId}-name` },
      { text: textOfConcept(med?.form, ctx.lang), id: formId },
      { text: (med?.ingredient ?? []).map((i) => `${textOfConcept(i.itemCodeableConcept, ctx.lang)} ${i.strength?.numerator ? fmtQ(i.strength.numerator) : ''}${i.strength?.denominator ? ` / ${fmtQ(i.strength.denominator)}` : ''}`.trim()).join(', ') },
      { text: dose?.text ?? fmtQ(dq) },
      { text: textOfConcept(dose?.route, ctx.lang), id: routeId },
      { text: fmtDate(ms.effectivePeriod?.start ?? ms.effectiveDateTime) },
    ]);
    const period = dose?.timing?.repeat;
    const ingredients = (med?.ingredient ?? []).filter((i) => i.itemCodeableConcept);
    // eHDSI needs a strength (value and unit) on every ingredient: an ingredient without one is written as the
    // product's generic kind (pharm:asSpecializedKind) when the product has none, else it stays in the narrative.
    const withStrength = ingredients.filter((i) => i.strength?.numerator?.value !== undefined);
    const noStrength = ingredients.filter((i) => i.strength?.numerator?.value === undefined);
    const generic = readCdaExt(med, 'generalizedMaterialKind') ?? noStrength[0]?.itemCodeableConcept;
    const ingrs = withStrength;
    out.push(
      el(
        'substanceAdministration',
        { classCode: 'SBADM', moodCode: 'INT' },
        tid(T('3.4')),
        tid('2.16.840.1.113883.10.20.1.24'),
        tid('1.3.6.1.4.1.19376.1.5.3.1.4.7.1'),
        entryId(ms),
        el('text', undefined, el('reference', { value: `#${rowId}-name` })),
        el('statusCode', { code: ms.status === 'completed' || ms.status === 'stopped' ? 'completed' : ms.status === 'on-hold' ? 'suspended' : 'active' }),
        ivl('effectiveTime', ms.effectivePeriod?.start ?? ms.effectiveDateTime, ms.effectivePeriod?.end),
        frequency(dose?.timing),
        dose?.route ? toCD(displayed(dose.route), { tag: 'routeCode', valueSet: VS.route, ref: routeId }) : undefined,
        dq ? pq('doseQuantity', dq, undefined, true) : dr ? el('doseQuantity', undefined, pq('low', dr.low, undefined, true), pq('high', dr.high, undefined, true)) : undefined,
        el(
          'consumable',
          undefined,
          el(
            'manufacturedProduct',
            { classCode: 'MANU' },
            tid(T('3.31')),
            el(
              'manufacturedMaterial',
              { classCode: 'MMAT', determinerCode: 'KIND' },
              tid(T('3.32')),
              code?.coding?.length ? toCD(displayed(code), { tag: 'code', ref: `${rowId}-name` }) : undefined,
              el('name', undefined, textOfConcept(code, ctx.lang) || ms.medicationReference?.display || 'Unknown'),
              med?.form ? toCD(displayed(med.form), { tag: 'pharm:formCode', valueSet: VS.doseForm, ref: formId }) : undefined,
              packageOf(med),
              generic
                ? el('pharm:asSpecializedKind', { classCode: 'GEN' }, el('pharm:generalizedMaterialKind', { classCode: 'MMAT', determinerCode: 'KIND' }, toCD(displayed(generic), { tag: 'pharm:code', valueSet: VS.activeIngredient })))
                : undefined,
              ...ingrs.map((i) =>
                el(
                  'pharm:ingredient',
                  { classCode: 'ACTI' },
                  ratio(i.strength),
                  el('pharm:ingredientSubstance', { classCode: 'MMAT', determinerCode: 'KIND' }, toCD(displayed(i.itemCodeableConcept), { tag: 'pharm:code', valueSet: VS.activeIngredient }), el('pharm:name', undefined, textOfConcept(i.itemCodeableConcept, ctx.lang) || 'Unknown')),
                ),
              ),
            ),
          ),
        ),
        prescriber(ms, ctx),
        ...instructionActs(dose),
        ...commentActs(ms.note, ctx, sid, notes),
        ...(ms.reasonCode ?? []).map((r) =>
          el('entryRelationship', { typeCode: 'RSON' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.41')), tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'), el('id', { root: randomUUID().toUpperCase() }), fixed('code', '64572001', 'http://snomed.info/sct', 'Disease'), el('text', undefined, el('reference', { value: `#${rowId}-name` })), el('statusCode', { code: 'completed' }), el('effectiveTime', { nullFlavor: 'UNK' }), toCD(displayed(r), { tag: 'value', xsiType: 'CE', valueSet: VS.illness, noOriginalText: true }))),
        ),
        ...(ms.reasonReference ?? []).map((ref) => ctx.res.get<Condition>(ref)).filter((c): c is Condition => !!c?.code).map((c) =>
          el('entryRelationship', { typeCode: 'RSON' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.41')), tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'), el('id', { root: randomUUID().toUpperCase() }), fixed('code', '64572001', 'http://snomed.info/sct', 'Disease'), el('text', undefined, el('reference', { value: `#${rowId}-name` })), el('statusCode', { code: 'completed' }), el('effectiveTime', { nullFlavor: 'UNK' }), toCD(displayed(c.code), { tag: 'value', xsiType: 'CE', valueSet: VS.illness, noOriginalText: true }))),
        ),
      ),
    );
  }
  return { narrative: [table([L.name, L.form, L.strength, L.dose, L.route, L.since], rows), ...notes], entries: out };
}

function allergies(list: AllergyIntolerance[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  const notes: X[] = [];
  for (const a of list) {
    const rowId = nid(ctx, sid);
    const reaction = a.reaction?.[0];
    const manifest = reaction?.manifestation?.[0];
    rows.push([
      { text: textOfConcept(a.code, ctx.lang), id: `${rowId}-agent` },
      { text: textOfConcept(manifest, ctx.lang), id: `${rowId}-reaction` },
      { text: reaction?.severity ?? '' },
      { text: a.criticality ?? '' },
      { text: fmtDate(a.onsetDateTime) },
    ]);
    const keptType = readCdaExt(a, 'type');
    const kept = keptType?.coding?.find((c) => inValueSet(VS.adverseEventType, c.system, c.code));
    const typeCode = kept?.code ?? (a.type === 'intolerance' ? '782197009' : a.type === 'allergy' ? '609328004' : '420134006');
    // An original type code outside eHDSIAdverseEventType (older waves) travels as translation.
    const typeTranslations = distinctTranslations({ system: 'http://snomed.info/sct', code: kept?.code ?? (a.type === 'intolerance' ? '782197009' : a.type === 'allergy' ? '609328004' : '420134006') }, keptType?.coding ?? []);
    const typeDisplay: Record<string, string> = { '782197009': 'Intolerance to substance', '609328004': 'Allergic disposition', '420134006': 'Propensity to adverse reaction' };
    const drug = a.category?.includes('medication');
    // A severity outside mild / moderate / severe (kept in cda-code, any code system) goes through eHDSISeverity.
    const sevKept = readCdaExt(reaction, 'severity');
    const sevCode = reaction?.severity ? { mild: ['255604002', 'Mild'], moderate: ['6736007', 'Moderate'], severe: ['24484000', 'Severe'] }[reaction.severity] : undefined;
    const sev = sevKept?.coding?.length ? toCD(displayed(sevKept), { tag: 'value', xsiType: 'CD', valueSet: VS.severity, noOriginalText: true }) : sevCode ? el('value', { 'xsi:type': 'CD', code: sevCode[0], codeSystem: SCT, codeSystemName: 'SNOMED CT', displayName: sevCode[1] }) : undefined;
    // The interpretation codes of a severity observation (CCD: S / N), kept in cda-code: the observation's own
    // interpretationCode, which neither eHDSISeverity nor the IHE severity entry constrains.
    const interpretations = (r: { extension?: Extension[] } | undefined) => readCdaExts(r, 'severityInterpretation').map((i) => toCD(displayed(i), { tag: 'interpretationCode', noOriginalText: true }));
    // An allergy-level severity beside the reaction's (kept in cda-code on the AllergyIntolerance): the IHE severity
    // entry (1.3.6.1.4.1.19376.1.5.3.1.4.1) under the allergy observation, as IHE PCC's allergy entry, the parent of
    // eHDSIAllergiesAndIntolerances, allows; the eHDSI template leaves it open (validator: 0 errors).
    const overallKept = readCdaExt(a, 'severity');
    const overall = overallKept?.coding?.length ? severityObservation(toCD(displayed(overallKept), { tag: 'value', xsiType: 'CD', valueSet: VS.severity, noOriginalText: true }), interpretations(a)) : undefined;
    const crit = a.criticality;
    const clin = a.clinicalStatus?.coding?.[0];
    const ver = a.verificationStatus?.coding?.[0];
    const obsTime = a.onsetDateTime ?? a.onsetPeriod?.start;
    out.push(
      el(
        'act',
        { classCode: 'ACT', moodCode: 'EVN' },
        tid(T('3.16')),
        entryId(a),
        el('code', { code: 'CONC', codeSystem: '2.16.840.1.113883.5.6', codeSystemName: 'ActClass', displayName: 'Concern' }),
        el('statusCode', { code: clin?.code === 'active' ? 'active' : 'completed' }),
        ivl('effectiveTime', a.recordedDate ?? obsTime, clin?.code && clin.code !== 'active' ? a.lastOccurrence : undefined, false),
        el(
          'entryRelationship',
          { typeCode: 'SUBJ', inversionInd: 'false' },
          el(
            'observation',
            { classCode: 'OBS', moodCode: 'EVN' },
            tid(T('3.17')),
            el('id', { root: randomUUID().toUpperCase() }),
            el('code', { code: typeCode, codeSystem: SCT, codeSystemName: 'SNOMED CT', displayName: kept?.display ?? typeDisplay[typeCode] ?? typeCode }, ...typeTranslations),
            el('text', undefined, el('reference', { value: `#${rowId}-agent` })),
            el('statusCode', { code: 'completed' }),
            el('effectiveTime', undefined, obsTime ? ts('low', obsTime) : el('low', { nullFlavor: 'UNK' })),
            keptValue(readCdaExt(a, 'value')),
            recorderAuthor(a, ctx),
            informantOf(a, ctx),
            el(
              'participant',
              { typeCode: 'CSM' },
              el('participantRole', { classCode: 'MANU' }, el('playingEntity', { classCode: 'MMAT' }, toCD(displayed(a.code), { tag: 'code', valueSet: drug ? VS.activeIngredient : VS.allergenNoDrug, ref: `${rowId}-agent` }))),
            ),
            manifest
              ? el(
                  'entryRelationship',
                  { typeCode: 'MFST', inversionInd: 'true' },
                  el(
                    'observation',
                    { classCode: 'OBS', moodCode: 'EVN' },
                    tid(T('3.44')),
                    el('id', { root: randomUUID().toUpperCase() }),
                    keptCode(readCdaExt(reaction, 'reactionType'), VS.codeProb, { system: 'http://snomed.info/sct', code: '418799008', display: 'Finding reported by subject or history provider' }),
                    el('text', undefined, el('reference', { value: `#${rowId}-reaction` })),
                    el('statusCode', { code: 'completed' }),
                    el('effectiveTime', undefined, reaction?.onset ? ts('low', reaction.onset) : el('low', { nullFlavor: 'UNK' })),
                    toCD(displayed(manifest), { tag: 'value', xsiType: 'CD', valueSet: VS.reactionAllergy, ref: `${rowId}-reaction` }),
                    sev ? severityObservation(sev, interpretations(reaction)) : undefined,
                    ...commentActs(reaction?.note, ctx, sid, notes),
                  ),
                )
              : undefined,
            overall,
            // A criticality coded outside the FHIR codes (kept in cda-code) is not written: eHDSICriticalityObservation
            // wants a value from eHDSICriticality, with no nullFlavor.
            crit
              ? el('entryRelationship', { typeCode: 'SUBJ', inversionInd: 'true' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.33')), fixed('code', '82606-5', LOINC_URI, 'Allergy or intolerance criticality'), el('text', undefined, el('reference', { value: `#${rowId}-agent` })), el('statusCode', { code: 'completed' }), fixed('value', crit, 'http://hl7.org/fhir/allergy-intolerance-criticality', { low: 'Low Risk', high: 'High Risk', 'unable-to-assess': 'Unable to Assess Risk' }[crit] ?? crit, { 'xsi:type': 'CE' })))
              : undefined,
            ver?.code
              ? el('entryRelationship', { typeCode: 'SUBJ', inversionInd: 'true' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.35')), fixed('code', '66455-7', LOINC_URI, 'Allergy or intolerance certainty'), el('text', undefined, el('reference', { value: `#${rowId}-agent` })), el('statusCode', { code: 'completed' }), fixed('value', ver.code, 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', ver.display ?? ver.code, { 'xsi:type': 'CE' })))
              : undefined,
            // A status an older wave coded otherwise (SNOMED CT 55561003 "Active"...) travels as translation.
            clin?.code
              ? el('entryRelationship', { typeCode: 'REFR' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.34')), fixed('code', '33999-4', LOINC_URI, 'Status'), el('text', undefined, el('reference', { value: `#${rowId}-agent` })), el('statusCode', { code: 'completed' }), withTranslations(fixed('value', clin.code, 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', clin.display ?? clin.code, { 'xsi:type': 'CE' }), clin, readCdaExt(a, 'status'))))
              : undefined,
            ...commentActs(a.note, ctx, sid, notes),
          ),
        ),
      ),
    );
  }
  return { narrative: [table([L.agent, L.reaction, L.severity, L.criticality, L.onset], rows), ...notes], entries: out };
}

/**
 * The author of an allergy observation from AllergyIntolerance.recorder (a Practitioner): time (recordedDate), id, the
 * role code kept in its qualification, name, represented organization. CDA R2 allows an author on any clinical
 * statement; eHDSI 8.0.0's allergy template does not constrain it (open template).
 */
function recorderAuthor(a: AllergyIntolerance, ctx: Ctx): X | undefined {
  const who = person(a.recorder, ctx);
  const p = who.pract;
  if (!p) return undefined;
  const code = p.qualification?.[0]?.code;
  // The organization a PractitionerRole names, else the one kept from a CDA source on the Practitioner.
  const org = who.org ?? ctx.res.get<Organization>(p.extension?.find((e) => e.url === 'http://dsp.lu/fhir/StructureDefinition/represented-organization')?.valueReference);
  return el(
    'author',
    undefined,
    ts('time', a.recordedDate),
    el(
      'assignedAuthor',
      undefined,
      idForResource(p, '1.3.182.4.10'),
      code?.coding?.length ? toCD(displayed(code), { tag: 'code', noOriginalText: true }) : undefined,
      el('assignedPerson', undefined, name(p.name?.[0])),
      org?.resourceType === 'Organization' ? organization(org, 'representedOrganization') : undefined,
    ),
  );
}

/** The informant of an allergy observation from AllergyIntolerance.asserter when it is a RelatedPerson (relationship code, name). */
function informantOf(a: AllergyIntolerance, ctx: Ctx): X | undefined {
  const rp = ctx.res.get<RelatedPerson>(a.asserter);
  if (rp?.resourceType !== 'RelatedPerson') return undefined;
  const rel = rp.relationship?.[0];
  const self = rel?.coding?.some((c) => c.code === 'ONESELF');
  return el(
    'informant',
    undefined,
    el('relatedEntity', { classCode: self ? 'PAT' : 'PRS' }, rel?.coding?.length ? toCD(displayed(rel), { tag: 'code', noOriginalText: true }) : undefined, rp.name?.[0] ? el('relatedPerson', undefined, name(rp.name[0])) : undefined),
  );
}

function problems(list: Condition[], sid: string, ctx: Ctx, past: boolean): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  const notes: X[] = [];
  for (const c of list) {
    const rowId = nid(ctx, sid);
    const clin = c.clinicalStatus?.coding?.[0]?.code;
    const onset = c.onsetDateTime ?? c.onsetPeriod?.start;
    const end = c.abatementDateTime ?? c.abatementPeriod?.end;
    rows.push([{ text: textOfConcept(c.code, ctx.lang), id: `${rowId}-name` }, { text: fmtDate(onset) }, { text: fmtDate(end) }, { text: clin ?? '' }]);
    const ver = c.verificationStatus?.coding?.[0];
    const rare = c.code?.coding?.find((k) => k.system === 'http://www.orpha.net');
    const valueSet = rare && !c.code?.coding?.some((k) => inValueSet(VS.illness, k.system, k.code)) ? VS.rareDisease : VS.illness;
    const active = clin === 'active' || clin === 'recurrence' || clin === 'relapse';
    out.push(
      el(
        'act',
        { classCode: 'ACT', moodCode: 'EVN' },
        tid(T('3.15')),
        tid('2.16.840.1.113883.10.20.1.27'),
        entryId(c),
        el('code', { code: 'CONC', codeSystem: '2.16.840.1.113883.5.6', codeSystemName: 'ActClass', displayName: 'Concern' }),
        el('statusCode', { code: active && !past ? 'active' : 'completed' }),
        ivl('effectiveTime', onset ?? c.recordedDate, end, false),
        el(
          'entryRelationship',
          { typeCode: 'SUBJ', inversionInd: 'false' },
          el(
            'observation',
            { classCode: 'OBS', moodCode: 'EVN' },
            tid(T('3.7')),
            el('id', { root: randomUUID().toUpperCase() }),
            keptCode(readCdaExt(c, 'problemType'), VS.codeProb, { system: 'http://snomed.info/sct', code: '404684003', display: 'Clinical finding' }),
            el('text', undefined, el('reference', { value: `#${rowId}-name` })),
            el('statusCode', { code: 'completed' }),
            ivl('effectiveTime', onset, end, false),
            withQualifiers(toCD(displayed(c.code), { tag: 'value', xsiType: 'CD', valueSet, ref: `${rowId}-name` }), readCdaExts(c, 'valueQualifier')),
            ver?.code && inValueSet(VS.certainty, ver.system, ver.code) !== false
              ? el('entryRelationship', { typeCode: 'SUBJ', inversionInd: 'true' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.49')), fixed('code', '66455-7', LOINC_URI, 'Condition verification status'), el('text', undefined, el('reference', { value: `#${rowId}-name` })), el('statusCode', { code: 'completed' }), fixed('value', ver.code, 'http://terminology.hl7.org/CodeSystem/condition-ver-status', ver.display ?? ver.code, { 'xsi:type': 'CE' })))
              : undefined,
            c.severity?.coding?.length
              ? severityObservation(toCD(displayed(c.severity), { tag: 'value', xsiType: 'CD', valueSet: VS.severity, noOriginalText: true }), [], `${rowId}-name`)
              : undefined,
            ...statusObservations(c, `${rowId}-name`),
            ...(ctx.careTeams.get(c) ?? []).map((t) => careTeamAct(t, ctx)),
            ...commentActs(c.note, ctx, sid, notes),
          ),
        ),
      ),
    );
  }
  return { narrative: [table([L.name, L.onset, L.end, L.status], rows), ...notes], entries: out };
}

/**
 * eHDSI care team act (3.48, eHDSICareTeamAct) for a CareTeam that looks after the condition: code 85847-2 (the
 * template fixes it; the team's category codings travel as its translations), status, period, and each
 * participant who is a Practitioner as a performer (assignedEntity: id, name).
 */
function careTeamAct(t: CareTeam, ctx: Ctx): X {
  const own: Coding = { system: LOINC_URI, code: '85847-2' };
  const status = t.status === 'active' ? 'active' : t.status === 'inactive' ? 'completed' : t.status === 'suspended' ? 'suspended' : 'normal';
  const performers = (t.participant ?? []).map((p) => ctx.res.get<Practitioner>(p.member)).filter((p): p is Practitioner => p?.resourceType === 'Practitioner');
  return el(
    'entryRelationship',
    { typeCode: 'REFR', inversionInd: 'false' },
    el(
      'act',
      { classCode: 'PCPR', moodCode: 'EVN' },
      tid(T('3.48')),
      withTranslations(fixed('code', own.code!, LOINC_URI, 'Patient Care team information'), own, { coding: (t.category ?? []).flatMap((c) => c.coding ?? []) }),
      el('statusCode', { code: status }),
      t.period?.start || t.period?.end ? ivl('effectiveTime', t.period.start, t.period.end) : undefined,
      ...performers.map((p) => el('performer', { typeCode: 'PRF' }, el('assignedEntity', { classCode: 'ASSIGNED' }, idForResource(p, '1.3.182.4.10'), el('assignedPerson', { classCode: 'PSN', determinerCode: 'INSTANCE' }, name(p.name?.[0]))))),
    ),
  );
}

/**
 * IHE comment acts (LOINC 48767-8) for FHIR notes; eHDSIComment wants the text as a reference, so each note is a
 * paragraph of the section narrative (collected in `paras`).
 */
function commentActs(notes: Annotation[] | undefined, ctx: Ctx, sid: string, paras: X[], typeCode: 'SUBJ' | 'COMP' = 'SUBJ'): X[] {
  return (notes ?? [])
    .filter((n) => n.text)
    .map((n) => {
      const id = `${nid(ctx, sid)}-note`;
      paras.push(paragraph(n.text, id));
      // eHDSI result observations take their comments as COMP; elsewhere the IHE comment is SUBJ, inverted.
      return el('entryRelationship', typeCode === 'SUBJ' ? { typeCode, inversionInd: 'true' } : { typeCode }, el('act', { classCode: 'ACT', moodCode: 'EVN' }, tid('2.16.840.1.113883.10.20.1.40'), tid('1.3.6.1.4.1.19376.1.5.3.1.4.2'), fixed('code', '48767-8', LOINC_URI, 'Annotation comment'), el('text', undefined, el('reference', { value: `#${id}` })), el('statusCode', { code: 'completed' })));
    });
}

/** A coded element from a kept CDA code: the code when it is in the value set, else the default with the original as translation. */
function keptCode(kept: CodeableConcept | undefined, valueSet: string, dflt: Coding, tag = 'code'): X {
  const inVs = kept?.coding?.find((c) => inValueSet(valueSet, c.system, c.code));
  const primary = inVs ?? dflt;
  return el(tag, codingAttrs(withDisplay(primary)) ?? { code: primary.code }, ...distinctTranslations(primary, kept?.coding ?? []));
}

/**
 * An allergy observation's value kept from the source (cda-code `value`; PT samples repeat the agent there), written
 * as it came: its first coding with an OID as the CD, the others as translations, no transcoding (the value is not
 * the agent's place; eHDSIAllergiesAndIntolerances leaves the first value an unbound CD).
 */
function keptValue(kept: CodeableConcept | undefined): X | undefined {
  const primary = kept?.coding?.find((c) => codingAttrs(c));
  if (!primary) return undefined;
  // distinctTranslations skips the primary and any coding without an OID.
  return el('value', { 'xsi:type': 'CD', ...codingAttrs(withDisplay(primary)) }, ...distinctTranslations(primary, kept!.coding!));
}

/**
 * A CD with the qualifiers kept from the source (`<qualifier><value .../></qualifier>`, after originalText and before
 * the translations, as the CD schema orders them). A null CD (nullFlavor) takes none: its code is not there to qualify.
 */
function withQualifiers(cd: X, qualifiers: CodeableConcept[]): X {
  if (!qualifiers.length || cd.a?.nullFlavor) return cd;
  const qs = qualifiers.map((q) => toCD(displayed(q), { tag: 'value', noOriginalText: true })).filter((v) => !v.a?.nullFlavor).map((v) => el('qualifier', undefined, v));
  if (!qs.length) return cd;
  const kids = (cd.c ?? []).filter((k) => k !== undefined && k !== null);
  const first = kids[0] && typeof kids[0] === 'object' && (kids[0] as X).n === 'originalText' ? [kids[0]] : [];
  return { ...cd, c: [...first, ...qs, ...kids.slice(first.length)] };
}

/** A coded element with the codings of a kept concept as translations (other than its own code). */
function withTranslations(x: X, own: Coding, kept: CodeableConcept | undefined): X {
  const tr = distinctTranslations(own, kept?.coding ?? []);
  return tr.length ? { ...x, c: [...(x.c ?? []), ...tr] } : x;
}

/** Problem status (33999-4) and health status (11323-3) observations kept from a CDA source. */
function statusObservations(c: Condition, ref: string): X[] {
  const out: X[] = [];
  const status = readCdaExt(c, 'status');
  if (status?.coding?.length)
    out.push(el('entryRelationship', { typeCode: 'REFR' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.9')), tid('1.3.6.1.4.1.19376.1.5.3.1.4.1.1'), tid('2.16.840.1.113883.10.20.1.57'), tid('2.16.840.1.113883.10.20.1.50'), fixed('code', '33999-4', LOINC_URI, 'Status'), el('text', undefined, el('reference', { value: `#${ref}` })), el('statusCode', { code: 'completed' }), toCD(displayed(status), { tag: 'value', xsiType: 'CE', valueSet: VS.statusCode, noOriginalText: true }))));
  const health = readCdaExt(c, 'healthStatus');
  if (health?.coding?.length)
    out.push(el('entryRelationship', { typeCode: 'REFR' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.10')), fixed('code', '11323-3', LOINC_URI, 'Health status'), el('text', undefined, el('reference', { value: `#${ref}` })), el('statusCode', { code: 'completed' }), toCD(displayed(health), { tag: 'value', xsiType: 'CE', valueSet: VS.resolutionOutcome, noOriginalText: true }))));
  return out;
}

function procedures(list: Procedure[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  for (const p of list) {
    const rowId = nid(ctx, sid);
    const when = p.performedDateTime ?? p.performedPeriod?.start;
    rows.push([{ text: textOfConcept(p.code, ctx.lang), id: `${rowId}-name` }, { text: fmtDate(when) }]);
    out.push(
      el(
        'procedure',
        { classCode: 'PROC', moodCode: 'EVN' },
        tid(T('3.26')),
        entryId(p),
        toCD(displayed(p.code), { tag: 'code', valueSet: VS.procedure, ref: `${rowId}-name` }),
        el('text', undefined, el('reference', { value: `#${rowId}-name` })),
        el('statusCode', { code: p.status === 'completed' ? 'completed' : p.status === 'in-progress' ? 'active' : p.status === 'not-done' ? 'cancelled' : 'completed' }),
        p.performedPeriod ? ivl('effectiveTime', p.performedPeriod.start, p.performedPeriod.end, false) : ts('effectiveTime', when),
        ...(p.bodySite ?? []).map((b) => toCD(displayed(b), { tag: 'targetSiteCode', valueSet: VS.bodySite })),
      ),
    );
  }
  return { narrative: [table([L.name, L.date], rows)], entries: out };
}

function devices(list: DeviceUseStatement[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  for (const d of list) {
    const dev = ctx.res.get<Device>(d.device);
    const rowId = nid(ctx, sid);
    const start = d.timingPeriod?.start ?? d.timingDateTime ?? d.recordedOn;
    rows.push([{ text: textOfConcept(dev?.type, ctx.lang) || (d.device.display ?? ''), id: `${rowId}-name` }, { text: fmtDate(start) }]);
    const udi = dev?.udiCarrier?.[0]?.deviceIdentifier;
    out.push(
      el(
        'supply',
        { classCode: 'SPLY', moodCode: 'EVN' },
        tid(T('3.5')),
        entryId(d),
        readCdaExt(d, 'supplyCode') ? toCD(displayed(readCdaExt(d, 'supplyCode')), { tag: 'code', valueSet: VS.medicalDevice, noOriginalText: true }) : undefined,
        el('text', undefined, el('reference', { value: `#${rowId}-name` })),
        ivl('effectiveTime', start, d.timingPeriod?.end),
        el(
          'participant',
          { typeCode: 'DEV' },
          el('participantRole', { classCode: 'MANU' }, udi ? el('id', { root: '2.16.840.1.113883.3.3719', extension: udi }) : undefined, el('playingDevice', { classCode: 'DEV', determinerCode: 'INSTANCE' }, toCD(displayed(dev?.type), { tag: 'code', valueSet: VS.medicalDevice, ref: `${rowId}-name` }), modelName(dev))),
        ),
      ),
    );
  }
  return { narrative: [table([L.name, L.since], rows)], entries: out };
}

/** playingDevice/manufacturerModelName (SC, eHDSIDevice allows one): the model name (deviceName model-name) with its kept code. */
function modelName(dev: Device | undefined): X | undefined {
  const text = dev?.deviceName?.find((n) => n.type === 'model-name')?.name;
  const code = readCdaExt(dev, 'manufacturerModelName')?.coding?.map((k) => codingAttrs(k)).find((a) => a);
  if (!text && !code) return undefined;
  return el('manufacturerModelName', code, ...(text ? [text] : []));
}

function immunizations(list: Immunization[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  for (const im of list) {
    const rowId = nid(ctx, sid);
    const target = im.protocolApplied?.[0]?.targetDisease?.[0];
    rows.push([{ text: textOfConcept(im.vaccineCode, ctx.lang), id: `${rowId}-name` }, { text: fmtDate(im.occurrenceDateTime) }, { text: im.lotNumber ?? '' }, { text: textOfConcept(target, ctx.lang), id: `${rowId}-target` }]);
    const dose = im.protocolApplied?.[0]?.doseNumberPositiveInt;
    const perf = person(im.performer?.[0]?.actor, ctx);
    out.push(
      el(
        'substanceAdministration',
        { classCode: 'SBADM', moodCode: 'EVN', negationInd: im.status === 'not-done' ? 'true' : 'false' },
        tid(T('3.19')),
        tid('1.3.6.1.4.1.19376.1.5.3.1.4.12'),
        tid('2.16.840.1.113883.10.20.1.24'),
        entryId(im),
        // The eHDSI template fixes this code system OID as published (1.3.5.1.4..., sic).
        // An act code the source wrote under another code system (HL7 ActCode, older waves) travels as translation.
        el('code', { code: 'IMMUNIZ', codeSystem: IHE_ACT_CODE, codeSystemName: 'IHEActCode', displayName: 'Immunization' }, ...distinctTranslations({ system: `urn:oid:${IHE_ACT_CODE}`, code: 'IMMUNIZ' }, readCdaExt(im, 'actCode')?.coding ?? [])),
        el('text', undefined, el('reference', { value: `#${rowId}-name` })),
        el('statusCode', { code: 'completed' }),
        ts('effectiveTime', im.occurrenceDateTime),
        im.route ? toCD(displayed(im.route), { tag: 'routeCode', valueSet: VS.route }) : undefined,
        im.site ? toCD(displayed(im.site), { tag: 'approachSiteCode', valueSet: VS.bodySite }) : undefined,
        im.doseQuantity ? pq('doseQuantity', im.doseQuantity) : undefined,
        readCdaExt(im, 'administrationUnit') ? toCD(displayed(readCdaExt(im, 'administrationUnit')), { tag: 'administrationUnitCode' }) : undefined,
        el(
          'consumable',
          { typeCode: 'CSM' },
          el(
            'manufacturedProduct',
            { classCode: 'MANU' },
            tid(T('3.18')),
            tid('2.16.840.1.113883.10.20.1.53'),
            el('manufacturedMaterial', { classCode: 'MMAT', determinerCode: 'KIND' }, toCD(displayed(im.vaccineCode), { tag: 'code', valueSet: VS.vaccine, ref: `${rowId}-name`, needsOriginalText: true }), el('name', undefined, textOfConcept(im.vaccineCode, ctx.lang) || 'Vaccine'), im.lotNumber ? el('lotNumberText', undefined, im.lotNumber) : undefined),
          ),
        ),
        perf.pract
          ? el('performer', { typeCode: 'PRF' }, el('assignedEntity', undefined, idForResource(perf.pract, '1.3.182.4.10'), el('assignedPerson', undefined, name(perf.pract.name?.[0]))))
          : undefined,
        target ? el('participant', { typeCode: 'IND' }, el('participantRole', { classCode: 'AGNT' }, toCD(displayed(target), { tag: 'code', valueSet: VS.illness, ref: `${rowId}-target` }), el('playingEntity', { classCode: 'ENT', nullFlavor: 'UNK' }))) : undefined,
        dose !== undefined
          ? el('entryRelationship', { typeCode: 'SUBJ' }, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.28')), fixed('code', '30973-2', LOINC_URI, 'Dose number'), el('statusCode', { code: 'completed' }), el('value', { 'xsi:type': 'INT', value: dose })))
          : undefined,
      ),
    );
  }
  return { narrative: [table([L.name, L.date, L.lot, L.target], rows)], entries: out };
}

function obsValue(o: { valueQuantity?: Quantity; valueCodeableConcept?: CodeableConcept; valueString?: string; valueBoolean?: boolean; valueInteger?: number; valueDateTime?: string; valueRange?: Range; valuePeriod?: { start?: string; end?: string } }, ref: string | undefined, valueSet?: string, cdType = 'CD'): X | undefined {
  if (o.valueQuantity) return pq('value', o.valueQuantity, 'PQ');
  if (o.valueCodeableConcept) return toCD(displayed(o.valueCodeableConcept), { tag: 'value', xsiType: cdType, valueSet, ref });
  if (o.valueString !== undefined) return el('value', { 'xsi:type': 'ST' }, o.valueString);
  if (o.valueBoolean !== undefined) return el('value', { 'xsi:type': 'BL', value: String(o.valueBoolean) });
  if (o.valueInteger !== undefined) return el('value', { 'xsi:type': 'INT', value: o.valueInteger });
  if (o.valueDateTime) return el('value', { 'xsi:type': 'TS', value: fhirToTs(o.valueDateTime) });
  if (o.valueRange) return el('value', { 'xsi:type': 'IVL_PQ' }, o.valueRange.low ? pq('low', o.valueRange.low) : undefined, o.valueRange.high ? pq('high', o.valueRange.high) : undefined);
  return undefined;
}

function obsText(o: Observation): string {
  if (o.valueQuantity) return fmtQ(o.valueQuantity);
  if (o.valueCodeableConcept) return o.valueCodeableConcept.text ?? o.valueCodeableConcept.coding?.[0]?.display ?? '';
  if (o.valueString) return o.valueString;
  if (o.component?.length) return o.component.map((c) => fmtQ(c.valueQuantity) || c.valueCodeableConcept?.text || '').join(' / ');
  return o.valueDateTime ?? String(o.valueBoolean ?? o.valueInteger ?? '');
}

const isBloodGroup = (o: Observation) => !!o.code?.coding?.some((c) => c.system === LOINC_URI && ['882-1', '34530-6', '883-9', '10331-7'].includes(c.code ?? ''));
const V3_INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';

function rangeText(rr: NonNullable<Observation['referenceRange']>[number] | undefined): string {
  return rr?.text ?? [rr?.low && fmtQ(rr.low), rr?.high && fmtQ(rr.high)].filter(Boolean).join(' – ');
}

/**
 * Results (eHDSIResults): the blood group as eHDSIBloodGroup (3.25); any other result as an eHDSI result organizer
 * (3.42, BATTERY) whose components are eHDSI result observations (3.43): a panel's members (hasMember), or the
 * observation itself when it stands alone (the organizer code is then NI: no panel was named).
 */
function results(list: Observation[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  const notes: X[] = [];
  const row = (o: Observation): string => {
    const rowId = nid(ctx, sid);
    rows.push([{ text: textOfConcept(o.code, ctx.lang), id: `${rowId}-name` }, { text: obsText(o), id: `${rowId}-value` }, { text: rangeText(o.referenceRange?.[0]) }, { text: fmtDate(o.effectiveDateTime ?? o.effectivePeriod?.start) }]);
    return rowId;
  };
  // A panel's members are written inside its organizer: a member the section also lists (a common IPS layout) is
  // not written again as an entry of its own (same id twice, narrative rows doubled, two Observations on the way back).
  // The pivot has one organizer level, so a panel's members are collected through nested panels (outer -> inner ->
  // leaf) into one flat list; a panel in between without a value of its own is only a grouping and is not written.
  // A visited set stops a hasMember cycle. Observations no other listed one names as member are written first, so
  // an outer panel listed after its inner one still takes the whole tree.
  const members = (o: Observation): { flat: Observation[]; seen: Set<Observation> } => {
    const flat: Observation[] = [];
    const seen = new Set<Observation>([o]);
    const walk = (p: Observation) => {
      for (const r of p.hasMember ?? []) {
        const m = ctx.res.get<Observation>(r);
        if (m?.resourceType !== 'Observation' || seen.has(m)) continue;
        seen.add(m);
        if (hasValue(m) || !m.hasMember?.length) flat.push(m);
        walk(m);
      }
    };
    walk(o);
    seen.delete(o);
    return { flat, seen };
  };
  const named = new Set<Observation>();
  for (const o of list) for (const m of members(o).seen) named.add(m);
  const written = new Set<Observation>();
  for (const o of [...list.filter((o) => !named.has(o)), ...list.filter((o) => named.has(o))]) {
    if (written.has(o)) continue;
    written.add(o);
    const rowId = row(o);
    const when = o.effectiveDateTime ?? o.effectivePeriod?.start;
    if (isBloodGroup(o)) {
      out.push(
        el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.25')), tid(T('3.20')), tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'), entryId(o), bloodGroupCode(o.code, `${rowId}-name`), el('text', undefined, el('reference', { value: `#${rowId}-name` })), el('statusCode', { code: 'completed' }), ts('effectiveTime', when), obsValue(o, `${rowId}-value`, VS.bloodGroup, 'CE')),
      );
      continue;
    }
    const tree = members(o);
    const flat = tree.flat.filter((m) => !written.has(m));
    for (const m of tree.seen) written.add(m);
    // A panel with a value of its own (a hasMember cycle makes one) is its own first component: the organizer then
    // has an id of its own, as for a result standing alone.
    const self = !flat.length || hasValue(o);
    const parts = [...(self ? [{ m: o, id: rowId }] : []), ...flat.map((m) => ({ m, id: row(m) }))];
    const isPanel = flat.length > 0;
    out.push(
      el(
        'organizer',
        { classCode: 'BATTERY', moodCode: 'EVN' },
        tid(T('3.42')),
        // A result standing alone: its id goes on the observation inside; the organizer is another act, another id.
        isPanel && !self ? entryId(o) : el('id', { root: randomUUID().toUpperCase() }),
        isPanel ? toCD(displayed(o.code), { tag: 'code', ref: `${rowId}-name` }) : el('code', { nullFlavor: 'NI' }),
        el('statusCode', { code: 'completed' }),
        isPanel && when ? ts('effectiveTime', when) : undefined,
        ...parts.map(({ m, id }) => el('component', undefined, resultObservation(m, id, sid, ctx, notes))),
      ),
    );
  }
  return { narrative: [table([L.name, L.value, L.reference, L.date], rows), ...notes], entries: out };
}

/**
 * An IHE severity observation (SEV, inverted SUBJ) with its value and interpretations; `ref` (a narrative id) adds
 * the <text> reference where the entry has a narrative row to point at.
 */
function severityObservation(value: X, interp: X[], ref?: string): X {
  return el(
    'entryRelationship',
    { typeCode: 'SUBJ', inversionInd: 'true' },
    el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid('1.3.6.1.4.1.19376.1.5.3.1.4.1'), tid('2.16.840.1.113883.10.20.1.55'), el('code', { code: 'SEV', codeSystem: '2.16.840.1.113883.5.4', codeSystemName: 'ActCode', displayName: 'Severity' }), ref ? el('text', undefined, el('reference', { value: `#${ref}` })) : undefined, el('statusCode', { code: 'completed' }), value, ...interp),
  );
}

/** Whether an Observation carries a value of its own (value[x]). */
function hasValue(o: Observation): boolean {
  return Object.keys(o).some((k) => k.startsWith('value') && k !== 'valueSet');
}

/** An eHDSI result observation (3.43): value, interpretation, method, site, comments (COMP) and the reference range. */
function resultObservation(m: Observation, rowId: string, sid: string, ctx: Ctx, notes: X[]): X {
  const rr = m.referenceRange?.find((r) => r.low || r.high);
  const point = rr?.low && rr.high && rr.low.value === rr.high.value && (rr.low.code ?? rr.low.unit) === (rr.high.code ?? rr.high.unit);
  const normal = rr?.type?.coding?.find((c) => c.system === V3_INTERPRETATION && c.code === 'N');
  return el(
    'observation',
    { classCode: 'OBS', moodCode: 'EVN' },
    tid(T('3.43')),
    tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'),
    entryId(m),
    toCD(displayed(m.code), { tag: 'code', ref: `${rowId}-name` }),
    el('text', undefined, el('reference', { value: `#${rowId}-name` })),
    el('statusCode', { code: 'completed' }),
    ts('effectiveTime', m.effectiveDateTime ?? m.effectivePeriod?.start),
    obsValue(m, `${rowId}-value`) ?? el('value', { 'xsi:type': 'PQ', nullFlavor: 'UNK' }),
    // One interpretation and one site (eHDSIResultObservation): the first of each.
    m.interpretation?.[0] ? toCD(displayed(m.interpretation[0]), { tag: 'interpretationCode', noOriginalText: true }) : undefined,
    m.method ? toCD(displayed(m.method), { tag: 'methodCode', noOriginalText: true }) : undefined,
    m.bodySite ? toCD(displayed(m.bodySite), { tag: 'targetSiteCode', noOriginalText: true }) : undefined,
    ...commentActs(m.note, ctx, sid, notes, 'COMP'),
    rr
      ? el(
          'referenceRange',
          { typeCode: 'REFV' },
          el(
            'observationRange',
            { classCode: 'OBS', moodCode: 'EVN.CRT' },
            rr.text ? el('text', undefined, rr.text) : undefined,
            point ? pq('value', rr.low, 'PQ') : el('value', { 'xsi:type': 'IVL_PQ' }, rr.low ? pq('low', rr.low) : undefined, rr.high ? pq('high', rr.high) : undefined),
            normal ? fixed('interpretationCode', 'N', V3_INTERPRETATION, normal.display ?? 'Normal') : undefined,
          ),
        )
      : undefined,
  );
}

/** The blood group code is LOINC 34530-6 in eHDSI; another LOINC blood group code travels as translation. */
function bloodGroupCode(cc: CodeableConcept | undefined, ref: string): X {
  const others = (cc?.coding ?? []).filter((c) => !(c.system === LOINC_URI && c.code === '34530-6'));
  return toCD(displayed({ ...cc, coding: [{ system: LOINC_URI, code: '34530-6', display: 'ABO and Rh group panel - Blood' }, ...others] }), { tag: 'code', ref });
}

function vitals(list: Observation[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  for (const o of list) {
    const rowId = nid(ctx, sid);
    rows.push([{ text: textOfConcept(o.code, ctx.lang), id: `${rowId}-name` }, { text: obsText(o) }, { text: fmtDate(o.effectiveDateTime) }]);
    const all = o.component?.length ? o.component.map((c) => ({ code: c.code, q: c.valueQuantity, v: c })) : [{ code: o.code, q: o.valueQuantity, v: o }];
    // eHDSI 8.0.0 vital signs entries carry blood pressure only (eHDSIBloodPressure); other vital signs stay in
    // the narrative.
    const parts = all.filter((p) => p.code?.coding?.some((c) => inValueSet(VS.bloodPressure, c.system, c.code)));
    if (!parts.length) continue;
    out.push(
      el(
        'organizer',
        { classCode: 'CLUSTER', moodCode: 'EVN' },
        tid(T('3.21')),
        tid('1.3.6.1.4.1.19376.1.5.3.1.4.13.1'),
        tid('2.16.840.1.113883.10.20.1.32'),
        tid('2.16.840.1.113883.10.20.1.35'),
        entryId(o),
        el('code', { code: '46680005', codeSystem: SCT, codeSystemName: 'SNOMED CT', displayName: 'Vital signs' }),
        el('statusCode', { code: 'completed' }),
        ts('effectiveTime', o.effectiveDateTime ?? o.effectivePeriod?.start),
        ...parts.map((p) =>
          el(
            'component',
            undefined,
            el(
              'observation',
              { classCode: 'OBS', moodCode: 'EVN' },
              tid(T('3.20')),
              tid(T('3.22')),
              tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'),
              tid('1.3.6.1.4.1.19376.1.5.3.1.4.13.2'),
              tid('2.16.840.1.113883.10.20.1.31'),
              el('id', { root: randomUUID().toUpperCase() }),
              toCD(displayed(p.code), { tag: 'code', ref: `${rowId}-name` }),
              el('text', undefined, el('reference', { value: `#${rowId}-name` })),
              el('statusCode', { code: 'completed' }),
              ts('effectiveTime', o.effectiveDateTime ?? o.effectivePeriod?.start),
              obsValue(p.v as Observation, undefined) ?? el('value', { 'xsi:type': 'PQ', nullFlavor: 'UNK' }),
            ),
          ),
        ),
      ),
    );
  }
  return { narrative: [table([L.name, L.value, L.date], rows)], entries: out };
}

function observations(key: string, list: Observation[], sid: string, ctx: Ctx): Built {
  const L = ctx.L;
  const rows: Cell[][] = [];
  const out: X[] = [];
  // Pregnancy: one status observation (eHDSIPregnancyStatusObservation) with the other pregnancy observations
  // (expected delivery date...) nested in it.
  let pregnancyStatus: X | undefined;
  const nestedPregnancy: X[] = [];
  for (const o of list) {
    const rowId = nid(ctx, sid);
    const refRange = o.referenceRange?.[0];
    rows.push([{ text: textOfConcept(o.code, ctx.lang), id: `${rowId}-name` }, { text: obsText(o), id: `${rowId}-value` }, { text: rangeText(refRange) }, { text: fmtDate(o.effectiveDateTime ?? o.effectivePeriod?.start) }]);
    const when = o.effectiveDateTime ?? o.effectivePeriod?.start;
    // Social history entries are bound to eHDSISocialHistory: others stay in the narrative.
    if (key === 'social' && !o.code?.coding?.some((c) => inValueSet(VS.socialHistory, c.system, c.code))) continue;
    // Pregnancy history (eHDSI 8.0.0): an outcome of pregnancy (eHDSIOutcomeOfPregnancy code, a count) is an
    // eHDSIPregnancyOutcomeObservation (3.46); a date of delivery (LOINC 93857-1) an eHDSIPregnancyObservation (3.47).
    if (key === 'pregnancy' && (o.code?.coding?.some((c) => inValueSet(VS.outcomeOfPregnancy, c.system, c.code)) || o.code?.coding?.some((c) => c.system === LOINC_URI && c.code === '93857-1'))) {
      const outcome = o.code?.coding?.some((c) => inValueSet(VS.outcomeOfPregnancy, c.system, c.code));
      out.push(
        el(
          'observation',
          { classCode: 'OBS', moodCode: 'EVN' },
          tid(T(outcome ? '3.46' : '3.47')),
          entryId(o),
          toCD(displayed(o.code), { tag: 'code', valueSet: outcome ? VS.outcomeOfPregnancy : undefined, ref: `${rowId}-name` }),
          el('text', undefined, el('reference', { value: `#${rowId}-name` })),
          el('statusCode', { code: 'completed' }),
          when ? ts('effectiveTime', when) : undefined,
          obsValue(o, `${rowId}-value`),
        ),
      );
      continue;
    }
    if (key === 'functional') {
      out.push(
        el(
          'organizer',
          { classCode: 'CLUSTER', moodCode: 'EVN' },
          tid(T('3.39')),
          entryId(o),
          fixed('code', '47420-5', LOINC_URI, 'Functional status assessment note'),
          el('statusCode', { code: 'completed' }),
          ts('effectiveTime', when),
          el('component', undefined, el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.40')), tid('1.3.6.1.4.1.19376.1.5.3.1.4.13'), el('id', { root: randomUUID().toUpperCase() }), toCD(displayed(o.code), { tag: 'code', ref: `${rowId}-name` }), el('text', undefined, el('reference', { value: `#${rowId}-name` })), el('statusCode', { code: 'completed' }), ts('effectiveTime', when), obsValue(o, `${rowId}-value`, undefined, 'CE'))),
        ),
      );
      continue;
    }
    // Social history or pregnancy (functional status and pregnancy outcomes are written above).
    const templates =
      key === 'social'
        ? [T('3.23'), T('3.20'), '1.3.6.1.4.1.19376.1.5.3.1.4.13', '1.3.6.1.4.1.19376.1.5.3.1.4.13.4', '2.16.840.1.113883.10.20.1.33']
        : o.code?.coding?.some((c) => inValueSet(VS.pregnancyInformation, c.system, c.code))
          ? [T('3.24'), T('3.20'), '1.3.6.1.4.1.19376.1.5.3.1.4.13', '1.3.6.1.4.1.19376.1.5.3.1.4.13.5']
          : [T('3.45')];
    const valueSet = key === 'pregnancy' ? VS.currentPregnancyStatus : undefined;
    const low = refRange?.low;
    const high = refRange?.high;
    const isPregInfo = key === 'pregnancy' && o.code?.coding?.some((c) => inValueSet(VS.pregnancyInformation, c.system, c.code));
    const target = key === 'pregnancy' ? (isPregInfo ? nestedPregnancy : []) : out;
    if (key === 'pregnancy' && !isPregInfo && pregnancyStatus) continue;
    const built =
      el(
        'observation',
        { classCode: 'OBS', moodCode: 'EVN' },
        ...templates.map(tid),
        entryId(o),
        toCD(displayed(o.code), { tag: 'code', valueSet: key === 'social' ? VS.socialHistory : VS.pregnancyInformation, ref: `${rowId}-name` }),
        el('text', undefined, el('reference', { value: `#${rowId}-name` })),
        el('statusCode', { code: 'completed' }),
        key === 'social' ? ivl('effectiveTime', when, o.effectivePeriod?.end, false) : ts('effectiveTime', when),
        obsValue(o, `${rowId}-value`, valueSet, key === 'pregnancy' ? 'CE' : 'CD'),
        ...(o.interpretation ?? []).map((i) => toCD(displayed(i), { tag: 'interpretationCode', noOriginalText: true })),
        low || high
          ? el('referenceRange', { typeCode: 'REFV' }, el('observationRange', { classCode: 'OBS', moodCode: 'EVN.CRT' }, refRange?.text ? el('text', undefined, refRange.text) : undefined, el('value', { 'xsi:type': 'IVL_PQ' }, low ? pq('low', low) : undefined, high ? pq('high', high) : undefined)))
          : undefined,
      );
    if (key === 'pregnancy' && !isPregInfo) pregnancyStatus = built;
    else target.push(built);
  }
  if (key === 'pregnancy') {
    if (!pregnancyStatus && nestedPregnancy.length) {
      pregnancyStatus = el('observation', { classCode: 'OBS', moodCode: 'EVN' }, tid(T('3.45')), el('id', { root: randomUUID().toUpperCase() }), fixed('code', '82810-3', LOINC_URI, 'Pregnancy status'), el('text', undefined, el('reference', { value: `#${rows[0]?.[0]?.id ?? sid}` })), el('statusCode', { code: 'completed' }), el('effectiveTime', { nullFlavor: 'UNK' }), el('value', { 'xsi:type': 'CE', nullFlavor: 'UNK' }));
    }
    if (pregnancyStatus) {
      for (const n of nestedPregnancy) {
        n.c = (n.c ?? []).map((c) => (c && typeof c === 'object' && c.n === 'templateId' && (c.a?.root === T('3.45')) ? el('templateId', { root: T('3.24') }) : c));
        pregnancyStatus.c = [...(pregnancyStatus.c ?? []), el('entryRelationship', { typeCode: 'COMP' }, n)];
      }
      out.unshift(pregnancyStatus);
    }
  }
  return { narrative: [table([L.name, L.value, L.reference, L.date], rows)], entries: out };
}

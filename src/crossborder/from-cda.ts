/**
 * eHDSI Patient Summary pivot CDA (any country, level 3) -> FHIR document Bundle in the LU PS (IPS) shape.
 *
 * Coded elements keep every code of the CD and its translations (transcode.ts); displays come in the reader's
 * language where the terminology module has a designation, the CDA originalText is kept as
 * CodeableConcept.text. eHDSI "no known" / "no information" entries become the IPS absent/unknown codes
 * (and a section with no entry an emptyReason). CDA codes that FHIR has no element for (the allergy
 * observation type, problem status and health status observations, severity outside the three FHIR codes)
 * travel in the extension cda-code so that the way back writes them again.
 */
import { randomUUID } from 'node:crypto';
import type {
  Address, AllergyIntolerance, Bundle, BundleEntry, CareTeam, CodeableConcept, Composition, CompositionSection, Condition, ContactPoint, Device,
  DeviceUseStatement, Extension, HumanName, Identifier, Immunization, Medication, MedicationStatement, Observation, ObservationComponent,
  Organization, Patient, PatientContact, ClinicalImpression, Practitioner, PractitionerRole, Procedure, RelatedPerson, Quantity, Reference, Resource, Dosage, Timing, Annotation,
} from 'fhir/r4';
import { FhirError, unprocessable } from '../fhir/outcome.ts';
import { isOid } from '../terminology/codesystems.ts';
import { attr, hasTemplate, kid, kids, parseXml, path, textOf, xsiType, CDA_NS, PHARM_NS, type Element, type XmlLimits, at } from './cda/xml.ts';
import { tsToFhir } from './dates.ts';
import { labels, narrativeIds, narrativeToXhtml } from './narrative.ts';
import { cdaUidToUri, fromCD, EXT_NULLFLAVOR, LOINC_URI, PATIENT_SUMMARY_LOINC, type ReadContext } from './transcode.ts';

export const PS_TEMPLATE = '1.3.6.1.4.1.12559.11.10.1.3.1.1.3';
/** A CDA coded element FHIR has no element for, kept for the way back: extension with a name and the concept. */
export const EXT_CDA_CODE = 'http://dsp.lu/fhir/StructureDefinition/cda-code';
const EPSOS_NS = 'urn:epsos-org:ep:medication';
export const IPS_ABSENT_URI = 'http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips';
/** The IHE act code system as the eHDSI immunization template fixes it (1.3.5.1.4..., sic). */
const IHE_ACT_CODE_URI = 'urn:oid:1.3.5.1.4.1.19376.1.5.3.2';
const T = (n: string) => `1.3.6.1.4.1.12559.11.10.1.3.1.${n}`;

export interface FromCdaOptions {
  /** Reader language for displays (BCP 47; default: the document's languageCode). */
  lang?: string;
  limits?: XmlLimits;
}

export function cdaExt(name: string, cc: CodeableConcept | undefined): Extension[] {
  if (!cc) return [];
  return [{ url: EXT_CDA_CODE, extension: [{ url: 'name', valueString: name }, { url: 'value', valueCodeableConcept: cc }] }];
}

/** Every concept kept in cda-code under one name, in the order of the extensions. */
export function readCdaExts(r: { extension?: Extension[] } | undefined, name: string): CodeableConcept[] {
  return (r?.extension ?? [])
    .filter((e) => e.url === EXT_CDA_CODE && e.extension?.find((x) => x.url === 'name')?.valueString === name)
    .map((e) => e.extension?.find((x) => x.url === 'value')?.valueCodeableConcept)
    .filter((x): x is CodeableConcept => !!x);
}

/** The first concept kept in cda-code under one name. */
export function readCdaExt(r: { extension?: Extension[] } | undefined, name: string): CodeableConcept | undefined {
  return readCdaExts(r, name)[0];
}

interface Ctx extends ReadContext {
  entries: BundleEntry[];
  patientRef: Reference;
  orgs: Map<string, string>;
}

function add<T extends Resource>(ctx: Ctx, r: T): Reference {
  const id = r.id ?? randomUUID();
  r.id = id;
  ctx.entries.push({ fullUrl: `urn:uuid:${id}`, resource: r as unknown as BundleEntry['resource'] });
  return { reference: `urn:uuid:${id}` };
}


function identifier(el: Element | undefined): Identifier | undefined {
  const root = attr(el, 'root');
  const ext = attr(el, 'extension');
  if (!root) return ext ? { value: ext } : undefined;
  // An OID root is urn:oid: (an identifier namespace, not the code-system table's URI); a UUID (urn:uuid:) or anything
  // else (an RUID, kept under the project namespace) as cdaUidToUri says.
  const ns = isOid(root) ? `urn:oid:${root}` : cdaUidToUri(root);
  if (!ext) return { system: 'urn:ietf:rfc:3986', value: ns };
  return { system: ns, value: ext };
}

function humanName(el: Element | undefined): HumanName | undefined {
  if (!el || attr(el, 'nullFlavor')) return undefined;
  const given = kids(el, 'given').map(textOf).filter((x): x is string => !!x);
  const family = kids(el, 'family').map(textOf).filter((x): x is string => !!x).join(' ');
  const prefix = kids(el, 'prefix').map(textOf).filter((x): x is string => !!x);
  const suffix = kids(el, 'suffix').map(textOf).filter((x): x is string => !!x);
  if (!given.length && !family) {
    const t = textOf(el);
    return t ? { text: t } : undefined;
  }
  return { ...(family ? { family } : {}), ...(given.length ? { given } : {}), ...(prefix.length ? { prefix } : {}), ...(suffix.length ? { suffix } : {}) };
}

function address(el: Element | undefined): Address | undefined {
  if (!el || attr(el, 'nullFlavor')) return undefined;
  const t = (n: string) => textOf(kid(el, n));
  const line = kids(el, 'streetAddressLine').map(textOf).filter((x): x is string => !!x);
  const street = [t('houseNumber'), t('streetName')].filter(Boolean).join(' ');
  if (!line.length && street) line.push(street);
  const use = { H: 'home', HP: 'home', WP: 'work', TMP: 'temp', OLD: 'old' }[attr(el, 'use') ?? ''] as Address['use'];
  const a: Address = { ...(use ? { use } : {}), ...(line.length ? { line } : {}), ...(t('city') ? { city: t('city') } : {}), ...(t('postalCode') ? { postalCode: t('postalCode') } : {}), ...(t('state') ? { state: t('state') } : {}), ...(t('country') ? { country: t('country') } : {}) };
  return Object.keys(a).length ? a : undefined;
}

function contact(el: Element): ContactPoint | undefined {
  const v = attr(el, 'value');
  if (!v) return undefined;
  const m = /^(tel|mailto|fax|https?):(.*)$/i.exec(v);
  const system: ContactPoint['system'] = !m ? 'other' : m[1]!.toLowerCase() === 'mailto' ? 'email' : m[1]!.toLowerCase() === 'fax' ? 'fax' : m[1]!.toLowerCase().startsWith('http') ? 'url' : 'phone';
  const value = m && system !== 'url' ? m[2]! : v;
  const use = { H: 'home', HP: 'home', WP: 'work', MC: 'mobile', TMP: 'temp' }[(attr(el, 'use') ?? '').split(' ')[0]!] as ContactPoint['use'];
  return { system, value, ...(use ? { use } : {}) };
}

const telecoms = (el: Element | undefined) => kids(el, 'telecom').map(contact).filter((x): x is ContactPoint => !!x);

function quantity(el: Element | undefined): Quantity | undefined {
  // A quantity whose unit the pivot does not permit comes as nullFlavor OTH with the quantity in a UCUM PQR translation.
  const tr = el && attr(el, 'nullFlavor') === 'OTH' ? kids(el, 'translation').find((t) => attr(t, 'value') !== undefined && attr(t, 'codeSystem') === '2.16.840.1.113883.6.8' && attr(t, 'code')) : undefined;
  if (tr) return { value: Number(attr(tr, 'value')), unit: attr(tr, 'code')!, system: 'http://unitsofmeasure.org', code: attr(tr, 'code')! };
  if (!el || attr(el, 'value') === undefined) return undefined;
  const unit = attr(el, 'unit') ?? '1';
  return { value: Number(attr(el, 'value')), unit, system: 'http://unitsofmeasure.org', code: unit };
}

function organization(el: Element | undefined, ctx: Ctx): Reference | undefined {
  // A nullFlavored organization (unknown) is none, whatever parts it still carries.
  if (!el || attr(el, 'nullFlavor')) return undefined;
  const id = identifier(kid(el, 'id'));
  const nm = attr(kid(el, 'name'), 'nullFlavor') ? undefined : textOf(kid(el, 'name'));
  const key = `${id?.system}|${id?.value}|${nm}`;
  const known = ctx.orgs.get(key);
  if (known) return { reference: known, ...(nm ? { display: nm } : {}) };
  // An organization's telecom is never 'home' (org-3): a CDA use H on it is dropped.
  const tels = telecoms(el).map((t) => (t.use === 'home' ? { system: t.system, value: t.value } : t));
  // An organization element with neither id nor name says whose telecom or address it is to no one: it is no
  // Organization (org-1 wants a name or an identifier, and none is invented). Only header elements carry one.
  if (!id && !nm) return undefined;
  // Nor is an organization's address ever 'home' (org-2): a CDA use H on it is dropped.
  const adr = address(kid(el, 'addr'));
  if (adr?.use === 'home') delete adr.use;
  const org: Organization = { resourceType: 'Organization', ...(id ? { identifier: [id] } : {}), ...(nm ? { name: nm } : {}), ...(tels.length ? { telecom: tels } : {}), ...(adr ? { address: [adr] } : {}) };
  const ref = add(ctx, org);
  ctx.orgs.set(key, ref.reference!);
  return { ...ref, ...(nm ? { display: nm } : {}) };
}

function practitioner(assigned: Element | undefined, ctx: Ctx): Reference | undefined {
  if (!assigned) return undefined;
  const person = kid(assigned, 'assignedPerson');
  const org = kid(assigned, 'representedOrganization');
  if (!person) {
    // A software author (assignedAuthoringDevice) is named on the reference; its organization, when it has one, is the author.
    const dev = kid(assigned, 'assignedAuthoringDevice');
    const software = textOf(kid(dev, 'softwareName')) ?? textOf(kid(dev, 'manufacturerModelName'));
    return organization(org, ctx) ?? (software ? { display: software } : undefined);
  }
  const n = humanName(kid(person, 'name'));
  const id = identifier(kid(assigned, 'id'));
  const code = fromCD(kid(assigned, 'code'), ctx);
  const p: Practitioner = {
    resourceType: 'Practitioner',
    ...(id ? { identifier: [id] } : {}),
    ...(n ? { name: [n] } : {}),
    ...(telecoms(assigned).length ? { telecom: telecoms(assigned) } : {}),
    ...(address(kid(assigned, 'addr')) ? { address: [address(kid(assigned, 'addr'))!] } : {}),
    ...(code ? { qualification: [{ code }] } : {}),
  };
  const ref = add(ctx, p);
  const orgRef = organization(org, ctx);
  if (orgRef) {
    // The organization the professional acts for: a PractitionerRole would be the IPS form; kept simple here.
    p.extension = [{ url: 'http://dsp.lu/fhir/StructureDefinition/represented-organization', valueReference: orgRef }];
  }
  const display = n ? [n.prefix?.join(' '), n.given?.join(' '), n.family].filter(Boolean).join(' ') || n.text : undefined;
  return { ...ref, ...(display ? { display } : {}) };
}

/** CDA nullFlavor -> data-absent-reason code (anything else, or no element at all: unknown). */
const DATA_ABSENT: Record<string, string> = { UNK: 'unknown', ASKU: 'asked-unknown', NAV: 'temp-unknown', NASK: 'not-asked', MSK: 'masked', NA: 'not-applicable' };

function patient(doc: Element, ctx: Ctx): Patient {
  const role = path(doc, 'recordTarget', 'patientRole');
  if (!role) throw unprocessable([{ severity: 'error', code: 'required', diagnostics: `ClinicalDocument has no recordTarget/patientRole${at(doc)}` }]);
  const p = kid(role, 'patient');
  const ids = kids(role, 'id').map(identifier).filter((x): x is Identifier => !!x);
  const gender = { M: 'male', F: 'female', UN: 'other' }[attr(kid(p, 'administrativeGenderCode'), 'code') ?? ''] as Patient['gender'];
  // A gender code outside M / F / UN (2-5678-W2: `MM`) is no FHIR gender (unknown): the code is kept for the way back.
  const otherGender = !gender && attr(kid(p, 'administrativeGenderCode'), 'code') ? fromCD(kid(p, 'administrativeGenderCode'), ctx) : undefined;
  const birth = tsToFhir(attr(kid(p, 'birthTime'), 'value'));
  const names = kids(p, 'name').map(humanName).filter((x): x is HumanName => !!x);
  const addrs = kids(role, 'addr').map(address).filter((x): x is Address => !!x);
  // Languages; a language's mode (LanguageAbilityMode: expressed / received, spoken / written) has no element in
  // Patient.communication: kept in cda-code `modeCode` on the communication for the way back.
  const langs = kids(p, 'languageCommunication')
    .map((l) => ({ code: attr(kid(l, 'languageCode'), 'code'), mode: fromCD(kid(l, 'modeCode'), ctx) }))
    .filter((x): x is { code: string; mode: CodeableConcept | undefined } => !!x.code);
  const marital = fromCD(kid(p, 'maritalStatusCode'), ctx);
  const contacts: PatientContact[] = [];
  // Guardians (recordTarget/patient/guardian, eHDSI 8.0.0 allows one with the IHE template) are contacts too: the
  // relationship code (eHDSIPersonalRelationship, or another RoleCode) and the role class GUARD say so.
  for (const g of kids(p, 'guardian')) {
    if (attr(g, 'nullFlavor')) continue;
    const rel = fromCD(kid(g, 'code'), ctx);
    const n = humanName(path(g, 'guardianPerson', 'name'));
    const org = textOf(path(g, 'guardianOrganization', 'name'));
    const adr = address(kid(g, 'addr'));
    const tel = telecoms(g);
    if (!n && !tel.length && !adr && !org) continue;
    contacts.push({
      relationship: [...(rel ? [rel] : []), { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleClass', code: 'GUARD' }] }],
      ...(n ? { name: n } : {}),
      ...(tel.length ? { telecom: tel } : {}),
      ...(adr ? { address: adr } : {}),
      ...(org ? { organization: { display: org } } : {}),
    });
  }
  for (const part of kids(doc, 'participant')) {
    const ae = kid(part, 'associatedEntity');
    if (!ae) continue;
    const rel = fromCD(kid(ae, 'code'), ctx);
    const cls = attr(ae, 'classCode');
    const n = humanName(path(ae, 'associatedPerson', 'name'));
    const org = textOf(path(ae, 'scopingOrganization', 'name'));
    // A participant with no name, telecom, address or organization tells nothing about whom to contact (pat-1).
    if (!n && !telecoms(ae).length && !address(kid(ae, 'addr')) && !org) continue;
    contacts.push({
      relationship: [...(rel ? [rel] : []), ...(cls ? [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleClass', code: cls }] }] : [])],
      ...(n ? { name: n } : {}),
      ...(telecoms(ae).length ? { telecom: telecoms(ae) } : {}),
      ...(address(kid(ae, 'addr')) ? { address: address(kid(ae, 'addr')) } : {}),
      ...(org ? { organization: { display: org } } : {}),
    });
  }
  return {
    resourceType: 'Patient',
    ...(otherGender ? { extension: cdaExt('administrativeGender', otherGender) } : {}),
    ...(ids.length ? { identifier: ids } : {}),
    ...(names.length ? { name: names } : {}),
    ...(telecoms(role).length ? { telecom: telecoms(role) } : {}),
    ...(gender ? { gender } : { gender: 'unknown' }),
    // The birth date is required (IPS, LU PS): a source without one says so with data-absent-reason.
    ...(birth ? { birthDate: birth.slice(0, 10) } : { _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: DATA_ABSENT[attr(kid(p, 'birthTime'), 'nullFlavor') ?? ''] ?? 'unknown' }] } }),
    ...(addrs.length ? { address: addrs } : {}),
    ...(marital ? { maritalStatus: marital } : {}),
    ...(contacts.length ? { contact: contacts } : {}),
    ...(langs.length ? { communication: langs.map((l) => ({ ...(l.mode ? { extension: cdaExt('modeCode', l.mode) } : {}), language: { coding: [{ system: 'urn:ietf:bcp:47', code: l.code }] } })) } : {}),
  };
}

// -- entries ---------------------------------------------------------------------------------------------------------

function time(el: Element | undefined): string | undefined {
  return tsToFhir(attr(el, 'value'));
}
function low(el: Element | undefined): string | undefined {
  return time(kid(el, 'low')) ?? time(el);
}
function high(el: Element | undefined): string | undefined {
  return time(kid(el, 'high'));
}

function entryText(el: Element, ctx: Ctx): string | undefined {
  const t = kid(el, 'text');
  if (!t) return undefined;
  const ref = attr(kid(t, 'reference'), 'value');
  if (ref?.startsWith('#')) return ctx.narrative.get(ref.slice(1));
  return textOf(t);
}

/**
 * SNOMED CT codes that older waves wrote for "no known" / "no information" entries, with the IPS absent/unknown
 * code each one means (the IPS code system is what 8.0.0 binds those entries to).
 */
const SNOMED_ABSENT: Record<string, string> = {
  '716186003': 'no-known-allergies', '160244002': 'no-known-allergies', '409137002': 'no-known-medication-allergies', '429625007': 'no-known-food-allergies',
  '428607008': 'no-known-environmental-allergies', '182849000': 'no-known-medications', '182904002': 'no-medication-info', '160245001': 'no-known-problems',
};

/** A concept coded with one of SNOMED_ABSENT gets the IPS absent/unknown code first; its own codings stay. */
function withAbsentCode(cc: CodeableConcept | undefined): CodeableConcept | undefined {
  if (!cc?.coding || isAbsent(cc)) return cc;
  const sct = cc.coding.find((c) => c.system === 'http://snomed.info/sct' && c.code && SNOMED_ABSENT[c.code]);
  return sct ? { ...cc, coding: [{ system: IPS_ABSENT_URI, code: SNOMED_ABSENT[sct.code!]! }, ...cc.coding] } : cc;
}

function isAbsent(cc: CodeableConcept | undefined): boolean {
  return !!cc?.coding?.some((c) => c.system === IPS_ABSENT_URI);
}

function statusOf(el: Element): string | undefined {
  return attr(kid(el, 'statusCode'), 'code');
}

/** IHE comment acts (LOINC 48767-8 "Annotation comment") under an entry (SUBJ, or COMP in result observations): FHIR `note`. */
function comments(el: Element, ctx: Ctx): Annotation[] {
  const out: Annotation[] = [];
  for (const act of rel(el)) {
    if (act.localName !== 'act' || attr(kid(act, 'code'), 'code') !== '48767-8') continue;
    const t = entryText(act, ctx) ?? textOf(kid(act, 'text'));
    if (t) out.push({ text: t });
  }
  return out;
}

function rel(el: Element, typeCode?: string): Element[] {
  return kids(el, 'entryRelationship')
    .filter((r) => !typeCode || attr(r, 'typeCode') === typeCode)
    .map((r) => kid(r, 'observation') ?? kid(r, 'act') ?? kid(r, 'substanceAdministration') ?? kid(r, 'supply'))
    .filter((x): x is Element => !!x);
}

function medication(sa: Element, ctx: Ctx): Resource[] {
  const mm = path(sa, 'consumable', 'manufacturedProduct', 'manufacturedMaterial');
  // An older wave's SNOMED "no drug therapy" / "drug treatment unknown" with no product is an absent entry.
  const noProduct = !mm || !!attr(mm, 'nullFlavor') || !attr(kid(mm, 'code'), 'code');
  const code = noProduct ? withAbsentCode(fromCD(kid(sa, 'code'), ctx)) : fromCD(kid(sa, 'code'), ctx);
  const subject = ctx.patientRef;
  if (isAbsent(code)) {
    return [{ resourceType: 'MedicationStatement', status: 'active', medicationCodeableConcept: code!, subject, effectiveDateTime: undefined } as MedicationStatement];
  }
  // Older epSOS documents use the epsos medication namespace for the same elements.
  // Any child in the pharm namespace (whatever its prefix: pharm:, ph:...) says which one the document uses.
  const ns = kids(mm).some((k) => k.namespaceURI === PHARM_NS) || !kids(mm).some((k) => k.namespaceURI === EPSOS_NS) ? PHARM_NS : EPSOS_NS;
  const ingredients = kids(mm, 'ingredient', ns)
    .filter((i) => (attr(i, 'classCode') ?? 'ACTI') === 'ACTI')
    .map((i) => {
      const sub = kid(i, 'ingredientSubstance', ns) ?? kid(i, 'ingredient', ns);
      const q = kid(i, 'quantity', ns);
      const item = fromCD(kid(sub, 'code', ns), ctx) ?? (textOf(kid(sub, 'name', ns)) ? { text: textOf(kid(sub, 'name', ns)) } : undefined);
      const num = quantity(kid(q, 'numerator') ?? kid(q, 'numerator', ns));
      const den = quantity(kid(q, 'denominator') ?? kid(q, 'denominator', ns));
      return { ...(item ? { itemCodeableConcept: item } : { itemCodeableConcept: { text: 'unknown' } }), isActive: true, ...(num ? { strength: { numerator: num, ...(den ? { denominator: den } : {}) } } : {}) };
    });
  const productCode = fromCD(kid(mm, 'code'), ctx);
  const nm = textOf(kid(mm, 'name'));
  const medCode: CodeableConcept | undefined = productCode ? { ...productCode, ...(nm && !productCode.text ? { text: nm } : {}) } : nm ? { text: nm } : undefined;
  const form = fromCD(kid(mm, 'formCode', ns), ctx);
  const px = ns === PHARM_NS ? 'pharm' : 'epsos';
  // The generic product: generalizedMaterialKind (8.0.0), or generalizedMedicineClass of older waves (the same
  // ATC class, written back as generalizedMaterialKind).
  const kinds = kids(mm, 'asSpecializedKind', ns);
  const generic =
    fromCD(kinds.map((k) => path(k, `${px}:generalizedMaterialKind`, `${px}:code`)).find((x) => x), ctx) ??
    fromCD(kinds.map((k) => path(k, `${px}:generalizedMedicineClass`, `${px}:code`)).find((x) => x), ctx);
  // The package (asContent): its form code is kept in the extension cda-code `packageForm`, its size
  // (asContent/quantity in 8.0.0, capacityQuantity of older waves) is Medication.amount (per one package).
  const pack = path(mm, `${px}:asContent`, `${px}:containerPackagedProduct`) ?? path(mm, `${px}:asContent`, `${px}:containerPackagedMedicine`);
  const packForm = fromCD(kid(pack, 'formCode', ns), ctx);
  const capacity = quantity(kid(kid(mm, 'asContent', ns), 'quantity', ns)) ?? quantity(kid(pack, 'capacityQuantity', ns));
  const medExt = [...(generic ? cdaExt('generalizedMaterialKind', generic) : []), ...(packForm ? cdaExt('packageForm', packForm) : [])];
  const med: Medication = {
    resourceType: 'Medication',
    ...(medExt.length ? { extension: medExt } : {}),
    ...(medCode ? { code: medCode } : {}),
    ...(form ? { form } : {}),
    ...(capacity ? { amount: { numerator: capacity, denominator: { value: 1, unit: '1', system: 'http://unitsofmeasure.org', code: '1' } } } : {}),
    ...(ingredients.length ? { ingredient: ingredients } : {}),
  };
  const medRef = add(ctx, med);
  const ets = kids(sa, 'effectiveTime');
  const period = ets.find((e) => xsiType(e) === 'IVL_TS' || kid(e, 'low') || kid(e, 'high')) ?? ets.find((e) => !xsiType(e));
  const dosage: Dosage = {};
  const timing: Timing = {};
  for (const e of ets) {
    const t = xsiType(e);
    if (t === 'PIVL_TS') {
      const p = kid(e, 'period');
      if (attr(p, 'value')) timing.repeat = { frequency: 1, period: Number(attr(p, 'value')), periodUnit: attr(p, 'unit') as 'd' };
    } else if (t === 'EIVL_TS') {
      const ev = fromCD(kid(e, 'event'), ctx);
      if (ev) timing.code = ev;
    }
  }
  if (Object.keys(timing).length) dosage.timing = timing;
  const route = fromCD(kid(sa, 'routeCode'), ctx);
  if (route) dosage.route = route;
  const dq = kid(sa, 'doseQuantity');
  if (dq) {
    const v = quantity(dq);
    if (v) dosage.doseAndRate = [{ doseQuantity: v }];
    else if (kid(dq, 'low') || kid(dq, 'high')) dosage.doseAndRate = [{ doseRange: { ...(quantity(kid(dq, 'low')) ? { low: quantity(kid(dq, 'low')) } : {}), ...(quantity(kid(dq, 'high')) ? { high: quantity(kid(dq, 'high')) } : {}) } }];
  }
  const txt = entryText(sa, ctx);
  if (txt) dosage.text = txt;
  // IHE instruction acts: patient instructions (PINSTRUCT) are Dosage.patientInstruction; every instruction act
  // is also an additionalInstruction with its act code (PINSTRUCT / FINSTRUCT, as coded in the source) and text,
  // written back as the same act.
  for (const act of rel(sa, 'SUBJ')) {
    const ac = fromCD(kid(act, 'code'), ctx);
    const k = ac?.coding?.[0]?.code;
    if (act.localName !== 'act' || (k !== 'PINSTRUCT' && k !== 'FINSTRUCT')) continue;
    const it = entryText(act, ctx);
    if (k === 'PINSTRUCT' && it && !dosage.patientInstruction) dosage.patientInstruction = it;
    (dosage.additionalInstruction ??= []).push({ coding: ac!.coding, ...(it ? { text: it } : {}) });
  }
  const reasons = rel(sa, 'RSON').map((o) => fromCD(kid(o, 'value'), ctx)).filter((x): x is CodeableConcept => !!x);
  const notes = comments(sa, ctx);
  const source = prescriber(kid(sa, 'author'), ctx);
  const st = statusOf(sa);
  const start = low(period);
  const end = high(period);
  return [
    {
      resourceType: 'MedicationStatement',
      status: st === 'completed' ? 'completed' : st === 'suspended' ? 'on-hold' : st === 'aborted' || st === 'cancelled' ? 'stopped' : 'active',
      medicationReference: { ...medRef, ...(nm ? { display: nm } : {}) },
      subject,
      ...(start || end ? { effectivePeriod: { ...(start ? { start } : {}), ...(end ? { end } : {}) } } : {}),
      ...(source?.time ? { dateAsserted: source.time } : {}),
      ...(source ? { informationSource: source.ref } : {}),
      ...(reasons.length ? { reasonCode: reasons } : {}),
      ...(notes.length ? { note: notes } : {}),
      ...(Object.keys(dosage).length ? { dosage: [dosage] } : {}),
    } as MedicationStatement,
  ];
}

/**
 * The author of a medication entry (eHDSIAuthorPrescriber: functionCode, time, the assigned author): a
 * PractitionerRole (code: the function code, practitioner, organization) as MedicationStatement.informationSource,
 * its time as dateAsserted. Only a person author is read (a device has no role).
 */
function prescriber(author: Element | undefined, ctx: Ctx): { ref: Reference; time?: string } | undefined {
  const assigned = kid(author, 'assignedAuthor');
  if (!assigned || !kid(assigned, 'assignedPerson')) return undefined;
  const pract = practitioner(assigned, ctx);
  if (!pract) return undefined;
  const fn = fromCD(kid(author, 'functionCode'), ctx);
  const org = organization(kid(assigned, 'representedOrganization'), ctx);
  const role: PractitionerRole = { resourceType: 'PractitionerRole', practitioner: pract, ...(org ? { organization: org } : {}), ...(fn ? { code: [fn] } : {}) };
  const t = time(kid(author, 'time'));
  return { ref: { ...add(ctx, role), ...(pract.display ? { display: pract.display } : {}) }, ...(t ? { time: t } : {}) };
}

const ALLERGY_TYPES: Record<string, { type?: AllergyIntolerance['type']; category?: AllergyIntolerance['category'] }> = {
  '416098002': { type: 'allergy', category: ['medication'] },
  '414285001': { type: 'allergy', category: ['food'] },
  '419199007': { type: 'allergy' },
  '59037007': { type: 'intolerance', category: ['medication'] },
  '235719002': { type: 'intolerance', category: ['food'] },
  '420134006': {},
  '609328004': { type: 'allergy' },
  '782197009': { type: 'intolerance' },
};
const SEVERITY: Record<string, 'mild' | 'moderate' | 'severe'> = { '255604002': 'mild', '6736007': 'moderate', '24484000': 'severe' };

/** The interpretation codes of a severity observation, each kept in cda-code `severityInterpretation`. */
function severityInterpretations(sevObs: Element, ctx: Ctx): Extension[] {
  return kids(sevObs, 'interpretationCode').flatMap((i) => cdaExt('severityInterpretation', fromCD(i, ctx)));
}

function allergy(act: Element, ctx: Ctx): Resource[] {
  const out: Resource[] = [];
  for (const obs of rel(act, 'SUBJ')) {
    const value = withAbsentCode(fromCD(kid(obs, 'value'), ctx));
    const obsCode = fromCD(kid(obs, 'code'), ctx);
    if (isAbsent(value)) {
      // no-known-allergies: a confirmed, active statement (as IPS writes it); no-allergy-info: the concern's status.
      // The observation's type code is kept for the way back (older waves: 420134006, 419199007...).
      const known = value?.coding?.[0]?.code?.startsWith('no-known') ?? false;
      const ext = cdaExt('type', obsCode);
      out.push({ resourceType: 'AllergyIntolerance', ...(ext.length ? { extension: ext } : {}), code: value, patient: ctx.patientRef, clinicalStatus: allergyClinical(known ? 'active' : concernClinical(act, obs)), ...(known ? { verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: 'confirmed' }] } } : {}) } as AllergyIntolerance);
      continue;
    }
    const playing = fromCD(path(obs, 'participant', 'participantRole', 'playingEntity', 'code'), ctx);
    const agent = playing ?? value ?? { text: entryText(obs, ctx) ?? 'unknown' };
    const typeCode = obsCode?.coding?.[0]?.code ?? '';
    const known = ALLERGY_TYPES[typeCode];
    const a: AllergyIntolerance = {
      resourceType: 'AllergyIntolerance',
      ...(known?.type ? { type: known.type } : {}),
      ...(known?.category ? { category: known.category } : {}),
      code: agent,
      patient: ctx.patientRef,
    };
    // A coded value beside the agent (PT samples repeat the agent there) is kept in cda-code `value` for the way back:
    // the observation's first value is an unbound CD in eHDSIAllergiesAndIntolerances (validator: 0 errors).
    const ext: Extension[] = [...cdaExt('type', obsCode), ...(playing && value?.coding?.length ? cdaExt('value', value) : [])];
    const et = kid(obs, 'effectiveTime');
    const on = low(et);
    if (on) a.onsetDateTime = on;
    const last = high(et);
    if (last) a.lastOccurrence = last;
    const rec = low(kid(act, 'effectiveTime'));
    if (rec) a.recordedDate = rec;
    for (const r of rel(obs, 'MFST')) {
      const m = fromCD(kid(r, 'value'), ctx);
      if (!m) continue;
      const reaction: NonNullable<AllergyIntolerance['reaction']>[number] = { manifestation: [m] };
      // The reaction observation's own code (418799008 in 8.0.0; older waves wrote others) is kept for the way back.
      const rc = fromCD(kid(r, 'code'), ctx);
      if (rc?.coding?.some((c) => c.code !== '418799008')) reaction.extension = cdaExt('reactionType', rc);
      const ron = low(kid(r, 'effectiveTime'));
      if (ron) reaction.onset = ron;
      for (const s of rel(r)) {
        if (attr(kid(s, 'code'), 'code') !== 'SEV') continue;
        const sv = fromCD(kid(s, 'value'), ctx);
        if (!sv) continue;
        const code = sv.coding?.[0]?.code;
        if (code && SEVERITY[code]) reaction.severity = SEVERITY[code];
        // The severity observation's interpretation (CCD wrote S / N): FHIR's reaction.severity is a bare code.
        const kept = [...(code && SEVERITY[code] ? [] : cdaExt('severity', sv)), ...severityInterpretations(s, ctx)];
        if (kept.length) reaction.extension = [...(reaction.extension ?? []), ...kept];
      }
      const rn = comments(r, ctx);
      if (rn.length) reaction.note = rn;
      (a.reaction ??= []).push(reaction);
    }
    // Older waves put the severity on the allergy observation itself: it belongs to the (first) reaction in FHIR.
    // (SUBJ in IHE; CCD wrote SAS.)
    // When the reaction has a severity of its own (RTD_CCD_Martha: an overall severity beside the reaction's), or
    // there is no reaction, the allergy-level severity and its interpretation stay on the AllergyIntolerance
    // (cda-code `severity` / `severityInterpretation`: R4 has no allergy-level severity).
    const sevObs = rel(obs).find((s) => attr(kid(s, 'code'), 'code') === 'SEV');
    const first = a.reaction?.[0];
    if (sevObs && first && !first.severity && !readCdaExt(first, 'severity')) {
      const sv = fromCD(kid(sevObs, 'value'), ctx);
      const code = sv?.coding?.[0]?.code;
      if (code && SEVERITY[code]) first.severity = SEVERITY[code];
      const kept = sv ? [...(code && SEVERITY[code] ? [] : cdaExt('severity', sv)), ...severityInterpretations(sevObs, ctx)] : [];
      if (kept.length) first.extension = [...(first.extension ?? []), ...kept];
    } else if (sevObs) {
      const sv = fromCD(kid(sevObs, 'value'), ctx);
      if (sv) ext.push(...cdaExt('severity', sv), ...severityInterpretations(sevObs, ctx));
    }
    const notes = comments(obs, ctx);
    if (notes.length) a.note = notes;
    // Who recorded the allergy (the observation's author: a Practitioner whose qualification keeps the author's role
    // code) and who told it (an informant related person: a RelatedPerson whose relationship keeps its code, e.g.
    // ONESELF).
    const au = kid(kid(obs, 'author'), 'assignedAuthor');
    const recorder = au && kid(au, 'assignedPerson') ? practitioner(au, ctx) : undefined;
    if (recorder) a.recorder = recorder;
    const informant = path(obs, 'informant', 'relatedEntity');
    if (informant) {
      const relation = fromCD(kid(informant, 'code'), ctx);
      const n = humanName(path(informant, 'relatedPerson', 'name'));
      if (relation || n) a.asserter = add(ctx, { resourceType: 'RelatedPerson', patient: ctx.patientRef, ...(relation ? { relationship: [relation] } : {}), ...(n ? { name: [n] } : {}) } as RelatedPerson);
    }
    for (const s of [...rel(obs, 'SUBJ'), ...rel(obs, 'REFR')]) {
      const c = attr(kid(s, 'code'), 'code');
      const v = fromCD(kid(s, 'value'), ctx);
      const vc = v?.coding?.[0]?.code;
      if (hasTemplate(s, T('3.33')) || c === '82606-5') {
        if (vc && ['low', 'high', 'unable-to-assess'].includes(vc)) a.criticality = vc as AllergyIntolerance['criticality'];
        else ext.push(...cdaExt('criticality', v));
      } else if (hasTemplate(s, T('3.35')) || c === '66455-7') {
        if (vc && ['unconfirmed', 'confirmed', 'refuted', 'entered-in-error'].includes(vc)) a.verificationStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: vc, ...(v?.coding?.[0]?.display ? { display: v.coding[0].display } : {}) }] };
        else ext.push(...cdaExt('certainty', v));
      } else if (hasTemplate(s, T('3.34')) || c === '33999-4') {
        if (vc && ['active', 'inactive', 'resolved'].includes(vc)) a.clinicalStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: vc, ...(v?.coding?.[0]?.display ? { display: v.coding[0].display } : {}) }] };
        else ext.push(...cdaExt('status', v));
      }
    }
    // ait-1: a clinical status is required unless the record is entered-in-error: with no allergy status
    // observation it comes from the concern act (concernClinical).
    if (!a.clinicalStatus && a.verificationStatus?.coding?.[0]?.code !== 'entered-in-error') a.clinicalStatus = allergyClinical(concernClinical(act, obs));
    if (ext.length) a.extension = ext;
    out.push(a);
  }
  return out;
}

function allergyClinical(code: string): CodeableConcept {
  return { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code }] };
}

/**
 * The allergy's clinical status when the CDA has no allergy status observation (eHDSI 3.34), as the IPS / eHDSI
 * mappings read the concern: its statusCode (active or suspended -> active, completed or aborted -> inactive),
 * else an end (effectiveTime high of the concern or the observation) -> resolved; with nothing said, active: an
 * entry of the allergy list is a current concern, and ait-1 admits no absent status.
 */
function concernClinical(act: Element, obs: Element): string {
  const st = statusOf(act);
  if (st === 'active' || st === 'suspended') return 'active';
  if (st === 'completed' || st === 'aborted') return 'inactive';
  if (high(kid(act, 'effectiveTime')) ?? high(kid(obs, 'effectiveTime'))) return 'resolved';
  return 'active';
}

const PROBLEM_STATUS: Record<string, string> = { '55561003': 'active', '73425007': 'inactive', '413322009': 'resolved', '277022003': 'remission', '255227004': 'recurrence' };

function condition(act: Element, ctx: Ctx, past: boolean): Resource[] {
  const out: Resource[] = [];
  for (const obs of rel(act, 'SUBJ')) {
    // An older wave's SNOMED CT absence code (160245001 "no current problems") says "no known problems" in the
    // problem list only; in the past-illness section it is a condition of the history, kept as it is.
    const coded = fromCD(kid(obs, 'value'), ctx);
    const value = past ? coded : withAbsentCode(coded);
    if (isAbsent(value)) {
      const ext = cdaExt('problemType', fromCD(kid(obs, 'code'), ctx));
      out.push({ resourceType: 'Condition', ...(ext.length ? { extension: ext } : {}), code: value, subject: ctx.patientRef } as Condition);
      continue;
    }
    const et = kid(obs, 'effectiveTime');
    const on = low(et) ?? low(kid(act, 'effectiveTime'));
    const end = high(et) ?? high(kid(act, 'effectiveTime'));
    const c: Condition = {
      resourceType: 'Condition',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item' }] }],
      code: value ?? { text: entryText(obs, ctx) ?? 'unknown' },
      subject: ctx.patientRef,
      ...(on ? { onsetDateTime: on } : {}),
      ...(end ? { abatementDateTime: end } : {}),
    };
    // A qualifier of the problem value (CD qualifier/value, e.g. a stage) has no generic FHIR element (a qualifier may
    // be a stage, a laterality, a severity...): each is kept in cda-code `valueQualifier`.
    const qualifiers = kids(kid(obs, 'value'), 'qualifier').map((q) => fromCD(kid(q, 'value'), ctx)).filter((x): x is CodeableConcept => !!x);
    const ext: Extension[] = [...cdaExt('problemType', fromCD(kid(obs, 'code'), ctx)), ...qualifiers.flatMap((q) => cdaExt('valueQualifier', q))];
    let clinical: string | undefined;
    for (const s of [...rel(obs, 'REFR'), ...rel(obs, 'SUBJ')]) {
      const code = attr(kid(s, 'code'), 'code');
      const v = fromCD(kid(s, 'value'), ctx);
      if (code === 'SEV') {
        if (v) c.severity = v;
      } else if (code === '33999-4') {
        const k = v?.coding?.[0]?.code;
        if (k && PROBLEM_STATUS[k]) clinical = PROBLEM_STATUS[k];
        ext.push(...cdaExt('status', v));
      } else if (code === '11323-3') ext.push(...cdaExt('healthStatus', v));
      else if (hasTemplate(s, T('3.9')) || hasTemplate(s, T('3.49')) || code === '246103008' || code === '66455-7') {
        const k = v?.coding?.[0]?.code;
        if (k && ['unconfirmed', 'provisional', 'differential', 'confirmed', 'refuted', 'entered-in-error'].includes(k)) c.verificationStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: k }] };
        else ext.push(...cdaExt('certainty', v));
      }
    }
    const notes = comments(obs, ctx);
    if (notes.length) c.note = notes;
    careTeams(obs, c, ctx);
    clinical ??= past || end || statusOf(act) === 'completed' ? 'resolved' : 'active';
    c.clinicalStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: clinical }] };
    if (ext.length) c.extension = ext;
    out.push(c);
  }
  return out;
}

/**
 * eHDSI care team acts (3.48, LOINC 85847-2, PCPR) under a problem observation: the team that looks after the
 * condition (the rare-disease care team). FHIR's home is a CareTeam whose reasonReference is the Condition (category:
 * the act code, participants: the performers); it is in the Bundle, referenced by no section, and written back
 * under the same problem.
 */
function careTeams(obs: Element, c: Condition, ctx: Ctx): void {
  for (const act of rel(obs, 'REFR')) {
    if (act.localName !== 'act' || !(hasTemplate(act, T('3.48')) || attr(kid(act, 'code'), 'code') === '85847-2')) continue;
    c.id ??= randomUUID();
    const code = fromCD(kid(act, 'code'), ctx);
    const st = statusOf(act);
    const status = st === 'normal' || st === 'active' ? 'active' : st === 'completed' ? 'inactive' : st === 'suspended' ? 'suspended' : undefined;
    const et = kid(act, 'effectiveTime');
    const members = kids(act, 'performer').map((p) => practitioner(kid(p, 'assignedEntity'), ctx)).filter((r): r is Reference => !!r);
    const team: CareTeam = {
      resourceType: 'CareTeam',
      ...(status ? { status } : {}),
      ...(code ? { category: [code] } : {}),
      subject: ctx.patientRef,
      ...(low(et) || high(et) ? { period: { ...(low(et) ? { start: low(et) } : {}), ...(high(et) ? { end: high(et) } : {}) } } : {}),
      ...(members.length ? { participant: members.map((member) => ({ member })) } : {}),
      reasonReference: [{ reference: `urn:uuid:${c.id}` }],
    };
    add(ctx, team);
  }
}

function procedure(p: Element, ctx: Ctx): Resource[] {
  const code = fromCD(kid(p, 'code'), ctx) ?? { text: entryText(p, ctx) ?? 'unknown' };
  const et = kid(p, 'effectiveTime');
  const st = statusOf(p);
  const r: Procedure = {
    resourceType: 'Procedure',
    status: isAbsent(code) ? 'unknown' : st === 'active' ? 'in-progress' : st === 'cancelled' || st === 'aborted' ? 'not-done' : 'completed',
    code,
    subject: ctx.patientRef,
  };
  if (!isAbsent(code)) {
    // A period with only nullFlavored bounds is no period (an empty object is not FHIR).
    if ((kid(et, 'low') || kid(et, 'high')) && (low(et) || high(et))) r.performedPeriod = { ...(low(et) ? { start: low(et) } : {}), ...(high(et) ? { end: high(et) } : {}) };
    else if (time(et)) r.performedDateTime = time(et);
  }
  const sites = kids(p, 'targetSiteCode').map((s) => fromCD(s, ctx)).filter((x): x is CodeableConcept => !!x);
  if (sites.length) r.bodySite = sites;
  return [r];
}

function device(s: Element, ctx: Ctx): Resource[] {
  const role = path(s, 'participant', 'participantRole');
  const type = fromCD(path(role, 'playingDevice', 'code'), ctx) ?? { text: entryText(s, ctx) ?? 'unknown' };
  const udi = attr(kid(role, 'id'), 'extension');
  // The model (playingDevice/manufacturerModelName, an SC: text with an optional code): its name is Device.deviceName
  // (model-name); its code, which FHIR has no element for, is kept in cda-code `manufacturerModelName`.
  const model = path(role, 'playingDevice', 'manufacturerModelName');
  const modelName = textOf(model);
  const modelCode = attr(model, 'code') ? fromCD(model, ctx) : undefined;
  const dev: Device = {
    resourceType: 'Device',
    ...(modelCode ? { extension: cdaExt('manufacturerModelName', modelCode) } : {}),
    type,
    patient: ctx.patientRef,
    ...(udi ? { udiCarrier: [{ deviceIdentifier: udi }] } : {}),
    ...(modelName ? { deviceName: [{ name: modelName, type: 'model-name' }] } : {}),
  };
  const devRef = add(ctx, dev);
  // Older waves also coded the supply act itself (supply/code, the device kind again): kept for the way back.
  const sc = fromCD(kid(s, 'code'), ctx);
  const supplyCode = cdaExt('supplyCode', sc?.coding?.length ? sc : undefined);
  const et = kid(s, 'effectiveTime');
  const start = low(et);
  const end = high(et);
  return [
    {
      resourceType: 'DeviceUseStatement',
      ...(supplyCode.length ? { extension: supplyCode } : {}),
      status: isAbsent(type) ? 'active' : end ? 'completed' : 'active',
      subject: ctx.patientRef,
      device: devRef,
      ...(start || end ? { timingPeriod: { ...(start ? { start } : {}), ...(end ? { end } : {}) } } : {}),
    } as DeviceUseStatement,
  ];
}

function immunization(sa: Element, ctx: Ctx): Resource[] {
  const mm = path(sa, 'consumable', 'manufacturedProduct', 'manufacturedMaterial');
  const vaccine = fromCD(kid(mm, 'code'), ctx) ?? { text: textOf(kid(mm, 'name')) ?? entryText(sa, ctx) ?? 'unknown' };
  const nm = textOf(kid(mm, 'name'));
  if (nm && !vaccine.text) vaccine.text = nm;
  const when = time(kid(sa, 'effectiveTime')) ?? low(kid(sa, 'effectiveTime'));
  const im: Immunization = {
    resourceType: 'Immunization',
    status: attr(sa, 'negationInd') === 'true' ? 'not-done' : 'completed',
    vaccineCode: vaccine,
    patient: ctx.patientRef,
    ...(when ? { occurrenceDateTime: when } : { occurrenceString: 'unknown' }),
    primarySource: true,
  };
  const lot = textOf(kid(mm, 'lotNumberText'));
  if (lot) im.lotNumber = lot;
  const route = fromCD(kid(sa, 'routeCode'), ctx);
  if (route) im.route = route;
  const site = fromCD(kid(sa, 'approachSiteCode'), ctx);
  if (site) im.site = site;
  const dq = quantity(kid(sa, 'doseQuantity'));
  if (dq) im.doseQuantity = dq;
  // The administration unit (a coded unit of the dose, e.g. the LU "VACCINATION DOSE" codes) has no FHIR element.
  const unit = fromCD(kid(sa, 'administrationUnitCode'), ctx);
  // The act code (IMMUNIZ) is fixed by the template; a source that wrote it under another code system (HL7
  // ActCode in older waves) keeps its coding for the way back.
  const actCode = fromCD(kid(sa, 'code'), ctx);
  const keptAct = actCode?.coding?.some((c) => c.system !== IHE_ACT_CODE_URI) ? actCode : undefined;
  const ext = [...cdaExt('administrationUnit', unit), ...cdaExt('actCode', keptAct)];
  if (ext.length) im.extension = ext;
  const manu = textOf(path(sa, 'consumable', 'manufacturedProduct', 'manufacturerOrganization', 'name'));
  if (manu) im.manufacturer = { display: manu };
  const perf = kid(sa, 'performer');
  if (perf) {
    const ref = practitioner(kid(perf, 'assignedEntity'), ctx);
    if (ref) im.performer = [{ actor: ref }];
  }
  const targets = kids(sa, 'participant')
    .filter((p) => attr(p, 'typeCode') === 'IND' || attr(kid(p, 'participantRole'), 'classCode') === 'AGNT')
    .map((p) => fromCD(path(p, 'participantRole', 'code'), ctx))
    .filter((x): x is CodeableConcept => !!x);
  let dose: number | undefined;
  for (const o of rel(sa)) if (attr(kid(o, 'code'), 'code') === '30973-2' && attr(kid(o, 'value'), 'value')) dose = Number(attr(kid(o, 'value'), 'value'));
  if (targets.length || dose !== undefined) im.protocolApplied = [{ ...(targets.length ? { targetDisease: targets } : {}), doseNumberPositiveInt: dose !== undefined && dose > 0 ? dose : 1 }];
  return [im];
}

function observationValue(o: Element, ctx: Ctx, target: Observation | ObservationComponent): void {
  const v = kid(o, 'value');
  if (!v) return;
  const t = xsiType(v);
  if (attr(v, 'nullFlavor') && !kid(v, 'translation') && !kid(v, 'originalText')) {
    target.dataAbsentReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }], extension: [{ url: EXT_NULLFLAVOR, valueCode: attr(v, 'nullFlavor') }] };
    return;
  }
  if (t === 'PQ') {
    const q = quantity(v);
    if (q) target.valueQuantity = q;
  } else if (t === 'IVL_PQ') {
    const l = quantity(kid(v, 'low'));
    const h = quantity(kid(v, 'high'));
    target.valueRange = { ...(l ? { low: l } : {}), ...(h ? { high: h } : {}) };
  } else if (t === 'ST' || t === 'ED') target.valueString = textOf(v) ?? '';
  else if (t === 'BL') target.valueBoolean = attr(v, 'value') === 'true';
  else if (t === 'INT') target.valueInteger = Number(attr(v, 'value'));
  else if (t === 'TS') {
    const d = time(v);
    if (d) target.valueDateTime = d;
  } else if (t === 'RTO_PQ_PQ' || t === 'RTO') {
    const n = quantity(kid(v, 'numerator'));
    const d = quantity(kid(v, 'denominator'));
    target.valueRatio = { ...(n ? { numerator: n } : {}), ...(d ? { denominator: d } : {}) };
  } else {
    const cc = fromCD(v, ctx);
    if (cc) target.valueCodeableConcept = cc;
  }
}

function observation(o: Element, ctx: Ctx, category: string, time0?: string): Observation {
  const code = fromCD(kid(o, 'code'), ctx) ?? { text: entryText(o, ctx) ?? 'unknown' };
  const et = kid(o, 'effectiveTime');
  const obs: Observation = {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code,
    subject: ctx.patientRef,
  };
  if (kid(et, 'low') || kid(et, 'high')) obs.effectivePeriod = { ...(low(et) ? { start: low(et) } : {}), ...(high(et) ? { end: high(et) } : {}) };
  else if (time(et) ?? time0) obs.effectiveDateTime = time(et) ?? time0;
  observationValue(o, ctx, obs);
  const interp = kids(o, 'interpretationCode').map((i) => fromCD(i, ctx)).filter((x): x is CodeableConcept => !!x);
  if (interp.length) obs.interpretation = interp;
  for (const r of kids(o, 'referenceRange')) {
    const rr = kid(r, 'observationRange');
    const v = kid(rr, 'value');
    // An IVL_PQ range, or a single PQ (a range of one value: low = high, written back as the PQ).
    const point = xsiType(v) === 'PQ' ? quantity(v) : undefined;
    const l = point ?? quantity(kid(v, 'low'));
    const h = point ?? quantity(kid(v, 'high'));
    const txt = textOf(kid(rr, 'text'));
    // The range's interpretation (N: the normal range) is what FHIR calls the range's type.
    const type = fromCD(kid(rr, 'interpretationCode'), ctx);
    if (l || h || txt || type) (obs.referenceRange ??= []).push({ ...(l ? { low: l } : {}), ...(h ? { high: h } : {}), ...(type ? { type } : {}), ...(txt ? { text: txt } : {}) });
  }
  const method = fromCD(kid(o, 'methodCode'), ctx);
  if (method) obs.method = method;
  const sites = kids(o, 'targetSiteCode').map((s) => fromCD(s, ctx)).filter((x): x is CodeableConcept => !!x);
  if (sites.length) obs.bodySite = sites[0];
  const notes = comments(o, ctx);
  if (notes.length) obs.note = notes;
  return obs;
}

function organizerObservations(org: Element, ctx: Ctx, category: string, keepCode = true): Observation[] {
  const t0 = time(kid(org, 'effectiveTime')) ?? low(kid(org, 'effectiveTime'));
  const comps = kids(org, 'component').map((c) => kid(c, 'observation')).filter((x): x is Element => !!x);
  const obs = comps.map((c) => observation(c, ctx, category, t0));
  const orgCode = keepCode ? fromCD(kid(org, 'code'), ctx) : undefined;
  for (const o of obs) if (orgCode) o.extension = [...(o.extension ?? []), ...cdaExt('organizer', orgCode)];
  return obs;
}

/**
 * A result organizer (eHDSI 3.42, IHE battery) becomes a panel Observation whose members (hasMember) are the
 * organizer's observations (eHDSI 3.43), as FHIR groups results; the members are in the Bundle, the section lists the panel.
 */
function resultPanel(org: Element, ctx: Ctx): Observation {
  const members = organizerObservations(org, ctx, 'laboratory', false);
  const et = kid(org, 'effectiveTime');
  const t0 = time(et) ?? low(et);
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: fromCD(kid(org, 'code'), ctx) ?? { text: entryText(org, ctx) ?? 'Results' },
    subject: ctx.patientRef,
    ...(t0 ? { effectiveDateTime: t0 } : {}),
    hasMember: members.map((m) => add(ctx, m)),
  };
}

/** A vital signs organizer (blood pressure in eHDSI 8) becomes one blood pressure panel with components. */
function vitalPanel(org: Element, ctx: Ctx): Observation {
  const parts = organizerObservations(org, ctx, 'vital-signs');
  const t0 = time(kid(org, 'effectiveTime')) ?? low(kid(org, 'effectiveTime')) ?? parts[0]?.effectiveDateTime;
  const panel: Observation = {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: LOINC_URI, code: '85354-9', display: 'Blood pressure panel with all children optional' }] },
    subject: ctx.patientRef,
    ...(t0 ? { effectiveDateTime: t0 } : {}),
    component: parts.map((p) => ({ code: p.code, ...(p.valueQuantity ? { valueQuantity: p.valueQuantity } : {}), ...(p.dataAbsentReason ? { dataAbsentReason: p.dataAbsentReason } : {}) })),
  };
  return panel;
}

function toImpression(o: Observation): ClinicalImpression {
  return {
    resourceType: 'ClinicalImpression',
    status: 'completed',
    code: o.code,
    subject: o.subject!,
    ...(o.effectiveDateTime ? { effectiveDateTime: o.effectiveDateTime } : {}),
    ...(o.effectivePeriod ? { effectivePeriod: o.effectivePeriod } : {}),
    ...(o.valueCodeableConcept ? { finding: [{ itemCodeableConcept: o.valueCodeableConcept }] } : {}),
    ...(o.extension ? { extension: o.extension } : {}),
  };
}

// -- sections -----------------------------------------------------------------------------------------------------------

const KEY: Record<string, string> = {
  '10160-0': 'medication', '48765-2': 'allergies', '11450-4': 'problems', '47519-4': 'procedures', '46264-8': 'devices', '11348-0': 'pastIllness',
  '11369-6': 'immunizations', '10162-6': 'pregnancy', '29762-2': 'social', '8716-3': 'vitals', '30954-2': 'results', '47420-5': 'functional',
  '18776-5': 'plan', '42348-3': 'advance',
};

function sectionResources(key: string, entry: Element, ctx: Ctx): Resource[] {
  // The clinical statement (some sources put a templateId on the entry itself, before it).
  const act = kids(entry).find((k) => k.namespaceURI === CDA_NS && k.localName !== 'templateId');
  if (!act) return [];
  const name = act.localName;
  switch (key) {
    case 'medication':
      return name === 'substanceAdministration' ? medication(act, ctx) : [];
    case 'allergies':
      return name === 'act' ? allergy(act, ctx) : [];
    case 'problems':
    case 'pastIllness':
      return name === 'act' ? condition(act, ctx, key === 'pastIllness') : name === 'observation' ? condition({ ...act, localName: 'act' } as Element, ctx, key === 'pastIllness') : [];
    case 'procedures':
      return name === 'procedure' ? procedure(act, ctx) : [];
    case 'devices':
      return name === 'supply' ? device(act, ctx) : [];
    case 'immunizations':
      return name === 'substanceAdministration' ? immunization(act, ctx) : [];
    case 'vitals':
      return name === 'organizer' ? [vitalPanel(act, ctx)] : name === 'observation' ? [observation(act, ctx, 'vital-signs')] : [];
    case 'results':
      // An organizer with no code (NI) around one observation is how the writer carries a result that stood
      // alone: it reads back as that observation, not as a panel.
      if (name === 'organizer' && attr(kid(act, 'code'), 'nullFlavor') && kids(act, 'component').length === 1) return organizerObservations(act, ctx, 'laboratory', false);
      return name === 'organizer' ? [resultPanel(act, ctx)] : name === 'observation' ? [observation(act, ctx, 'laboratory')] : [];
    case 'functional':
      // IPS functional status entries are Condition / ClinicalImpression: each assessed observation becomes a
      // ClinicalImpression (code = what was assessed, finding = the result).
      return (name === 'organizer' ? organizerObservations(act, ctx, 'survey') : name === 'observation' ? [observation(act, ctx, 'survey')] : []).map(toImpression);
    case 'social':
      return name === 'observation' ? [observation(act, ctx, 'social-history')] : [];
    case 'pregnancy': {
      if (name !== 'observation') return [];
      const main = observation(act, ctx, 'social-history');
      const nested = rel(act).filter((o) => o.localName === 'observation').map((o) => observation(o, ctx, 'social-history'));
      return [main, ...nested];
    }
    default:
      return [];
  }
}

/** Parses and converts a pivot CDA document (text or bytes) into a FHIR document Bundle. */
export function cdaToBundle(xml: string | Buffer, opts: FromCdaOptions = {}): Bundle {
  const doc = parseXml(xml, opts.limits);
  return cdaDocumentToBundle(doc, opts);
}

export function cdaDocumentToBundle(doc: Element, opts: FromCdaOptions = {}): Bundle {
  if (doc.localName !== 'ClinicalDocument' || doc.namespaceURI !== CDA_NS) {
    // HL7 v3 batch / interaction wrappers (MCCI_IN200101 and the like) are messages carrying national documents,
    // not a pivot CDA: refused, with what they are named.
    if (doc.namespaceURI === CDA_NS && /^[A-Z]{4}_IN\d{6}$/.test(doc.localName ?? '')) {
      throw new FhirError(422, [{ severity: 'error', code: 'not-supported', diagnostics: `The root element <${doc.localName}> is an HL7 v3 ${doc.localName === 'MCCI_IN200101' ? 'batch ' : ''}message, not a CDA ClinicalDocument: only a Patient Summary pivot CDA document is converted` }]);
    }
    throw new FhirError(422, [{ severity: 'error', code: 'structure', diagnostics: `The root element is <${doc.tagName}> in namespace ${doc.namespaceURI ?? 'none'}: expected a CDA ClinicalDocument (urn:hl7-org:v3)` }]);
  }
  const code = attr(kid(doc, 'code'), 'code');
  if (code !== PATIENT_SUMMARY_LOINC) {
    throw new FhirError(422, [{ severity: 'error', code: 'business-rule', diagnostics: `ClinicalDocument/code is ${code ?? 'absent'}${at(kid(doc, 'code') ?? doc)}: only a Patient Summary (LOINC 60591-5) is converted` }]);
  }
  const docLang = attr(kid(doc, 'languageCode'), 'code');
  const ctx: Ctx = { narrative: new Map(), lang: opts.lang ?? docLang, entries: [], patientRef: { reference: '' }, orgs: new Map() };
  const compId = randomUUID();
  const pat = patient(doc, ctx);
  ctx.patientRef = add(ctx, pat);
  const authors = kids(doc, 'author').map((a) => practitioner(kid(a, 'assignedAuthor'), ctx)).filter((x): x is Reference => !!x);
  const custodian = organization(path(doc, 'custodian', 'assignedCustodian', 'representedCustodianOrganization'), ctx);
  const la = kid(doc, 'legalAuthenticator');
  const laRef = la ? practitioner(kid(la, 'assignedEntity'), ctx) : undefined;
  const se = path(doc, 'documentationOf', 'serviceEvent', 'effectiveTime');
  const parent = identifier(path(doc, 'relatedDocument', 'parentDocument', 'id'));
  const date = time(kid(doc, 'effectiveTime')) ?? new Date().toISOString();

  const sections: CompositionSection[] = [];
  for (const comp of kids(path(doc, 'component', 'structuredBody'), 'component')) {
    const sec = kid(comp, 'section');
    if (!sec) continue;
    sections.push(...readSection(sec, ctx));
  }
  const setId = identifier(kid(doc, 'setId'));
  const conf = attr(kid(doc, 'confidentialityCode'), 'code');
  const composition: Composition = {
    resourceType: 'Composition',
    id: compId,
    ...(setId ? { identifier: setId } : {}),
    status: 'final',
    type: { coding: [{ system: LOINC_URI, code: PATIENT_SUMMARY_LOINC, display: 'Patient summary Document' }] },
    subject: ctx.patientRef,
    date,
    author: authors.length ? authors : [{ display: 'unknown' }],
    title: textOf(kid(doc, 'title')) ?? 'Patient Summary',
    ...(conf && ['U', 'L', 'M', 'N', 'R', 'V'].includes(conf) ? { confidentiality: conf as Composition['confidentiality'] } : {}),
    ...(laRef ? { attester: [{ mode: 'legal', ...(time(kid(la, 'time')) ? { time: time(kid(la, 'time')) } : {}), party: laRef }] } : {}),
    ...(custodian ? { custodian } : {}),
    ...(parent ? { relatesTo: [{ code: 'transforms', targetIdentifier: parent }] } : {}),
    ...(se && ((low(se) && kid(se, 'low')) || high(se)) ? { event: [{ period: { ...(low(se) && kid(se, 'low') ? { start: low(se) } : {}), ...(high(se) ? { end: high(se) } : {}) } }] } : {}),
    section: sections,
  };
  if (docLang) composition.language = docLang;
  const id = identifier(kid(doc, 'id'));
  return {
    resourceType: 'Bundle',
    ...(docLang ? { language: docLang } : {}),
    ...(id ? { identifier: id } : {}),
    type: 'document',
    // Bundle.timestamp is an instant (when the Bundle was assembled): the document time when it is one, else
    // the time of this conversion (a date-only effectiveTime stays in Composition.date, no time is invented).
    timestamp: date && /T\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(date) ? date : new Date().toISOString(),
    entry: [{ fullUrl: `urn:uuid:${compId}`, resource: composition }, ...ctx.entries],
  };
}

function readSection(sec: Element, ctx: Ctx): CompositionSection[] {
  const code = fromCD(kid(sec, 'code'), { narrative: new Map() });
  const loinc = attr(kid(sec, 'code'), 'code') ?? '';
  const key = KEY[loinc];
  narrativeIds(kid(sec, 'text'), ctx.narrative);
  const div = narrativeToXhtml(kid(sec, 'text'));
  // Composition.section.title is required (IPS, LU PS): a section without one is titled by its code, the
  // section label in the reader's language (narrative.ts), else the code's display.
  const title = textOf(kid(sec, 'title')) ?? (key ? labels(ctx.lang ?? 'en')[key] : undefined) ?? code?.coding?.[0]?.display ?? code?.text;
  const refs: Reference[] = [];
  for (const e of kids(sec, 'entry')) {
    for (const r of key ? sectionResources(key, e, ctx) : []) refs.push(add(ctx, r));
  }
  const out: CompositionSection = {
    ...(title ? { title } : {}),
    ...(code ? { code } : {}),
    text: { status: 'generated', div: div ?? '<div xmlns="http://www.w3.org/1999/xhtml"><p/></div>' },
  };
  if (refs.length) out.entry = refs;
  else out.emptyReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/list-empty-reason', code: 'unavailable' }] };
  const subs = kids(sec, 'component').map((c) => kid(c, 'section')).filter((x): x is Element => !!x);
  if (subs.length) out.section = subs.flatMap((s) => readSection(s, ctx));
  return [out];
}

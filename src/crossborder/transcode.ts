/**
 * Transcoding between FHIR codings and eHDSI CDA coded elements, through the terminology module: the MVC value
 * sets (terminology/, release 8.0.0) say which codes the pivot accepts for an element, the code-system table
 * gives OIDs and codeSystemNames, the designations give displays in the reader's language.
 *
 * FHIR -> CDA: the first coding that is in the element's MVC value set becomes the CD; the other codings travel
 * in <translation>. When no coding is an MVC code, each (Luxembourg) coding is mapped through the terminology
 * module's ConceptMaps ($translate: terminology/lu, national -> MVC) and the first target in the value set
 * becomes the CD, the national coding its <translation> (as OpenNCP transcodes). With no MVC code at all the CD
 * gets nullFlavor="OTH", originalText and every original coding as a <translation>. CDA -> FHIR: the CD and its translations all become codings (nothing is dropped), the
 * originalText becomes CodeableConcept.text, a nullFlavor is kept in an extension.
 */
import type { CodeableConcept, Coding, Extension } from 'fhir/r4';
import { describeCodeSystem as describeTableSystem, oidToUri, canonicalSystem, isOid } from '../terminology/codesystems.ts';
import { terminologyService } from '../terminology/service.ts';
import { translate } from '../terminology/engine.ts';
import { chooseDisplay } from '../terminology/language.ts';
import type { Scope } from '../terminology/registry.ts';
import { attr, kid, kids, textOf, CDA_NS, type Element, type X } from './cda/xml.ts';

export const MVC_VERSION = '8.0.0';
/** LOINC, and the LOINC code of a Patient Summary document (FHIR Composition.type, CDA ClinicalDocument/code). */
export const LOINC_URI = 'http://loinc.org';
export const PATIENT_SUMMARY_LOINC = '60591-5';
/** The Luxembourg national identification number (matricule): OID, and FHIR identifier system. */
export const MATRICULE_OID = '1.3.182.4.4';
export const MATRICULE_SYSTEM = `urn:oid:${MATRICULE_OID}`;
const MVC = '1.3.6.1.4.1.12559.11.10.1.3.1.42.';

/** The MVC value sets the mapping uses (OIDs). */
export const VS = {
  healthcareProfessionalRole: `${MVC}1`,
  doseForm: `${MVC}2`,
  package: `${MVC}3`,
  country: `${MVC}4`,
  illness: `${MVC}5`,
  language: `${MVC}6`,
  medicalDevice: `${MVC}8`,
  pregnancyInformation: `${MVC}9`,
  procedure: `${MVC}10`,
  reactionAllergy: `${MVC}11`,
  route: `${MVC}12`,
  severity: `${MVC}13`,
  socialHistory: `${MVC}14`,
  statusCode: `${MVC}15`,
  unit: `${MVC}16`,
  adverseEventType: `${MVC}18`,
  allergenNoDrug: `${MVC}19`,
  bloodGroup: `${MVC}20`,
  bloodPressure: `${MVC}21`,
  codeProb: `${MVC}23`,
  activeIngredient: `${MVC}24`,
  vaccine: `${MVC}28`,
  resolutionOutcome: `${MVC}30`,
  confidentiality: `${MVC}31`,
  gender: `${MVC}34`,
  personalRelationship: `${MVC}38`,
  absentAllergy: `${MVC}47`,
  absentDevice: `${MVC}48`,
  absentMedication: `${MVC}49`,
  absentProblem: `${MVC}50`,
  absentProcedure: `${MVC}51`,
  criticality: `${MVC}57`,
  allergyCertainty: `${MVC}58`,
  allergyStatus: `${MVC}59`,
  currentPregnancyStatus: `${MVC}60`,
  outcomeOfPregnancy: `${MVC}62`,
  rareDisease: `${MVC}63`,
  certainty: `${MVC}64`,
  bodySite: `${MVC}65`,
} as const;

/**
 * CDA uids (codeSystem, II root) that are neither an OID nor a UUID (`CNPEM`, `CPARA-REACAO`, `NA`, the RUID
 * `PRT00000009`): FHIR gets them under this project namespace, the value as given (percent-encoded), because
 * `urn:oid:` demands an OID. The way back to CDA writes a kept code system unchanged as `codeSystem`; a kept
 * identifier namespace cannot be an II root (dtr1-10a-II), so the identifier goes back as
 * `<id nullFlavor="OTH" extension="<value>"/>` (docs/crossborder.md).
 */
export const CDA_UID_NS = 'https://dsp.lu/fhir/cda-uid/';
/** A UUID (either case): the one pattern the module uses for CDA uids, FHIR ids and urn:uuid values. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string | undefined): s is string => !!s && UUID_RE.test(s);

/** The FHIR system (or identifier namespace) for a CDA uid: OID -> the table's URI or urn:oid, UUID -> urn:uuid, else CDA_UID_NS. */
export function cdaUidToUri(uid: string): string {
  const t = uid.trim();
  if (isOid(t)) return oidToUri(t);
  if (UUID_RE.test(t)) return `urn:uuid:${t.toLowerCase()}`;
  return CDA_UID_NS + encodeURIComponent(t);
}

/** The CDA uid kept under CDA_UID_NS (undefined for any other URI). */
export function keptCdaUid(uri: string | undefined): string | undefined {
  if (!uri?.startsWith(CDA_UID_NS)) return undefined;
  try {
    return decodeURIComponent(uri.slice(CDA_UID_NS.length)) || undefined;
  } catch {
    return undefined;
  }
}

/** describeCodeSystem of the terminology module, plus the uids kept under CDA_UID_NS and urn:uuid systems. */
export function describeCodeSystem(system: string): { uri: string; oid?: string; cdaName?: string } {
  const kept = keptCdaUid(system);
  if (kept) return { uri: system, oid: kept };
  if (/^urn:uuid:/i.test(system) && UUID_RE.test(system.slice(9))) return { uri: system, oid: system.slice(9).toUpperCase() };
  return describeTableSystem(system);
}

/** Extension carrying a CDA nullFlavor of a coded element (or value) that FHIR has no slot for. */
export const EXT_NULLFLAVOR = 'http://dsp.lu/fhir/StructureDefinition/cda-nullflavor';

let scopeCache: Scope | undefined;
function scope(): Scope {
  if (!scopeCache) scopeCache = terminologyService().staticScope();
  return scopeCache;
}

const members = new Map<string, Set<string> | null>();

/** system|code keys of an MVC value set (null when the terminology module does not hold it). */
export function valueSetMembers(oid: string): Set<string> | null {
  let m = members.get(oid);
  if (m !== undefined) return m;
  const vs = scope().valueSet(`urn:oid:${oid}`, MVC_VERSION) ?? scope().valueSet(`urn:oid:${oid}`);
  if (!vs) {
    members.set(oid, null);
    return null;
  }
  m = new Set<string>();
  for (const inc of vs.compose?.include ?? []) {
    if (!inc.system) continue;
    const sys = canonicalSystem(inc.system);
    for (const c of inc.concept ?? []) m.add(`${sys}|${c.code}`);
  }
  // A value set with no enumerated concept (intensional) cannot be checked: treated as absent.
  if (!m.size) m = null;
  members.set(oid, m);
  return m;
}

export function inValueSet(oid: string, system: string | undefined, code: string | undefined): boolean | undefined {
  const m = valueSetMembers(oid);
  if (!m) return undefined;
  if (!system || !code) return false;
  return m.has(`${canonicalSystem(system)}|${code}`);
}

/** The display of a code in the reader's language, from the terminology module (undefined when it has none). */
export function designation(system: string, code: string, lang: string | undefined): string | undefined {
  if (!lang) return undefined;
  const s = scope();
  const def = s.codeSystem(system)?.get(code);
  const ds = [...(def?.designations ?? []), ...s.supplementDesignations(system, code)];
  if (!ds.length && !def?.display) return undefined;
  const r = chooseDisplay(undefined, undefined, def?.display ? [{ language: undefined, value: def.display }, ...ds] : ds, [lang]);
  return r.fallback ? undefined : r.value;
}

const NOT_MAPPED = new Set(['unmatched', 'disjoint']);
const mapped = new Map<string, Coding[]>();

/**
 * The codings a national coding maps to through the ConceptMaps of the terminology module (forward $translate,
 * every map whose source system matches), cached per system|code. Targets are returned with their displays.
 */
export function mapCoding(c: Coding): Coding[] {
  if (!c.system || !c.code) return [];
  const key = `${canonicalSystem(c.system)}|${c.code}`;
  let out = mapped.get(key);
  if (out) return out;
  out = [];
  const r = translate(scope(), { codings: [{ system: c.system, code: c.code }], reverse: false });
  for (const m of r.matches) {
    if (NOT_MAPPED.has(m.equivalence) || !m.concept.system || !m.concept.code) continue;
    if (out.some((o) => o.system === m.concept.system && o.code === m.concept.code)) continue;
    out.push({ system: m.concept.system, code: m.concept.code, ...(m.concept.display ? { display: m.concept.display } : {}) });
  }
  mapped.set(key, out);
  return out;
}

/** The MVC coding for an element none of whose codings is in its value set: the first ConceptMap target that is. */
export function transcodeToMvc(codings: Coding[], valueSet: string | undefined): Coding | undefined {
  for (const c of codings) {
    for (const t of mapCoding(c)) {
      if (!describeCodeSystem(t.system!).oid) continue;
      const inVs = valueSet ? inValueSet(valueSet, t.system, t.code) : undefined;
      if (inVs === false) continue;
      return t.display ? t : { ...t, ...(designation(t.system!, t.code!, 'en') ? { display: designation(t.system!, t.code!, 'en') } : {}) };
    }
  }
  return undefined;
}

// -- FHIR -> CDA -------------------------------------------------------------------------------------------------

export interface CdOptions {
  /** Element name (code, value, routeCode, pharm:code...). */
  tag: string;
  /** MVC value set OID that binds the element (undefined: no binding known, first coding with an OID wins). */
  valueSet?: string;
  /** Narrative id the originalText references (`#id`). */
  ref?: string;
  /** xsi:type to write (value elements). */
  xsiType?: string;
  /** Extra attributes. */
  attrs?: Record<string, string | undefined>;
  /** Write no originalText even when a reference is given. */
  noOriginalText?: boolean;
  /** The template requires originalText: a null code with a reference becomes OTH rather than lose it. */
  needsOriginalText?: boolean;
}

export function codingAttrs(c: Coding): Record<string, string | undefined> | undefined {
  if (!c.system || !c.code) return undefined;
  const d = describeCodeSystem(c.system);
  if (!d.oid) return undefined;
  return { code: c.code, codeSystem: d.oid, codeSystemName: d.cdaName, codeSystemVersion: c.version, displayName: c.display };
}

/** displayName is required on every code (dtr1-1-CD.EPSOS): a coding without display gets the terminology's (else its code). */
export function withDisplay(c: Coding): Coding;
export function withDisplay(c: Coding | undefined): Coding | undefined;
export function withDisplay(c: Coding | undefined): Coding | undefined {
  if (!c || c.display || !c.system || !c.code) return c;
  return { ...c, display: designation(c.system, c.code, 'en') ?? c.code };
}

/**
 * The <translation>s of a coded element: every coding but the primary one, each code|code system (OID) once
 * (RIM-002: a source that repeats a code under an alias OID of the same code system, ICD-10 2.16.840.1.113883.6.3
 * and the eHDSI ICD-10 OID, comes back once), each with a displayName; codings whose system has no OID are not
 * CDA codes and are left out. The one de-duplication of the module (toCD and the writer's fixed codes use it).
 */
export function distinctTranslations(primary: Coding | undefined, codings: Coding[]): X[] {
  const key = (c: Coding) => `${describeCodeSystem(c.system!).oid ?? c.system}|${c.code}`;
  const seen = new Set<string>(primary?.system && primary.code ? [key(primary)] : []);
  const out: X[] = [];
  for (const c of codings) {
    const a = codingAttrs(withDisplay(c));
    if (!a || seen.has(key(c))) continue;
    seen.add(key(c));
    out.push({ n: 'translation', a });
  }
  return out;
}

/** The CDA coded element for a CodeableConcept (or a single Coding). */
export function toCD(cc: CodeableConcept | Coding | undefined, o: CdOptions): X {
  const concept: CodeableConcept = !cc ? {} : 'coding' in cc || 'text' in cc || !('code' in cc) ? (cc as CodeableConcept) : { coding: [cc as Coding] };
  const codings = (concept.coding ?? []).filter((c) => c.code && c.system);
  const nf = concept.extension?.find((e) => e.url === EXT_NULLFLAVOR)?.valueCode;
  let primary: Coding | undefined;
  if (o.valueSet) {
    primary = codings.find((c) => inValueSet(o.valueSet!, c.system, c.code) === true) ?? transcodeToMvc(codings, o.valueSet);
    if (!primary && codings.length && valueSetMembers(o.valueSet) === null) primary = codings.find((c) => codingAttrs(c));
  } else {
    // Unbound element: the first coding with an OID, replaced by its MVC target when a ConceptMap maps it.
    const first = codings.find((c) => codingAttrs(c));
    primary = first ? (transcodeToMvc([first], undefined) ?? first) : undefined;
  }
  // Translations are distinct (RIM-002) and never repeat the primary code.
  const translations = distinctTranslations(primary, codings.filter((c) => c !== primary));
  const base: Record<string, string | undefined> = { ...(o.xsiType ? { 'xsi:type': o.xsiType } : {}), ...o.attrs };
  const original =
    o.noOriginalText ? undefined : o.ref ? { n: 'originalText', c: [{ n: 'reference', a: { value: `#${o.ref}` } }] } : concept.text ? { n: 'originalText', c: [concept.text] } : undefined;
  if (primary) return { n: o.tag, a: { ...base, ...codingAttrs(primary)! }, c: [original, ...translations] };
  let flavor = nf ?? (codings.length || concept.text ? 'OTH' : 'UNK');
  // Only OTH / NA / UNC may carry originalText or translations (dtr1-1-ANY).
  if (!['OTH', 'NA', 'UNC'].includes(flavor)) {
    if (translations.length || (o.needsOriginalText && original)) flavor = 'OTH';
    else return { n: o.tag, a: { ...base, nullFlavor: flavor } };
  }
  return { n: o.tag, a: { ...base, nullFlavor: flavor }, c: [original ?? (flavor === 'OTH' && concept.text ? { n: 'originalText', c: [concept.text] } : undefined), ...translations] };
}

// -- CDA -> FHIR -------------------------------------------------------------------------------------------------

export interface ReadContext {
  /** Narrative text by ID, for originalText/reference. */
  narrative: Map<string, string>;
  /** Reader language for displays (fr, de, en...). */
  lang?: string;
}

function codingOf(el: Element, ctx: ReadContext): Coding | undefined {
  const code = attr(el, 'code');
  const cs = attr(el, 'codeSystem');
  if (!code) return undefined;
  const system = cs ? cdaUidToUri(cs) : undefined;
  const shown = system ? designation(system, code, ctx.lang) : undefined;
  const display = shown ?? attr(el, 'displayName');
  return {
    ...(system ? { system } : {}),
    ...(attr(el, 'codeSystemVersion') ? { version: attr(el, 'codeSystemVersion') } : {}),
    code,
    ...(display ? { display } : {}),
  };
}

/** Text of an originalText (its reference resolved against the narrative, else its own content). */
export function originalText(el: Element | undefined, ctx: ReadContext): string | undefined {
  if (!el) return undefined;
  const ref = attr(kid(el, 'reference'), 'value');
  if (ref?.startsWith('#')) {
    const t = ctx.narrative.get(ref.slice(1));
    if (t) return t;
  }
  let own = '';
  for (let c = el.firstChild; c; c = c.nextSibling) if (c.nodeType === 3 || c.nodeType === 4) own += (c as unknown as { data: string }).data;
  return own.replace(/\s+/g, ' ').trim() || undefined;
}

/** The CodeableConcept for a CD/CE/CV element; undefined when the element is absent. */
export function fromCD(el: Element | undefined, ctx: ReadContext): CodeableConcept | undefined {
  if (!el) return undefined;
  const coding: Coding[] = [];
  const walk = (e: Element) => {
    const c = codingOf(e, ctx);
    if (c) coding.push(c);
    // Translations are CDA elements; under an epsos: / pharm: coded element older waves wrote them in that namespace.
    const ns = e.namespaceURI;
    for (const t of [...kids(e, 'translation'), ...(ns && ns !== CDA_NS ? kids(e, 'translation', ns) : [])]) walk(t);
  };
  walk(el);
  const text = originalText(kid(el, 'originalText'), ctx);
  const nf = attr(el, 'nullFlavor');
  const ext: Extension[] = nf ? [{ url: EXT_NULLFLAVOR, valueCode: nf }] : [];
  if (!coding.length && !text && !nf) return undefined;
  return { ...(ext.length ? { extension: ext } : {}), ...(coding.length ? { coding } : {}), ...(text ? { text } : {}) };
}

export { textOf };

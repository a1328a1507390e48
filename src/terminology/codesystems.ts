/**
 * The code-system table: FHIR canonical URI <-> OID <-> the code system name an eHDSI CDA document carries in
 * `codeSystemName`. The cross-border module converts codings between FHIR (system URI) and CDA (codeSystem OID +
 * codeSystemName) with it; the terminology service uses it to treat `urn:oid:<oid>` and the canonical URI of
 * one code system as the same system.
 *
 * Facts only (URIs and OIDs as published by HL7 / THO, eHDSI and the Agence eSanté).
 */

export interface CodeSystemEntry {
  /** Canonical FHIR URI (what Coding.system carries). */
  uri: string;
  /** OID (what CD.codeSystem carries in CDA). */
  oid: string;
  /** The codeSystemName eHDSI CDA documents use. */
  cdaName: string;
  /** Other URIs seen for the same system (accepted on input, never produced). */
  aliases?: string[];
  /** Other OIDs for the same system (accepted on input). */
  otherOids?: string[];
}

const V3 = 'http://terminology.hl7.org/CodeSystem/v3-';

const TABLE: CodeSystemEntry[] = [
  { uri: 'http://snomed.info/sct', oid: '2.16.840.1.113883.6.96', cdaName: 'SNOMED CT' },
  { uri: 'http://loinc.org', oid: '2.16.840.1.113883.6.1', cdaName: 'LOINC' },
  { uri: 'http://www.whocc.no/atc', oid: '2.16.840.1.113883.6.73', cdaName: 'Anatomical Therapeutic Chemical' },
  { uri: 'http://standardterms.edqm.eu', oid: '0.4.0.127.0.16.1.1.2.1', cdaName: 'EDQM' },
  // WHO ICD-10: eHDSI CDA carries it under eHDSI's own OID (1.3.6.1.4.1.12559.11.10.1.3.1.44.2); the HL7 OID is
  // accepted on input.
  {
    uri: 'http://hl7.org/fhir/sid/icd-10',
    oid: '1.3.6.1.4.1.12559.11.10.1.3.1.44.2',
    cdaName: 'ICD-10',
    otherOids: ['2.16.840.1.113883.6.3'],
    aliases: ['urn:oid:2.16.840.1.113883.6.3'],
  },
  { uri: 'http://hl7.org/fhir/sid/icd-10-cm', oid: '2.16.840.1.113883.6.90', cdaName: 'ICD-10-CM' },
  { uri: 'http://www.orpha.net', oid: '1.3.6.1.4.1.12559.11.10.1.3.1.44.5', cdaName: 'ORPHAnet', aliases: ['https://www.orpha.net'] },
  { uri: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.6', oid: '1.3.6.1.4.1.12559.11.10.1.3.1.44.6', cdaName: 'EMDN' },
  { uri: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.4', oid: '1.3.6.1.4.1.12559.11.10.1.3.1.44.4', cdaName: 'epSOSDisplayLabels' },
  { uri: 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.3', oid: '1.3.6.1.4.1.12559.11.10.1.3.1.44.3', cdaName: 'eHDSI Null Flavor' },
  { uri: 'http://unitsofmeasure.org', oid: '2.16.840.1.113883.6.8', cdaName: 'UCUM Unified Code for Units of Measure' },
  {
    uri: 'urn:iso:std:iso:3166',
    oid: '1.0.3166.1',
    cdaName: 'ISO-3166-1',
    otherOids: ['1.0.3166.1.2.2'],
    aliases: ['http://terminology.hl7.org/5.3.0/CodeSystem-ISO3166Part1.html'],
  },
  { uri: 'urn:iso:std:iso:3166:-2', oid: '1.0.3166.2', cdaName: 'ISO 3166-2' },
  { uri: 'urn:ietf:bcp:47', oid: '2.16.840.1.113883.6.316', cdaName: 'IETF Language region tags (Unicode Consortium)', otherOids: ['1dd183a6-6d2b-4a9d-8f5d-be09d6bb5a6e'] },
  { uri: 'urn:iso:std:iso:639', oid: '1.0.639.1', cdaName: 'ISO 639-1', otherOids: ['2.16.840.1.113883.6.99'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/iso639-2', oid: '2.16.840.1.113883.6.100', cdaName: 'ISO 639-2' },
  { uri: 'urn:oid:2.16.840.1.113883.2.9.6.2.7', oid: '2.16.840.1.113883.2.9.6.2.7', cdaName: 'ISCO' },
  { uri: 'http://hl7.org/fhir/sid/cvx', oid: '2.16.840.1.113883.12.292', cdaName: 'CVX' },
  { uri: 'http://www.nlm.nih.gov/research/umls/rxnorm', oid: '2.16.840.1.113883.6.88', cdaName: 'RxNorm' },
  { uri: 'http://dicom.nema.org/resources/ontology/DCM', oid: '1.2.840.10008.2.16.4', cdaName: 'DCM' },
  { uri: 'http://hl7.org/fhir/sid/ndc', oid: '2.16.840.1.113883.6.69', cdaName: 'NDC' },
  // HL7 v3 code systems
  { uri: `${V3}AdministrativeGender`, oid: '2.16.840.1.113883.5.1', cdaName: 'AdministrativeGender' },
  { uri: `${V3}NullFlavor`, oid: '2.16.840.1.113883.5.1008', cdaName: 'NullFlavor' },
  { uri: `${V3}ActCode`, oid: '2.16.840.1.113883.5.4', cdaName: 'ActCode' },
  { uri: `${V3}ActClass`, oid: '2.16.840.1.113883.5.6', cdaName: 'ActClass' },
  { uri: `${V3}ActMood`, oid: '2.16.840.1.113883.5.1001', cdaName: 'ActMood' },
  { uri: `${V3}ActStatus`, oid: '2.16.840.1.113883.5.14', cdaName: 'ActStatus' },
  { uri: `${V3}ActPriority`, oid: '2.16.840.1.113883.5.7', cdaName: 'ActPriority' },
  { uri: `${V3}ActRelationshipType`, oid: '2.16.840.1.113883.5.1002', cdaName: 'ActRelationshipType' },
  { uri: `${V3}ActReason`, oid: '2.16.840.1.113883.5.8', cdaName: 'ActReason' },
  { uri: `${V3}AddressUse`, oid: '2.16.840.1.113883.5.1119', cdaName: 'AddresseUse' },
  { uri: `${V3}Confidentiality`, oid: '2.16.840.1.113883.5.25', cdaName: 'Confidentiality' },
  { uri: `${V3}EntityNameUse`, oid: '2.16.840.1.113883.5.45', cdaName: 'EntityNameUse' },
  { uri: `${V3}EntityNamePartQualifier`, oid: '2.16.840.1.113883.5.43', cdaName: 'EntityNamePartQualifier' },
  { uri: `${V3}MaritalStatus`, oid: '2.16.840.1.113883.5.2', cdaName: 'MaritalStatus' },
  { uri: `${V3}ObservationInterpretation`, oid: '2.16.840.1.113883.5.83', cdaName: 'HL7 v3 ObservationInterpretation' },
  { uri: `${V3}ObservationValue`, oid: '2.16.840.1.113883.5.1063', cdaName: 'ObservationValue' },
  { uri: `${V3}ParticipationType`, oid: '2.16.840.1.113883.5.90', cdaName: 'HL7 v3 ParticipationType' },
  { uri: `${V3}ParticipationFunction`, oid: '2.16.840.1.113883.5.88', cdaName: 'ParticipationFunction' },
  { uri: `${V3}RoleClass`, oid: '2.16.840.1.113883.5.110', cdaName: 'RoleClass' },
  { uri: `${V3}RoleCode`, oid: '2.16.840.1.113883.5.111', cdaName: 'RoleCode' },
  { uri: `${V3}RouteOfAdministration`, oid: '2.16.840.1.113883.5.112', cdaName: 'RouteOfAdministration' },
  { uri: `${V3}TimingEvent`, oid: '2.16.840.1.113883.5.139', cdaName: 'TimingEvent' },
  { uri: `${V3}TelecommunicationAddressUse`, oid: '2.16.840.1.113883.5.1119', cdaName: 'AddressUse' },
  { uri: `${V3}substanceAdminSubstitution`, oid: '2.16.840.1.113883.5.1070', cdaName: 'SubstanceAdminSubstitution' },
  { uri: `${V3}ActSubstanceAdminSubstitutionCode`, oid: '2.16.840.1.113883.5.1070', cdaName: 'SubstanceAdminSubstitution' },
  { uri: `${V3}EntityCode`, oid: '2.16.840.1.113883.5.1060', cdaName: 'EntityCode' },
  { uri: `${V3}LanguageAbilityMode`, oid: '2.16.840.1.113883.5.60', cdaName: 'LanguageAbilityMode' },
  { uri: `${V3}LanguageAbilityProficiency`, oid: '2.16.840.1.113883.5.61', cdaName: 'LanguageAbilityProficiency' },
  { uri: `${V3}URLScheme`, oid: '2.16.840.1.113883.5.143', cdaName: 'URLScheme' },
  { uri: `${V3}ObservationMethod`, oid: '2.16.840.1.113883.5.84', cdaName: 'ObservationMethod' },
  { uri: `${V3}TargetAwareness`, oid: '2.16.840.1.113883.5.137', cdaName: 'TargetAwareness' },
  // FHIR code systems, with the OIDs eHDSI uses (2.16.840.1.113883.4.642.4.x) and THO's where they differ.
  { uri: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', oid: '2.16.840.1.113883.4.642.4.1075', cdaName: 'FHIR ConditionVerificationStatus', otherOids: ['2.16.840.1.113883.4.642.1.1075'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/condition-clinical', oid: '2.16.840.1.113883.4.642.4.1074', cdaName: 'FHIR ConditionClinicalStatusCodes', otherOids: ['2.16.840.1.113883.4.642.1.1074'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', oid: '2.16.840.1.113883.4.642.4.1373', cdaName: 'FHIR AllergyIntoleranceClinicalStatusCodes', otherOids: ['2.16.840.1.113883.4.642.1.1373'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', oid: '2.16.840.1.113883.4.642.4.1371', cdaName: 'FHIR AllergyIntoleranceVerificationStatusCodes', otherOids: ['2.16.840.1.113883.4.642.1.1371'] },
  { uri: 'http://hl7.org/fhir/allergy-intolerance-criticality', oid: '2.16.840.1.113883.4.642.4.130', cdaName: 'FHIR AllergyIntoleranceCriticality' },
  { uri: 'http://terminology.hl7.org/CodeSystem/referencerange-meaning', oid: '2.16.840.1.113883.4.642.4.1124', cdaName: 'HL7 ObservationReferenceRangeMeaningCodes', otherOids: ['2.16.840.1.113883.4.642.1.1124'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/observation-category', oid: '2.16.840.1.113883.4.642.4.1125', cdaName: 'HL7 ObservationCategoryCodes', otherOids: ['2.16.840.1.113883.4.642.1.1125'] },
  { uri: 'http://terminology.hl7.org/CodeSystem/sex-parameter-for-clinical-use', oid: '2.16.840.1.113883.4.642.4.2038', cdaName: 'HL7 SexParameterForClinicalUseCS' },
  { uri: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', oid: '2.16.840.1.113883.4.642.4.1048', cdaName: 'HL7 DataAbsentReason', otherOids: ['2.16.840.1.113883.4.642.1.1048'] },
  { uri: 'http://hl7.org/fhir/administrative-gender', oid: '2.16.840.1.113883.4.642.4.2', cdaName: 'FHIR_AdministrativeGenderCode' },
  { uri: 'http://hl7.org/fhir/diagnostic-report-status', oid: '2.16.840.1.113883.4.642.4.236', cdaName: 'HL7 FHIR DiagnosticReportStatus' },
  { uri: 'http://hl7.org/fhir/composition-status', oid: '2.16.840.1.113883.4.642.4.242', cdaName: 'HL7 FHIR CompositionStatus' },
  { uri: 'http://hl7.org/fhir/event-timing', oid: '2.16.840.1.113883.4.642.4.76', cdaName: 'FHIR EventTiming' },
  { uri: 'http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips', oid: '2.16.840.1.113883.5.1150.1', cdaName: 'IPS Absent And Unknown Data' },
  // Agence eSanté (Luxembourg) code systems, arc 1.3.182.5.
  { uri: 'urn:oid:1.3.182.5.5.1', oid: '1.3.182.5.5.1', cdaName: 'eSanté ICD-10-CM' },
  { uri: 'urn:oid:1.3.182.5.5.2', oid: '1.3.182.5.5.2', cdaName: 'eSanté drug codes' },
];

const byUri = new Map<string, CodeSystemEntry>();
const byOid = new Map<string, CodeSystemEntry>();
for (const e of TABLE) {
  if (!byUri.has(e.uri)) byUri.set(e.uri, e);
  for (const a of e.aliases ?? []) if (!byUri.has(a)) byUri.set(a, e);
  if (!byOid.has(e.oid)) byOid.set(e.oid, e);
  for (const o of e.otherOids ?? []) if (!byOid.has(o)) byOid.set(o, e);
}

/** Every entry of the table (a copy). */
export function codeSystemTable(): CodeSystemEntry[] {
  return TABLE.map((e) => ({ ...e }));
}

const OID_RE = /^[0-2](\.(0|[1-9]\d*))+$/;

export function isOid(value: string): boolean {
  return OID_RE.test(value);
}

/**
 * The table entry for a system given as a FHIR URI, `urn:oid:<oid>` or a bare OID. Agence eSanté OIDs
 * (1.3.182.5.x) that are not listed get a generated entry (urn:oid URI).
 */
export function codeSystemEntry(system: string): CodeSystemEntry | undefined {
  const s = system.trim();
  const direct = byUri.get(s);
  if (direct) return direct;
  const oid = s.startsWith('urn:oid:') ? s.slice(8) : s;
  const e = byOid.get(oid);
  if (e) return e;
  if (isOid(oid) && oid.startsWith('1.3.182.5.')) return { uri: `urn:oid:${oid}`, oid, cdaName: `eSanté ${oid}` };
  return undefined;
}

/** The FHIR URI for an OID (`urn:oid:<oid>` when the table does not know it). */
export function oidToUri(oid: string): string {
  const t = oid.trim();
  const bare = t.startsWith('urn:oid:') ? t.slice(8) : t;
  return byOid.get(bare)?.uri ?? `urn:oid:${bare}`;
}

/** The OID for a FHIR system URI (the OID inside `urn:oid:`), or undefined when unknown. */
export function uriToOid(uri: string): string | undefined {
  if (uri.startsWith('urn:oid:')) return byOid.get(uri.slice(8))?.oid ?? uri.slice(8);
  return byUri.get(uri)?.oid;
}

/** The code system name eHDSI CDA expects for a system (URI or OID). */
export function cdaCodeSystemName(system: string): string | undefined {
  return codeSystemEntry(system)?.cdaName;
}

/**
 * The canonical FHIR URI for a system as found in data: maps `urn:oid:` forms and known aliases to the table's
 * URI; anything else is returned unchanged.
 */
export function canonicalSystem(system: string): string {
  const e = codeSystemEntry(system);
  return e ? e.uri : system;
}

/** Cross-border helper: system URI or OID -> { uri, oid, cdaName } (oid and name may be missing). */
export function describeCodeSystem(system: string): { uri: string; oid?: string; cdaName?: string } {
  const e = codeSystemEntry(system);
  if (e) return { uri: e.uri, oid: e.oid, cdaName: e.cdaName };
  if (isOid(system)) return { uri: `urn:oid:${system}`, oid: system };
  return { uri: system, oid: system.startsWith('urn:oid:') ? system.slice(8) : undefined };
}

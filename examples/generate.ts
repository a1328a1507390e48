/**
 * Generates the example dataset of examples/*.json (fictional people and documents; see README.md).
 *
 *   node_modules/.bin/node examples/generate.ts
 *
 * The JSON files are the product; this script is kept so that the PDFs, their sizes and SHA-1 hashes, the
 * matricule check digits and the document's urn:uuid identifiers can be regenerated consistently. Its output
 * is deterministic (no clock, no random numbers).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  AllergyIntolerance,
  Binary,
  Bundle,
  BundleEntry,
  CodeableConcept,
  Composition,
  CompositionSection,
  Condition,
  Consent,
  DocumentReference,
  Immunization,
  Medication,
  MedicationStatement,
  Observation,
  Organization,
  Patient,
  Practitioner,
  PractitionerRole,
  Procedure,
  Quantity,
  FhirResource,
} from 'fhir/r4';

const OUT = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- systems
export const SYSTEMS = {
  matricule: 'urn:oid:1.3.182.4.4',
  /** Code médecin / code prestataire: this project's choice for its examples (see README.md). */
  codeMedecin: 'urn:oid:1.3.182.4.10',
  /** Code établissement (organisations): this project's choice for its examples (see README.md). */
  codeEtablissement: 'urn:oid:1.3.182.4.11',
  loinc: 'http://loinc.org',
  sct: 'http://snomed.info/sct',
  icd10: 'http://hl7.org/fhir/sid/icd-10',
  atc: 'http://www.whocc.no/atc',
  edqm: 'http://standardterms.edqm.eu',
  ucum: 'http://unitsofmeasure.org',
  bcp47: 'urn:ietf:bcp:47',
  confidentiality: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality',
  identifierType: 'http://terminology.hl7.org/CodeSystem/v2-0203',
  orgType: 'http://terminology.hl7.org/CodeSystem/organization-type',
  practitionerRole: 'http://terminology.hl7.org/CodeSystem/practitioner-role',
  obsCategory: 'http://terminology.hl7.org/CodeSystem/observation-category',
  conditionCategory: 'http://terminology.hl7.org/CodeSystem/condition-category',
  conditionClinical: 'http://terminology.hl7.org/CodeSystem/condition-clinical',
  conditionVer: 'http://terminology.hl7.org/CodeSystem/condition-ver-status',
  allergyClinical: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical',
  allergyVer: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification',
  rfc3986: 'urn:ietf:rfc:3986',
} as const;

const cc = (system: string, code: string, display: string, text?: string): CodeableConcept => ({
  coding: [{ system, code, display }],
  ...(text ? { text } : {}),
});
const ucum = (value: number, code: string, unit = code): Quantity => ({ value, unit, system: SYSTEMS.ucum, code });

// ---------------------------------------------------------------- matricule (13 digits)
// YYYYMMDD + 3-digit sequence + Luhn check digit + Verhoeff check digit, both over the first 11 digits.
function luhnDigit(payload: string): number {
  let sum = 0;
  for (let i = 0; i < payload.length; i++) {
    let d = Number(payload[payload.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}
const V_D = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
  [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
  [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
  [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const V_P = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
  [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
  [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];
const V_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];
function verhoeffDigit(payload: string): number {
  let c = 0;
  const digits = [...payload].reverse().map(Number);
  for (let i = 0; i < digits.length; i++) c = V_D[c]![V_P[(i + 1) % 8]![digits[i]!]!]!;
  return V_INV[c]!;
}
export function matricule(birthDate: string, sequence: string): string {
  const payload = birthDate.replaceAll('-', '') + sequence;
  return `${payload}${luhnDigit(payload)}${verhoeffDigit(payload)}`;
}

// ---------------------------------------------------------------- deterministic urn:uuid
function uuidFor(label: string): string {
  const h = createHash('sha1').update(`dsp-fhir-server/examples/${label}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50; // version 5 (name-based, SHA-1)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

// ---------------------------------------------------------------- minimal PDF
/** A one-page A4 PDF 1.4 with Helvetica text lines (WinAnsi encoding, so French accents work). */
export function minimalPdf(lines: string[]): Buffer {
  const esc = (s: string) => s.replace(/[\\()]/g, (c) => `\\${c}`);
  const content = ['BT', '/F1 14 Tf', '72 770 Td', '18 TL', ...lines.map((l, i) => (i === 0 ? `(${esc(l)}) Tj` : `T* (${esc(l)}) Tj`)), 'ET'].join('\n');
  const contentBytes = Buffer.from(content, 'latin1');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>',
    `<< /Length ${contentBytes.length} >>\nstream\n${content}\nendstream`,
  ];
  const parts: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let offset = parts[0]!.length;
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(offset);
    const b = Buffer.from(`${i + 1} 0 obj\n${body}\nendobj\n`, 'latin1');
    parts.push(b);
    offset += b.length;
  });
  const xref = [
    'xref',
    `0 ${objects.length + 1}`,
    '0000000000 65535 f ',
    ...offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n `),
  ].join('\n');
  const trailer = `\ntrailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${offset}\n%%EOF\n`;
  parts.push(Buffer.from(`${xref}${trailer}`, 'latin1'));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- organisations
interface OrgSpec {
  id: string;
  name: string;
  alias?: string;
  code: string;
  type: 'prov' | 'govt' | 'other';
  city: string;
  postalCode: string;
}
const orgSpecs: OrgSpec[] = [
  { id: 'org-agence-esante', name: 'Agence eSanté', alias: 'Agence nationale des informations partagées dans le domaine de la santé', code: '90000001', type: 'govt', city: 'Luxembourg', postalCode: '1471' },
  { id: 'org-chl', name: 'Centre Hospitalier de Luxembourg', alias: 'CHL', code: '91000001', type: 'prov', city: 'Luxembourg', postalCode: '1210' },
  { id: 'org-hrs', name: 'Hôpitaux Robert Schuman', alias: 'HRS', code: '91000002', type: 'prov', city: 'Luxembourg', postalCode: '2540' },
  { id: 'org-chem', name: 'Centre Hospitalier Emile Mayrisch', alias: 'CHEM', code: '91000003', type: 'prov', city: 'Esch-sur-Alzette', postalCode: '4005' },
  { id: 'org-chdn', name: 'Centre Hospitalier du Nord', alias: 'CHdN', code: '91000004', type: 'prov', city: 'Ettelbruck', postalCode: '9080' },
  { id: 'org-labo-alzette', name: "Laboratoire d'analyses médicales Alzette (fictif)", code: '92000001', type: 'prov', city: 'Mersch', postalCode: '7540' },
  { id: 'org-pharmacie-sure', name: 'Pharmacie de la Sûre (fictive)', code: '93000001', type: 'prov', city: 'Diekirch', postalCode: '9230' },
];
const orgTypeDisplay = { prov: 'Healthcare Provider', govt: 'Government', other: 'Other' } as const;

function organization(o: OrgSpec): Organization {
  return {
    resourceType: 'Organization',
    id: o.id,
    identifier: [{ system: SYSTEMS.codeEtablissement, value: o.code }],
    active: true,
    type: [cc(SYSTEMS.orgType, o.type, orgTypeDisplay[o.type])],
    name: o.name,
    ...(o.alias ? { alias: [o.alias] } : {}),
    address: [{ use: 'work', type: 'physical', city: o.city, postalCode: o.postalCode, country: 'LU' }],
  };
}

// ---------------------------------------------------------------- practitioners
interface PractSpec {
  id: string;
  family: string;
  given: string;
  gender: 'male' | 'female';
  code: string;
  specialty: [string, string];
  org?: string;
  city: string;
  phone: string;
}
const practSpecs: PractSpec[] = [
  { id: 'pract-schmit-marc', family: 'Schmit', given: 'Marc', gender: 'male', code: '601234-51', specialty: ['394814009', 'General practice'], city: 'Mersch', phone: '+352 32 00 11' },
  { id: 'pract-weber-anne', family: 'Weber', given: 'Anne', gender: 'female', code: '602345-62', specialty: ['394579002', 'Cardiology'], org: 'org-chl', city: 'Luxembourg', phone: '+352 44 00 21' },
  { id: 'pract-goncalves-rui', family: 'Gonçalves', given: 'Rui', gender: 'male', code: '603456-73', specialty: ['419192003', 'Internal medicine'], org: 'org-chem', city: 'Esch-sur-Alzette', phone: '+352 57 00 31' },
  { id: 'pract-muller-sophie', family: 'Muller', given: 'Sophie', gender: 'female', code: '604567-84', specialty: ['394609007', 'Surgery-general'], org: 'org-hrs', city: 'Luxembourg', phone: '+352 28 00 41' },
  { id: 'pract-kieffer-paul', family: 'Kieffer', given: 'Paul', gender: 'male', code: '605678-95', specialty: ['394587001', 'Psychiatry'], org: 'org-chdn', city: 'Ettelbruck', phone: '+352 81 00 51' },
  { id: 'pract-hoffmann-claude', family: 'Hoffmann', given: 'Claude', gender: 'male', code: '606789-06', specialty: ['394915009', 'General pathology'], org: 'org-labo-alzette', city: 'Mersch', phone: '+352 32 00 61' },
];

function practitioner(p: PractSpec): Practitioner {
  return {
    resourceType: 'Practitioner',
    id: p.id,
    identifier: [{ type: cc(SYSTEMS.identifierType, 'PRN', 'Provider number'), system: SYSTEMS.codeMedecin, value: p.code }],
    active: true,
    name: [{ use: 'official', family: p.family, given: [p.given], prefix: ['Dr'] }],
    telecom: [{ system: 'phone', value: p.phone, use: 'work' }],
    gender: p.gender,
    address: [{ use: 'work', city: p.city, country: 'LU' }],
    qualification: [{ code: cc('http://terminology.hl7.org/CodeSystem/v2-0360', 'MD', 'Doctor of Medicine') }],
  };
}

function practitionerRole(p: PractSpec): PractitionerRole {
  return {
    resourceType: 'PractitionerRole',
    id: `role-${p.id.slice('pract-'.length)}`,
    active: true,
    period: { start: '2015-01-01' },
    practitioner: { reference: `Practitioner/${p.id}`, display: `Dr ${p.given} ${p.family}` },
    ...(p.org ? { organization: { reference: `Organization/${p.org}` } } : {}),
    code: [cc(SYSTEMS.practitionerRole, 'doctor', 'Doctor')],
    specialty: [cc(SYSTEMS.sct, p.specialty[0], p.specialty[1])],
    telecom: [{ system: 'phone', value: p.phone, use: 'work' }],
  };
}

// ---------------------------------------------------------------- patients
interface PatSpec {
  id: string;
  family: string;
  given: string[];
  gender: 'male' | 'female';
  birthDate: string;
  seq: string;
  line: string;
  city: string;
  postalCode: string;
  phone: string;
  email: string;
  languages: [string, string][];
  gp?: string;
}
const patSpecs: PatSpec[] = [
  { id: 'pat-claire-wagner', family: 'Wagner', given: ['Claire', 'Marie'], gender: 'female', birthDate: '1958-03-14', seq: '904', line: '12, rue des Aubépines', city: 'Mersch', postalCode: '7521', phone: '+352 621 000 101', email: 'claire.wagner@example.org', languages: [['lb', 'Luxembourgish'], ['fr', 'French']], gp: 'pract-schmit-marc' },
  { id: 'pat-luc-thill', family: 'Thill', given: ['Luc'], gender: 'male', birthDate: '1972-11-05', seq: '917', line: '3, rue du Vieux-Moulin', city: 'Esch-sur-Alzette', postalCode: '4130', phone: '+352 621 000 102', email: 'luc.thill@example.org', languages: [['fr', 'French']] },
  { id: 'pat-ana-pereira', family: 'Pereira dos Santos', given: ['Ana', 'Sofia'], gender: 'female', birthDate: '1985-06-21', seq: '928', line: '47, rue des Glycines', city: 'Differdange', postalCode: '4570', phone: '+352 691 000 103', email: 'ana.pereira@example.org', languages: [['pt', 'Portuguese'], ['fr', 'French']] },
  { id: 'pat-jurgen-becker', family: 'Becker', given: ['Jürgen'], gender: 'male', birthDate: '1949-09-30', seq: '935', line: '8, am Bongert-Fictif', city: 'Echternach', postalCode: '6470', phone: '+352 72 00 01 04', email: 'juergen.becker@example.org', languages: [['de', 'German']] },
  { id: 'pat-emma-hansen', family: 'Hansen', given: ['Emma'], gender: 'female', birthDate: '2012-01-17', seq: '946', line: '21, rue des Coquelicots', city: 'Ettelbruck', postalCode: '9068', phone: '+352 661 000 105', email: 'famille.hansen@example.org', languages: [['lb', 'Luxembourgish'], ['de', 'German']] },
];

function patient(p: PatSpec, id = p.id): Patient {
  return {
    resourceType: 'Patient',
    id,
    identifier: [{
      use: 'official',
      type: cc(SYSTEMS.identifierType, 'NI', 'National unique individual identifier', 'Matricule national'),
      system: SYSTEMS.matricule,
      value: matricule(p.birthDate, p.seq),
    }],
    active: true,
    name: [{ use: 'official', family: p.family, given: p.given }],
    telecom: [
      { system: 'phone', value: p.phone, use: 'mobile' },
      { system: 'email', value: p.email, use: 'home' },
    ],
    gender: p.gender,
    birthDate: p.birthDate,
    address: [{ use: 'home', type: 'both', line: [p.line], city: p.city, postalCode: p.postalCode, country: 'LU' }],
    communication: p.languages.map(([code, display], i) => ({
      language: cc(SYSTEMS.bcp47, code, display),
      ...(i === 0 ? { preferred: true } : {}),
    })),
    ...(p.gp && id === p.id ? { generalPractitioner: [{ reference: `Practitioner/${p.gp}`, display: 'Médecin référent' }] } : {}),
  };
}

// ---------------------------------------------------------------- helpers for transaction bundles
function transaction(id: string, resources: FhirResource[]): Bundle {
  return {
    resourceType: 'Bundle',
    id,
    type: 'transaction',
    entry: resources.map((r) => ({
      fullUrl: `urn:uuid:${uuidFor(`${r.resourceType}/${r.id}`)}`,
      resource: r,
      request: { method: 'PUT', url: `${r.resourceType}/${r.id}` },
    })),
  };
}

function write(file: string, value: unknown): void {
  writeFileSync(join(OUT, file), `${JSON.stringify(value, null, 2)}\n`);
}

// ---------------------------------------------------------------- the Patient Summary document
const div = (html: string) => `<div xmlns="http://www.w3.org/1999/xhtml">${html}</div>`;
const table = (head: string[], rows: string[][]) =>
  `<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;

function patientSummary(): Bundle {
  const claire = patSpecs[0]!;
  const u = (label: string) => uuidFor(`ps-claire-wagner/${label}`);
  const ref = (label: string, display?: string) => ({ reference: `urn:uuid:${u(label)}`, ...(display ? { display } : {}) });
  const date = '2026-10-12T09:30:00+02:00';
  const pat = ref('patient');
  const gp = ref('gp', 'Dr Marc Schmit');
  const lab = ref('lab');

  const patientRes = patient(claire, u('patient'));
  const gpSpec = practSpecs[0]!;
  const gpRes: Practitioner = { ...practitioner(gpSpec), id: u('gp') };
  const custodianRes: Organization = { ...organization(orgSpecs[0]!), id: u('custodian') };
  const labRes: Organization = { ...organization(orgSpecs[5]!), id: u('lab') };

  const medications: Medication[] = [
    {
      resourceType: 'Medication', id: u('med-metformin'),
      code: cc(SYSTEMS.atc, 'A10BA02', 'metformin', 'Metformine 850 mg comprimé'),
      form: cc(SYSTEMS.edqm, '10219000', 'Tablet', 'Comprimé'),
      ingredient: [{
        itemCodeableConcept: cc(SYSTEMS.atc, 'A10BA02', 'metformin', 'Chlorhydrate de metformine'),
        isActive: true,
        strength: { numerator: ucum(850, 'mg'), denominator: ucum(1, '1', 'comprimé') },
      }],
    },
    {
      resourceType: 'Medication', id: u('med-ramipril'),
      code: cc(SYSTEMS.atc, 'C09AA05', 'ramipril', 'Ramipril 5 mg comprimé'),
      form: cc(SYSTEMS.edqm, '10219000', 'Tablet', 'Comprimé'),
      ingredient: [{
        itemCodeableConcept: cc(SYSTEMS.atc, 'C09AA05', 'ramipril', 'Ramipril'),
        isActive: true,
        strength: { numerator: ucum(5, 'mg'), denominator: ucum(1, '1', 'comprimé') },
      }],
    },
  ];
  const statements: MedicationStatement[] = [
    {
      resourceType: 'MedicationStatement', id: u('ms-metformin'), status: 'active',
      medicationReference: ref('med-metformin', 'Metformine 850 mg'),
      subject: pat, effectivePeriod: { start: '2019-05-02' }, dateAsserted: '2026-10-12', informationSource: gp,
      reasonReference: [ref('cond-diabetes')],
      dosage: [{
        text: '1 comprimé matin et soir, pendant les repas',
        timing: { repeat: { frequency: 2, period: 1, periodUnit: 'd' } },
        route: cc(SYSTEMS.edqm, '20053000', 'Oral use', 'Voie orale'),
        doseAndRate: [{ doseQuantity: ucum(1, '1', 'comprimé') }],
      }],
    },
    {
      resourceType: 'MedicationStatement', id: u('ms-ramipril'), status: 'active',
      medicationReference: ref('med-ramipril', 'Ramipril 5 mg'),
      subject: pat, effectivePeriod: { start: '2016-09-20' }, dateAsserted: '2026-10-12', informationSource: gp,
      reasonReference: [ref('cond-hypertension')],
      dosage: [{
        text: '1 comprimé le matin',
        timing: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } },
        route: cc(SYSTEMS.edqm, '20053000', 'Oral use', 'Voie orale'),
        doseAndRate: [{ doseQuantity: ucum(1, '1', 'comprimé') }],
      }],
    },
  ];
  const allergy: AllergyIntolerance = {
    resourceType: 'AllergyIntolerance', id: u('allergy-penicillin'),
    clinicalStatus: cc(SYSTEMS.allergyClinical, 'active', 'Active'),
    verificationStatus: cc(SYSTEMS.allergyVer, 'confirmed', 'Confirmed'),
    type: 'allergy', category: ['medication'], criticality: 'high',
    code: cc(SYSTEMS.sct, '764146007', 'Penicillin', 'Pénicillines'),
    patient: pat, onsetDateTime: '1994', recordedDate: '2016-09-20', recorder: gp,
    reaction: [{
      manifestation: [cc(SYSTEMS.sct, '247472004', 'Wheal', 'Urticaire')],
      severity: 'moderate',
      description: 'Urticaire généralisée après prise d’amoxicilline',
    }],
  };
  const conditions: Condition[] = [
    {
      resourceType: 'Condition', id: u('cond-diabetes'),
      clinicalStatus: cc(SYSTEMS.conditionClinical, 'active', 'Active'),
      verificationStatus: cc(SYSTEMS.conditionVer, 'confirmed', 'Confirmed'),
      category: [cc(SYSTEMS.conditionCategory, 'problem-list-item', 'Problem List Item')],
      code: {
        coding: [
          { system: SYSTEMS.sct, code: '44054006', display: 'Diabetes mellitus type 2' },
          { system: SYSTEMS.icd10, code: 'E11.9', display: 'Type 2 diabetes mellitus without complications' },
        ],
        text: 'Diabète de type 2',
      },
      subject: pat, onsetDateTime: '2019-04', recordedDate: '2019-05-02', recorder: gp,
    },
    {
      resourceType: 'Condition', id: u('cond-hypertension'),
      clinicalStatus: cc(SYSTEMS.conditionClinical, 'active', 'Active'),
      verificationStatus: cc(SYSTEMS.conditionVer, 'confirmed', 'Confirmed'),
      category: [cc(SYSTEMS.conditionCategory, 'problem-list-item', 'Problem List Item')],
      code: {
        coding: [
          { system: SYSTEMS.sct, code: '38341003', display: 'Hypertensive disorder, systemic arterial' },
          { system: SYSTEMS.icd10, code: 'I10', display: 'Essential (primary) hypertension' },
        ],
        text: 'Hypertension artérielle',
      },
      subject: pat, onsetDateTime: '2016-09', recordedDate: '2016-09-20', recorder: gp,
    },
  ];
  const procedure: Procedure = {
    resourceType: 'Procedure', id: u('proc-appendectomy'), status: 'completed',
    code: cc(SYSTEMS.sct, '80146002', 'Appendectomy', 'Appendicectomie'),
    subject: pat, performedDateTime: '1979-07-03',
    note: [{ text: 'Appendicectomie pendant l’enfance, sans complication.' }],
  };
  const immunization: Immunization = {
    resourceType: 'Immunization', id: u('imm-influenza'), status: 'completed',
    vaccineCode: {
      coding: [
        { system: SYSTEMS.sct, code: '1181000221105', display: 'Influenza virus antigen only vaccine product' },
        { system: SYSTEMS.atc, code: 'J07BB02', display: 'influenza, inactivated, split virus or surface antigen' },
      ],
      text: 'Vaccin grippal inactivé 2026/2027',
    },
    patient: pat, occurrenceDateTime: '2026-10-05', primarySource: true, lotNumber: 'FLU-EX-2026-017',
    route: cc('http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration', 'IM', 'Injection, intramuscular'),
    doseQuantity: ucum(0.5, 'mL'),
    performer: [{ actor: gp }],
    protocolApplied: [{ targetDisease: [cc(SYSTEMS.sct, '6142004', 'Influenza', 'Grippe')], doseNumberPositiveInt: 1 }],
  };
  const lab2 = (id: string, code: string, display: string, text: string, value: Partial<Observation>, when: string): Observation => ({
    resourceType: 'Observation', id: u(id), status: 'final',
    category: [cc(SYSTEMS.obsCategory, 'laboratory', 'Laboratory')],
    code: cc(SYSTEMS.loinc, code, display, text),
    subject: pat, effectiveDateTime: when, issued: `${when.slice(0, 10)}T16:00:00+02:00`, performer: [lab],
    ...value,
  });
  const results: Observation[] = [
    lab2('obs-blood-group', '882-1', 'ABO and Rh group [Type] in Blood', 'Groupe sanguin ABO et Rhésus',
      { valueCodeableConcept: cc(SYSTEMS.sct, '278149003', 'Blood group A Rh(D) positive', 'A Rh+') }, '2016-09-14T08:10:00+02:00'),
    lab2('obs-hba1c', '4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood', 'HbA1c',
      {
        valueQuantity: ucum(6.9, '%'),
        referenceRange: [{ high: ucum(6.5, '%'), text: 'Objectif thérapeutique < 7 %' }],
      }, '2026-09-28T07:45:00+02:00'),
    lab2('obs-creatinine', '2160-0', 'Creatinine [Mass/volume] in Serum or Plasma', 'Créatinine sérique',
      {
        valueQuantity: ucum(0.92, 'mg/dL'),
        referenceRange: [{ low: ucum(0.5, 'mg/dL'), high: ucum(1.1, 'mg/dL') }],
      }, '2026-09-28T07:45:00+02:00'),
  ];
  const vital = (id: string, code: string, display: string, text: string, value: Partial<Observation>): Observation => ({
    resourceType: 'Observation', id: u(id), status: 'final',
    category: [cc(SYSTEMS.obsCategory, 'vital-signs', 'Vital Signs')],
    code: cc(SYSTEMS.loinc, code, display, text),
    subject: pat, effectiveDateTime: '2026-10-12T09:00:00+02:00', performer: [gp],
    ...value,
  });
  const vitals: Observation[] = [
    vital('obs-bp', '85354-9', 'Blood pressure panel with all children optional', 'Tension artérielle', {
      component: [
        { code: cc(SYSTEMS.loinc, '8480-6', 'Systolic blood pressure'), valueQuantity: ucum(134, 'mm[Hg]', 'mmHg') },
        { code: cc(SYSTEMS.loinc, '8462-4', 'Diastolic blood pressure'), valueQuantity: ucum(82, 'mm[Hg]', 'mmHg') },
      ],
    }),
    vital('obs-weight', '29463-7', 'Body weight', 'Poids', { valueQuantity: ucum(71.5, 'kg') }),
    vital('obs-height', '8302-2', 'Body height', 'Taille', { valueQuantity: ucum(164, 'cm') }),
    vital('obs-bmi', '39156-5', 'Body mass index (BMI) [Ratio]', 'IMC', { valueQuantity: ucum(26.6, 'kg/m2') }),
  ];

  const section = (title: string, code: string, display: string, html: string, entries: FhirResource[]): CompositionSection => ({
    title,
    code: cc(SYSTEMS.loinc, code, display),
    text: { status: 'generated', div: div(html) },
    entry: entries.map((r) => ({ reference: `urn:uuid:${r.id}` })),
  });
  const composition: Composition = {
    resourceType: 'Composition', id: u('composition'),
    identifier: { system: SYSTEMS.rfc3986, value: `urn:uuid:${u('composition-identifier')}` },
    status: 'final',
    type: cc(SYSTEMS.loinc, '60591-5', 'Patient summary Document', 'Résumé patient'),
    subject: { ...pat, display: 'Claire Wagner' },
    date,
    author: [gp],
    title: 'Résumé patient de Claire Wagner',
    confidentiality: 'N',
    attester: [{ mode: 'legal', time: date, party: gp }],
    custodian: ref('custodian', 'Agence eSanté'),
    section: [
      section('Traitements en cours', '10160-0', 'History of Medication use Narrative',
        table(['Médicament', 'Code ATC', 'Posologie', 'Depuis'], [
          ['Metformine 850 mg comprimé', 'A10BA02', '1 comprimé matin et soir', '02/05/2019'],
          ['Ramipril 5 mg comprimé', 'C09AA05', '1 comprimé le matin', '20/09/2016'],
        ]), statements),
      section('Allergies et intolérances', '48765-2', 'Allergies and adverse reactions Document',
        table(['Agent', 'Réaction', 'Sévérité', 'Criticité'], [['Pénicillines', 'Urticaire', 'Modérée', 'Élevée']]), [allergy]),
      section('Problèmes de santé', '11450-4', 'Problem list - Reported',
        table(['Problème', 'CIM-10', 'Début', 'Statut'], [
          ['Diabète de type 2', 'E11.9', '04/2019', 'Actif'],
          ['Hypertension artérielle', 'I10', '09/2016', 'Active'],
        ]), conditions),
      section('Antécédents chirurgicaux et procédures', '47519-4', 'History of Procedures Document',
        table(['Intervention', 'Date'], [['Appendicectomie', '03/07/1979']]), [procedure]),
      section('Vaccinations', '11369-6', 'History of Immunization Narrative',
        table(['Vaccin', 'Date', 'Lot'], [['Vaccin grippal inactivé 2026/2027', '05/10/2026', 'FLU-EX-2026-017']]), [immunization]),
      section('Résultats d’examens', '30954-2', 'Relevant diagnostic tests/laboratory data Narrative',
        table(['Examen', 'Résultat', 'Valeurs de référence', 'Date'], [
          ['Groupe sanguin ABO et Rhésus', 'A Rh+', '', '14/09/2016'],
          ['HbA1c', '6,9 %', 'objectif &lt; 7 %', '28/09/2026'],
          ['Créatinine sérique', '0,92 mg/dL', '0,5 – 1,1 mg/dL', '28/09/2026'],
        ]), results),
      section('Signes vitaux', '8716-3', 'Vital signs',
        table(['Mesure', 'Valeur', 'Date'], [
          ['Tension artérielle', '134/82 mmHg', '12/10/2026'],
          ['Poids', '71,5 kg', '12/10/2026'],
          ['Taille', '164 cm', '12/10/2026'],
          ['IMC', '26,6 kg/m²', '12/10/2026'],
        ]), vitals),
    ],
  };

  const resources: FhirResource[] = [
    composition, patientRes, gpRes, custodianRes, labRes,
    ...statements, ...medications, allergy, ...conditions, procedure, immunization, ...results, ...vitals,
  ];
  return {
    resourceType: 'Bundle',
    id: 'ps-claire-wagner-20261012',
    identifier: { system: SYSTEMS.rfc3986, value: `urn:uuid:${u('bundle-identifier')}` },
    type: 'document',
    timestamp: date,
    entry: resources.map((r): BundleEntry => ({ fullUrl: `urn:uuid:${r.id}`, resource: r })),
  };
}

// ---------------------------------------------------------------- PDF documents
interface DocSpec {
  id: string;
  patient: PatSpec;
  type: [string, string];
  category: [string, string];
  title: string;
  language: string;
  created: string;
  author: string;
  authorOrg?: string;
  confidentiality: 'N' | 'R' | 'V';
  lines: string[];
  /**
   * The document's unique id (masterIdentifier), when the PDF is one representation of a document stored
   * elsewhere too: the Patient Summary's PDF names the FHIR document Bundle's identifier, which is how the
   * NCP interface finds the FHIR representation (src/crossborder/ncp.ts).
   */
  documentId?: string;
}
const confDisplay = { N: 'normal', R: 'restricted', V: 'very restricted' } as const;
const docSpecs: DocSpec[] = [
  {
    id: 'lab-luc-thill-20260915', patient: patSpecs[1]!, type: ['11502-2', 'Laboratory report'],
    category: ['26436-6', 'Laboratory Studies (set)'], title: 'Compte rendu d’analyses de biologie médicale',
    language: 'fr', created: '2026-09-15T14:20:00+02:00', author: 'pract-hoffmann-claude', authorOrg: 'org-labo-alzette',
    confidentiality: 'N',
    lines: ['Compte rendu d\'analyses de biologie médicale', 'Patient : Luc Thill (fictif)', 'Glycémie à jeun : 0,98 g/L ; cholestérol total : 1,85 g/L', 'Document d\'exemple - dsp-fhir-server'],
  },
  {
    id: 'discharge-jurgen-becker-20260822', patient: patSpecs[3]!, type: ['18842-5', 'Discharge summary'],
    category: ['18842-5', 'Discharge summary'], title: 'Entlassungsbericht Kardiologie',
    language: 'de', created: '2026-08-22T11:05:00+02:00', author: 'pract-weber-anne', authorOrg: 'org-chl',
    confidentiality: 'R',
    lines: ['Entlassungsbericht - Kardiologie', 'Patient: Jürgen Becker (fiktiv)', 'Aufenthalt vom 18.08.2026 bis 22.08.2026', 'Beispieldokument - dsp-fhir-server'],
  },
  {
    id: 'episode-ana-pereira-20260704', patient: patSpecs[2]!, type: ['34133-9', 'Summary of episode note'],
    category: ['34133-9', 'Summarization of episode note'], title: 'Synthèse de prise en charge en psychiatrie',
    language: 'fr', created: '2026-07-04T16:40:00+02:00', author: 'pract-kieffer-paul', authorOrg: 'org-chdn',
    confidentiality: 'V',
    lines: ['Synthèse de prise en charge', 'Patiente : Ana Pereira dos Santos (fictive)', 'Contenu confidentiel (niveau très restreint)', 'Document d\'exemple - dsp-fhir-server'],
  },
  {
    id: 'ps-claire-wagner-20261012', patient: patSpecs[0]!, type: ['60591-5', 'Patient summary Document'],
    category: ['34133-9', 'Summarization of episode note'], title: 'Résumé patient (version imprimable)',
    language: 'fr', created: '2026-10-12T09:30:00+02:00', author: 'pract-schmit-marc',
    confidentiality: 'N',
    lines: ['Résumé patient', 'Patiente : Claire Wagner (fictive)', 'Diabète de type 2, hypertension ; allergie aux pénicillines', 'Document d\'exemple - dsp-fhir-server'],
    documentId: `urn:uuid:${uuidFor('ps-claire-wagner/bundle-identifier')}`,
  },
];

function documents(): FhirResource[] {
  const out: FhirResource[] = [];
  for (const d of docSpecs) {
    const pdf = minimalPdf(d.lines);
    const binaryId = `bin-${d.id}`;
    const docId = `docref-${d.id}`;
    const binary: Binary = {
      resourceType: 'Binary', id: binaryId, contentType: 'application/pdf',
      securityContext: { reference: `DocumentReference/${docId}` },
      data: pdf.toString('base64'),
    };
    const conf = cc(SYSTEMS.confidentiality, d.confidentiality, confDisplay[d.confidentiality]);
    const doc: DocumentReference = {
      resourceType: 'DocumentReference', id: docId,
      masterIdentifier: { system: SYSTEMS.rfc3986, value: d.documentId ?? `urn:uuid:${uuidFor(`document/${d.id}`)}` },
      status: 'current', docStatus: 'final',
      type: cc(SYSTEMS.loinc, d.type[0], d.type[1]),
      category: [cc(SYSTEMS.loinc, d.category[0], d.category[1])],
      subject: { reference: `Patient/${d.patient.id}`, display: `${d.patient.given[0]} ${d.patient.family}` },
      date: d.created,
      author: [{ reference: `Practitioner/${d.author}` }, ...(d.authorOrg ? [{ reference: `Organization/${d.authorOrg}` }] : [])],
      custodian: { reference: 'Organization/org-agence-esante' },
      description: d.title,
      securityLabel: [conf],
      content: [{
        attachment: {
          contentType: 'application/pdf',
          language: d.language,
          url: `Binary/${binaryId}`,
          size: pdf.length,
          hash: createHash('sha1').update(pdf).digest('base64'),
          title: d.title,
          creation: d.created,
        },
        format: { system: 'http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode', code: 'urn:ihe:iti:xds:2017:mimeTypeSufficient', display: 'mimeType Sufficient' },
      }],
      context: { period: { start: d.created.slice(0, 10), end: d.created.slice(0, 10) } },
    };
    out.push(binary, doc);
  }
  return out;
}

// ---------------------------------------------------------------- consents
/** Claire Wagner agrees that the national contact point sends her Patient Summary abroad (MyHealth@EU). */
function consents(): Consent[] {
  return [{
    resourceType: 'Consent', id: 'consent-cross-border-claire-wagner',
    meta: { profile: ['http://dsp.lu/fhir/StructureDefinition/dsp-consent'] },
    text: { status: 'generated', div: div('Claire Wagner accepte l’envoi de son résumé patient à un professionnel de santé d’un autre État membre (MyHealth@EU, fictif)') },
    status: 'active',
    scope: cc('http://terminology.hl7.org/CodeSystem/consentscope', 'patient-privacy', 'Privacy Consent'),
    category: [cc(SYSTEMS.loinc, '59284-0', 'Patient Consent')],
    patient: { reference: 'Patient/pat-claire-wagner' },
    dateTime: '2026-10-12T10:00:00+02:00',
    policyRule: cc('https://dsp.lu/fhir/CodeSystem/access-policy', 'cross-border', 'Cross-border sharing of the Patient Summary'),
    provision: { type: 'permit', period: { start: '2026-10-12' } },
  }];
}

// ---------------------------------------------------------------- write
write('01-organizations.json', transaction('examples-01-organizations', orgSpecs.map(organization)));
write('02-practitioners.json', transaction('examples-02-practitioners', [...practSpecs.map(practitioner), ...practSpecs.map(practitionerRole)]));
write('03-patients.json', transaction('examples-03-patients', patSpecs.map((p) => patient(p))));
write('04-documents.json', transaction('examples-04-documents', documents()));
write('05-patient-summary-claire-wagner.json', patientSummary());
write('06-consents.json', transaction('examples-06-consents', consents()));

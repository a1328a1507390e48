/**
 * The example dataset of examples/*.json: valid FHIR R4 (through the project's validator), consistent
 * matricules, references that all resolve inside the dataset, and PDF attachments whose size and SHA-1 match.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

type Json = Record<string, unknown>;
interface Located {
  file: string;
  /** FHIRPath-like location inside the file, e.g. `Bundle.entry[3].resource`. */
  where: string;
  resource: Json;
  /** The Bundle the resource is an entry of, if any. */
  bundle?: Json;
}

const EXAMPLES_DIR = fileURLToPath(new URL('../examples/', import.meta.url));
const MATRICULE_SYSTEM = 'urn:oid:1.3.182.4.4';
const VALIDATION_MODULE = new URL('../src/validation/index.ts', import.meta.url).href;

const files = readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((file) => ({ file, json: JSON.parse(readFileSync(`${EXAMPLES_DIR}${file}`, 'utf8')) as Json }));

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const entriesOf = (bundle: Json): Json[] => (Array.isArray(bundle.entry) ? (bundle.entry as Json[]) : []);
const isTransaction = (j: Json) => j.resourceType === 'Bundle' && (j.type === 'transaction' || j.type === 'batch');
const isDocument = (j: Json) => j.resourceType === 'Bundle' && j.type === 'document';

/** Every resource of the dataset: each file's top-level resource and every Bundle entry's resource. */
const all: Located[] = files.flatMap(({ file, json }) => {
  const out: Located[] = [{ file, where: String(json.resourceType), resource: json }];
  if (json.resourceType === 'Bundle') {
    entriesOf(json).forEach((e, i) => {
      if (isObject(e.resource)) out.push({ file, where: `Bundle.entry[${i}].resource`, resource: e.resource, bundle: json });
    });
  }
  return out;
});
/** What the server stores: transaction entries and the other files' top-level resources. */
const stored = all.filter((l) => (l.bundle ? isTransaction(l.bundle) : !isTransaction(l.resource)));
const ofType = (type: string, from: Located[] = stored) => from.filter((l) => l.resource.resourceType === type);

/** Calls `visit` for every object holding a string `reference` (a Reference datatype), with its path. */
function eachReference(value: unknown, path: string, visit: (reference: string, path: string) => void): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => eachReference(v, `${path}[${i}]`, visit));
  } else if (isObject(value)) {
    if (typeof value.reference === 'string') visit(value.reference, `${path}.reference`);
    for (const [k, v] of Object.entries(value)) {
      // Contained and Bundle entry resources are visited as resources of their own.
      if (k === 'contained' || (k === 'resource' && path.endsWith(']'))) continue;
      eachReference(v, `${path}.${k}`, visit);
    }
  }
}

/** Checks the cross-reference table of a PDF: each offset lands on its object and startxref on `xref`. */
function pdfProblems(bytes: Buffer): string[] {
  const text = bytes.toString('latin1');
  const problems: string[] = [];
  if (!text.startsWith('%PDF-')) problems.push('does not start with %PDF-');
  if (!/%%EOF\s*$/.test(text)) problems.push('does not end with %%EOF');
  const start = /startxref\s+(\d+)\s+%%EOF\s*$/.exec(text);
  if (!start || !text.startsWith('xref', Number(start[1]))) {
    problems.push('startxref does not point at the xref table');
    return problems;
  }
  const table = /^xref\s+0 (\d+)\s+/.exec(text.slice(Number(start[1])));
  if (!table) return [...problems, 'unreadable xref table'];
  const rows = text.slice(Number(start[1]) + table[0].length).split(/\r?\n|\r/).slice(0, Number(table[1]));
  rows.forEach((row, n) => {
    const m = /^(\d{10}) (\d{5}) ([nf]) ?$/.exec(row);
    if (!m) problems.push(`xref row ${n} malformed: ${JSON.stringify(row)}`);
    else if (m[3] === 'n' && !text.startsWith(`${n} ${Number(m[2])} obj`, Number(m[1]))) problems.push(`xref row ${n} does not point at object ${n}`);
  });
  for (const s of text.matchAll(/<< \/Length (\d+) >>\nstream\n/g)) {
    const end = s.index + s[0].length + Number(s[1]);
    if (!/^\r?\n?endstream/.test(text.slice(end))) problems.push(`stream at ${s.index}: /Length ${s[1]} does not end at endstream`);
  }
  return problems;
}

describe('examples/', () => {
  it('holds the dataset files, transaction Bundles using PUT with the resource\'s own type and id', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
    const problems: string[] = [];
    for (const { file, json } of files.filter((f) => isTransaction(f.json))) {
      entriesOf(json).forEach((e, i) => {
        const r = e.resource as Json;
        const req = e.request as Json | undefined;
        if (req?.method !== 'PUT') problems.push(`${file} entry[${i}]: request.method is ${String(req?.method)}, expected PUT`);
        if (req?.url !== `${String(r.resourceType)}/${String(r.id)}`) problems.push(`${file} entry[${i}]: request.url ${String(req?.url)} is not ${String(r.resourceType)}/${String(r.id)}`);
      });
    }
    expect(problems).toEqual([]);
  });

  describe('validation with src/validation/index.ts', () => {
    type Validate = (resource: unknown) => { severity?: string; diagnostics?: string; expression?: string[] }[] | Promise<{ severity?: string; diagnostics?: string; expression?: string[] }[]>;
    let validate: Validate | undefined;
    let loadError = '';
    beforeAll(async () => {
      try {
        const mod = (await import(/* @vite-ignore */ VALIDATION_MODULE)) as { validateResource?: unknown };
        if (typeof mod.validateResource === 'function') validate = mod.validateResource as Validate;
        else loadError = 'src/validation/index.ts does not export a function validateResource(resource: unknown): Issue[]';
      } catch (err) {
        loadError = `src/validation/index.ts could not be imported (${(err as Error).message}); the examples need validateResource(resource: unknown): Issue[] from it`;
      }
    });

    it.each(files.map((f) => [f.file]))('%s: every resource (Bundle entries included) has no error-severity issue', async (file) => {
      if (!validate) throw new Error(loadError);
      const problems: string[] = [];
      for (const l of all.filter((x) => x.file === file)) {
        const issues = await validate(l.resource);
        for (const i of issues) {
          if (i.severity === 'error' || i.severity === 'fatal') {
            problems.push(`${l.where} (${String(l.resource.resourceType)}/${String(l.resource.id)}): ${i.diagnostics ?? ''} @ ${(i.expression ?? []).join(', ')}`);
          }
        }
      }
      expect(problems).toEqual([]);
    });
  });

  it('gives every Patient a 13-digit matricule whose first 8 digits are the birth date', () => {
    const patients = ofType('Patient', all);
    expect(patients.length).toBeGreaterThanOrEqual(6); // 5 stored + the document's copy
    const problems: string[] = [];
    for (const { file, where, resource } of patients) {
      const ids = ((resource.identifier ?? []) as Json[]).filter((i) => i.system === MATRICULE_SYSTEM);
      if (ids.length !== 1) {
        problems.push(`${file} ${where}: ${ids.length} matricule identifiers`);
        continue;
      }
      const value = String(ids[0]!.value);
      if (!/^[12]\d{12}$/.test(value)) problems.push(`${file} ${where}: matricule ${value} is not 13 digits starting with 1 or 2`);
      if (value.slice(0, 8) !== String(resource.birthDate).replaceAll('-', '')) {
        problems.push(`${file} ${where}: matricule ${value} does not start with birthDate ${String(resource.birthDate)}`);
      }
    }
    expect(problems).toEqual([]);
    // Matricules identify one person each (the document's Patient is a copy of a stored one).
    const byValue = new Map<string, Set<string>>();
    for (const { resource } of patients) {
      const value = String(((resource.identifier ?? []) as Json[]).find((i) => i.system === MATRICULE_SYSTEM)?.value);
      const name = JSON.stringify([resource.name, resource.birthDate]);
      byValue.set(value, (byValue.get(value) ?? new Set()).add(name));
    }
    for (const [value, people] of byValue) expect(people.size, `matricule ${value}`).toBe(1);
  });

  it('resolves every reference to a resource defined in the examples', () => {
    const defined = new Set(stored.map((l) => `${String(l.resource.resourceType)}/${String(l.resource.id)}`));
    const problems: string[] = [];
    let count = 0;
    for (const l of all) {
      const fullUrls = new Set(l.bundle ? entriesOf(l.bundle).map((e) => e.fullUrl) : []);
      const contained = new Set(((l.resource.contained ?? []) as Json[]).map((c) => `#${String(c.id)}`));
      eachReference(l.resource, l.where, (ref, path) => {
        count++;
        let ok: boolean;
        if (ref.startsWith('#')) ok = contained.has(ref);
        else if (l.bundle && isDocument(l.bundle)) ok = ref.startsWith('urn:uuid:') && fullUrls.has(ref); // self-contained document
        else if (ref.startsWith('urn:uuid:')) ok = fullUrls.has(ref);
        else ok = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(ref) && defined.has(ref);
        if (!ok) problems.push(`${l.file} ${path}: ${ref} does not resolve`);
      });
      // Attachment urls of the form Type/id (Binary/<id>) are references too; inline data has none.
      for (const content of (l.resource.resourceType === 'DocumentReference' ? (l.resource.content as Json[]) : [])) {
        if ((content.attachment as Json).data !== undefined) continue;
        const url = String((content.attachment as Json).url);
        count++;
        if (!defined.has(url)) problems.push(`${l.file} ${l.where}: attachment url ${url} does not resolve`);
      }
    }
    expect(problems).toEqual([]);
    expect(count).toBeGreaterThan(50);
  });

  it('stores each PDF in a Binary whose size and SHA-1 match its DocumentReference attachment', () => {
    const binaries = new Map(ofType('Binary').map((l) => [`Binary/${String(l.resource.id)}`, l.resource]));
    const docs = ofType('DocumentReference');
    expect(docs.length).toBeGreaterThanOrEqual(4);
    const problems: string[] = [];
    const used = new Set<string>();
    for (const { resource: doc } of docs) {
      for (const content of doc.content as Json[]) {
        const a = content.attachment as Json;
        if (a.data !== undefined) {
          // Inline content (the profile example): size and hash still describe the bytes.
          const inline = Buffer.from(String(a.data), 'base64');
          if (a.size !== inline.length) problems.push(`DocumentReference/${String(doc.id)}: inline size ${String(a.size)} but ${inline.length} bytes`);
          if (a.hash !== createHash('sha1').update(inline).digest('base64')) problems.push(`DocumentReference/${String(doc.id)}: inline hash does not match`);
          continue;
        }
        const binary = binaries.get(String(a.url));
        const label = `DocumentReference/${String(doc.id)} -> ${String(a.url)}`;
        if (!binary) {
          problems.push(`${label}: no such Binary`);
          continue;
        }
        used.add(String(a.url));
        const bytes = Buffer.from(String(binary.data), 'base64');
        if (bytes.toString('base64') !== binary.data) problems.push(`${label}: Binary.data is not canonical base64`);
        if (a.contentType !== 'application/pdf' || binary.contentType !== 'application/pdf') problems.push(`${label}: contentType is not application/pdf`);
        if (a.size !== bytes.length) problems.push(`${label}: size ${String(a.size)} but the Binary holds ${bytes.length} bytes`);
        const sha1 = createHash('sha1').update(bytes).digest('base64');
        if (a.hash !== sha1) problems.push(`${label}: hash ${String(a.hash)} but SHA-1 of the bytes is ${sha1}`);
        if (bytes.subarray(0, 4).toString('latin1') !== '%PDF') problems.push(`${label}: bytes do not start with %PDF`);
        for (const p of pdfProblems(bytes)) problems.push(`${label}: PDF ${p}`);
      }
    }
    for (const url of binaries.keys()) if (!used.has(url)) problems.push(`${url} is not the attachment of any DocumentReference`);
    expect(problems).toEqual([]);
  });

  it('covers what examples/README.md describes', () => {
    // The dataset (0*.json); the lu-*.json files are single examples of our profiles, listed apart.
    const dataset = stored.filter((l) => /^0\d/.test(l.file));
    const patients = ofType('Patient', dataset).map((l) => l.resource);
    expect(patients).toHaveLength(5);
    const languages = new Set(patients.flatMap((p) => ((p.communication ?? []) as Json[]).map((c) => ((c.language as Json).coding as Json[])[0]!.code)));
    for (const lang of ['fr', 'de', 'lb', 'pt']) expect(languages.has(lang), `communication language ${lang}`).toBe(true);
    expect(patients.some((p) => Array.isArray(p.generalPractitioner))).toBe(true);
    for (const p of patients) expect(((p.address ?? []) as Json[])[0]?.country).toBe('LU');

    const orgNames = ofType('Organization').map((l) => l.resource.name);
    for (const name of ['Centre Hospitalier de Luxembourg', 'Hôpitaux Robert Schuman', 'Centre Hospitalier Emile Mayrisch', 'Centre Hospitalier du Nord', 'Agence eSanté']) {
      expect(orgNames).toContain(name);
    }
    expect(ofType('Practitioner').length).toBeGreaterThan(0);
    expect(ofType('PractitionerRole').length).toBeGreaterThan(0);

    const labels = new Set(ofType('DocumentReference').flatMap((l) => ((l.resource.securityLabel ?? []) as Json[]).flatMap((s) => ((s.coding ?? []) as Json[]).map((c) => `${String(c.system)}|${String(c.code)}`))));
    for (const code of ['N', 'R', 'V']) expect(labels.has(`http://terminology.hl7.org/CodeSystem/v3-Confidentiality|${code}`), `securityLabel ${code}`).toBe(true);

    const documents = files.filter((f) => /^0\d/.test(f.file) && isDocument(f.json));
    expect(documents).toHaveLength(1);
    const doc = documents[0]!.json;
    const entries = entriesOf(doc);
    const composition = entries[0]!.resource as Json;
    expect(composition.resourceType).toBe('Composition');
    expect(((composition.type as Json).coding as Json[])[0]).toMatchObject({ system: 'http://loinc.org', code: '60591-5' });
    const sections = (composition.section as Json[]).map((s) => ((s.code as Json).coding as Json[])[0]!.code);
    expect(sections).toEqual(['10160-0', '48765-2', '11450-4', '47519-4', '11369-6', '30954-2', '8716-3']);
    for (const s of composition.section as Json[]) {
      const text = s.text as Json;
      expect(text.status).toBe('generated');
      expect(String(text.div)).toMatch(/^<div xmlns="http:\/\/www\.w3\.org\/1999\/xhtml">[\s\S]*<\/div>$/);
      expect((s.entry as Json[]).length).toBeGreaterThan(0);
    }
    for (const e of entries) expect(String(e.fullUrl)).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const bloodGroup = entries.map((e) => e.resource as Json).find((r) => r.resourceType === 'Observation' && ((r.code as Json).coding as Json[]).some((c) => c.code === '882-1'));
    expect(bloodGroup, 'ABO/Rh blood group Observation').toBeDefined();
  });
});

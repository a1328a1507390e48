/**
 * Converts the eHDSI Master Value Set Catalogue into FHIR R4 JSON under terminology/:
 *
 * All NDJSON outputs are gzip-compressed (`.ndjson.gz`).
 *
 * - terminology/mvc-8.1.0.ndjson: the 8.1.0 value sets from the HL7 Europe FSH sources (mvc-fhir-fsh-8.1.0);
 * - terminology/mvc-8.0.0.ndjson: the value sets bound by the eHDSI rule files of release 8.0.0 (ART-DECOR
 *   runtime `voc-*.xml`);
 * - terminology/codesystems.ndjson: the code systems the FSH sources define in full (EDQM dose forms, EMDN);
 * - terminology/designations/<lang>.ndjson: designation supplements from the TSAM exports (same code as
 *   `dsp-fhir terminology import-tsam`);
 * - terminology/coded-elements.json: the eHDSI coded element list (CDA element path -> value set OID).
 *
 * Usage: node_modules/.bin/node scripts/convert-mvc.ts [<ehdsi folder>] [<output folder>]
 * (defaults: ../shared/specs/ehdsi and terminology/).
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { DOMParser, type Element } from '@xmldom/xmldom';
import type { CodeSystem, CodeSystemConcept, ValueSet, ValueSetComposeInclude, Extension } from 'fhir/r4';
import { canonicalSystem, oidToUri } from '../src/terminology/codesystems.ts';
import { importTsamFolder, writeSupplements } from '../src/terminology/tsam.ts';
import { EXT_NOT_SELECTABLE, EXT_DEPRECATED, EXT_ARTDECOR_VERSION, EXT_NULLFLAVOR_EXCEPTION } from '../src/terminology/model.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = resolve(process.argv[2] ?? join(root, '..', 'shared', 'specs', 'ehdsi'));
const out = resolve(process.argv[3] ?? join(root, 'terminology'));
const EHDSI_VS = 'http://terminology.ehdsi.eu/ValueSet/';
const OID_ID = 'urn:ietf:rfc:3986';

// --- FSH ----------------------------------------------------------------------------------------------------

function unquote(s: string): string {
  return s.startsWith('"') ? s.slice(1, -1).replace(/\\(.)/g, '$1') : s;
}

const CODE_RE = /^(\S*?)#("(?:[^"\\]|\\.)*"|[^\s"]+)(?:\s+"((?:[^"\\]|\\.)*)")?/;

function fshValueSet(text: string): ValueSet {
  const aliases = new Map<string, string>();
  const vs: ValueSet = { resourceType: 'ValueSet', status: 'active' };
  const includes = new Map<string, ValueSetComposeInclude>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\s+\/\/.*$/, '').trimEnd();
    let m: RegExpExecArray | null;
    if ((m = /^Alias:\s*(\S+)\s*=\s*(\S+)/.exec(line))) aliases.set(m[1]!, m[2]!);
    else if ((m = /^ValueSet:\s*(\S+)/.exec(line))) vs.name = m[1]!;
    else if ((m = /^Id:\s*(\S+)/.exec(line))) vs.id = m[1]!;
    else if ((m = /^Title:\s*"(.*)"/.exec(line))) vs.title = m[1]!;
    else if ((m = /^Description:\s*"(.*)"/.exec(line))) {
      if (m[1]) vs.description = m[1];
    } else if ((m = /^\* \^(\S+)\s*=\s*(.*)$/.exec(line))) {
      const [, path, value] = m;
      if (path === 'version') vs.version = unquote(value!);
      else if (path === 'url') vs.url = unquote(value!);
      else if (path === 'experimental') vs.experimental = value === 'true';
      else if (path === 'identifier.value') vs.identifier = [{ system: OID_ID, value: unquote(value!) }];
    } else if ((m = /^\* (.*)$/.exec(line))) {
      const c = CODE_RE.exec(m[1]!);
      if (!c) continue;
      const sysRaw = aliases.get(c[1]!) ?? c[1]!;
      const system = canonicalSystem(sysRaw);
      let inc = includes.get(system);
      if (!inc) includes.set(system, (inc = { system, concept: [] }));
      inc.concept!.push({ code: unquote(c[2]!), ...(c[3] !== undefined ? { display: c[3].replace(/\\(.)/g, '$1') } : {}) });
    }
  }
  vs.compose = { include: [...includes.values()] };
  return vs;
}

function fshCodeSystem(text: string, url: string): CodeSystem {
  const cs: CodeSystem = { resourceType: 'CodeSystem', status: 'active', content: 'complete', url, concept: [] };
  const stack: { depth: number; concept: CodeSystemConcept }[] = [];
  let pendingProp: { code: string } | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\s+\/\/.*$/, '').trimEnd();
    let m: RegExpExecArray | null;
    if ((m = /^CodeSystem:\s*(\S+)/.exec(line))) cs.name = m[1]!;
    else if ((m = /^Id:\s*(\S+)/.exec(line))) cs.id = m[1]!;
    else if ((m = /^Title:\s*"(.*)"/.exec(line))) cs.title = m[1]!;
    else if ((m = /^Description:\s*"(.*)"/.exec(line))) cs.description = m[1]!;
    else if ((m = /^\* \^(\S+)\s*=\s*(.*)$/.exec(line))) {
      const [, path, value] = m;
      if (path === 'caseSensitive') cs.caseSensitive = value === 'true';
      else if (path === 'experimental') cs.experimental = value === 'true';
      else if (path === 'identifier[=].value' || path === 'identifier.value') cs.identifier = [{ system: OID_ID, value: unquote(value!) }];
      else if (path === 'property[+].code') (cs.property ??= []).push({ code: value!.replace(/^#/, ''), type: 'code' });
      else if (path === 'property[=].description') cs.property!.at(-1)!.description = unquote(value!);
    } else if ((m = /^(\s*)\* (.*)$/.exec(line))) {
      const depth = m[1]!.length / 2;
      const body = m[2]!;
      const caret = /^\^(\S+)\s*=\s*(.*)$/.exec(body);
      if (caret) {
        const owner = stack.at(-1)?.concept;
        if (!owner) continue;
        const [, path, value] = caret;
        if (path === 'definition') owner.definition = unquote(value!);
        else if (path === 'property[+].code') {
          pendingProp = { code: value!.replace(/^#/, '') };
        } else if (path === 'property[=].valueCode' && pendingProp) {
          const c = CODE_RE.exec(value!);
          if (c) (owner.property ??= []).push({ code: pendingProp.code, valueCode: unquote(c[2]!) });
        }
        continue;
      }
      const c = CODE_RE.exec(body);
      if (!c || c[1]) continue;
      const concept: CodeSystemConcept = { code: unquote(c[2]!), ...(c[3] !== undefined ? { display: c[3] } : {}) };
      while (stack.length && stack.at(-1)!.depth >= depth) stack.pop();
      const parent = stack.at(-1)?.concept;
      if (parent) (parent.concept ??= []).push(concept);
      else cs.concept!.push(concept);
      stack.push({ depth, concept });
    }
  }
  return cs;
}

// --- ART-DECOR runtime value sets (release 8.0.0 rule files) ------------------------------------------------

function el(parent: Element, name: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) if (n.nodeType === 1 && (n as Element).localName === name) out.push(n as Element);
  return out;
}

function artDecorValueSets(file: string, urlByOid: Map<string, string>): ValueSet[] {
  const doc = new DOMParser().parseFromString(readFileSync(file, 'utf8'), 'text/xml');
  const result: ValueSet[] = [];
  for (const v of el(doc.documentElement as unknown as Element, 'valueSet')) {
    const oid = v.getAttribute('id')!;
    const name = v.getAttribute('name') ?? oid;
    const url = urlByOid.get(oid) ?? (oid.startsWith('1.3.6.1.4.1.12559.11.10.1.3.1.42.') ? EHDSI_VS + name : `urn:oid:${oid}`);
    const id = `${name.replace(/[^A-Za-z0-9\-.]/g, '-')}-8.0.0`.slice(-64).replace(/^[-.]+/, '');
    const ext: Extension[] = [];
    if (v.getAttribute('versionLabel')) ext.push({ url: EXT_ARTDECOR_VERSION, valueString: v.getAttribute('versionLabel')! });
    const vs: ValueSet = {
      resourceType: 'ValueSet',
      id,
      ...(ext.length ? { extension: ext } : {}),
      url,
      identifier: [{ system: OID_ID, value: `urn:oid:${oid}` }],
      version: '8.0.0',
      name: name.replace(/[^A-Za-z0-9_]/g, ''),
      title: v.getAttribute('displayName') ?? name,
      status: v.getAttribute('statusCode') === 'final' ? 'active' : 'draft',
      ...(v.getAttribute('effectiveDate') ? { date: v.getAttribute('effectiveDate')! } : {}),
      publisher: el(v, 'publishingAuthority')[0]?.getAttribute('name') ?? undefined,
    };
    const desc = el(v, 'desc')[0]?.textContent?.trim();
    if (desc) vs.description = desc;
    const includes = new Map<string, ValueSetComposeInclude>();
    const inc = (system: string) => {
      let i = includes.get(system);
      if (!i) includes.set(system, (i = { system }));
      return i;
    };
    for (const list of el(v, 'conceptList')) {
      for (const c of el(list, 'concept')) {
        const system = oidToUri(c.getAttribute('codeSystem')!);
        const type = c.getAttribute('type');
        const cext: Extension[] = [];
        if (type === 'A') cext.push({ url: EXT_NOT_SELECTABLE, valueBoolean: true });
        if (type === 'D') cext.push({ url: EXT_DEPRECATED, valueBoolean: true });
        const designation = el(c, 'designation')
          .filter((d) => d.getAttribute('displayName'))
          .map((d) => ({ ...(d.getAttribute('language') ? { language: d.getAttribute('language')! } : {}), value: d.getAttribute('displayName')! }));
        (inc(system).concept ??= []).push({
          ...(cext.length ? { extension: cext } : {}),
          code: c.getAttribute('code')!,
          ...(c.getAttribute('displayName') ? { display: c.getAttribute('displayName')! } : {}),
          ...(designation.length ? { designation } : {}),
        });
      }
      for (const x of el(list, 'exception')) {
        const system = oidToUri(x.getAttribute('codeSystem')!);
        vs.extension = [
          ...(vs.extension ?? []),
          { url: EXT_NULLFLAVOR_EXCEPTION, valueCoding: { system, code: x.getAttribute('code')!, display: x.getAttribute('displayName') ?? undefined } },
        ];
      }
    }
    for (const c of el(v, 'completeCodeSystem')) inc(oidToUri(c.getAttribute('codeSystem')!));
    vs.compose = { include: [...includes.values()] };
    result.push(JSON.parse(JSON.stringify(vs)) as ValueSet);
  }
  return result;
}

// --- coded element list -----------------------------------------------------------------------------------

function codedElements(file: string): { path: string; valueSet: string; usage: Record<string, string> }[] {
  const doc = new DOMParser().parseFromString(readFileSync(file, 'utf8'), 'text/xml');
  const list: { path: string; valueSet: string; usage: Record<string, string> }[] = [];
  for (const e of el(doc.documentElement as unknown as Element, 'codedElement')) {
    const path = el(e, 'elementPath')[0]?.textContent?.trim();
    const valueSet = el(e, 'valueSet')[0]?.textContent?.trim();
    if (!path || !valueSet) continue;
    const usage: Record<string, string> = {};
    for (const u of el(e, 'usage')) for (let n = u.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) usage[(n as Element).localName!] = n.textContent!.trim();
    list.push({ path, valueSet, usage });
  }
  return list;
}

// --- main -------------------------------------------------------------------------------------------------

/** NDJSON, gzip-compressed (the output stays around 1.5 MB instead of 11 MB); gzipSync writes no timestamp. */
function ndjson(file: string, resources: object[]): void {
  writeFileSync(file, gzipSync(resources.map((r) => JSON.stringify(r)).join('\n') + '\n', { level: 9 }));
  console.log(`${file}: ${resources.length} resources`);
}

function main(): void {
  if (!existsSync(src)) {
    console.error(`convert-mvc: source folder ${src} not found`);
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  const fshRoot = join(src, 'terminology', 'mvc-fhir-fsh-8.1.0', 'input', 'fsh');
  const vs81 = readdirSync(join(fshRoot, 'valuesets', 'mvc'))
    .filter((f) => f.endsWith('.fsh'))
    .sort()
    .map((f) => fshValueSet(readFileSync(join(fshRoot, 'valuesets', 'mvc', f), 'utf8')));
  for (const vs of vs81) vs.publisher = 'HL7 Europe';
  ndjson(join(out, 'mvc-8.1.0.ndjson.gz'), vs81);

  const urlByOid = new Map<string, string>();
  for (const vs of vs81) {
    const oid = vs.identifier?.[0]?.value?.replace(/^urn:oid:/, '');
    if (oid && vs.url) urlByOid.set(oid, vs.url);
  }
  const adDir = readdirSync(join(src, 'validation')).find((d) => d.startsWith('artdecor-epsos-runtime-W8.0.0'));
  if (adDir) {
    const inc = join(src, 'validation', adDir, 'include');
    const vs80 = readdirSync(inc)
      .filter((f) => /^voc-.*\.xml$/.test(f))
      .sort()
      .flatMap((f) => artDecorValueSets(join(inc, f), urlByOid));
    ndjson(join(out, 'mvc-8.0.0.ndjson.gz'), vs80);
  }

  const edqm = fshCodeSystem(readFileSync(join(fshRoot, 'codesystems', 'edqm.fsh'), 'utf8'), 'http://standardterms.edqm.eu');
  edqm.identifier = [{ system: OID_ID, value: 'urn:oid:0.4.0.127.0.16.1.1.2.1' }];
  // The FSH source gives EMDN the URL of the eHDSIMedicalDevice value set; the value sets refer to it by its OID.
  const emdn = fshCodeSystem(readFileSync(join(fshRoot, 'codesystems', 'emdn.fsh'), 'utf8'), 'urn:oid:1.3.6.1.4.1.12559.11.10.1.3.1.44.6');
  emdn.caseSensitive = true;
  emdn.hierarchyMeaning = 'is-a';
  ndjson(join(out, 'codesystems.ndjson.gz'), [edqm, emdn]);

  const tsam = join(src, 'terminology', 'mvc-tsam-export-xml');
  if (existsSync(tsam)) {
    const imported = importTsamFolder(tsam);
    for (const f of writeSupplements(imported, join(out, 'designations'), { gzip: true })) console.log(f);
  }

  const cel = join(src, 'validation', 'openncp-TM_resources', 'coded_element_list_ehdsi.xml');
  if (existsSync(cel)) {
    const list = codedElements(cel);
    writeFileSync(join(out, 'coded-elements.json'), JSON.stringify(list, null, 1) + '\n');
    console.log(`${join(out, 'coded-elements.json')}: ${list.length} coded elements`);
  }
}

main();

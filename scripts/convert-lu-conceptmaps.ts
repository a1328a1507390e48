/**
 * Luxembourg code systems and ConceptMaps to the eHDSI MVC, seeded from the Luxembourg pivot samples.
 *
 * A Luxembourg CDA (eHDSI pivot, fr-LU) carries national codes of the Agence eSanté arc 1.3.182.5.x (VIDAL
 * routes / forms / substances, ESANTE drugs, ICD-10-CM, CLADIMED...) either as the coded element itself or as a
 * <translation> of an MVC code (EDQM, ATC, ICD-10, SNOMED CT). Each (MVC code, national translation) pair becomes
 * a ConceptMap element national -> MVC; every national code seen becomes a concept of a fragment CodeSystem.
 * Each mapping names its source (file and XPath of the element) in target.comment and in the extension
 * EXT_SOURCE_SAMPLE (one per occurrence). The relation is `equivalent` when both codes are the same string
 * (ICD-10-CM -> ICD-10), else `relatedto`: the sample shows that the codes were used together, not how their
 * meanings compare.
 *
 * Usage: node_modules/.bin/node scripts/convert-lu-conceptmaps.ts [<samples/ps folder>] [<out file>]
 * (defaults ../shared/specs/ehdsi/samples/ps and terminology/lu/lu-samples.ndjson, loaded at start).
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync, statSync, existsSync } from 'node:fs';
import { join, resolve, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOMParser, type Element } from '@xmldom/xmldom';
import type { CodeSystem, ConceptMap, ConceptMapGroup, Extension } from 'fhir/r4';
import { oidToUri } from '../src/terminology/codesystems.ts';
import { EXT_SOURCE_SAMPLE } from '../src/terminology/model.ts';

export const LU_ARC = '1.3.182.5.';
const isLu = (oid: string | null | undefined) => !!oid && oid.startsWith(LU_ARC);

export interface SeenCoding {
  oid: string;
  code: string;
  display?: string;
  systemName?: string;
}
export interface SeenAt {
  file: string;
  xpath: string;
}
export interface LuPair extends SeenAt {
  lu: SeenCoding;
  mvc: SeenCoding;
}
export interface LuExtract {
  codes: (SeenCoding & SeenAt)[];
  pairs: LuPair[];
}

/** Positional XPath of an element, with the names as written (`pharm:formCode[1]`). */
export function xpathOf(el: Element): string {
  const parts: string[] = [];
  let n: Element | null = el;
  while (n && n.nodeType === 1) {
    let i = 1;
    for (let s = n.previousSibling; s; s = s.previousSibling) if (s.nodeType === 1 && (s as Element).tagName === n.tagName) i++;
    parts.unshift(`${n.tagName}[${i}]`);
    n = n.parentNode as Element | null;
  }
  return '/' + parts.join('/');
}

function coding(el: Element): SeenCoding | undefined {
  const oid = el.getAttribute('codeSystem');
  const code = el.getAttribute('code');
  if (!oid || !code) return undefined;
  const display = el.getAttribute('displayName') || undefined;
  const systemName = el.getAttribute('codeSystemName') || undefined;
  return { oid, code, ...(display ? { display } : {}), ...(systemName ? { systemName } : {}) };
}

/** National codes and (MVC, national) pairs of one CDA document. */
export function extractLu(xml: string, file: string): LuExtract {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const out: LuExtract = { codes: [], pairs: [] };
  const all = doc.getElementsByTagName('*');
  for (let i = 0; i < all.length; i++) {
    const el = all.item(i)!;
    const c = coding(el);
    if (!c) continue;
    if (isLu(c.oid)) out.codes.push({ ...c, file, xpath: xpathOf(el) });
    if (el.localName === 'translation') continue;
    for (let ch = el.firstChild; ch; ch = ch.nextSibling) {
      if (ch.nodeType !== 1 || (ch as Element).localName !== 'translation') continue;
      const t = coding(ch as Element);
      if (!t || isLu(t.oid) === isLu(c.oid)) continue;
      const [lu, mvc, at] = isLu(t.oid) ? [t, c, ch as Element] : [c, t, el];
      out.pairs.push({ lu, mvc, file, xpath: xpathOf(at) });
    }
  }
  return out;
}

const slug = (s: string) => s.toLowerCase().normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
const sourceExt = (s: SeenAt): Extension => ({
  url: EXT_SOURCE_SAMPLE,
  extension: [
    { url: 'file', valueString: s.file },
    { url: 'xpath', valueString: s.xpath },
  ],
});
const mostCommon = (xs: (string | undefined)[]) => {
  const n = new Map<string, number>();
  for (const x of xs) if (x) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1])[0]?.[0];
};

/** Fragment CodeSystems (one per national system seen) and ConceptMaps national -> MVC (one per national system). */
export function buildLuResources(extracts: LuExtract[]): (CodeSystem | ConceptMap)[] {
  const codes = extracts.flatMap((e) => e.codes);
  const pairs = extracts.flatMap((e) => e.pairs);
  const systems = [...new Set(codes.map((c) => c.oid))].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const nameOf = (oid: string) => mostCommon(codes.filter((c) => c.oid === oid).map((c) => c.systemName)) ?? oid;
  const files = (list: SeenAt[]) => [...new Set(list.map((x) => x.file))].sort();
  const out: (CodeSystem | ConceptMap)[] = [];
  for (const oid of systems) {
    const seen = codes.filter((c) => c.oid === oid);
    const concepts = new Map<string, { code: string; display?: string; at: SeenAt[] }>();
    for (const c of seen) {
      const e = concepts.get(c.code) ?? { code: c.code, at: [] };
      e.display ??= c.display;
      e.at.push({ file: c.file, xpath: c.xpath });
      concepts.set(c.code, e);
    }
    const name = nameOf(oid);
    out.push({
      resourceType: 'CodeSystem',
      id: `lu-${slug(name)}`,
      url: oidToUri(oid),
      identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:oid:${oid}` }],
      name: name.replace(/[^A-Za-z0-9]+/g, ''),
      title: `${name} (Luxembourg, codes seen in the pivot samples)`,
      status: 'draft',
      language: 'fr-LU',
      description: `Fragment of the Luxembourg code system ${name} (OID ${oid}): the codes and displays that appear in ${files(seen).join(', ')}.`,
      caseSensitive: true,
      content: 'fragment',
      count: concepts.size,
      concept: [...concepts.values()].map((c) => ({ code: c.code, ...(c.display ? { display: c.display } : {}), extension: c.at.map(sourceExt) })),
    } as CodeSystem);
  }
  for (const oid of systems) {
    const mine = pairs.filter((p) => p.lu.oid === oid);
    if (!mine.length) continue;
    const name = nameOf(oid);
    const groups: ConceptMapGroup[] = [];
    for (const target of [...new Set(mine.map((p) => p.mvc.oid))].sort()) {
      const inGroup = mine.filter((p) => p.mvc.oid === target);
      const byCode = new Map<string, LuPair[]>();
      for (const p of inGroup) byCode.set(p.lu.code, [...(byCode.get(p.lu.code) ?? []), p]);
      groups.push({
        source: oidToUri(oid),
        target: oidToUri(target),
        element: [...byCode].map(([code, ps]) => {
          const targets = new Map<string, LuPair[]>();
          for (const p of ps) targets.set(p.mvc.code, [...(targets.get(p.mvc.code) ?? []), p]);
          return {
            code,
            ...(ps.find((p) => p.lu.display)?.lu.display ? { display: ps.find((p) => p.lu.display)!.lu.display } : {}),
            target: [...targets].map(([tcode, tps]) => ({
              code: tcode,
              ...(tps.find((p) => p.mvc.display) ? { display: tps.find((p) => p.mvc.display)!.mvc.display } : {}),
              equivalence: tcode === code ? 'equivalent' : 'relatedto',
              comment: `Seen together ${tps.length === 1 ? 'once' : `${tps.length} times`}: ${tps.map((p) => `${p.file} ${p.xpath}`).join('; ')}`,
              extension: tps.map(sourceExt),
            })),
          };
        }),
      } as ConceptMapGroup);
    }
    out.push({
      resourceType: 'ConceptMap',
      id: `lu-${slug(name)}-to-mvc`,
      url: `http://dsp.lu/fhir/ConceptMap/lu-${slug(name)}-to-mvc`,
      version: '0.1.0',
      name: `Lu${name.replace(/[^A-Za-z0-9]+/g, '')}ToMvc`,
      title: `${name} (Luxembourg) to the eHDSI MVC, from the pivot samples`,
      status: 'draft',
      description: `Pairs of a ${name} code (OID ${oid}) and the MVC code it accompanies as <translation> (or that it translates) in ${files(mine).join(', ')}. Each target names the sample file and XPath it comes from.`,
      group: groups,
    } as ConceptMap);
  }
  return out;
}

/** XML files under a folder that are Luxembourg documents (fr-LU, or carrying codes of the 1.3.182.5 arc). */
export function luSampleFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const f = join(d, name);
      if (statSync(f).isDirectory()) walk(f);
      else if (name.endsWith('.xml')) {
        const head = readFileSync(f, 'utf8');
        if (/languageCode\s+code="fr-LU"/.test(head) || /codeSystem="1\.3\.182\.5\./.test(head)) out.push(f);
      }
    }
  };
  walk(dir);
  return out;
}

export function convertLuSamples(dir: string): { files: string[]; resources: (CodeSystem | ConceptMap)[]; pairs: number } {
  const files = luSampleFiles(dir);
  const extracts = files.map((f) => extractLu(readFileSync(f, 'utf8'), relative(dir, f)));
  return { files, resources: buildLuResources(extracts), pairs: extracts.reduce((n, e) => n + e.pairs.length, 0) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const dir = resolve(process.argv[2] ?? join(root, '..', 'shared', 'specs', 'ehdsi', 'samples', 'ps'));
  const outFile = resolve(process.argv[3] ?? join(root, 'terminology', 'lu', 'lu-samples.ndjson'));
  if (!existsSync(dir)) {
    console.error(`convert-lu-conceptmaps: ${dir} not found`);
    process.exit(2);
  }
  const r = convertLuSamples(dir);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, r.resources.map((x) => JSON.stringify(x)).join('\n') + '\n');
  console.log(`${r.files.length} Luxembourg samples (${r.files.map((f) => relative(dir, f)).join(', ')}): ${r.pairs} pairs -> ${r.resources.filter((x) => x.resourceType === 'ConceptMap').length} ConceptMaps, ${r.resources.filter((x) => x.resourceType === 'CodeSystem').length} CodeSystems in ${relative(root, outFile)}`);
}

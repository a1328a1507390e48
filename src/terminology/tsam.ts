/**
 * Import of the Master Translation Catalogue in the TSAM export format that national contact points produce
 * from the EU central terminology server:
 *
 *   <ValueSet oid="..." name="..."><concept codeSystem="<oid>" codeSystemName="..." code="...">
 *     <designation lang="nl-NL">...</designation>...</concept></ValueSet>
 *
 * The designations become CodeSystem supplements (content = supplement), one per language and code system,
 * written as NDJSON to `<dir>/<lang>.ndjson`; the terminology service merges them into every concept of the
 * supplemented system, whichever value set it is reached through.
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DOMParser, type Element } from '@xmldom/xmldom';
import type { CodeSystem } from 'fhir/r4';
import { oidToUri, isOid } from './codesystems.ts';

export interface TsamConcept {
  system: string;
  systemOid: string;
  code: string;
  designations: { language: string; value: string }[];
}

export interface TsamValueSet {
  oid: string;
  name: string;
  concepts: TsamConcept[];
}

function children(parent: Element, name: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) if (n.nodeType === 1 && (n as Element).localName === name) out.push(n as Element);
  return out;
}

/** Parses one TSAM export document (one or more `<ValueSet>` elements). Throws on malformed input. */
export function parseTsamXml(xml: string, source = 'input'): TsamValueSet[] {
  if (/<!DOCTYPE/i.test(xml)) throw new Error(`${source}: DOCTYPE is not allowed`);
  const errors: string[] = [];
  const doc = new DOMParser({ onError: (level, msg) => { if (level !== 'warning') errors.push(msg); } }).parseFromString(xml, 'text/xml');
  if (errors.length || !doc.documentElement) throw new Error(`${source}: not well-formed XML: ${errors[0] ?? 'no root element'}`);
  const root = doc.documentElement as unknown as Element;
  const sets = root.localName === 'ValueSet' ? [root] : children(root, 'ValueSet');
  if (!sets.length) throw new Error(`${source}: no <ValueSet> element`);
  return sets.map((v) => {
    const oid = v.getAttribute('oid') ?? '';
    if (!isOid(oid)) throw new Error(`${source}: <ValueSet> without a valid oid attribute`);
    const concepts: TsamConcept[] = [];
    for (const c of children(v, 'concept')) {
      const systemOid = c.getAttribute('codeSystem') ?? '';
      const code = c.getAttribute('code') ?? '';
      if (!systemOid || !code) throw new Error(`${source}: <concept> without codeSystem or code in value set ${oid}`);
      const designations = children(c, 'designation')
        .map((d) => ({ language: d.getAttribute('lang') ?? '', value: (d.textContent ?? '').trim() }))
        .filter((d) => d.language && d.value);
      concepts.push({ system: oidToUri(systemOid), systemOid, code, designations });
    }
    return { oid, name: v.getAttribute('name') ?? oid, concepts };
  });
}

/** Reads every `*.xml` file of a folder. */
export function importTsamFolder(folder: string): TsamValueSet[] {
  if (!existsSync(folder)) throw new Error(`${folder}: no such folder`);
  const files = readdirSync(folder).filter((f) => f.toLowerCase().endsWith('.xml')).sort();
  if (!files.length) throw new Error(`${folder}: no .xml files`);
  return files.flatMap((f) => parseTsamXml(readFileSync(join(folder, f), 'utf8'), f));
}

export function supplementUrl(language: string, system: string): string {
  return `urn:dsp:terminology:tsam:${language}:${system}`;
}

/** Groups designations into supplements: one CodeSystem per (language, code system). */
export function toSupplements(sets: TsamValueSet[]): Map<string, CodeSystem[]> {
  const byLang = new Map<string, Map<string, Map<string, Set<string>>>>();
  for (const vs of sets) {
    for (const c of vs.concepts) {
      for (const d of c.designations) {
        let systems = byLang.get(d.language);
        if (!systems) byLang.set(d.language, (systems = new Map()));
        let codes = systems.get(c.system);
        if (!codes) systems.set(c.system, (codes = new Map()));
        let values = codes.get(c.code);
        if (!values) codes.set(c.code, (values = new Set()));
        values.add(d.value);
      }
    }
  }
  const out = new Map<string, CodeSystem[]>();
  for (const [language, systems] of [...byLang].sort(([a], [b]) => a.localeCompare(b))) {
    const list: CodeSystem[] = [];
    for (const [system, codes] of [...systems].sort(([a], [b]) => a.localeCompare(b))) {
      const id = `tsam-${language}-${system}`.replace(/[^A-Za-z0-9\-.]/g, '-').slice(0, 64);
      list.push({
        resourceType: 'CodeSystem',
        id,
        url: supplementUrl(language, system),
        name: `TSAMDesignations`,
        title: `TSAM designations (${language}) for ${system}`,
        status: 'active',
        content: 'supplement',
        supplements: system,
        language,
        count: codes.size,
        concept: [...codes].map(([code, values]) => ({ code, designation: [...values].map((value) => ({ language, value })) })),
      });
    }
    out.set(language, list);
  }
  return out;
}

/** Writes `<dir>/<lang>.ndjson` (or `.ndjson.gz`) for every language; returns the file names with counts. */
export function writeSupplements(sets: TsamValueSet[], dir: string, options: { gzip?: boolean } = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [language, list] of toSupplements(sets)) {
    const file = join(dir, `${language}.ndjson${options.gzip ? '.gz' : ''}`);
    const text = list.map((r) => JSON.stringify(r)).join('\n') + '\n';
    writeFileSync(file, options.gzip ? gzipSync(text, { level: 9 }) : text);
    const n = list.reduce((s, cs) => s + (cs.concept?.length ?? 0), 0);
    written.push(`${file}: ${list.length} supplements, ${n} concepts`);
  }
  return written;
}

/**
 * Where terminology resources come from: a static registry (terminology/ loaded at start, plus anything added
 * in code) and request scopes that layer more resources on top (resources found in the store, `tx-resource`
 * parameters). Lookups are synchronous; the operations fetch what they need from the store first.
 */
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CodeSystem, ConceptMap, ConceptMapGroup, ConceptMapGroupElement, ConceptMapGroupElementTarget, ValueSet, Resource } from 'fhir/r4';
import { CodeSystemIndex, type Designation } from './codesystem-index.ts';
import { canonicalSystem, cdaCodeSystemName } from './codesystems.ts';

export type TerminologyResource = CodeSystem | ValueSet | ConceptMap;

/** Splits `url|version`. */
export function splitCanonical(ref: string): { url: string; version?: string } {
  const i = ref.indexOf('|');
  return i < 0 ? { url: ref } : { url: ref.slice(0, i), version: ref.slice(i + 1) || undefined };
}

/** Compares version strings: numeric parts numerically, else lexically. */
export function compareVersions(a = '', b = ''): number {
  const pa = a.split(/[.\-]/);
  const pb = b.split(/[.\-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    if (/^\d+$/.test(x) && /^\d+$/.test(y)) return Number(x) - Number(y);
    return x < y ? -1 : 1;
  }
  return 0;
}

/** True when `have` matches the requested version (exact, or a partial version / `x` wildcard). */
export function versionMatches(have: string | undefined, want: string): boolean {
  if (have === want) return true;
  if (!have) return false;
  const w = want.split('.');
  const h = have.split('.');
  // A trailing wildcard stands for any remaining parts (`1.x` matches `1.2.0`); otherwise the part counts agree
  // (`1` is not `1.0.0`).
  if (w.length > h.length) return false;
  if (w.length < h.length && !(w[w.length - 1] === 'x' || w[w.length - 1] === '*')) return false;
  return w.every((p, i) => p === 'x' || p === '*' || p === h[i]);
}

/** True when a version string is a pattern (has an `x` or `*` part). */
export function isVersionPattern(v: string | undefined): boolean {
  return !!v && v.split('.').some((p) => p === 'x' || p === '*');
}

function pick<T extends { version?: string }>(list: T[] | undefined, version?: string): T | undefined {
  if (!list?.length) return undefined;
  if (version) {
    const exact = list.filter((r) => r.version === version);
    if (exact.length) return exact[exact.length - 1];
    const partial = list.filter((r) => versionMatches(r.version, version));
    return partial.sort((a, b) => compareVersions(b.version, a.version))[0];
  }
  return [...list].sort((a, b) => compareVersions(b.version, a.version))[0];
}

/** One mapping of a ConceptMap: source element -> target, with its map and group. */
export interface MapEntry {
  cm: ConceptMap;
  group: ConceptMapGroup;
  element: ConceptMapGroupElement;
  target: ConceptMapGroupElementTarget;
}

/**
 * $translate index over a set of ConceptMaps: (source system, source code) -> mappings, and (target system,
 * target code) -> mappings for reverse translation. Systems are canonical (urn:oid forms mapped to FHIR URIs);
 * a group without a source (or target) system is filed under ''.
 */
export class TranslateIndex {
  readonly forward = new Map<string, Map<string, MapEntry[]>>();
  readonly reverse = new Map<string, Map<string, MapEntry[]>>();
  size = 0;
  constructor(maps: Iterable<ConceptMap>) {
    const put = (side: Map<string, Map<string, MapEntry[]>>, sys: string, code: string, e: MapEntry) => {
      let m = side.get(sys);
      if (!m) side.set(sys, (m = new Map()));
      const list = m.get(code);
      if (list) list.push(e);
      else m.set(code, [e]);
    };
    for (const cm of maps)
      for (const group of cm.group ?? []) {
        const src = group.source ? canonicalSystem(group.source) : '';
        const tgt = group.target ? canonicalSystem(group.target) : '';
        for (const element of group.element ?? [])
          for (const target of element.target ?? []) {
            const e = { cm, group, element, target };
            if (element.code) put(this.forward, src, element.code, e);
            if (target.code) put(this.reverse, tgt, target.code, e);
            this.size++;
          }
      }
  }
}

const mapIndexes = new WeakMap<ConceptMap, TranslateIndex>();
/** The index of one ConceptMap (cached per object). */
export function translateIndexOf(cm: ConceptMap): TranslateIndex {
  let idx = mapIndexes.get(cm);
  if (!idx) mapIndexes.set(cm, (idx = new TranslateIndex([cm])));
  return idx;
}

/** Resources keyed by canonical URL (and, for value sets, by `urn:oid:` identifiers). */
export class ResourceSet {
  readonly codeSystems = new Map<string, CodeSystemIndex[]>();
  readonly valueSets = new Map<string, ValueSet[]>();
  readonly conceptMaps = new Map<string, ConceptMap[]>();
  /** Supplement designations: system -> code -> designations. */
  readonly supplements = new Map<string, Map<string, Designation[]>>();
  readonly supplementResources: CodeSystem[] = [];
  private readonly indexCache = new WeakMap<CodeSystem, CodeSystemIndex>();

  add(r: Resource): void {
    if (r.resourceType === 'CodeSystem') this.addCodeSystem(r as CodeSystem);
    else if (r.resourceType === 'ValueSet') this.addValueSet(r as ValueSet);
    else if (r.resourceType === 'ConceptMap') this.addConceptMap(r as ConceptMap);
  }

  addCodeSystem(cs: CodeSystem, index?: CodeSystemIndex): void {
    if (cs.content === 'supplement' && cs.supplements) {
      this.supplementResources.push(cs);
      const system = canonicalSystem(cs.supplements.split('|')[0]!);
      let m = this.supplements.get(system);
      if (!m) this.supplements.set(system, (m = new Map()));
      const walk = (list: CodeSystem['concept']) => {
        for (const c of list ?? []) {
          const ds = (c.designation ?? []).map((d) => ({ language: d.language ?? cs.language, use: d.use, value: d.value }));
          if (c.display && cs.language) ds.push({ language: cs.language, use: undefined, value: c.display });
          if (ds.length) m!.set(c.code, [...(m!.get(c.code) ?? []), ...ds]);
          walk(c.concept);
        }
      };
      walk(cs.concept);
      return;
    }
    if (!cs.url) return;
    let idx = index ?? this.indexCache.get(cs);
    if (!idx) {
      idx = new CodeSystemIndex(cs);
      this.indexCache.set(cs, idx);
    }
    const list = this.codeSystems.get(cs.url) ?? [];
    this.codeSystems.set(
      cs.url,
      [...list.filter((x) => x.version !== cs.version), idx],
    );
  }

  addValueSet(vs: ValueSet): void {
    const keys = new Set<string>();
    if (vs.url) keys.add(vs.url);
    for (const id of vs.identifier ?? []) if (id.value?.startsWith('urn:oid:')) keys.add(id.value);
    for (const k of keys) {
      const list = this.valueSets.get(k) ?? [];
      this.valueSets.set(k, [...list.filter((x) => x.version !== vs.version || x.url !== vs.url), vs]);
    }
  }

  /** When set (request layers: every `tx-resource` given is used), maps with the same url|version are all kept. */
  keepAllMaps = false;

  addConceptMap(cm: ConceptMap): void {
    const key = cm.url ?? `ConceptMap/${cm.id}`;
    const list = this.conceptMaps.get(key) ?? [];
    this.conceptMaps.set(key, [...(this.keepAllMaps ? list : list.filter((x) => x.version !== cm.version)), cm]);
    this.tIndex = undefined;
  }

  private tIndex?: TranslateIndex;
  /** The $translate index of this set's ConceptMaps (rebuilt after a map is added). */
  translateIndex(): TranslateIndex {
    return (this.tIndex ??= new TranslateIndex(this.allConceptMaps()));
  }

  codeSystem(url: string, version?: string): CodeSystemIndex | undefined {
    return pick(this.codeSystems.get(url), version);
  }
  codeSystemVersions(url: string): CodeSystemIndex[] {
    return this.codeSystems.get(url) ?? [];
  }
  valueSet(url: string, version?: string): ValueSet | undefined {
    return pick(this.valueSets.get(url), version);
  }
  conceptMap(url: string, version?: string): ConceptMap | undefined {
    return pick(this.conceptMaps.get(url), version);
  }
  allConceptMaps(): ConceptMap[] {
    return [...this.conceptMaps.values()].flat();
  }
}

/** Synchronous lookups over layered resource sets (first layer wins). */
export class Scope {
  readonly layers: ResourceSet[];
  constructor(layers: ResourceSet[]) {
    this.layers = layers;
  }

  codeSystem(system: string, version?: string): CodeSystemIndex | undefined {
    const url = canonicalSystem(system);
    for (const l of this.layers) {
      const cs = l.codeSystem(url, version) ?? (url !== system ? l.codeSystem(system, version) : undefined);
      if (cs) return cs;
    }
    return undefined;
  }

  /** Every version held of a system (for messages). */
  codeSystemVersions(system: string): string[] {
    const url = canonicalSystem(system);
    const out = new Set<string>();
    for (const l of this.layers) for (const cs of l.codeSystemVersions(url)) if (cs.version) out.add(cs.version);
    return [...out].sort(compareVersions);
  }

  valueSet(ref: string, version?: string): ValueSet | undefined {
    const c = splitCanonical(ref);
    const v = version ?? c.version;
    for (const l of this.layers) {
      const vs = l.valueSet(c.url, v);
      if (vs) return vs;
    }
    return undefined;
  }

  conceptMap(ref: string, version?: string): ConceptMap | undefined {
    const c = splitCanonical(ref);
    for (const l of this.layers) {
      const cm = l.conceptMap(c.url, version ?? c.version);
      if (cm) return cm;
    }
    return undefined;
  }

  conceptMaps(): ConceptMap[] {
    const seen = new Set<string>();
    const out: ConceptMap[] = [];
    for (const l of this.layers)
      for (const cm of l.allConceptMaps()) {
        const k = `${cm.url ?? cm.id}|${cm.version ?? ''}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push(cm);
      }
    return out;
  }

  /** True when a CodeSystem supplement with this canonical (`url` or `url|version`) is held. */
  hasSupplement(ref: string): boolean {
    const c = splitCanonical(ref);
    return this.layers.some((l) => l.supplementResources.some((s) => s.url === c.url && (!c.version || s.version === c.version)));
  }

  supplementDesignations(system: string, code: string): Designation[] {
    const url = canonicalSystem(system);
    const out: Designation[] = [];
    for (const l of this.layers) {
      const d = l.supplements.get(url)?.get(code);
      if (d) out.push(...d);
    }
    return out;
  }
}

/** Reads `.json`, `.ndjson` and `.ndjson.gz` files of a folder (recursively) into a resource set. */
export function loadFolder(dir: string, into: ResourceSet): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name);
    if (statSync(file).isDirectory()) {
      n += loadFolder(file, into);
      continue;
    }
    let text: string;
    if (name.endsWith('.ndjson.gz')) text = gunzipSync(readFileSync(file)).toString('utf8');
    else if (name.endsWith('.ndjson') || name.endsWith('.json')) text = readFileSync(file, 'utf8');
    else continue;
    const items: Resource[] = [];
    if (name.endsWith('.json')) {
      const parsed = JSON.parse(text) as Resource & { entry?: { resource?: Resource }[] };
      if (!parsed || typeof parsed !== 'object' || !('resourceType' in parsed)) continue;
      if (parsed.resourceType === 'Bundle') for (const e of parsed.entry ?? []) e.resource && items.push(e.resource);
      else items.push(parsed);
    } else {
      for (const line of text.split('\n')) if (line.trim()) items.push(JSON.parse(line) as Resource);
    }
    for (const r of items) {
      if (r.resourceType === 'CodeSystem' || r.resourceType === 'ValueSet' || r.resourceType === 'ConceptMap') {
        into.add(r);
        n++;
      }
    }
  }
  return n;
}

/**
 * Builds fragment code systems for systems the value sets enumerate but no CodeSystem defines (SNOMED CT,
 * LOINC, ICD-10, ATC... in the MVC): the codes and displays the value sets carry, so that $lookup, display
 * checks and designations work for them. Later value sets do not overwrite a display already seen.
 */
export function synthesizeFragments(set: ResourceSet): number {
  const byUrl = new Map<string, Map<string, { code: string; display?: string; designation?: { language?: string; value: string }[] }>>();
  const order = [...set.valueSets.values()].flat();
  // Newest release first so its displays win.
  order.sort((a, b) => compareVersions(b.version, a.version));
  const seenVs = new Set<ValueSet>();
  for (const vs of order) {
    if (seenVs.has(vs)) continue;
    seenVs.add(vs);
    for (const inc of vs.compose?.include ?? []) {
      if (!inc.system || !inc.concept?.length) continue;
      const url = canonicalSystem(inc.system);
      if (set.codeSystems.has(url)) continue;
      let m = byUrl.get(url);
      if (!m) byUrl.set(url, (m = new Map()));
      for (const c of inc.concept) {
        const prev = m.get(c.code);
        if (!prev) m.set(c.code, { code: c.code, display: c.display, designation: c.designation?.map((d) => ({ language: d.language, value: d.value })) });
        else if (!prev.display && c.display) prev.display = c.display;
      }
    }
  }
  for (const [url, m] of byUrl) {
    const cs: CodeSystem = {
      resourceType: 'CodeSystem',
      url,
      name: cdaCodeSystemName(url) ?? url,
      status: 'active',
      content: 'fragment',
      caseSensitive: true,
      concept: [...m.values()].map((c) => ({ code: c.code, ...(c.display ? { display: c.display } : {}), ...(c.designation?.length ? { designation: c.designation } : {}) })),
    };
    set.addCodeSystem(cs, new CodeSystemIndex(cs, true));
  }
  return byUrl.size;
}

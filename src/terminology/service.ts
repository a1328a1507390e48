/**
 * The terminology service: the static content of terminology/ (loaded once, at first use or at server start
 * with `terminologyService().load()`), plus the CodeSystem, ValueSet and ConceptMap resources stored through the
 * FHIR API. Stored resources are read into a layer that is rebuilt when the newest history entry of their type
 * changes (one cheap history query per type per operation), so a resource written through the API is used by
 * the next operation without any hook in the write path. Stored resources win over static ones with the same
 * URL and version.
 */
import { existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Resource } from 'fhir/r4';
import type { Store } from '../store/port.ts';
import type { CodeSystem, ValueSet } from 'fhir/r4';
import { ResourceSet, Scope, loadFolder, synthesizeFragments } from './registry.ts';
import type { CodeSystemIndex } from './codesystem-index.ts';
import { packageRegistry } from '../packages/registry.ts';

/**
 * The last layer of every scope: CodeSystems and ValueSets of the FHIR packages (R4 core, hl7.terminology.r4,
 * IPS...), read on demand by URL through the package registry (a miss is remembered).
 */
export class PackageTerminologySet extends ResourceSet {
  private readonly tried = new Set<string>();

  private fetch(kind: 'cs' | 'vs', url: string): void {
    const key = `${kind} ${url}`;
    if (this.tried.has(key)) return;
    this.tried.add(key);
    if (!/^https?:/.test(url)) return;
    try {
      const reg = packageRegistry();
      const r = kind === 'cs' ? reg.codeSystem(url) : reg.valueSet(url);
      if (r) this.add(r as unknown as CodeSystem | ValueSet);
    } catch {
      // No package content available: the layer stays empty for this URL.
    }
  }

  override codeSystem(url: string, version?: string): CodeSystemIndex | undefined {
    this.fetch('cs', url);
    return super.codeSystem(url, version);
  }

  override codeSystemVersions(url: string): CodeSystemIndex[] {
    this.fetch('cs', url);
    return super.codeSystemVersions(url);
  }

  override valueSet(url: string, version?: string): ValueSet | undefined {
    this.fetch('vs', url);
    return super.valueSet(url, version);
  }
}

const TYPES = ['CodeSystem', 'ValueSet', 'ConceptMap'] as const;

/** Default folder: <project>/terminology, or TERMINOLOGY_DIR. Extra folders: TERMINOLOGY_EXTRA_DIRS (path-separated). */
export function defaultTerminologyDirs(): string[] {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dirs = [process.env.TERMINOLOGY_DIR ?? join(root, 'terminology')];
  for (const d of (process.env.TERMINOLOGY_EXTRA_DIRS ?? '').split(/[:;]/)) if (d.trim()) dirs.push(d.trim());
  return dirs;
}

interface StoreLayer {
  marks: string;
  set: ResourceSet;
}

export class TerminologyService {
  readonly static = new ResourceSet();
  /** CodeSystems and ValueSets of the FHIR packages, read on demand (last layer). */
  readonly packages = new PackageTerminologySet();
  private loaded = false;
  private readonly dirs: string[];
  private readonly storeLayers = new WeakMap<Store, StoreLayer>();
  loadStats = { resources: 0, fragments: 0, ms: 0 };

  constructor(dirs: string[] = defaultTerminologyDirs()) {
    this.dirs = dirs;
  }

  /** Loads the static folders (idempotent). */
  load(): this {
    if (this.loaded) return this;
    const t0 = performance.now();
    let n = 0;
    for (const d of this.dirs) if (existsSync(d)) n += loadFolder(d, this.static);
    const fragments = synthesizeFragments(this.static);
    this.loaded = true;
    this.loadStats = { resources: n, fragments, ms: Math.round(performance.now() - t0) };
    return this;
  }

  /** Adds a resource to the static layer (tests, tooling). */
  add(resource: Resource): void {
    this.load();
    this.static.add(resource);
  }

  /** The layer of terminology resources held in the store, refreshed when the store's history moved. */
  async storeLayer(store: Store): Promise<ResourceSet | undefined> {
    const heads: string[] = [];
    for (const t of TYPES) {
      const page = await store.history({ resourceType: t, count: 1 });
      const e = page.entries[0];
      heads.push(e ? `${e.id}/${e.versionId}/${e.lastUpdated}` : '-');
    }
    const marks = heads.join(' ');
    if (marks === '- - -') return undefined;
    const cached = this.storeLayers.get(store);
    if (cached && cached.marks === marks) return cached.set;
    const set = new ResourceSet();
    for (const t of TYPES) {
      let cursor: string | undefined;
      do {
        const r = await store.search({ resourceTypes: [t], filters: [], sort: [], count: 500, total: 'none', include: [], ...(cursor ? { cursor } : {}) });
        for (const res of r.resources) set.add(res);
        cursor = r.next;
      } while (cursor);
    }
    this.storeLayers.set(store, { marks, set });
    return set;
  }

  /** A scope for one operation: request resources (tx-resource), then the store, then the static content. */
  async scope(store: Store | undefined, extra: Resource[] = []): Promise<Scope> {
    this.load();
    const layers: ResourceSet[] = [];
    if (extra.length) {
      const x = new ResourceSet();
      x.keepAllMaps = true;
      for (const r of extra) x.add(r);
      layers.push(x);
    }
    if (store) {
      const s = await this.storeLayer(store);
      if (s) layers.push(s);
    }
    layers.push(this.static, this.packages);
    return new Scope(layers);
  }

  /** Synchronous scope over the static content only (in-process callers such as the cross-border module). */
  staticScope(): Scope {
    this.load();
    return new Scope([this.static, this.packages]);
  }
}

let singleton: TerminologyService | undefined;

/** The process-wide service over defaultTerminologyDirs(). */
export function terminologyService(): TerminologyService {
  if (!singleton) singleton = new TerminologyService();
  return singleton;
}

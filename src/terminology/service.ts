/**
 * The terminology service: the static content of terminology/ (loaded once, at first use or at server start
 * with `terminologyService().load()`), plus the CodeSystem, ValueSet and ConceptMap resources stored through the
 * FHIR API. Stored resources are read into a layer per store that is rebuilt when
 * - this process wrote one of those types: `terminologyResourcesWritten()` bumps a generation counter, called by
 *   the request path (src/access/enforce.ts) once a write that may touch them has committed; the check on every
 *   terminology call is one integer comparison;
 * - or, at most every `DSP_TERMINOLOGY_RECHECK_MS` milliseconds (default 5000; 0 = on every call), the newest
 *   history entry of one of the three types changed: writes made by another process on the same database, or
 *   straight through the store port (tooling, tests) rather than through dispatch().
 * Stored resources win over static ones with the same URL and version.
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
const TYPE_SET: ReadonlySet<string> = new Set(TYPES);

/** Bumped after every committed write that may have changed a stored CodeSystem, ValueSet or ConceptMap. */
let writeGeneration = 0;

/** Call once a write that may have changed stored CodeSystems, ValueSets or ConceptMaps has committed (or failed). */
export function terminologyResourcesWritten(): void {
  writeGeneration++;
}

/**
 * Whether a request (top level, not a Bundle entry) may write a CodeSystem, ValueSet or ConceptMap: a create,
 * update, patch or delete on one of those types, or a Bundle POSTed at the system level with an entry of those
 * types. Operations never do (the terminology ones read; no other operation writes these types).
 */
export function mayWriteTerminology(req: { method: string; path: string; body?: unknown }): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false;
  const path = req.path.startsWith('/') ? req.path.slice(1) : req.path;
  if (path === '' || path === '/') {
    const entries = (req.body as { resourceType?: unknown; entry?: unknown } | undefined)?.entry;
    if (!Array.isArray(entries)) return false;
    for (const e of entries as { resource?: { resourceType?: unknown }; request?: { url?: unknown } }[]) {
      if (typeof e?.resource?.resourceType === 'string' && TYPE_SET.has(e.resource.resourceType)) return true;
      const url = e?.request?.url;
      if (typeof url === 'string' && TYPE_SET.has(url.replace(/^\/+/, '').split(/[/?]/, 1)[0]!)) return true;
    }
    return false;
  }
  const slash = path.indexOf('/');
  if (!TYPE_SET.has(slash < 0 ? path : path.slice(0, slash))) return false;
  // Operations read (`$expand`...), and so does `POST [type]/_search`.
  return !/(^|\/)\$[^/]*$/.test(path) && !/\/_search$/.test(path);
}

/** How often (ms) the store's history is asked whether the stored terminology changed behind this process. */
function recheckMs(): number {
  const raw = process.env.DSP_TERMINOLOGY_RECHECK_MS;
  if (raw === undefined || raw.trim() === '') return 5000;
  const n = Number(raw);
  // The service is made at server start (src/server.ts): a bad value stops it there, naming the variable.
  if (!Number.isInteger(n) || n < 0) throw new Error(`DSP_TERMINOLOGY_RECHECK_MS must be a whole number of milliseconds >= 0, not '${raw}'`);
  return n;
}

/** Default folder: <project>/terminology, or TERMINOLOGY_DIR. Extra folders: TERMINOLOGY_EXTRA_DIRS (path-separated). */
export function defaultTerminologyDirs(): string[] {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dirs = [process.env.TERMINOLOGY_DIR ?? join(root, 'terminology')];
  for (const d of (process.env.TERMINOLOGY_EXTRA_DIRS ?? '').split(/[:;]/)) if (d.trim()) dirs.push(d.trim());
  return dirs;
}

interface StoreLayer {
  /** `writeGeneration` when the build started: a write committed during the build makes it stale at once. */
  generation: number;
  /** Newest history entry of each type when the layer was built or last checked. */
  marks: string;
  /** performance.now() of the last history check. */
  checkedAt: number;
  /** undefined: the store holds no terminology resources. */
  set: ResourceSet | undefined;
  /** The scope over this layer and the static content (made on first use; Scope holds no per-call state). */
  scope?: Scope;
}

export class TerminologyService {
  readonly static = new ResourceSet();
  /** CodeSystems and ValueSets of the FHIR packages, read on demand (last layer). */
  readonly packages = new PackageTerminologySet();
  private loaded = false;
  private readonly dirs: string[];
  private readonly storeLayers = new WeakMap<Store, StoreLayer>();
  /** A layer being read (concurrent calls after a write share one read). */
  private readonly building = new WeakMap<Store, { generation: number; promise: Promise<StoreLayer> }>();
  /** See DSP_TERMINOLOGY_RECHECK_MS. */
  recheckMs = recheckMs();
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

  /**
   * The layer of terminology resources held in the store. Free on the common path (a generation comparison
   * and a clock read); the three one-row history queries run only when the recheck interval has passed, and the
   * layer is read again only when this process wrote one of the types or the history moved.
   */
  async storeLayer(store: Store): Promise<ResourceSet | undefined> {
    const cached = this.storeLayers.get(store);
    if (cached && cached.generation === writeGeneration) {
      const now = performance.now();
      if (now - cached.checkedAt < this.recheckMs) return cached.set;
      const marks = await historyMarks(store);
      if (marks === cached.marks && cached.generation === writeGeneration) {
        cached.checkedAt = now;
        return cached.set;
      }
    }
    let building = this.building.get(store);
    if (!building || building.generation !== writeGeneration) {
      const generation = writeGeneration;
      const promise = buildLayer(store, generation).finally(() => {
        if (this.building.get(store)?.promise === promise) this.building.delete(store);
      });
      building = { generation, promise };
      this.building.set(store, building);
    }
    const layer = await building.promise;
    // A newer layer (built after a later write) is never replaced by an older one.
    const current = this.storeLayers.get(store);
    if (!current || current.generation <= layer.generation) this.storeLayers.set(store, layer);
    return layer.set;
  }

  /**
   * The scope without request resources, when the store's layer is known to be fresh (no write since it was
   * read, recheck interval not passed): no await, no allocation. undefined: call `scope()`.
   */
  freshScope(store: Store): Scope | undefined {
    const cached = this.storeLayers.get(store);
    if (!this.loaded || !cached || cached.generation !== writeGeneration || performance.now() - cached.checkedAt >= this.recheckMs) return undefined;
    if (!cached.scope) cached.scope = new Scope(cached.set ? [cached.set, this.static, this.packages] : [this.static, this.packages]);
    return cached.scope;
  }

  /** A scope for one operation: request resources (tx-resource), then the store, then the static content. */
  async scope(store: Store | undefined, extra: Resource[] = []): Promise<Scope> {
    if (store && !extra.length) {
      const fresh = this.freshScope(store);
      if (fresh) return fresh;
    }
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

/** The newest history entry of each terminology type, as one string ('- - -' when there is none). */
async function historyMarks(store: Store): Promise<string> {
  const heads: string[] = [];
  for (const t of TYPES) {
    const page = await store.history({ resourceType: t, count: 1 });
    const e = page.entries[0];
    heads.push(e ? `${e.id}/${e.versionId}/${e.lastUpdated}` : '-');
  }
  return heads.join(' ');
}

async function buildLayer(store: Store, generation: number): Promise<StoreLayer> {
  // Marks first: a write landing while the resources are read moves the history past them, and the next check
  // reads the layer again.
  const marks = await historyMarks(store);
  const checkedAt = performance.now();
  if (marks === '- - -') return { generation, marks, checkedAt, set: undefined };
  const set = new ResourceSet();
  for (const t of TYPES) {
    let cursor: string | undefined;
    do {
      const r = await store.search({ resourceTypes: [t], filters: [], sort: [], count: 500, total: 'none', include: [], ...(cursor ? { cursor } : {}) });
      for (const res of r.resources) set.add(res);
      cursor = r.next;
    } while (cursor);
  }
  return { generation, marks, checkedAt, set };
}

let singleton: TerminologyService | undefined;

/** The process-wide service over defaultTerminologyDirs(). */
export function terminologyService(): TerminologyService {
  if (!singleton) singleton = new TerminologyService();
  return singleton;
}

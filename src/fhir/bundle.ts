/**
 * batch and transaction Bundles (R4 http.html#transaction).
 *
 * transaction: one store transaction; entries processed DELETE, then POST, then PUT/PATCH, then GET/HEAD
 * (the order the specification prescribes); every `urn:uuid:` / fullUrl of a created resource and every
 * conditional reference (`Patient?identifier=...`) resolved first and rewritten in all entries; any failure
 * rolls the whole transaction back and answers with that entry's OperationOutcome and status.
 *
 * batch: every entry on its own (its own store transaction); failures are reported per entry.
 */
import { randomUUID } from 'node:crypto';
import type { Binary, Bundle, BundleEntry, FhirResource, Resource } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import { FhirError, badRequest, preconditionFailed, tooLarge } from './outcome.ts';
import { type FhirRequest, type FhirResponse, type HttpMethod, prefer } from './request.ts';
import { type Context, assertResourceType, conditionalMatches, create } from './interactions.ts';

import { dispatch } from './router.ts';
import { enforce } from '../access/enforce.ts';
import { ID_PATTERN, fhirModel } from './model.ts';
import { assertValidResource } from '../validation/index.ts';
import { syncSearchParameters } from '../search/reindex.ts';
import { openTransactionAudit } from '../audit/event.ts';

/** Entries processed between two yields to the event loop. */
const YIELD_EVERY = 100;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

const METHODS = new Set<HttpMethod>(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);
const ORDER: Record<string, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };

interface PlannedEntry {
  index: number;
  entry: BundleEntry;
  method: HttpMethod;
  /** URL path below the base and query string. */
  path: string;
  query: [string, string][];
}

export async function processBundle(ctx: Context, req: FhirRequest): Promise<FhirResponse> {
  const bundle = req.body as Bundle | undefined;
  if (!bundle || bundle.resourceType !== 'Bundle') {
    throw badRequest('POST to the base URL takes a batch or transaction Bundle');
  }
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw badRequest(`Bundle.type must be batch or transaction to be processed (got "${bundle.type}")`, ['Bundle.type']);
  }
  const entries = bundle.entry ?? [];
  if (!Array.isArray(entries) || entries.some((e) => e === null || typeof e !== 'object' || Array.isArray(e))) {
    throw badRequest('Bundle.entry must be an array of entries', ['Bundle.entry']);
  }
  if (entries.length > ctx.config.limits.maxBundleEntries) {
    throw tooLarge(`The Bundle has ${entries.length} entries; the limit is ${ctx.config.limits.maxBundleEntries}`);
  }
  return bundle.type === 'transaction' ? transaction(ctx, req, entries) : batch(ctx, req, entries);
}

function planEntry(entry: BundleEntry, index: number, baseUrl: string): PlannedEntry {
  const where = `Bundle.entry[${index}]`;
  const method = entry.request?.method?.toUpperCase() as HttpMethod | undefined;
  if (!method || !METHODS.has(method)) throw badRequest(`${where}.request.method is missing or invalid`, [`${where}.request.method`]);
  let url = entry.request?.url;
  if (!url) throw badRequest(`${where}.request.url is missing`, [`${where}.request.url`]);
  if (url.startsWith(baseUrl + '/')) url = url.slice(baseUrl.length + 1);
  if (/^[a-z]+:/i.test(url)) throw badRequest(`${where}.request.url must be relative to this server`, [`${where}.request.url`]);
  url = url.replace(/^\/+/, '');
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? [] : [...new URLSearchParams(url.slice(q + 1))];
  // A Bundle entry cannot itself be a batch or transaction (a nested transaction would wait forever on the
  // store's writer lock held by the outer one).
  if (path === '' && method === 'POST') throw badRequest(`${where} cannot itself be a batch or transaction`, [`${where}.request.url`]);
  if ((method === 'POST' || method === 'PUT') && !entry.resource) {
    throw badRequest(`${where} needs a resource for ${method}`, [`${where}.resource`]);
  }
  return { index, entry, method, path, query };
}

function entryRequest(req: FhirRequest, plan: PlannedEntry, body: unknown): FhirRequest {
  const r = plan.entry.request!;
  let contentType: string | undefined;
  if (plan.method === 'PATCH') {
    // A PATCH entry carries a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch.
    const res = body as Binary | undefined;
    if (res?.resourceType === 'Binary' && res.contentType === 'application/json-patch+json' && res.data) {
      try {
        body = JSON.parse(Buffer.from(res.data, 'base64').toString('utf8'));
      } catch {
        throw badRequest(`Bundle.entry[${plan.index}]: the JSON Patch in the Binary is not valid JSON`);
      }
      contentType = 'application/json-patch+json';
    } else {
      contentType = 'application/fhir+json';
    }
  }
  return {
    method: plan.method,
    path: plan.path,
    query: plan.query,
    body,
    contentType,
    baseUrl: req.baseUrl,
    // Each entry is decided on its own by the access decision point, as the Bundle's principal.
    principal: req.principal,
    headers: {
      prefer: req.headers.prefer,
      'if-match': r.ifMatch,
      'if-none-match': r.ifNoneMatch,
      'if-none-exist': r.ifNoneExist,
      'if-modified-since': r.ifModifiedSince,
    },
  };
}

function responseEntry(res: FhirResponse, baseUrl: string): BundleEntry {
  const out: BundleEntry = {
    response: {
      status: String(res.status),
      ...(res.headers.Location ? { location: res.headers.Location.replace(baseUrl + '/', '') } : {}),
      ...(res.headers.ETag ? { etag: res.headers.ETag } : {}),
      ...(res.headers['Last-Modified'] ? { lastModified: new Date(res.headers['Last-Modified']).toISOString() } : {}),
    },
  };
  if (res.body) {
    if (res.body.resourceType === 'OperationOutcome' && res.status >= 300) out.response!.outcome = res.body as FhirResource;
    else out.resource = res.body as FhirResource;
    if (res.body.id && res.body.resourceType !== 'Bundle' && res.body.resourceType !== 'OperationOutcome') {
      out.fullUrl = `${baseUrl}/${res.body.resourceType}/${res.body.id}`;
    }
  }
  return out;
}

function errorEntry(err: unknown): BundleEntry {
  const fe = err instanceof FhirError ? err : new FhirError(500, 'Internal error while processing this entry', 'exception');
  return { response: { status: String(fe.status), outcome: fe.toOperationOutcome() } };
}

async function batch(ctx: Context, req: FhirRequest, entries: BundleEntry[]): Promise<FhirResponse> {
  const out: BundleEntry[] = new Array(entries.length);
  const entryCtx = quietProfiles(ctx, req);
  const plans: PlannedEntry[] = [];
  for (let i = 0; i < entries.length; i++) {
    try {
      plans.push(planEntry(entries[i], i, req.baseUrl));
    } catch (err) {
      out[i] = errorEntry(err);
    }
  }
  const run = async (p: PlannedEntry) => {
    try {
      out[p.index] = responseEntry(await dispatch(entryCtx, entryRequest(req, p, p.entry.resource)), req.baseUrl);
    } catch (err) {
      out[p.index] = errorEntry(err);
    }
  };
  const grouping = groupingStore(ctx);
  for (let k = 0; k < plans.length; ) {
    const p = plans[k]!;
    if (!grouping || !groupable(p)) {
      await run(p);
      k++;
      continue;
    }
    // Consecutive plain writes share one store transaction, each entry in its own savepoint (a failing entry
    // is rolled back alone, as when it had its own transaction): one COMMIT instead of one per entry.
    let end = k;
    while (end < plans.length && groupable(plans[end]!)) end++;
    const group = plans.slice(k, end);
    try {
      await grouping.grouped(async (step) => {
        for (const [n, g] of group.entries()) {
          if (n % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEventLoop();
          // A failing entry's savepoint is rolled back by step(), which hands the error on.
          try {
            out[g.index] = responseEntry(await step((session) => dispatch(entryCtx, entryRequest(req, g, g.entry.resource), session)), req.baseUrl);
          } catch (err) {
            out[g.index] = errorEntry(err);
          }
        }
      });
    } catch (err) {
      // The group's COMMIT failed: none of its entries was stored.
      for (const g of group) out[g.index] = errorEntry(err);
    }
    k = end;
  }
  return { status: 200, headers: {}, body: responseBundle('batch-response', out) };
}

/** The store's savepoint grouping (SqliteStore.grouped), when it has one. */
interface GroupingStore {
  grouped<T>(work: (step: <R>(fn: (session: StoreSession) => Promise<R>) => Promise<R>) => Promise<T>): Promise<T>;
}
function groupingStore(ctx: Context): GroupingStore | undefined {
  const store = ctx.store as Partial<GroupingStore>;
  return typeof store.grouped === 'function' ? (store as GroupingStore) : undefined;
}

/**
 * Entries that may share a store transaction: writes of the plain interactions (create, update, patch, delete,
 * conditional or not), which run entirely on the session they are given. Reads and operations run on their own
 * (an operation may open its own store transaction, or read the committed state).
 */
/**
 * Entries that can share a store transaction: plain writes. A SearchParameter write runs on its own, so that
 * the registry is brought in step (router) before the next entry is indexed.
 */
function groupable(p: PlannedEntry): boolean {
  return p.method !== 'GET' && p.method !== 'HEAD' && p.path !== '' && !p.path.includes('$') && p.path.split('/')[0] !== 'SearchParameter';
}

/**
 * The context for the entries of a batch or transaction: with DSP_PROFILE_VALIDATION=warn, profile issues only
 * ever reach a client inside the OperationOutcome that Prefer: return=OperationOutcome asks for (reject mode
 * still refuses, off does nothing); when the Bundle's Prefer asks for anything else the entries do not run it.
 */
function quietProfiles(ctx: Context, req: FhirRequest): Context {
  if (ctx.config.profileValidation !== 'warn' || prefer(req).return === 'OperationOutcome') return ctx;
  return { ...ctx, config: { ...ctx.config, profileValidation: 'off' } };
}

function responseBundle(type: 'batch-response' | 'transaction-response', entry: BundleEntry[]): Bundle {
  return { resourceType: 'Bundle', id: randomUUID() as string, type, meta: { lastUpdated: new Date().toISOString() }, entry };
}

async function transaction(ctx: Context, req: FhirRequest, entries: BundleEntry[]): Promise<FhirResponse> {
  const plans = entries.map((e, i) => planEntry(e, i, req.baseUrl));
  // Validate every resource before touching the store (fail fast, nothing written); yield now and then so a
  // large Bundle does not hold the event loop for seconds.
  for (const p of plans) {
    if (p.index % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEventLoop();
    if (p.entry.resource && p.method !== 'PATCH') {
      try {
        assertValidResource(p.entry.resource);
      } catch (err) {
        if (err instanceof FhirError) throw prefixIssues(err, `Bundle.entry[${p.index}].resource`);
        throw err;
      }
    }
  }
  const seenFullUrls = new Set<string>();
  for (const p of plans) {
    const fu = p.entry.fullUrl;
    if (fu && p.entry.resource) {
      if (seenFullUrls.has(fu)) throw badRequest(`Bundle.entry[${p.index}].fullUrl "${fu}" appears twice in the transaction`);
      seenFullUrls.add(fu);
    }
  }
  // Profile validation in `warn` mode only feeds the OperationOutcome of Prefer: return=OperationOutcome; any
  // other answer drops its issues, so the entries skip it (same responses, ~10 % of ingest CPU measured).
  // A context of this transaction's own: the entries' access checks add what they did to the Bundle's single
  // AuditEvent (src/audit/event.ts) instead of writing one each.
  const entryCtx = { ...quietProfiles(ctx, req) };
  const audit = openTransactionAudit(entryCtx, req.body as Bundle);
  const responses = await ctx.store.transaction(async (session) => {
    audit.reset();
    const mapping = await resolveIdentities(ctx, session, req, plans);
    const results: FhirResponse[] = new Array(plans.length);
    const ordered = [...plans].sort((x, y) => ORDER[x.method] - ORDER[y.method] || x.index - y.index);
    for (const [n, p] of ordered.entries()) {
      if (n % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEventLoop();
      let body = p.entry.resource ? await rewriteReferences(entryCtx, session, p.entry.resource, mapping) : undefined;
      const r = { ...entryRequest(req, p, body), validated: p.method !== 'PATCH' };
      const target = mapping.targets.get(p.index);
      try {
        if (target && p.method === 'POST') {
          results[p.index] = target.existing
            ? await dispatch(entryCtx, { ...r, method: 'GET', path: `${target.type}/${target.id}`, query: [], body: undefined }, session).then((res) => ({ ...res, status: 200 }))
            : // A create with a preset id passes the access decision point like any create.
              await enforce(entryCtx, { ...r, method: 'POST', path: target.type, query: [] }, session, (c, q, s) => createWithId(c, s!, q, target.type, target.id));
        } else if (target && p.method === 'PUT') {
          body = { ...(body as Resource), id: target.id };
          results[p.index] = await dispatch(entryCtx, { ...r, body, path: `${target.type}/${target.id}`, query: [] }, session);
        } else {
          results[p.index] = await dispatch(entryCtx, r, session);
        }
      } catch (err) {
        if (err instanceof FhirError) throw prefixIssues(err, `Bundle.entry[${p.index}]`);
        throw err;
      }
    }
    return results;
  });
  if (plans.some((p) => p.path.split('/')[0] === 'SearchParameter')) await syncSearchParameters(ctx.store);
  return {
    status: 200,
    headers: {},
    body: responseBundle('transaction-response', responses.map((r) => responseEntry(r, req.baseUrl))),
  };
}

async function createWithId(ctx: Context, session: StoreSession, r: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  return create(ctx, session, { ...r, path: type, headers: { ...r.headers, 'if-none-exist': undefined } }, type, id);
}

function prefixIssues(err: FhirError, where: string): FhirError {
  return new FhirError(
    err.status,
    err.issues.map((i) => ({ ...i, diagnostics: `${where}: ${i.diagnostics}` })),
    undefined,
    err.headers,
  );
}

interface Identities {
  /** fullUrl (urn:uuid or absolute) -> `Type/id` */
  refs: Map<string, string>;
  /** Conditional references (`Patient?identifier=...`) already resolved in this transaction. */
  conditional: Map<string, string>;
  /** entry index -> the identity it writes (POST and conditional PUT entries) */
  targets: Map<number, { type: string; id: string; existing: boolean }>;
}

/**
 * Gives every created resource its id before anything is written, so that references between entries can be
 * rewritten; conditional creates and conditional updates are resolved against the data as it is.
 */
async function resolveIdentities(ctx: Context, session: StoreSession, req: FhirRequest, plans: PlannedEntry[]): Promise<Identities> {
  const refs = new Map<string, string>();
  const targets = new Map<number, { type: string; id: string; existing: boolean }>();
  for (const p of plans) {
    const [type, id, ...rest] = p.path.split('/');
    const fullUrl = p.entry.fullUrl;
    if (p.method === 'POST' && type && !id) {
      assertResourceType(type);
      let target: { type: string; id: string; existing: boolean } = { type, id: randomUUID(), existing: false };
      const ifNoneExist = p.entry.request?.ifNoneExist;
      if (ifNoneExist) {
        const matches = await conditionalMatches(session, ctx, type, ifNoneExist.replace(/^[^?]*\?/, ''));
        if (matches.length > 1) throw preconditionFailed(`Bundle.entry[${p.index}]: ifNoneExist matched several ${type} resources`);
        if (matches.length === 1) target = { type, id: matches[0].id!, existing: true };
      }
      targets.set(p.index, target);
      if (fullUrl) refs.set(fullUrl, `${type}/${target.id}`);
    } else if (p.method === 'PUT' && type && !id && p.query.length) {
      assertResourceType(type);
      const matches = await conditionalMatches(session, ctx, type, p.query);
      if (matches.length > 1) throw preconditionFailed(`Bundle.entry[${p.index}]: the conditional update matched several ${type} resources`);
      const bodyId = p.entry.resource?.id;
      const target = { type, id: matches[0]?.id ?? (bodyId && ID_PATTERN.test(bodyId) ? bodyId : randomUUID()), existing: matches.length === 1 };
      targets.set(p.index, target);
      if (fullUrl) refs.set(fullUrl, `${type}/${target.id}`);
    } else if (p.method === 'PUT' && type && id && rest.length === 0 && fullUrl) {
      refs.set(fullUrl, `${type}/${id}`);
    }
  }
  return { refs, targets, conditional: new Map() };
}

/**
 * Returns the resource with every Reference.reference that names another entry (by fullUrl) or is a
 * conditional reference (`Type?params`, resolved to exactly one match, once per transaction) rewritten, and
 * every uri/url value equal to a fullUrl of the Bundle (Attachment.url to a Binary; narrative links are left
 * as they are). Copy on write: only the objects on the path of a change are copied, and the request's own
 * resource is never modified (a retried store transaction starts again from it).
 *
 * The walk is synchronous (a promise per JSON node was ~6 % of ingest): conditional references not yet
 * resolved in this transaction are collected by a first walk, resolved in document order, then the walk runs
 * again with every one known.
 */
async function rewriteReferences(ctx: Context, session: StoreSession, resource: Resource, ids: Identities): Promise<Resource> {
  const pending: string[] = [];
  let out = rewriteWalk(resource, ids, pending);
  if (pending.length) {
    for (const value of pending) {
      if (!ids.conditional.has(value)) ids.conditional.set(value, await resolveConditional(ctx, session, value));
    }
    pending.length = 0;
    out = rewriteWalk(resource, ids, pending);
  }
  return out as Resource;
}

const CONDITIONAL_REFERENCE = /^[A-Z][A-Za-z]+\?/;

/** One synchronous rewriting pass; conditional references without a resolution are added to `pending`. */
function rewriteWalk(node: unknown, ids: Identities, pending: string[]): unknown {
  if (Array.isArray(node)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < node.length; i++) {
      const item = node[i];
      if (item === null || typeof item !== 'object') continue;
      const next = rewriteWalk(item, ids, pending);
      if (next !== item) (out ??= [...node])[i] = next;
    }
    return out ?? node;
  }
  if (node === null || typeof node !== 'object') return node;
  const obj = node as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    const value = obj[key];
    let next = value;
    if (typeof value === 'string') {
      if (key === 'reference' || key === 'url' || key === 'fullUrl') {
        const mapped = ids.refs.get(value);
        if (mapped) next = mapped;
        else if (key === 'reference' && value.includes('?') && CONDITIONAL_REFERENCE.test(value)) {
          const resolved = ids.conditional.get(value);
          if (resolved) next = resolved;
          else if (!pending.includes(value)) pending.push(value);
        }
      }
    } else if (key !== 'div' && value !== null && typeof value === 'object') {
      next = rewriteWalk(value, ids, pending);
    }
    if (next !== value) (out ??= { ...obj })[key] = next;
  }
  return out ?? obj;
}

async function resolveConditional(ctx: Context, session: StoreSession, reference: string): Promise<string> {
  const q = reference.indexOf('?');
  const type = reference.slice(0, q);
  if (!fhirModel().isResourceType(type)) throw badRequest(`Conditional reference "${reference}" names an unknown resource type`);
  const matches = await conditionalMatches(session, ctx, type, reference.slice(q + 1));
  if (matches.length !== 1) {
    throw preconditionFailed(`Conditional reference "${reference}" matched ${matches.length === 0 ? 'no' : 'several'} resources; exactly one is required`);
  }
  return `${type}/${matches[0].id}`;
}


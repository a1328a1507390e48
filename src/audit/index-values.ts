/**
 * The search index values of the AuditEvents the server writes itself (event.ts), without the generic indexer:
 * their shape is known, so each parameter is read straight from its element. The result is exactly what
 * `extractIndex` gives for the same event (same values, same order, so the same index rows: test/audit-index.test.ts
 * compares both over the events the server produces), at a fraction of the cost (extractIndex walks every
 * AuditEvent parameter through its compiled path and collects the `_content` words without memory).
 *
 * It answers only when it can be exact: the AuditEvent search parameters must be the base R4 set (a
 * SearchParameter registered on AuditEvent, or a change of a base one, makes every event go through
 * `extractIndex`), and the event may hold only elements this module reads or knows to be unindexed; any other
 * element (a name, a network address, an altId, a narrative...) sends that event to `extractIndex` as well.
 */
import type { AuditEvent, Coding, Resource } from 'fhir/r4';
import type { IndexValue } from '../search/types.ts';
import { extractIndex } from '../search/indexer.ts';
import { dateRange, fold as foldText, normalizeReference as normalizeReferenceOf, MAX_DATE, MIN_DATE } from '../search/normalize.ts';
import { onRegistryChange, searchParamsFor } from '../search/registry.ts';
import { fhirModel } from '../fhir/model.ts';
import { wordsOf, xhtmlText } from '../search/text.ts';

/** The AuditEvent parameters this module gives, as the registry defines them (code, type, expression). */
const BASE_PARAMS = [
  ['_text', 'string', undefined],
  ['_content', 'string', undefined],
  ['_id', 'token', 'AuditEvent.id'],
  ['_lastUpdated', 'date', 'AuditEvent.meta.lastUpdated'],
  ['_profile', 'uri', 'AuditEvent.meta.profile'],
  ['_security', 'token', 'AuditEvent.meta.security'],
  ['_source', 'uri', 'AuditEvent.meta.source'],
  ['_tag', 'token', 'AuditEvent.meta.tag'],
  ['action', 'token', 'AuditEvent.action'],
  ['address', 'string', 'AuditEvent.agent.network.address'],
  ['agent', 'reference', 'AuditEvent.agent.who'],
  ['agent-name', 'string', 'AuditEvent.agent.name'],
  ['agent-role', 'token', 'AuditEvent.agent.role'],
  ['altid', 'token', 'AuditEvent.agent.altId'],
  ['date', 'date', 'AuditEvent.recorded'],
  ['entity', 'reference', 'AuditEvent.entity.what'],
  ['entity-name', 'string', 'AuditEvent.entity.name'],
  ['entity-role', 'token', 'AuditEvent.entity.role'],
  ['entity-type', 'token', 'AuditEvent.entity.type'],
  ['outcome', 'token', 'AuditEvent.outcome'],
  ['patient', 'reference', 'AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)'],
  ['policy', 'uri', 'AuditEvent.agent.policy'],
  ['site', 'token', 'AuditEvent.source.site'],
  ['source', 'reference', 'AuditEvent.source.observer'],
  ['subtype', 'token', 'AuditEvent.subtype'],
  ['type', 'token', 'AuditEvent.type'],
] as const;

let baseRegistry: boolean | undefined;
onRegistryChange(() => {
  baseRegistry = undefined;
});

/** Whether the registry's AuditEvent parameters are exactly BASE_PARAMS (checked once per registry change). */
function registryIsBase(): boolean {
  if (baseRegistry === undefined) {
    const defs = searchParamsFor('AuditEvent');
    baseRegistry =
      defs.length === BASE_PARAMS.length &&
      defs.every((d, i) => d.code === BASE_PARAMS[i][0] && d.type === BASE_PARAMS[i][1] && (d.expression || undefined) === BASE_PARAMS[i][2] && !d.components?.length);
  }
  return baseRegistry;
}

// Elements read here, or known to give no index value (`requestor`, `purposeOfUse`, `purposeOfEvent`, ...).
const EVENT_KEYS = new Set(['resourceType', 'id', 'meta', 'type', 'subtype', 'action', 'recorded', 'outcome', 'outcomeDesc', 'purposeOfEvent', 'agent', 'source', 'entity', 'extension']);
const META_KEYS = new Set(['versionId', 'lastUpdated', 'tag']);
const AGENT_KEYS = new Set(['type', 'role', 'who', 'requestor', 'policy', 'purposeOfUse']);
const ENTITY_KEYS = new Set(['what', 'type', 'role', 'query', 'detail']);
const SOURCE_KEYS = new Set(['site', 'observer', 'type']);
/** A `who`, `what` or `observer` Reference: no identifier (its index value would carry it). */
const REFERENCE_KEYS = new Set(['reference', 'display']);

type Obj = Record<string, unknown>;

function only(value: unknown, keys: ReadonlySet<string>): boolean {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return false;
  for (const k in value as Obj) if (!keys.has(k)) return false;
  return true;
}

function eachOnly(value: unknown, keys: ReadonlySet<string>): boolean {
  if (value === undefined) return true;
  if (!Array.isArray(value)) return false;
  for (const v of value) if (!only(v, keys)) return false;
  return true;
}

function optionalOnly(value: unknown, keys: ReadonlySet<string>): boolean {
  return value === undefined || only(value, keys);
}

/** The event has only elements this module handles (else extractIndex answers). */
function knownShape(e: Obj): boolean {
  if (e.resourceType !== 'AuditEvent' || e.text !== undefined) return false;
  for (const k in e) if (!EVENT_KEYS.has(k)) return false;
  if (!optionalOnly(e.meta, META_KEYS) || !optionalOnly(e.source, SOURCE_KEYS)) return false;
  if (!eachOnly(e.agent, AGENT_KEYS) || !eachOnly(e.entity, ENTITY_KEYS)) return false;
  // The repeating elements read below must be arrays: a stored entry edited outside the server may hold an
  // object or a string there (for...of would throw, or walk a string's characters).
  if (!optionalArray((e.meta as Obj | undefined)?.tag) || !optionalArray(e.subtype)) return false;
  for (const a of (e.agent as Obj[] | undefined) ?? []) {
    if (!optionalOnly(a.who, REFERENCE_KEYS) || !optionalArray(a.role) || !optionalArray(a.policy)) return false;
  }
  for (const x of (e.entity as Obj[] | undefined) ?? []) if (!optionalOnly(x.what, REFERENCE_KEYS)) return false;
  return optionalOnly((e.source as Obj | undefined)?.observer, REFERENCE_KEYS);
}

function optionalArray(value: unknown): boolean {
  return value === undefined || Array.isArray(value);
}

// -- values, as src/search/indexer.ts converts them --------------------------------------------------------

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** Bounded memo of a pure function of a string (displays, references and instants repeat across events). */
function memo<T>(fn: (s: string) => T): (s: string) => T {
  const cache = new Map<string, T>();
  return (s) => {
    let v = cache.get(s);
    if (v === undefined && !cache.has(s)) {
      if (cache.size >= 20_000) cache.clear();
      cache.set(s, (v = fn(s)));
    }
    return v as T;
  };
}

const fold = memo(foldText);
const normalizeReference = memo((ref: string) => normalizeReferenceOf(ref, (t) => fhirModel().isResourceType(t)));
/** The distinct words of one string, in order (the `_content` words are the union over the event's strings). */
const words = memo((s: string) => [...wordsOf(s)]);

function codingToken(param: string, c: unknown, out: IndexValue[]): void {
  if (!c || typeof c !== 'object') return;
  const o = c as Coding;
  if (str(o.code) || str(o.system) || str(o.display)) out.push({ param, type: 'token', system: str(o.system), code: str(o.code), text: str(o.display) && fold(o.display!) });
}

function codeToken(param: string, v: unknown, out: IndexValue[]): void {
  if (typeof v === 'string' || typeof v === 'number') out.push({ param, type: 'token', code: String(v) });
  else if (typeof v === 'boolean') out.push({ param, type: 'token', code: v ? 'true' : 'false' });
}

function conceptTokens(param: string, v: unknown, out: IndexValue[]): void {
  if (!v || typeof v !== 'object') return;
  const o = v as Obj;
  let text = str(o.text) && fold(o.text as string);
  for (const c of (o.coding as Obj[] | undefined) ?? []) {
    if (str(c.code) || str(c.system)) {
      const display = str(c.display) && fold(c.display as string);
      out.push({ param, type: 'token', system: str(c.system), code: str(c.code), text: display });
      if (display === text) text = undefined;
    }
  }
  if (text) out.push({ param, type: 'token', text });
}

function referenceValue(param: string, v: unknown, out: IndexValue[], onlyType?: string): void {
  const ref = v && typeof v === 'object' ? str((v as Obj).reference) : undefined;
  if (!ref) return;
  const n = normalizeReference(ref);
  if (onlyType && n.targetType !== onlyType) return;
  out.push({ param, type: 'reference', ...n });
}

/** A string that is one lower-case ASCII word as it stands (codes, hashes, ids): its only word is itself. */
function isOneWord(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return false;
  }
  return s.length > 0;
}

/** `_content`: the words of every string of the event but identifiers, in the order text.ts collects them. */
function contentWords(value: unknown, into: Set<string>): void {
  if (typeof value === 'string') {
    if (isOneWord(value)) into.add(value);
    else for (const w of words(value)) into.add(w);
  } else if (Array.isArray(value)) {
    for (const v of value) contentWords(v, into);
  } else if (value && typeof value === 'object') {
    const o = value as Obj;
    for (const k in o) {
      const v = o[k];
      // text.ts's NOT_TEXT; a `div` string is read as XHTML (as text.ts does wherever it is).
      if (k === 'div' && typeof v === 'string') wordsOf(xhtmlText(v), into);
      else if (k !== 'id' && k !== 'reference' && k !== 'system' && k !== 'url' && k !== 'data' && k !== 'meta' && k !== 'div' && k !== 'resourceType') contentWords(v, into);
    }
  }
}

/** Whether `auditIndexValues` computes this event's values itself (false: it asks extractIndex). */
export function indexedDirectly(event: AuditEvent | Resource): boolean {
  return registryIsBase() && knownShape(event as unknown as Obj);
}

/**
 * The index values of an AuditEvent: exactly `extractIndex(event)`, computed directly for the events the
 * server builds (event.ts), by extractIndex itself for any other event or parameter set.
 */
export function auditIndexValues(event: AuditEvent | Resource): IndexValue[] {
  const e = event as unknown as Obj;
  if (!registryIsBase() || !knownShape(e)) return extractIndex(event as Resource);
  try {
    return directValues(e);
  } catch {
    // A shape knownShape let through but the direct path cannot read (a malformed stored entry): the generic
    // indexer answers, so that one odd entry never stops the indexing of the trail.
    return extractIndex(event as Resource);
  }
}

function directValues(e: Obj): IndexValue[] {
  const out: IndexValue[] = [];
  const agents = (e.agent as Obj[] | undefined) ?? [];
  const entities = (e.entity as Obj[] | undefined) ?? [];
  const source = e.source as Obj | undefined;
  // In the registry's order (BASE_PARAMS); _text, _content, _id and _lastUpdated are not expressions.
  for (const t of ((e.meta as Obj | undefined)?.tag as unknown[] | undefined) ?? []) codingToken('_tag', t, out);
  codeToken('action', e.action, out);
  for (const a of agents) referenceValue('agent', a.who, out);
  for (const a of agents) for (const r of (a.role as unknown[] | undefined) ?? []) conceptTokens('agent-role', r, out);
  if (typeof e.recorded === 'string') {
    const r = dateRange(e.recorded);
    if (r) out.push({ param: 'date', type: 'date', low: r.low ?? MIN_DATE, high: r.high ?? MAX_DATE });
  }
  for (const x of entities) referenceValue('entity', x.what, out);
  for (const x of entities) codingToken('entity-role', x.role, out);
  for (const x of entities) codingToken('entity-type', x.type, out);
  codeToken('outcome', e.outcome, out);
  for (const a of agents) referenceValue('patient', a.who, out, 'Patient');
  for (const x of entities) referenceValue('patient', x.what, out, 'Patient');
  for (const a of agents) for (const p of (a.policy as unknown[] | undefined) ?? []) if (typeof p === 'string' && p) out.push({ param: 'policy', type: 'uri', value: p });
  if (source) codeToken('site', source.site, out);
  if (source) referenceValue('source', source.observer, out);
  for (const s of (e.subtype as unknown[] | undefined) ?? []) codingToken('subtype', s, out);
  codingToken('type', e.type, out);
  const content = new Set<string>();
  contentWords(e, content);
  const values = withoutRepeats(out);
  if (content.size) values.push({ param: '_content', type: 'text', words: [...content] });
  return values;
}

/**
 * Drops a value equal to an earlier one of the same parameter, as the generic indexer does (a patient who is
 * both the agent and the entity, the entity-type of every entry of a transaction). Each parameter's values
 * are contiguous here, and none is a composite.
 */
function withoutRepeats(values: IndexValue[]): IndexValue[] {
  const out: IndexValue[] = [];
  for (let i = 0; i < values.length; ) {
    const param = values[i].param;
    let j = i + 1;
    while (j < values.length && values[j].param === param) j++;
    if (j - i <= 8) {
      const first = out.length;
      for (let k = i; k < j; k++) {
        const v = values[k];
        let repeat = false;
        for (let m = first; m < out.length && !repeat; m++) repeat = sameValue(out[m], v);
        if (!repeat) out.push(v);
      }
    } else {
      // A transaction's entries: many values of one parameter.
      const seen = new Set<string>();
      for (let k = i; k < j; k++) {
        const key = Object.values(values[k]).join('\u0000');
        if (!seen.has(key)) {
          seen.add(key);
          out.push(values[k]);
        }
      }
    }
    i = j;
  }
  return out;
}

/** Equal as the generic indexer compares them (the same property values in the same order). */
function sameValue(a: IndexValue, b: IndexValue): boolean {
  const x = a as unknown as Obj;
  const y = b as unknown as Obj;
  let n = 0;
  for (const k in x) {
    if ((x[k] ?? '') !== (y[k] ?? '')) return false;
    n++;
  }
  for (const _k in y) n--;
  return n === 0;
}

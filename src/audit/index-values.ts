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
import type { AuditEvent, Resource } from 'fhir/r4';
import type { IndexValue } from '../search/types.ts';
import { CONVERTERS, dedupe, extractIndex } from '../search/indexer.ts';
import { onRegistryChange, searchParamsFor } from '../search/registry.ts';
import { collectWords, wordsOf } from '../search/text.ts';

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

// -- values: src/search/indexer.ts's own converters, given each element with its FHIR type ----------------

const tokenValues = CONVERTERS.token!;
const referenceValues = CONVERTERS.reference!;
const dateValues = CONVERTERS.date!;

/** A reference's value, kept only when it targets `onlyType` (the `patient` parameter's `resolve() is Patient`). */
function referenceOf(param: string, v: unknown, out: IndexValue[], onlyType: string): void {
  const at = out.length;
  referenceValues(param, { value: v, type: 'Reference' }, out);
  for (let i = at; i < out.length; i++) {
    const r = out[i];
    if (r.type !== 'reference' || r.targetType !== onlyType) out.splice(i--, 1);
  }
}

/**
 * The distinct words of strings that repeat across events (displays, texts, the site), in order. Strings with a
 * digit (the recorded instant, policy UUIDs, a query) differ per event: they are not kept, or the map would churn.
 */
const repeatedWords = new Map<string, string[]>();

/** A string that is one lower-case ASCII word as it stands (codes, hashes, ids): its only word is itself. */
function isOneWord(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return false;
  }
  return s.length > 0;
}

function hasDigit(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) return true;
  }
  return false;
}

/** `_content`'s words of one string: as wordsOf adds them, from memory for a string that repeats. */
function addWords(s: string, into: Set<string>): void {
  if (isOneWord(s)) {
    into.add(s);
    return;
  }
  if (hasDigit(s)) {
    wordsOf(s, into);
    return;
  }
  let w = repeatedWords.get(s);
  if (w === undefined) {
    if (repeatedWords.size >= 20_000) repeatedWords.clear();
    repeatedWords.set(s, (w = [...wordsOf(s)]));
  }
  for (const x of w) into.add(x);
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
  for (const t of ((e.meta as Obj | undefined)?.tag as unknown[] | undefined) ?? []) tokenValues('_tag', { value: t, type: 'Coding' }, out);
  tokenValues('action', { value: e.action, type: 'code' }, out);
  for (const a of agents) referenceValues('agent', { value: a.who, type: 'Reference' }, out);
  for (const a of agents) for (const r of (a.role as unknown[] | undefined) ?? []) tokenValues('agent-role', { value: r, type: 'CodeableConcept' }, out);
  if (e.recorded !== undefined) dateValues('date', { value: e.recorded, type: 'instant' }, out);
  for (const x of entities) referenceValues('entity', { value: x.what, type: 'Reference' }, out);
  for (const x of entities) tokenValues('entity-role', { value: x.role, type: 'Coding' }, out);
  for (const x of entities) tokenValues('entity-type', { value: x.type, type: 'Coding' }, out);
  tokenValues('outcome', { value: e.outcome, type: 'code' }, out);
  for (const a of agents) referenceOf('patient', a.who, out, 'Patient');
  for (const x of entities) referenceOf('patient', x.what, out, 'Patient');
  for (const a of agents) for (const p of (a.policy as unknown[] | undefined) ?? []) if (typeof p === 'string' && p) out.push({ param: 'policy', type: 'uri', value: p });
  if (source) tokenValues('site', { value: source.site, type: 'string' }, out);
  if (source) referenceValues('source', { value: source.observer, type: 'Reference' }, out);
  for (const s of (e.subtype as unknown[] | undefined) ?? []) tokenValues('subtype', { value: s, type: 'Coding' }, out);
  tokenValues('type', { value: e.type, type: 'Coding' }, out);
  const content = new Set<string>();
  collectWords(e, content, addWords);
  const values = dedupe(out);
  if (content.size) values.push({ param: '_content', type: 'text', words: [...content] });
  return values;
}

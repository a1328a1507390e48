/**
 * The terminology operations as pure functions over a Scope: ValueSet expansion (compose include / exclude,
 * concept lists, filters, nested value sets), membership and code validation, $lookup, $subsumes, $translate.
 * Errors are FhirErrors with a precise message (the HTTP layer renders them as OperationOutcomes).
 */
import type { CodeSystem, ConceptMap, ValueSet, ValueSetComposeInclude, ValueSetComposeIncludeFilter } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { type CodeSystemIndex, type ConceptDef, type Designation, propertyText } from './codesystem-index.ts';
import { chooseDisplay } from './language.ts';
import { canonicalSystem } from './codesystems.ts';
import { type Scope, type MapEntry, splitCanonical, versionMatches, translateIndexOf, compareVersions } from './registry.ts';
import { EXT_NOT_SELECTABLE, EXT_DEPRECATED } from './model.ts';
import { UCUM, ucumValidate } from './ucum.ts';

export interface ExpansionItem {
  system: string;
  version?: string;
  code: string;
  display?: string;
  designations: Designation[];
  inactive: boolean;
  abstract: boolean;
  deprecated: boolean;
  def?: ConceptDef;
  cs?: CodeSystemIndex;
  /** The same code from other versions of the system, when the value set includes several (newest is the item). */
  others?: ExpansionItem[];
}

/** The item and its other versions. */
export const allVersions = (i: ExpansionItem): ExpansionItem[] => (i.others?.length ? [i, ...i.others] : [i]);

/** The value set's own display language: its `displayLanguage` expansion parameter, else its `language`. */
function valueSetLanguages(vs: ValueSet): string[] {
  const ext = (vs.compose as { extension?: { url: string; extension?: { url: string; valueCode?: string; valueString?: string }[] }[] } | undefined)?.extension ?? [];
  for (const e of ext) {
    if (e.url !== 'http://hl7.org/fhir/StructureDefinition/valueset-expansion-parameter') continue;
    if (e.extension?.find((x) => x.url === 'name')?.valueCode !== 'displayLanguage') continue;
    const v = e.extension.find((x) => x.url === 'value');
    const lang = v?.valueCode ?? v?.valueString;
    if (lang) return [lang];
  }
  return vs.language ? [vs.language] : [];
}

/** `versionsMatch` expansion parameter of a compose (valueset-expansion-parameter extension): true, false or unset. */
function versionsMatch(vs: ValueSet): boolean | undefined {
  const ext = (vs.compose as { extension?: { url: string; extension?: { url: string; valueCode?: string; valueString?: string; valueBoolean?: boolean }[] }[] } | undefined)?.extension ?? [];
  for (const e of ext) {
    if (e.url !== 'http://hl7.org/fhir/StructureDefinition/valueset-expansion-parameter') continue;
    if (e.extension?.find((x) => x.url === 'name')?.valueCode !== 'versionsMatch') continue;
    const v = e.extension.find((x) => x.url === 'value');
    const raw = v?.valueBoolean ?? v?.valueString ?? v?.valueCode;
    return raw === true || raw === 'true';
  }
  return undefined;
}

/**
 * Code system version rules of a request (`system-version`, `check-system-version`, `force-system-version`):
 * canonical system URL -> version or version pattern (`1.0.x`).
 */
export interface VersionRules {
  /** Used where a value set include names no version. */
  defaults: Map<string, string>;
  /** Replaces the version wherever the system is used. */
  force: Map<string, string>;
  /** The version used must match; a versionless include takes the newest matching version. */
  check: Map<string, string>;
  /** Version of value sets referenced without one (`default-valueset-version`): value set URL -> version. */
  valueSets?: Map<string, string>;
}

export function emptyVersionRules(): VersionRules {
  return { defaults: new Map(), force: new Map(), check: new Map() };
}

/** How an expansion is computed: version rules, a preferred version per system (the coding's), leniency. */
export interface ExpansionContext {
  rules?: VersionRules;
  /** Version named by the code being validated, used by includes whose version it satisfies. */
  prefer?: Map<string, string>;
  /** Record version problems in `errors` instead of throwing (validation). */
  lenient?: boolean;
}

export interface ExpansionError {
  system: string;
  code: string;
  text: string;
  /** `url|version` of a code system version that could not be found. */
  unknown?: string;
}

export interface Expansion {
  ctx: ExpansionContext;
  /** The value set being expanded (its contained value sets resolve `#id` references). */
  root?: ValueSet;
  /** Systems included whole (no concept list, no filter). */
  wholeSystems: Set<string>;
  /** Version problems met in lenient mode. */
  errors: ExpansionError[];
  items: Map<string, ExpansionItem>;
  /** Code systems used (url -> version). */
  used: Map<string, string | undefined>;
  /** Value sets used (canonical). */
  usedValueSets: Set<string>;
  warnings: string[];
}

export const keyOf = (system: string, code: string) => `${system}\u0000${code}`;

const vsLabel = (vs: ValueSet) => `${vs.url ?? `ValueSet/${vs.id ?? '?'}`}${vs.version ? `|${vs.version}` : ''}`;

export function unknownCodeSystem(system: string, version: string | undefined, scope: Scope, context?: string): FhirError {
  const versions = scope.codeSystemVersions(system);
  const msg =
    version && versions.length
      ? `A definition for CodeSystem '${system}' version '${version}' could not be found, so the code cannot be validated. Valid versions: ${versions.join(', ')}`
      : `A definition for CodeSystem '${system}'${version ? ` version '${version}'` : ''} could not be found${context ? `, ${context}` : ''}`;
  return new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: msg }]);
}

function conceptFlags(ext: { url: string; valueBoolean?: boolean }[] | undefined): { abstract: boolean; deprecated: boolean } {
  return {
    abstract: !!ext?.some((e) => e.url === EXT_NOT_SELECTABLE && e.valueBoolean),
    deprecated: !!ext?.some((e) => e.url === EXT_DEPRECATED && e.valueBoolean),
  };
}

// -- filters ------------------------------------------------------------------------------------------------

/**
 * Guards against catastrophic backtracking: a quantified group whose body ends in a quantifier (`(a+)+`,
 * `((a+)+)+`, `(x*)*`) is rewritten to the equivalent single quantifier (`(a)+`); a pattern that still nests
 * quantifiers is refused.
 */
export function defuseRegex(value: string): string {
  let v = value;
  for (let i = 0; i < 20; i++) {
    const next = v.replace(/\((?:\?:)?\(((?:\\.|[^()\\])*)\)\)/g, '($1)').replace(/\((\?:)?((?:\\.|[^()\\]|\((?:\\.|[^()\\])*\))*?)([+*])\)([+*])/g, (_m, nc: string | undefined, body: string, inner: string, outer: string) => `(${nc ?? ''}${body})${inner === '*' || outer === '*' ? '*' : '+'}`);
    if (next === v) break;
    v = next;
  }
  if (/\((?:\\.|[^()\\])*[+*]\)[+*{]/.test(v)) {
    throw new FhirError(400, [{ severity: 'error', code: 'too-costly', diagnostics: `The regular expression '${value}' nests quantifiers and could take exponential time: it is refused` }]);
  }
  return v;
}

function compileRegex(value: string): RegExp {
  const safe = defuseRegex(value);
  try {
    return new RegExp(`^(?:${safe})$`, 'u');
  } catch (err) {
    throw new FhirError(400, [{ severity: 'error', code: 'invalid', diagnostics: `Invalid regular expression '${value}' in a value set filter: ${(err as Error).message}` }]);
  }
}

type Pred = (def: ConceptDef) => boolean;

function filterPredicate(cs: CodeSystemIndex, f: ValueSetComposeIncludeFilter): Pred {
  const prop = f.property;
  if ((f.value === undefined || f.value === '') && f.op !== 'exists')
    throw new FhirError(400, [{ severity: 'error', code: 'invalid', diagnostics: `The system ${cs.url} filter with property = ${prop}, op = ${f.op} has no value` }]);
  const value = f.value ?? '';
  const list = () => value.split(',').map((s) => s.trim()).filter(Boolean);
  const isHierarchy = prop === 'concept' || prop === 'code';
  switch (f.op) {
    case 'is-a':
      if (isHierarchy) return (d) => cs.isA(d.code, value);
      break;
    case 'descendent-of':
      if (isHierarchy) return (d) => d.code !== cs.get(value)?.code && cs.isA(d.code, value);
      break;
    case 'is-not-a':
      if (isHierarchy) return (d) => !cs.isA(d.code, value);
      break;
    case 'generalizes':
      if (isHierarchy) return (d) => cs.isA(value, d.code);
      break;
    case 'in':
      if (isHierarchy) {
        const s = new Set(list());
        return (d) => s.has(d.code);
      }
      break;
    case 'not-in':
      if (isHierarchy) {
        const s = new Set(list());
        return (d) => !s.has(d.code);
      }
      break;
    case '=':
      if (isHierarchy) return (d) => d.code === value;
      break;
    case 'regex':
      if (isHierarchy) {
        const re = compileRegex(value);
        return (d) => re.test(d.code);
      }
      break;
  }
  if ((f.op as string) === 'child-of' && isHierarchy) return (d) => d.parents.includes(cs.get(value)?.code ?? value);
  if (isHierarchy) throw new FhirError(400, [{ severity: 'error', code: 'not-supported', diagnostics: `The filter operation '${f.op}' is not supported on property '${prop}' of ${cs.url}` }]);
  // Other properties: display, parent, child, inactive, status and declared properties.
  const values = (d: ConceptDef): string[] => {
    if (prop === 'display') return d.display ? [d.display] : [];
    if (prop === 'inactive') return [String(d.inactive)];
    if (prop === 'notSelectable') {
      const own = d.properties.filter((p) => p.code === 'notSelectable').map((p) => propertyText(p.value));
      return own.length ? own : d.abstract ? ['true'] : [];
    }
    if (prop === 'parent' && !d.properties.some((p) => p.code === 'parent')) return d.parents;
    if (prop === 'child' && !d.properties.some((p) => p.code === 'child')) return d.children;
    return d.properties.filter((p) => p.code === prop).map((p) => propertyText(p.value));
  };
  const known = prop === 'display' || prop === 'inactive' || prop === 'notSelectable' || prop === 'parent' || prop === 'child' || prop === 'status' || !!cs.resource.property?.some((p) => p.code === prop);
  if (!known) throw new FhirError(400, [{ severity: 'error', code: 'not-supported', diagnostics: `The property '${prop}' is not defined by the code system ${cs.url}, so the filter cannot be applied` }]);
  switch (f.op) {
    case '=':
      return (d) => values(d).includes(value);
    case 'in': {
      const s = new Set(list());
      return (d) => values(d).some((v) => s.has(v));
    }
    case 'not-in': {
      const s = new Set(list());
      return (d) => !values(d).some((v) => s.has(v));
    }
    case 'regex': {
      const re = compileRegex(value);
      return (d) => values(d).some((v) => re.test(v));
    }
    case 'exists':
      return (d) => (values(d).length > 0) === (value !== 'false');
    default:
      throw new FhirError(400, [{ severity: 'error', code: 'not-supported', diagnostics: `The filter operation '${f.op}' is not supported on property '${prop}'` }]);
  }
}

// -- expansion ----------------------------------------------------------------------------------------------

function itemFrom(cs: CodeSystemIndex, def: ConceptDef, scope: Scope): ExpansionItem {
  return {
    system: cs.url,
    version: cs.version,
    code: def.code,
    display: def.display,
    designations: [...def.designations, ...scope.supplementDesignations(cs.url, def.code)],
    inactive: def.inactive,
    abstract: def.abstract,
    deprecated: def.deprecated,
    def,
    cs,
  };
}

/**
 * The code system version an include uses: a forced version; else the version of the code being validated when
 * the include allows it; else the include's own version (or pattern, newest match); else the request's default,
 * else its check pattern, else the newest. A version that cannot be found, or one that fails a check, throws
 * (expansion) or is recorded in `exp.errors` with the best version to report displays from (validation).
 */
function resolveIncludeSystem(scope: Scope, system: string, incVersion: string | undefined, exp: Expansion): CodeSystemIndex | undefined {
  const rules = exp.ctx.rules;
  const force = rules?.force.get(system);
  const pref = exp.ctx.prefer?.get(system);
  const fallback = rules?.defaults.get(system) ?? rules?.check.get(system);
  let want = force ?? incVersion;
  if (!force && pref && (!incVersion || versionMatches(pref, incVersion))) want = pref;
  want ??= fallback;
  let cs = scope.codeSystem(system, want);
  if (!cs && want && scope.codeSystemVersions(system).length) {
    const err = unknownCodeSystem(system, want, scope, 'so the code cannot be validated');
    if (!exp.ctx.lenient) throw err;
    exp.errors.push({ system, code: 'not-found', text: err.message, unknown: `${system}|${want}` });
    cs = (pref ? scope.codeSystem(system, pref) : undefined) ?? (fallback ? scope.codeSystem(system, fallback) : undefined) ?? scope.codeSystem(system);
    return cs;
  }
  const check = rules?.check.get(system);
  if (cs && check && !versionMatches(cs.version, check)) {
    const text = `The version '${cs.version ?? ''}' is not allowed for system '${system}': required to be '${check}' by a version-check parameter`;
    if (!exp.ctx.lenient) throw new FhirError(400, [{ severity: 'error', code: 'business-rule', diagnostics: text }]);
    exp.errors.push({ system, code: 'business-rule', text });
  }
  return cs;
}

function includeSet(scope: Scope, inc: ValueSetComposeInclude, stack: string[], exp: Expansion, vs: ValueSet): Map<string, ExpansionItem> {
  let result: Map<string, ExpansionItem> | undefined;
  if (inc.system) {
    const system = canonicalSystem(inc.system);
    const cs = resolveIncludeSystem(scope, system, inc.version, exp);
    result = new Map();
    if (inc.concept?.length) {
      for (const c of inc.concept) {
        const flags = conceptFlags(c.extension);
        const def = cs?.get(c.code);
        if (cs && !def && cs.content === 'complete') {
          exp.warnings.push(`The code '${c.code}' is not defined by ${system}${cs.version ? ` version ${cs.version}` : ''} (value set ${vsLabel(vs)})`);
          continue;
        }
        const base: ExpansionItem = def && cs
          ? itemFrom(cs, def, scope)
          : { system, version: inc.version ?? cs?.version, code: c.code, display: c.display, designations: scope.supplementDesignations(system, c.code), inactive: false, abstract: false, deprecated: false, cs };
        if (c.display) base.display = c.display;
        if (c.designation?.length) base.designations = [...c.designation.map((d) => ({ language: d.language, use: d.use, value: d.value })), ...base.designations];
        if (flags.abstract) base.abstract = true;
        if (flags.deprecated) base.deprecated = true;
        result.set(keyOf(system, base.code), base);
      }
    } else {
      if (!cs) {
        if (!exp.ctx.lenient) throw unknownCodeSystem(system, inc.version, scope, `so the value set ${vsLabel(vs)} cannot be expanded`);
        exp.errors.push({ system, code: 'not-found', text: unknownCodeSystem(system, inc.version, scope, 'so the code cannot be validated').message, unknown: inc.version ? `${system}|${inc.version}` : system });
        return result;
      }
      if (!inc.filter?.length) exp.wholeSystems.add(cs.url);
      if (cs.content === 'not-present' || (cs.content === 'example' && !cs.concepts.size))
        throw new FhirError(400, [{ severity: 'error', code: 'too-costly', diagnostics: `The code system ${system} has no content here (content = ${cs.content}), so the value set ${vsLabel(vs)} cannot be expanded` }]);
      if (cs.content !== 'complete') exp.warnings.push(`The code system ${system} is a ${cs.content}: the expansion may be incomplete`);
      const preds = (inc.filter ?? []).map((f) => filterPredicate(cs, f));
      for (const def of cs.concepts.values()) if (preds.every((p) => p(def))) result.set(keyOf(cs.url, def.code), itemFrom(cs, def, scope));
    }
    if (cs) exp.used.set(cs.url, cs.version);
  }
  for (const ref of inc.valueSet ?? []) {
    const nested = ref.startsWith('#')
      ? ([...(vs.contained ?? []), ...(exp.root?.contained ?? [])].find((r) => r.resourceType === 'ValueSet' && r.id === ref.slice(1)) as ValueSet | undefined)
      : scope.valueSet(ref, ref.includes('|') ? undefined : exp.ctx.rules?.valueSets?.get(ref));
    if (!nested) {
      const text = `A definition for the value Set '${ref}' could not be found`;
      if (!exp.ctx.lenient) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `The value set ${ref} included by ${vsLabel(vs)} could not be found` }]);
      exp.errors.push({ system: '', code: 'not-found', text });
      result = new Map();
      continue;
    }
    const sub = computeExpansion(scope, nested, stack, exp);
    if (!result) result = new Map(sub);
    else for (const k of [...result.keys()]) if (!sub.has(k)) result.delete(k);
  }
  return result ?? new Map();
}

/** Expands a value set's compose into items (no paging, no text filter). */
export function computeExpansion(scope: Scope, vs: ValueSet, stack: string[] = [], exp?: Expansion): Map<string, ExpansionItem> {
  const label = vsLabel(vs);
  if (stack.includes(label)) throw new FhirError(400, [{ severity: 'error', code: 'processing', diagnostics: `The value set ${label} includes itself (cycle: ${[...stack, label].join(' -> ')})` }]);
  const e: Expansion = exp ?? { ctx: {}, errors: [], wholeSystems: new Set(), root: vs, items: new Map(), used: new Map(), usedValueSets: new Set(), warnings: [] };
  e.usedValueSets.add(label);
  const next = [...stack, label];
  const out = new Map<string, ExpansionItem>();
  if (!vs.compose && vs.expansion?.contains) {
    const walk = (list: NonNullable<ValueSet['expansion']>['contains']) => {
      for (const c of list ?? []) {
        if (c.code && c.system) out.set(keyOf(c.system, c.code), { system: c.system, version: c.version, code: c.code, display: c.display, designations: [], inactive: !!c.inactive, abstract: !!c.abstract, deprecated: false });
        walk(c.contains);
      }
    };
    walk(vs.expansion.contains);
    return out;
  }
  const match = versionsMatch(vs);
  const multi = new Set<string>();
  for (const inc of vs.compose?.include ?? [])
    for (const [k, v] of includeSet(scope, inc, next, e, vs)) {
      const prev = out.get(k);
      if (!prev) out.set(k, v);
      else if (match !== true && v.version && prev.version && !allVersions(prev).some((x) => x.version === v.version)) {
        // The same code from another version of the system: kept as its own entry, newest version first.
        multi.add(v.system);
        const list = [...allVersions(prev), v].sort((a, b) => compareVersions(b.version, a.version));
        out.set(k, { ...list[0]!, others: list.slice(1).map((x) => ({ ...x, others: undefined })) });
      }
    }
  for (const exc of vs.compose?.exclude ?? []) {
    const excluded = includeSet(scope, exc, next, e, vs);
    for (const [k, x] of excluded) {
      const item = out.get(k);
      if (!item) continue;
      // A versioned exclusion removes only that version's entry when versions are kept apart.
      if (!exc.version || !(match === false || multi.has(item.system))) {
        out.delete(k);
        continue;
      }
      const rest = allVersions(item).filter((y) => y.version !== x.version);
      if (!rest.length) out.delete(k);
      else out.set(k, { ...rest[0]!, others: rest.slice(1) });
    }
  }
  if (vs.compose?.inactive === false) for (const [k, v] of out) if (v.inactive) out.delete(k);
  if (!exp) e.items = out;
  return out;
}

// -- caching of expansions ----------------------------------------------------------------------------------

interface CachedExpansion {
  exp: Expansion;
  /** Value sets and code systems the expansion read, as resolved then (identity checked on reuse). */
  deps: { kind: 'vs' | 'cs'; ref: string; version?: string; obj: unknown }[];
}
const expansionCache = new WeakMap<ValueSet, Map<string, CachedExpansion>>();

function ctxKey(ctx: ExpansionContext): string {
  const m = (x?: Map<string, string>) => (x?.size ? [...x].map(([k, v]) => `${k}|${v}`).sort().join(',') : '');
  return `${m(ctx.rules?.defaults)};${m(ctx.rules?.force)};${m(ctx.rules?.check)};${m(ctx.rules?.valueSets)};${m(ctx.prefer)};${ctx.lenient ? 1 : 0}`;
}

function depsValid(scope: Scope, deps: CachedExpansion['deps']): boolean {
  for (const d of deps) {
    const now = d.kind === 'vs' ? scope.valueSet(d.ref, d.version) : scope.codeSystem(d.ref, d.version);
    if (now !== d.obj) return false;
  }
  return true;
}

/** Full expansion with used systems and warnings; cached per ValueSet object while its dependencies are unchanged. */
const EXT_VS_SUPPLEMENT = 'http://hl7.org/fhir/StructureDefinition/valueset-supplement';

/** Refuses (404) supplements that are required (useSupplement, the valueset-supplement extension) but not held. */
export function requireSupplements(scope: Scope, refs: string[]): void {
  for (const ref of refs)
    if (!scope.hasSupplement(ref)) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `Required supplement not found: ${ref}` }]);
}

export function fullExpansion(scope: Scope, vs: ValueSet, ctx: ExpansionContext = {}): Expansion {
  requireSupplements(scope, (vs.extension ?? []).filter((e) => e.url === EXT_VS_SUPPLEMENT && e.valueCanonical).map((e) => e.valueCanonical!));
  const key = ctxKey(ctx);
  let perVs = expansionCache.get(vs);
  const hit = perVs?.get(key);
  if (hit && depsValid(scope, hit.deps)) return hit.exp;
  const exp: Expansion = { ctx, errors: [], wholeSystems: new Set(), root: vs, items: new Map(), used: new Map(), usedValueSets: new Set(), warnings: [] };
  exp.items = computeExpansion(scope, vs, [], exp);
  const deps: CachedExpansion['deps'] = [];
  for (const label of exp.usedValueSets) {
    const c = splitCanonical(label);
    if (c.url.startsWith('ValueSet/')) continue;
    deps.push({ kind: 'vs', ref: c.url, version: c.version, obj: scope.valueSet(c.url, c.version) });
  }
  for (const [url, version] of exp.used) deps.push({ kind: 'cs', ref: url, version, obj: scope.codeSystem(url, version) });
  // The root value set itself is the cache key; its own URL may resolve to another version, so skip it.
  if (!perVs) expansionCache.set(vs, (perVs = new Map()));
  if (perVs.size > 50) perVs.clear();
  perVs.set(key, { exp, deps: deps.filter((d) => d.obj !== vs) });
  return exp;
}

// -- $expand output -----------------------------------------------------------------------------------------

export interface ExpandOptions {
  filter?: string;
  count?: number;
  offset?: number;
  activeOnly?: boolean;
  includeDesignations?: boolean;
  includeDefinition?: boolean;
  excludeNested?: boolean;
  displayLanguage: string[];
  /** Largest expansion returned without paging. */
  maxSize: number;
  /** Echoed as expansion.parameter. */
  echo: { name: string; [k: string]: unknown }[];
  versions?: VersionRules;
}

function textMatches(item: ExpansionItem, words: string[]): boolean {
  const hay = [item.code, item.display ?? '', ...item.designations.map((d) => d.value)].join(' ').toLowerCase();
  return words.every((w) => hay.includes(w));
}

export function expandValueSet(scope: Scope, vs: ValueSet, opts: ExpandOptions): ValueSet {
  const exp = fullExpansion(scope, vs, opts.versions ? { rules: opts.versions } : {});
  let items = [...exp.items.values()].flatMap(allVersions);
  if (opts.activeOnly) items = items.filter((i) => !i.inactive);
  if (opts.filter) {
    const words = opts.filter.toLowerCase().split(/\s+/).filter(Boolean);
    items = items.filter((i) => textMatches(i, words));
  }
  const total = items.length;
  const offset = opts.offset ?? 0;
  if (opts.count === undefined && total > opts.maxSize) {
    throw new FhirError(400, [
      { severity: 'error', code: 'too-costly', diagnostics: `The value set ${vsLabel(vs)} has ${total} codes, more than the ${opts.maxSize} returned at once: page with count and offset, or narrow with filter` },
    ]);
  }
  const page = items.slice(offset, opts.count === undefined ? undefined : offset + opts.count);
  const parameter: Record<string, unknown>[] = [...opts.echo];
  for (const [url, version] of exp.used) parameter.push({ name: 'used-codesystem', valueUri: version ? `${url}|${version}` : url });
  const { expansion: _old, ...rest } = vs;
  void _old;
  const out: ValueSet = {
    ...rest,
    expansion: {
      identifier: `urn:uuid:${crypto.randomUUID()}`,
      timestamp: new Date().toISOString(),
      total,
      offset,
      ...(parameter.length ? { parameter: parameter as unknown as NonNullable<ValueSet['expansion']>['parameter'] } : {}),
      contains: page.map((i) => {
        const d = chooseDisplay(i.display, i.cs?.language, i.designations, opts.displayLanguage);
        return {
          system: i.system,
          ...(i.version ? { version: i.version } : {}),
          ...(i.abstract ? { abstract: true } : {}),
          ...(i.inactive ? { inactive: true } : {}),
          code: i.code,
          ...(d.value ? { display: d.value } : {}),
          ...(opts.includeDesignations && i.designations.length
            ? { designation: i.designations.map((x) => ({ ...(x.language ? { language: x.language } : {}), ...(x.use ? { use: x.use } : {}), value: x.value })) }
            : {}),
        };
      }),
    },
  };
  return out;
}

// -- validation ---------------------------------------------------------------------------------------------

export interface CodeInput {
  system?: string;
  version?: string;
  code: string;
  display?: string;
  /** The code came in a Coding / CodeableConcept: a missing system is an error, not inferred from the value set. */
  codingForm?: boolean;
}

export interface ValidateOptions {
  displayLanguage: string[];
  abstractAllowed: boolean;
  activeOnly: boolean;
  versions?: VersionRules;
  /** A wrong display is a warning, not an error (`lenient-display-validation`). */
  lenientDisplay?: boolean;
}

export interface ValidateResult {
  result: boolean;
  message?: string;
  display?: string;
  code?: string;
  system?: string;
  version?: string;
  inactive?: boolean;
  /** The code as the code system defines it, when the given one differs in case. */
  normalizedCode?: string;
  /** `url|version` of code systems that could not be found (x-caused-by-unknown-system). */
  unknownSystems?: string[];
  issues: { severity: 'error' | 'warning' | 'information'; code: string; text: string; unknownCode?: boolean }[];
}

// Displays compare case-insensitively; whitespace counts (a doubled space is a wrong display).
const norm = (s: string) => s.toLowerCase();
const primaryTag = (t: string) => t.toLowerCase().split('-')[0]!;

/**
 * The displays a given display may match: the concept's own display (in the code system's language) and its
 * designations; when display languages are requested, only those in one of them (all when none is).
 */
function displays(item: { display?: string; designations: Designation[]; def?: ConceptDef; cs?: CodeSystemIndex }, languages: string[] = []): string[] {
  const all: Designation[] = [];
  const lang = item.cs?.language;
  if (item.display) all.push({ language: lang, value: item.display });
  if (item.def?.display) all.push({ language: lang, value: item.def.display });
  all.push(...item.designations, ...(item.def?.designations ?? []));
  let pool = all;
  if (languages.length) {
    const wanted = new Set(languages.map(primaryTag));
    const inLang = all.filter((d) => (d.language ? wanted.has(primaryTag(d.language)) : wanted.has('en')));
    if (inLang.length) pool = inLang;
  }
  return [...new Set(pool.map((d) => d.value))];
}

function checkDisplay(res: ValidateResult, given: string | undefined, valid: string[], label: string, lenient = false): void {
  if (given === undefined || !valid.length) return;
  if (valid.some((v) => norm(v) === norm(given))) return;
  if (!lenient) res.result = false;
  const msg = `Wrong Display Name '${given}' for ${label}. Valid display is ${valid.length === 1 ? `'${valid[0]}'` : `one of ${valid.length} choices: ${valid.map((v) => `'${v}'`).join(', ')}`}`;
  res.issues.push({ severity: lenient ? 'warning' : 'error', code: 'invalid', text: msg });
}

function finish(res: ValidateResult): ValidateResult {
  const errors = res.issues.filter((i) => i.severity === 'error');
  const shown = errors.length ? errors : res.issues;
  if (shown.length) res.message = shown.map((i) => i.text).join('; ');
  return res;
}

/** Validates a code against a code system (CodeSystem/$validate-code). */
export function validateInCodeSystem(scope: Scope, input: CodeInput, opts: ValidateOptions): ValidateResult {
  const res: ValidateResult = { result: true, issues: [], code: input.code, system: input.system };
  if (!input.system) return finish({ ...res, result: false, issues: [{ severity: 'error', code: 'invalid', text: `No system was provided for the code '${input.code}'` }] });
  const system = canonicalSystem(input.system);
  res.system = system;
  if (system === UCUM) {
    // UCUM is a grammar, not a list: every valid expression is a code.
    const u = ucumValidate(input.code);
    res.result = u.valid;
    if (u.valid) res.display = input.code;
    else res.issues.push({ severity: 'error', code: 'code-invalid', text: `'${input.code}' is not a valid UCUM code: ${u.message ?? 'invalid'}` });
    return finish(res);
  }
  const cs = scope.codeSystem(system, input.version);
  if (!cs) {
    res.result = false;
    res.issues.push({ severity: 'error', code: 'not-found', text: unknownCodeSystem(system, input.version, scope, 'so the code cannot be validated').message });
    return finish(res);
  }
  res.version = cs.version;
  const def = cs.get(input.code);
  if (!def) {
    if (cs.content !== 'complete') {
      res.issues.push({ severity: 'warning', code: 'code-invalid', text: `Unknown code '${input.code}' in the CodeSystem '${system}'${cs.version ? ` version '${cs.version}'` : ''}: the code system here is a ${cs.content}, so the code may still be valid` });
      return finish(res);
    }
    res.result = false;
    res.issues.push({ severity: 'error', code: 'code-invalid', text: `Unknown code '${input.code}' in the CodeSystem '${system}'${cs.version ? ` version '${cs.version}'` : ''}` });
    return finish(res);
  }
  res.code = def.code;
  if (def.code !== input.code) res.issues.push({ severity: 'information', code: 'business-rule', text: `The code '${input.code}' differs in case from the defined code '${def.code}' (the code system is case-insensitive)` });
  const item = itemFrom(cs, def, scope);
  res.display = chooseDisplay(item.display, cs.language, item.designations, opts.displayLanguage).value;
  if (def.inactive) {
    res.inactive = true;
    if (opts.activeOnly) {
      res.result = false;
      res.issues.push({ severity: 'error', code: 'business-rule', text: `The code '${def.code}' is inactive` });
    } else res.issues.push({ severity: 'warning', code: 'business-rule', text: `The concept '${def.code}' has a status of ${def.status ?? 'inactive'} and its use should be reviewed` });
  }
  checkDisplay(res, input.display, displays(item, opts.displayLanguage), `${system}#${def.code}`, opts.lenientDisplay);
  return finish(res);
}

/** Validates a code against a value set (ValueSet/$validate-code). */
export function validateInValueSet(scope: Scope, vs: ValueSet, input: CodeInput, opts0: ValidateOptions): ValidateResult {
  // Without a requested display language, the value set's own language applies.
  const opts = opts0.displayLanguage.length ? opts0 : { ...opts0, displayLanguage: valueSetLanguages(vs) };
  let system = input.system ? canonicalSystem(input.system) : undefined;
  const ctx: ExpansionContext = { lenient: true, ...(opts.versions ? { rules: opts.versions } : {}) };
  const codingCs = system && input.version ? scope.codeSystem(system, input.version) : undefined;
  if (system && codingCs?.version) ctx.prefer = new Map([[system, codingCs.version]]);
  const exp = fullExpansion(scope, vs, ctx);
  const res: ValidateResult = { result: true, issues: [], code: input.code, system: input.system };
  if (!system && input.codingForm) {
    res.result = false;
    res.issues.push({ severity: 'error', code: 'code-invalid', text: `The provided code '#${input.code}' was not found in the value set '${vsLabel(vs)}'` });
    res.issues.push({ severity: 'warning', code: 'invalid', text: 'Coding has no system. A code with no system has no defined meaning, and it cannot be validated. A system should be provided' });
    return finish(res);
  }
  if (!system) {
    const candidates = [...exp.items.values()].filter((i) => i.code === input.code);
    const systems = new Set(candidates.map((c) => c.system));
    if (systems.size === 1) system = [...systems][0]!;
    else {
      res.result = false;
      res.issues.push({
        severity: 'error',
        code: 'invalid',
        text: systems.size ? `The code '${input.code}' is defined by ${systems.size} code systems in the value set ${vsLabel(vs)}: a system is required` : `The provided code '${input.code}' has no system and was not found in the value set ${vsLabel(vs)}`,
      });
      // Parts of the value set that could not be read (unknown systems, missing value sets) make the answer unsure.
      for (const e of exp.errors) res.issues.push({ severity: 'error', code: e.code, text: e.text });
      return finish(res);
    }
  }
  res.system = system;
  let item = exp.items.get(keyOf(system, input.code));
  const cs = scope.codeSystem(system, input.version);
  if (!item && cs && !cs.caseSensitive) {
    const def = cs.get(input.code);
    if (def) item = exp.items.get(keyOf(cs.url, def.code));
  }
  if (item?.others?.length) {
    // Several versions hold the code: the one the code names, else the one whose display is given, else the newest.
    const cands = allVersions(item);
    const byVersion = input.version ? cands.find((c) => c.version && versionMatches(c.version, input.version!)) : undefined;
    const byDisplay = !input.version && input.display !== undefined ? cands.find((c) => displays(c, opts.displayLanguage).some((d) => norm(d) === norm(input.display!))) : undefined;
    item = byVersion ?? byDisplay ?? item;
  }
  const versionIssues = () => {
    for (const e of exp.errors) {
      if (e.system && e.system !== system) continue;
      res.result = false;
      res.issues.push({ severity: 'error', code: e.code, text: e.text });
      if (e.unknown) res.unknownSystems = [...(res.unknownSystems ?? []), e.unknown];
    }
  };
  if (item && input.version && item.version && !versionMatches(item.version, input.version)) {
    // The value set uses another version of the system than the code names.
    res.result = false;
    if (!codingCs) {
      res.issues.push({ severity: 'error', code: 'not-found', text: unknownCodeSystem(system, input.version, scope, 'so the code cannot be validated').message });
      res.unknownSystems = [...(res.unknownSystems ?? []), `${system}|${input.version}`];
    }
    res.issues.push({ severity: 'error', code: 'invalid', text: `The code system '${system}' version '${item.version}' in the ValueSet include is different to the one in the value ('${input.version}')` });
  }
  versionIssues();
  if (!item && cs && cs.content === 'fragment' && !cs.synthetic && exp.wholeSystems.has(cs.url) && !cs.get(input.code) && res.result) {
    res.version = cs.version;
    res.issues.push({ severity: 'warning', code: 'code-invalid', text: `Unknown Code '${input.code}' in the CodeSystem '${system}'${cs.version ? ` version '${cs.version}'` : ''} - note that the code system is labeled as a fragment, so the code may be valid in some other fragment` });
    return finish(res);
  }
  if (!item) {
    res.result = false;
    const known = cs?.get(input.code);
    if (cs && known) {
      // Not in the value set, but a real code: say what it is.
      res.code = known.code;
      res.version = cs.version;
      const it = itemFrom(cs, known, scope);
      res.display = chooseDisplay(it.display, cs.language, it.designations, opts.displayLanguage).value;
    }
    if (!cs && !exp.used.has(system)) {
      res.issues.push({ severity: 'error', code: 'not-found', text: unknownCodeSystem(system, input.version, scope, 'so the code cannot be validated').message });
    } else if (cs && cs.content === 'complete' && !cs.get(input.code)) {
      res.issues.push({ severity: 'error', code: 'code-invalid', text: `Unknown code '${input.code}' in the CodeSystem '${system}'${cs.version ? ` version '${cs.version}'` : ''}`, unknownCode: true });
    }
    res.issues.push({ severity: 'error', code: 'code-invalid', text: `The provided code '${system}#${input.code}' was not found in the value set '${vsLabel(vs)}'` });
    return finish(res);
  }
  res.code = input.code;
  if (item.code !== input.code) {
    res.normalizedCode = item.code;
    res.issues.push({ severity: 'information', code: 'business-rule', text: `The code '${input.code}' differs from the correct code '${item.code}' by case. Although the code system '${system}${item.version ? `|${item.version}` : ''}' is case insensitive, implementers are strongly encouraged to use the correct case anyway` });
  }
  res.version = item.version;
  res.display = chooseDisplay(item.display, item.cs?.language, item.designations, opts.displayLanguage).value;
  if (res.result === false) return finish(res);
  if (item.abstract && !opts.abstractAllowed) {
    res.result = false;
    res.issues.push({ severity: 'error', code: 'business-rule', text: `The code '${system}#${item.code}' is abstract (not selectable) in the value set '${vsLabel(vs)}'` });
  }
  if (item.inactive) {
    res.inactive = true;
    if (opts.activeOnly) {
      res.result = false;
      res.issues.push({ severity: 'error', code: 'business-rule', text: `The code '${item.code}' is inactive and the value set '${vsLabel(vs)}' only allows active codes` });
    } else res.issues.push({ severity: 'warning', code: 'business-rule', text: `The concept '${item.code}' is inactive and its use should be reviewed` });
  }
  if (item.deprecated) res.issues.push({ severity: 'warning', code: 'business-rule', text: `The concept '${item.code}' is deprecated in the value set '${vsLabel(vs)}'` });
  checkDisplay(res, input.display, displays(item, opts.displayLanguage), `${system}#${item.code}`, opts.lenientDisplay);
  return finish(res);
}

// -- $lookup / $subsumes ------------------------------------------------------------------------------------

export function lookupCode(
  scope: Scope,
  system: string,
  code: string,
  version: string | undefined,
  displayLanguage: string[],
  properties: string[],
): Record<string, unknown>[] {
  const url = canonicalSystem(system);
  const cs = scope.codeSystem(url, version);
  if (url === UCUM && !cs?.get(code)) {
    const u = ucumValidate(code);
    if (!u.valid) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `'${code}' is not a valid UCUM code: ${u.message ?? 'invalid'}` }]);
    return [{ name: 'name', valueString: 'UCUM' }, { name: 'display', valueString: code }, ...(u.name ? [{ name: 'designation', part: [{ name: 'value', valueString: u.name }] }] : [])];
  }
  if (!cs) throw unknownCodeSystem(url, version, scope, 'so the code cannot be looked up');
  const def = cs.get(code);
  if (!def) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `Unknown code '${code}' in the CodeSystem '${url}'${cs.version ? ` version '${cs.version}'` : ''}` }]);
  const item = itemFrom(cs, def, scope);
  const d = chooseDisplay(def.display, cs.language, item.designations, displayLanguage);
  const want = (p: string) => !properties.length || properties.includes(p) || properties.includes('*');
  const params: Record<string, unknown>[] = [{ name: 'name', valueString: cs.name ?? cs.title ?? url }];
  if (cs.version) params.push({ name: 'version', valueString: cs.version });
  if (d.value) params.push({ name: 'display', valueString: d.value });
  if (def.definition && want('definition')) params.push({ name: 'definition', valueString: def.definition });
  if (want('abstract')) params.push({ name: 'abstract', valueBoolean: def.abstract });
  if (want('designation')) {
    const seen = new Set<string>();
    for (const x of item.designations) {
      const k = `${x.language}|${x.use?.code}|${x.value}`;
      if (seen.has(k)) continue;
      seen.add(k);
      params.push({
        name: 'designation',
        part: [
          ...(x.language ? [{ name: 'language', valueCode: x.language }] : []),
          ...(x.use ? [{ name: 'use', valueCoding: x.use }] : []),
          { name: 'value', valueString: x.value },
        ],
      });
    }
  }
  const prop = (codeName: string, value: Record<string, unknown>) => params.push({ name: 'property', part: [{ name: 'code', valueCode: codeName }, { name: 'value', ...value }] });
  if (want('inactive')) prop('inactive', { valueBoolean: def.inactive });
  for (const p of def.properties) {
    if (!want(p.code) || p.code === 'parent' || p.code === 'child' || p.code === 'inactive') continue;
    const v = p.value;
    prop(p.code, v.type === 'Coding' ? { valueCoding: v.value } : v.type === 'code' ? { valueCode: v.value } : v.type === 'string' ? { valueString: v.value } : v.type === 'integer' ? { valueInteger: v.value } : v.type === 'boolean' ? { valueBoolean: v.value } : v.type === 'decimal' ? { valueDecimal: v.value } : { valueDateTime: v.value });
  }
  if (want('parent')) for (const p of def.parents) prop('parent', { valueCode: p });
  if (want('child')) for (const c of def.children) prop('child', { valueCode: c });
  return params;
}

export function subsumes(scope: Scope, system: string, version: string | undefined, codeA: string, codeB: string): string {
  const url = canonicalSystem(system);
  const cs = scope.codeSystem(url, version);
  if (!cs) throw unknownCodeSystem(url, version, scope, 'so subsumption cannot be tested');
  if (cs.content !== 'complete') throw new FhirError(400, [{ severity: 'error', code: 'not-supported', diagnostics: `The CodeSystem '${url}' is held here as a ${cs.content} without its hierarchy: subsumption cannot be tested` }]);
  for (const c of [codeA, codeB]) if (!cs.get(c)) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `Unknown code '${c}' in the CodeSystem '${url}'` }]);
  const a = cs.get(codeA)!.code;
  const b = cs.get(codeB)!.code;
  if (a === b) return 'equivalent';
  if (cs.isA(b, a)) return 'subsumes';
  if (cs.isA(a, b)) return 'subsumed-by';
  return 'not-subsumed';
}

// -- $translate ---------------------------------------------------------------------------------------------

const R5_RELATIONSHIP: Record<string, string> = {
  'related-to': 'relatedto',
  equivalent: 'equivalent',
  'source-is-narrower-than-target': 'wider',
  'source-is-broader-than-target': 'narrower',
  'not-related-to': 'disjoint',
};

function equivalenceOf(t: Record<string, unknown>): string {
  if (typeof t.equivalence === 'string') return t.equivalence;
  if (typeof t.relationship === 'string') return R5_RELATIONSHIP[t.relationship] ?? 'relatedto';
  return 'equivalent';
}

const REVERSE: Record<string, string> = { wider: 'narrower', narrower: 'wider', subsumes: 'specializes', specializes: 'subsumes' };

export interface TranslateInput {
  codings: { system?: string; code: string; version?: string }[];
  conceptMap?: ConceptMap;
  sourceScope?: string;
  targetScope?: string;
  targetSystem?: string;
  reverse: boolean;
}

export interface TranslateMatch {
  equivalence: string;
  concept: { system?: string; code?: string; display?: string; version?: string };
  source: string;
  comment?: string;
}

/** The maps a $translate may use, found through the layers' indexes (or one given map's own index). */
function candidateEntries(scope: Scope, input: TranslateInput, sys: string | undefined, code: string): MapEntry[] {
  const indexes = input.conceptMap ? [translateIndexOf(input.conceptMap)] : scope.layers.map((l) => l.translateIndex());
  const out: MapEntry[] = [];
  for (let li = 0; li < indexes.length; li++) {
    const side = input.reverse ? indexes[li]!.reverse : indexes[li]!.forward;
    const lists = sys ? [side.get(sys)?.get(code), side.get('')?.get(code)] : [...side.values()].map((m) => m.get(code));
    for (const list of lists)
      for (const e of list ?? []) {
        // A map shadowed by a map with the same url|version in an earlier layer is not used.
        if (!input.conceptMap && li > 0 && e.cm.url && scope.layers.slice(0, li).some((l) => l.conceptMaps.get(e.cm.url!)?.some((m) => (m.version ?? '') === (e.cm.version ?? '')))) continue;
        out.push(e);
      }
  }
  return out;
}

export function translate(scope: Scope, input: TranslateInput): { result: boolean; message?: string; matches: TranslateMatch[] } {
  const sameScope = (a: string | undefined, b?: string) => !b || !a || splitCanonical(a).url === splitCanonical(b).url;
  const matches: TranslateMatch[] = [];
  const wantTarget = input.targetSystem ? canonicalSystem(input.targetSystem) : undefined;
  for (const coding of input.codings) {
    const sys = coding.system ? canonicalSystem(coding.system) : undefined;
    for (const { cm, group: g, element: el, target: t } of candidateEntries(scope, input, sys, coding.code)) {
      if (!input.conceptMap) {
        const src = cm.sourceUri ?? cm.sourceCanonical ?? (cm as { sourceScopeUri?: string }).sourceScopeUri ?? (cm as { sourceScopeCanonical?: string }).sourceScopeCanonical;
        const tgt = cm.targetUri ?? cm.targetCanonical ?? (cm as { targetScopeUri?: string }).targetScopeUri ?? (cm as { targetScopeCanonical?: string }).targetScopeCanonical;
        if (!input.reverse && (!sameScope(src, input.sourceScope) || !sameScope(tgt, input.targetScope))) continue;
        if (input.reverse && (!sameScope(tgt, input.sourceScope) || !sameScope(src, input.targetScope))) continue;
      }
      const label = cm.url ? `${cm.url}${cm.version ? `|${cm.version}` : ''}` : `ConceptMap/${cm.id}`;
      const gSource = g.source ? canonicalSystem(g.source) : undefined;
      const gTarget = g.target ? canonicalSystem(g.target) : undefined;
      const eq = equivalenceOf(t as unknown as Record<string, unknown>);
      if (!input.reverse) {
        if (wantTarget && gTarget && wantTarget !== gTarget) continue;
        matches.push({
          equivalence: eq,
          concept: { system: gTarget, ...(g.targetVersion ? { version: g.targetVersion } : {}), ...(t.code ? { code: t.code } : {}), ...(t.display ? { display: t.display } : {}) },
          source: label,
          ...(t.comment ? { comment: t.comment } : {}),
        });
      } else {
        if (wantTarget && gSource && wantTarget !== gSource) continue;
        matches.push({
          equivalence: REVERSE[eq] ?? eq,
          concept: { system: gSource, ...(g.sourceVersion ? { version: g.sourceVersion } : {}), ...(el.code ? { code: el.code } : {}), ...(el.display ? { display: el.display } : {}) },
          source: label,
          ...(t.comment ? { comment: t.comment } : {}),
        });
      }
    }
  }
  const positive = matches.filter((m) => !['unmatched', 'disjoint'].includes(m.equivalence));
  const what = input.codings.map((c) => `${c.system ?? ''}#${c.code}`).join(', ');
  return {
    result: positive.length > 0,
    ...(positive.length ? {} : { message: `No translation was found for ${what}${input.targetSystem ? ` to ${input.targetSystem}` : ''}${input.conceptMap ? ` in ${input.conceptMap.url ?? input.conceptMap.id}` : ''}` }),
    matches,
  };
}

export type { CodeSystem };

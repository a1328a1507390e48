/**
 * The profile layer of the validator: walks a resource against StructureDefinition snapshots (core
 * definitions in full mode, every profile in meta.profile, profiles asked for, type profiles on elements)
 * and reports cardinality, fixed/pattern values, slicing, bindings, invariants, extensions, references and
 * contained resources. Structure and primitive formats stay with the base walker (walker.ts), which always
 * runs first; this layer only reports what the base definitions alone do not (profile cardinalities tighter
 * than the base, for instance), so the two never report the same problem twice.
 */
import type { Issue, IssueCode, IssueSeverity } from '../fhir/outcome.ts';
import type { PackageRegistry } from '../packages/registry.ts';
import { BindingChecker, type Coded } from './bindings.ts';
import { globalProfiles } from './globals.ts';
import { effectiveExpression, evaluateInvariant } from './invariants.ts';
import { checkLimit, checkMaxLength } from './limits.ts';
import { decodedLength, QuestionnaireChecker } from './questionnaire.ts';
import { childIndex, StructureCache, stripVersion, type InvariantPlan, type PElement, type Structure } from './structure.ts';

type Json = Record<string, unknown>;

const CORE = 'http://hl7.org/fhir/StructureDefinition/';
const upperFirst = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const PRIMITIVES = new Set(['boolean', 'integer', 'decimal', 'positiveInt', 'unsignedInt', 'integer64', 'base64Binary', 'canonical', 'code', 'date', 'dateTime', 'id', 'instant', 'markdown', 'oid', 'string', 'time', 'uri', 'url', 'uuid', 'xhtml']);

/**
 * The options of a validation run: the one options type of `validateFull`, `ProfileValidator.validate`,
 * `$validate` (parameters `profile`, `display-mismatch`, `security-checks`, `no-html-in-markdown`,
 * `no-example-urls`) and `dsp-fhir validate` (flags of the same names); see `setValidationOption` in index.ts.
 */
export interface ValidationOptions {
  /** Validate every resource (root and nested) against its core definition: invariants, bindings (default true). */
  base?: boolean;
  /** Profiles asked for the root resource (e.g. $validate's `profile`). */
  profiles?: string[];
  /** Use the profiles each resource declares in meta.profile, and ImplementationGuide global profiles (default true). */
  declared?: boolean;
  /** Severity of a Coding display that matches no known display or designation (default warning). */
  displayMismatch?: 'warning' | 'error';
  /** Refuse text that looks like HTML tags in string elements (HL7's "security checks"; default off). */
  securityChecks?: boolean;
  /** Refuse unescaped HTML tags in markdown (default off). */
  noHtmlInMarkdown?: boolean;
  /** Refuse example URLs (example.org, example.com...) in uri, url and canonical values and references (default off). */
  noExampleUrls?: boolean;
}

const EXAMPLE_URL_RE = /^https?:\/\/([a-z0-9-]+\.)*example\.(org|com|net)(\/|:|$)/i;

/** Elements allowed in narrative XHTML (R4 narrative.html: basic formatting only). */
const XHTML_ELEMENTS = new Set(
  'a abbr acronym address b bdo big blockquote br caption cite code col colgroup dd del dfn div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd li map area ol p pre q s samp small span strike strong sub sup table tbody td tfoot th thead tr tt u ul var'.split(' '),
);
const TAG_RE = /<(\/?)([A-Za-z][A-Za-z0-9:_.-]*)((?:\s+[^\s=>/]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*\/?>/g;
const ATTR_RE = /([^\s=>/]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?/g;

/** Narrative rules (txt-1): only basic formatting elements, no event handler attributes, no script URLs. */
export function xhtmlProblems(div: string): string[] {
  const problems: string[] = [];
  const body = div.replace(/<!--[\s\S]*?-->/g, '').replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, '');
  for (const m of body.matchAll(TAG_RE)) {
    if (m[1]) continue;
    const name = m[2]!.includes(':') ? m[2]!.slice(m[2]!.indexOf(':') + 1) : m[2]!;
    if (!XHTML_ELEMENTS.has(name.toLowerCase())) problems.push(`the element <${m[2]}> is not allowed in narrative (txt-1)`);
    for (const a of (m[3] ?? '').matchAll(ATTR_RE)) {
      const an = a[1]!.toLowerCase();
      const av = (a[2] ?? '').replace(/^["']|["']$/g, '').trim().toLowerCase();
      if (an.startsWith('on')) problems.push(`the attribute ${a[1]} on <${m[2]}> is not allowed in narrative (txt-1: no event handlers)`);
      else if ((an === 'href' || an === 'src') && av.startsWith('javascript:')) problems.push(`a javascript: URL on <${m[2]}> is not allowed in narrative (txt-1)`);
    }
  }
  return problems;
}

/** Any tag-like text in markdown (unescaped `<name ...>` or `</name>`). */
const MARKDOWN_TAG_RE = /<\/?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?\/?>/;
const HTML_TAG_RE = /<\/?(a|b|i|p|br|div|span|script|img|iframe|style|table|tr|td|em|strong|ul|ol|li|h[1-6]|font|form|input|object|embed|link|meta|svg)(\s[^>]*)?\/?>/i;

interface Item {
  v: unknown;
  /** The `_x` object of a primitive. */
  x?: Json;
  type: string;
  path: string;
}

interface Ctx {
  /** The resource the current node belongs to (%resource) and the outermost one (%rootResource). */
  resource: Json;
  root: Json;
  run: Run;
  /** Element path of the primitive whose `_x` object is being walked (extension contexts). */
  primitiveHost?: string;
}

interface Located {
  resource: Json;
  path: string;
}

interface Run {
  opts: ValidationOptions;
  /** fullUrl -> entry resource, for the outermost Bundle. */
  bundle?: Map<string, Located>;
  /** Bundle.type of the outermost Bundle. */
  bundleType?: string;
  /** Validation results of a resource against a profile (errors decide conformance). */
  results: WeakMap<object, Map<string, Issue[]>>;
  depth: number;
  /** Per slice: the errors of the last value that had the slice's type but failed its profile. */
  profileMisses: Map<PElement, { path: string; profile: string; errors: Issue[] }>;
  /** Invariant outcomes by node and (base, expression): several profiles share most constraints. */
  invariants: WeakMap<object, Map<string, boolean | Error>>;
}

function issue(severity: IssueSeverity, code: IssueCode, path: string, message: string): Issue {
  return { severity, code, diagnostics: `${path}: ${message}`, expression: [path] };
}

/** True when `value` contains `pattern` (FHIR pattern semantics; arrays: each pattern item matched by some value item). */
export function matchesPattern(value: unknown, pattern: unknown): boolean {
  if (pattern === null || typeof pattern !== 'object') return value === pattern;
  if (Array.isArray(pattern)) {
    if (!Array.isArray(value)) return pattern.length === 1 && matchesPattern(value, pattern[0]);
    return pattern.every((p) => value.some((v) => matchesPattern(v, p)));
  }
  if (!isObject(value)) return false;
  for (const [k, p] of Object.entries(pattern)) if (!matchesPattern(value[k], p)) return false;
  return true;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as Json);
  const kb = Object.keys(b as Json);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Json)[k], (b as Json)[k]));
}

const show = (v: unknown) => {
  const s = JSON.stringify(v);
  return s.length > 120 ? s.slice(0, 117) + '...' : s;
};

/** Splits a discriminator path into steps, keeping `extension('http://...')` whole. */
function steps(path: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  let quote = false;
  for (const ch of path) {
    if (ch === "'") quote = !quote;
    if (!quote && ch === '(') depth++;
    if (!quote && ch === ')') depth--;
    if (ch === '.' && depth === 0 && !quote) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

const REF_RE = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** An element's invariants prepared once: expression actually evaluated, base path, memo key. */
function prepareInvariants(el: PElement): InvariantPlan[] {
  const base = el.path.replace(/\[x\]/g, '');
  const plans: InvariantPlan[] = [];
  for (const c of el.constraints) {
    const expr = effectiveExpression(c.key, c.expression);
    if (!expr) continue;
    plans.push({ key: c.key, severity: c.severity, human: c.human, expr, base, memoKey: base + '\u0000' + expr, containedOnly: c.key === 'dom-2' || c.key === 'dom-4' || c.key === 'dom-5', atRoot: el.path.indexOf('.') < 0 });
  }
  el.invariants = plans;
  return plans;
}

export class ProfileValidator {
  readonly registry: PackageRegistry;
  readonly structures: StructureCache;
  readonly bindings: BindingChecker;
  readonly questionnaires: QuestionnaireChecker;

  constructor(registry: PackageRegistry) {
    this.registry = registry;
    this.structures = new StructureCache(registry);
    this.bindings = new BindingChecker(registry);
    this.questionnaires = new QuestionnaireChecker(registry, this.bindings);
  }

  /** Validates a resource; issues are appended to `issues`. */
  validate(resource: unknown, opts: ValidationOptions, issues: Issue[]): void {
    if (!isObject(resource) || typeof resource.resourceType !== 'string') return;
    const run: Run = { opts: { ...opts, base: opts.base !== false }, results: new WeakMap(), depth: 0, profileMisses: new Map(), invariants: new WeakMap() };
    const rt = resource.resourceType;
    if (rt === 'Bundle') {
      run.bundle = this.indexBundle(resource, rt);
      run.bundleType = typeof resource.type === 'string' ? resource.type : undefined;
    }
    const found: Issue[] = [];
    for (const p of opts.profiles ?? []) {
      if (!this.structures.get(p)) found.push(issue('error', 'not-found', rt, this.structures.problems.get(stripVersion(p)) ? `the profile ${p} cannot be used: ${this.structures.problems.get(stripVersion(p))}` : `the profile ${p} is not known to this server`));
    }
    this.resource(resource, rt, resource, run, opts.profiles ?? [], found);
    const seen = new Set<string>();
    for (const i of found) {
      const k = `${i.severity}|${i.diagnostics}`;
      if (seen.has(k)) continue;
      seen.add(k);
      issues.push(i);
    }
  }

  private indexBundle(bundle: Json, path: string): Map<string, Located> {
    const map = new Map<string, Located>();
    const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
    entries.forEach((e, i) => {
      if (!isObject(e) || !isObject(e.resource)) return;
      const loc = { resource: e.resource, path: `${path}.entry[${i}].resource` };
      if (typeof e.fullUrl === 'string') map.set(e.fullUrl, loc);
      const r = e.resource;
      if (typeof r.id === 'string') map.set(`${String(r.resourceType)}/${r.id}`, loc);
    });
    return map;
  }

  // ---- resources ----

  /** Validates one resource (root, entry or contained) against the definitions that apply to it. */
  private resource(res: Json, path: string, root: Json, run: Run, extra: readonly string[], out: Issue[]): void {
    const rt = res.resourceType;
    if (typeof rt !== 'string') return;
    const urls: string[] = [];
    for (const p of extra) if (!urls.includes(stripVersion(p))) urls.push(stripVersion(p));
    const meta = isObject(res.meta) ? res.meta : undefined;
    if (run.opts.declared !== false && Array.isArray(meta?.profile)) {
      meta.profile.forEach((p, i) => {
        if (typeof p !== 'string') return;
        const u = stripVersion(p);
        if (this.structures.get(u)) {
          if (!urls.includes(u)) urls.push(u);
        } else {
          const problem = this.structures.problems.get(u);
          out.push(issue('warning', 'not-found', `${path}.meta.profile[${i}]`, problem ? `the profile ${p} cannot be used: ${problem}` : `the profile ${p} is not known to this server: the resource was not checked against it`));
        }
      });
    }
    if (run.opts.declared !== false) for (const g of globalProfiles(this.registry, rt)) if (!urls.includes(stripVersion(g))) urls.push(stripVersion(g));
    const structures: Structure[] = [];
    for (const u of urls) {
      const s = this.structures.get(u);
      if (!s) continue;
      if (s.type !== rt && s.sd.kind === 'resource') {
        out.push(issue('error', 'structure', path, `the profile ${u} is for ${s.type} resources, not ${rt}`));
        continue;
      }
      structures.push(s);
    }
    if (run.opts.base && !structures.some((s) => s.type === rt && s.sd.kind === 'resource')) {
      const core = this.structures.ofType(rt);
      if (core) structures.unshift(core);
    }
    if (structures.length === 0) {
      // Nothing applies here, but nested resources may declare profiles of their own.
      this.nestedOnly(res, path, root, run, out);
      return;
    }
    for (const s of structures) out.push(...this.resourceAgainst(res, path, root, run, s));
    if (res === root && !(isObject(res.text) && res.text.div) && rt !== 'Bundle' && rt !== 'Binary' && rt !== 'Parameters') {
      out.push(issue('warning', 'invariant', path, 'Constraint failed: dom-6: a resource should have narrative for robust management (text.div)'));
    }
    if (Array.isArray(res.contained) && res.contained.length) this.dom3(res, path, out);
    if (rt === 'QuestionnaireResponse' && run.opts.base) this.questionnaires.check(res, path, out);
    if (rt === 'Bundle' && run.opts.base) this.bundleRules(res, path, out);
    if (rt === 'SearchParameter' && run.opts.base && res.type === 'composite' && (Array.isArray(res.component) ? res.component.length : 0) < 2) {
      out.push(issue('error', 'invalid', path, `a SearchParameter of type 'composite' must define two or more components`));
    }
  }

  /** Bundle rules of R4 bundle.html that no invariant states: absolute fullUrls, single links, search results. */
  private bundleRules(b: Json, path: string, out: Issue[]): void {
    const links = Array.isArray(b.link) ? b.link : [];
    const seen = new Set<string>();
    links.forEach((l, i) => {
      if (!isObject(l) || typeof l.relation !== 'string') return;
      if (['self', 'first', 'previous', 'prev', 'next', 'last'].includes(l.relation)) {
        if (seen.has(l.relation)) out.push(issue('error', 'invalid', `${path}.link[${i}]`, `the link relation '${l.relation}' may occur only once`));
        seen.add(l.relation);
      }
    });
    const entries = Array.isArray(b.entry) ? b.entry : [];
    entries.forEach((e, i) => {
      if (!isObject(e)) return;
      if (typeof e.fullUrl === 'string' && !/^[a-z][a-z0-9+.\-]*:/i.test(e.fullUrl)) {
        out.push(issue('error', 'invalid', `${path}.entry[${i}]`, `the fullUrl must be an absolute URL (not '${e.fullUrl}')`));
      }
      if (b.type === 'searchset' && isObject(e.resource)) {
        const mode = isObject(e.search) ? e.search.mode : undefined;
        if (mode === 'outcome' && e.resource.resourceType !== 'OperationOutcome') {
          out.push(issue('error', 'invalid', `${path}.entry[${i}].resource`, `an entry with search mode 'outcome' must be an OperationOutcome, not a ${String(e.resource.resourceType)}`));
        } else if (mode !== 'outcome' && e.resource.resourceType !== 'OperationOutcome' && typeof e.resource.id !== 'string') {
          out.push(issue('error', 'required', `${path}.entry[${i}].resource`, `search results must have ids`));
        }
      }
    });
  }

  /** Issues of a resource against one structure (cached per run: slicing by profile asks the same question). */
  private resourceAgainst(res: Json, path: string, root: Json, run: Run, s: Structure): Issue[] {
    let m = run.results.get(res);
    if (!m) run.results.set(res, (m = new Map()));
    const hit = m.get(s.url);
    if (hit) return hit;
    const found: Issue[] = [];
    m.set(s.url, found); // breaks cycles
    const ctx: Ctx = { resource: res, root, run };
    this.value(s.root, { v: res, type: s.type, path }, ctx, found);
    return found;
  }

  private conforms(res: Json, path: string, root: Json, run: Run, url: string): boolean {
    const s = this.structures.get(url);
    if (!s) return false;
    if (s.sd.kind === 'resource' && s.type !== res.resourceType) return false;
    if (!run.results.get(res)?.has(s.url) && this.quickReject(s, res)) return false;
    return !this.resourceAgainst(res, path, root, run, s).some((i) => i.severity === 'error' || i.severity === 'fatal');
  }

  /**
   * A cheap first look before a full conformance check (slicing by profile tries many profiles): a required
   * top-level element or required slice with a fixed/pattern value that no value matches means no conformance.
   */
  private quickReject(s: Structure, res: Json): boolean {
    let checks = s.quick;
    if (!checks) {
      checks = [];
      for (const c of s.root.children) {
        if (c.isChoice) continue;
        const want = c.fixed ?? c.pattern;
        if (c.min >= 1 && want !== undefined) checks.push({ key: c.name, want });
        else if (c.min >= 1 && c.min > c.baseMin) checks.push({ key: c.name, want: undefined });
        for (const sl of c.slices) {
          const w = sl.fixed ?? sl.pattern;
          if (sl.min >= 1 && w !== undefined) checks.push({ key: c.name, want: w });
        }
        // A required binding on a coded element: a code certainly outside the value set means no conformance.
        if (c.binding?.strength === 'required' && c.binding.valueSet && (c.types[0]?.code === 'CodeableConcept' || c.types[0]?.code === 'Coding')) {
          checks.push({ key: c.name, want: undefined, valueSet: stripVersion(c.binding.valueSet), coded: c.types[0].code });
        }
      }
      s.quick = checks;
    }
    for (const { key, want, valueSet, coded } of checks) {
      const v = res[key];
      if (valueSet) {
        if (v === undefined) continue;
        for (const one of Array.isArray(v) ? v : [v]) {
          if (!isObject(one)) continue;
          const codings = coded === 'Coding' ? [one] : Array.isArray(one.coding) ? one.coding.filter(isObject) : [];
          if (codings.length && codings.every((cd) => this.bindings.checkCode(valueSet, cd as Coded).ok === false)) return true;
        }
        continue;
      }
      // A primitive present only through its extensions (`_birthDate` with data-absent-reason) is present.
      if (v === undefined) {
        if (want !== undefined || res[`_${key}`] === undefined) return true;
        continue;
      }
      if (want === undefined) continue;
      const ok = Array.isArray(v) ? v.some((x) => matchesPattern(x, want)) : matchesPattern(v, want);
      if (!ok) return true;
    }
    return false;
  }

  private nestedOnly(res: Json, path: string, root: Json, run: Run, out: Issue[]): void {
    if (Array.isArray(res.contained)) res.contained.forEach((c, i) => isObject(c) && this.resource(c, `${path}.contained[${i}]`, root, run, [], out));
    if (res.resourceType === 'Bundle' && Array.isArray(res.entry)) {
      res.entry.forEach((e, i) => isObject(e) && isObject(e.resource) && this.resource(e.resource, `${path}.entry[${i}].resource`, e.resource, run, [], out));
    }
    if (res.resourceType === 'Parameters' && Array.isArray(res.parameter)) {
      res.parameter.forEach((p, i) => isObject(p) && isObject(p.resource) && this.resource(p.resource, `${path}.parameter[${i}].resource`, p.resource, run, [], out));
    }
  }

  /** dom-3: every contained resource is referenced from the rest of the resource (or references it back). */
  private dom3(res: Json, path: string, out: Issue[]): void {
    const refs = new Set<string>();
    let backRef = false;
    const scan = (v: unknown, inContained: boolean) => {
      if (Array.isArray(v)) for (const x of v) scan(x, inContained);
      else if (isObject(v)) {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'contained' && !inContained && v === res) continue;
          if (typeof x === 'string' && x.charCodeAt(0) === 35) {
            if (x === '#') backRef = true;
            refs.add(x.slice(1));
          } else if (typeof x === 'object') scan(x, inContained);
        }
      }
    };
    scan(res, false);
    const contained = res.contained as unknown[];
    // References between contained resources count when the chain starts from the container.
    const reached = new Set<string>(refs);
    let grew = true;
    const inner = new Map<string, Set<string>>();
    for (const c of contained) {
      if (!isObject(c) || typeof c.id !== 'string') continue;
      const s = new Set<string>();
      const sc = (v: unknown) => {
        if (Array.isArray(v)) v.forEach(sc);
        else if (isObject(v)) for (const x of Object.values(v)) typeof x === 'string' ? x.charCodeAt(0) === 35 && (x === '#' ? (backRef = true) : s.add(x.slice(1))) : sc(x);
      };
      sc(c);
      inner.set(c.id, s);
    }
    while (grew) {
      grew = false;
      for (const [id, s] of inner) if (reached.has(id)) for (const t of s) if (!reached.has(t)) (reached.add(t), (grew = true));
    }
    contained.forEach((c, i) => {
      if (!isObject(c) || typeof c.id !== 'string') return;
      if (reached.has(c.id) || (backRef && inner.get(c.id)?.size === 0 && false)) return;
      if (backRef && [...inner.values()].length && JSON.stringify(c).includes('"#"')) return;
      out.push(issue('error', 'invariant', `${path}.contained[${i}]`, `Constraint failed: dom-3: the contained resource ${String(c.resourceType)}/${c.id} is not referenced from the rest of the resource (and does not reference it)`));
    });
  }

  // ---- elements ----

  /** Checks one value against an element definition, then its children. */
  private value(el: PElement, item: Item, ctx: Ctx, out: Issue[]): void {
    const v = item.v;
    // fixed / pattern
    if (el.fixed !== undefined && v !== undefined) {
      if (!deepEqual(v, el.fixed)) out.push(issue('error', 'value', item.path, `value ${show(v)} does not equal the fixed value ${show(el.fixed)} required by the profile`));
    } else if (el.pattern !== undefined && v !== undefined) {
      if (!matchesPattern(v, el.pattern)) out.push(issue('error', 'value', item.path, `value ${show(v)} does not match the pattern ${show(el.pattern)} required by the profile`));
    }
    if (v !== undefined) {
      if (el.minValue) this.limit('min', el, item, out);
      if (el.maxValue) this.limit('max', el, item, out);
      if (el.maxLength !== undefined) {
        const p = checkMaxLength(v, el.maxLength);
        if (p) out.push(issue(p.severity, 'value', item.path, p.message));
      }
    }
    if (el.binding?.valueSet && v !== undefined) this.binding(el, item, out);
    if ((item.type === 'uri' || item.type === 'url' || item.type === 'canonical') && typeof v === 'string' && v.charCodeAt(0) === 117 /* u */) {
      if (v.startsWith('urn:uuid:') && !/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(v)) out.push(issue('error', 'value', item.path, `'${v}' is not a valid urn:uuid (a UUID in lower-case hexadecimal)`));
      else if (v.startsWith('urn:oid:') && !/^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$/.test(v)) out.push(issue('error', 'value', item.path, `'${v}' is not a valid urn:oid`));
    }
    if (ctx.run.opts.noExampleUrls && typeof v === 'string' && (item.type === 'uri' || item.type === 'url' || item.type === 'canonical') && EXAMPLE_URL_RE.test(v)) {
      out.push(issue('error', 'value', item.path, `example URLs are not allowed here (${v})`));
    }
    if (item.type === 'xhtml' && typeof v === 'string') for (const p of xhtmlProblems(v)) out.push(issue('error', 'invariant', item.path, p));
    if (typeof v === 'string' && ((item.type === 'string' && ctx.run.opts.securityChecks) || (item.type === 'markdown' && (ctx.run.opts.noHtmlInMarkdown || ctx.run.opts.securityChecks)))) {
      const m = (item.type === 'markdown' ? MARKDOWN_TAG_RE : HTML_TAG_RE).exec(v);
      if (m) out.push(issue('error', 'value', item.path, `the ${item.type} contains text that looks like an HTML tag (${m[0].slice(0, 40)}), which is not allowed here`));
    }
    if (item.type === 'Attachment' && isObject(v) && typeof v.data === 'string' && typeof v.size === 'number') {
      const actual = decodedLength(v.data);
      if (actual !== v.size) out.push(issue('error', 'value', item.path, `the stated attachment size ${v.size} does not match the size of its data (${actual} bytes)`));
    }
    if (item.type === 'Coding' && isObject(v) && typeof v.system === 'string' && !/^[a-z][a-z0-9+.\-]*:/i.test(v.system)) {
      out.push(issue('error', 'value', `${item.path}.system`, `Coding.system must be an absolute URI, not a local reference ('${v.system}')`));
    }
    if (item.type === 'Coding' && isObject(v) && typeof v.display === 'string' && typeof v.code === 'string' && typeof v.system === 'string') this.display(v, item.path, ctx, out);
    this.constraintsOf(el, item, ctx, out);
    const type = item.type;
    if (type === 'Extension') this.extension(el, item, ctx, out);
    if (type === 'Reference' && isObject(v)) this.reference(el, v, item.path, ctx, out);
    // Nested resources: their own definitions and profiles.
    if (isObject(v) && typeof v.resourceType === 'string' && v !== ctx.resource && el.path.indexOf('.') > 0) {
      const profiles = el.types.flatMap((t) => t.profiles);
      const root = el.name === 'contained' ? ctx.root : v;
      if (profiles.length > 1) {
        const ok = profiles.some((p) => this.conforms(v, item.path, root, ctx.run, p));
        if (!ok) out.push(issue('error', 'structure', item.path, `the resource does not conform to any of the profiles ${profiles.join(', ')}`));
        this.resource(v, item.path, root, ctx.run, [], out);
      } else this.resource(v, item.path, root, ctx.run, profiles, out);
      return;
    }
    // Type profiles on complex elements (not extensions: handled above).
    if (type !== 'Extension' && isObject(v)) {
      const profiles = el.types.find((t) => t.code === type)?.profiles ?? [];
      if (profiles.length === 1) {
        const s = this.structures.get(profiles[0]!);
        if (s) this.children(s.root, v, item.path, ctx, out);
        else out.push(issue('warning', 'not-found', item.path, `the type profile ${profiles[0]} is not known to this server`));
      } else if (profiles.length > 1) {
        const ok = profiles.some((p) => {
          const s = this.structures.get(p);
          if (!s) return false;
          const tmp: Issue[] = [];
          this.children(s.root, v, item.path, ctx, tmp);
          return !tmp.some((i) => i.severity === 'error');
        });
        if (!ok) out.push(issue('error', 'structure', item.path, `the value does not conform to any of the profiles ${profiles.join(', ')}`));
      }
    }
    // Children
    if (isObject(v)) {
      const holder = this.childHolder(el, type);
      if (holder && holder !== el && holder !== el.ref && holder.path.indexOf('.') < 0) this.constraintsOf(holder, item, ctx, out);
      if (holder) this.children(holder, v, item.path, ctx, out);
    } else if (item.x) {
      const holder = el.children.length ? el : this.structures.ofType(type)?.root;
      if (holder) this.children(holder, item.x, item.path, holder === el ? ctx : { ...ctx, primitiveHost: el.path }, out);
    }
  }

  /** The invariants of an element definition, evaluated on one value. */
  private constraintsOf(el: PElement, item: Item, ctx: Ctx, out: Issue[]): void {
    const plans = el.invariants ?? prepareInvariants(el);
    if (plans.length === 0) return;
    const v = item.v;
    const isObj = typeof v === 'object' && v !== null;
    let memo: Map<string, boolean | Error> | undefined;
    for (const c of plans) {
      // dom-2/4/5 only look at contained resources: nothing to evaluate without them.
      if (c.containedOnly && isObj && (v as Json).contained === undefined) continue;
      const resource = c.atRoot && isObject(v) && v.resourceType ? v : ctx.resource;
      let ok: boolean | Error | undefined;
      if (isObj) {
        memo ??= ctx.run.invariants.get(v as object);
        if (!memo) ctx.run.invariants.set(v as object, (memo = new Map()));
        ok = memo.get(c.memoKey);
      }
      if (ok === undefined) {
        ok = evaluateInvariant(c.base, c.expr, v, resource, ctx.root);
        memo?.set(c.memoKey, ok);
      }
      if (ok instanceof Error) {
        out.push(issue('warning', 'processing', item.path, `the invariant ${c.key} could not be evaluated (${ok.message.split('\n')[0]})`));
      } else if (!ok) {
        out.push(issue(c.severity === 'error' ? 'error' : 'warning', 'invariant', item.path, `Constraint failed: ${c.key}: '${c.human}'`));
      }
    }
  }

  /** The element whose children describe a complex value. */
  private childHolder(el: PElement, type: string): PElement | undefined {
    if (el.children.length) return el;
    if (el.ref) return el.ref;
    if (el.path.indexOf('.') < 0) return undefined; // a root without children: nothing to check
    if (type === 'Resource' || type === 'BackboneElement' || type === 'Element') return undefined;
    return this.structures.ofType(type)?.root;
  }

  /** Groups an object's properties by child element and checks each child. */
  private children(holder: PElement, obj: Json, path: string, ctx: Ctx, out: Issue[]): void {
    const { byName, choices } = childIndex(holder);
    const groups = new Map<PElement, Item[]>();
    for (const key of Object.keys(obj)) {
      if (key === 'resourceType' || key === 'fhir_comments') continue;
      const isExt = key.charCodeAt(0) === 95;
      const name = isExt ? key.slice(1) : key;
      if (isExt && obj[name] !== undefined) continue; // handled with its value
      let el = byName.get(name);
      let type: string | undefined;
      let step = name;
      if (el) type = el.types.length === 1 ? el.types[0]!.code : (el.types[0]?.code ?? 'BackboneElement');
      else {
        for (const c of choices) {
          const prefix = c.name.slice(0, -3);
          if (name.length > prefix.length && name.startsWith(prefix)) {
            const suffix = name.slice(prefix.length);
            const t = c.types.find((t) => upperFirst(t.code) === suffix);
            if (t) {
              el = c;
              type = t.code;
              step = `${prefix}.ofType(${t.code})`;
              break;
            }
            if (/^[A-Z]/.test(suffix) && c.types.length) {
              out.push(issue('error', 'structure', `${path}.${prefix}`, `the type ${suffix} is not allowed for ${c.name} here: the profile allows ${c.types.map((t) => t.code).join(', ')}`));
              el = undefined;
              break;
            }
          }
        }
      }
      if (!el || !type) continue;
      let list = groups.get(el);
      if (!list) groups.set(el, (list = []));
      const value = isExt ? undefined : obj[key];
      const ext = obj['_' + name];
      if (Array.isArray(value) || Array.isArray(ext)) {
        const vs = Array.isArray(value) ? value : [];
        const xs = Array.isArray(ext) ? ext : [];
        const n = Math.max(vs.length, xs.length);
        for (let i = 0; i < n; i++) {
          const v = vs[i] ?? undefined;
          const x = isObject(xs[i]) ? (xs[i] as Json) : undefined;
          if (v === null && !x) continue;
          list.push({ v: v === null ? undefined : v, x, type, path: `${path}.${step}[${i}]` });
        }
      } else if (value !== undefined || isObject(ext)) {
        list.push({ v: value, x: isObject(ext) ? ext : undefined, type, path: `${path}.${step}` });
      }
    }
    for (const c of holder.children) {
      const items = groups.get(c) ?? [];
      this.element(c, items, path, ctx, out);
    }
  }

  private element(el: PElement, items: Item[], parentPath: string, ctx: Ctx, out: Issue[]): void {
    const n = items.length;
    const name = el.isChoice ? el.name.slice(0, -3) : el.name;
    if (n < el.min && el.min > el.baseMin) {
      out.push(issue('error', 'required', `${parentPath}.${name}`, `${el.path} requires at least ${el.min} item(s) in this profile, found ${n}`));
    }
    if (n > el.max && el.max < el.baseMax) {
      out.push(issue('error', 'structure', `${parentPath}.${name}`, `${el.path} allows at most ${el.max === 0 ? '0 items (prohibited' : el.max + ' item(s) (found ' + n}) in this profile${el.max === 0 ? ', found ' + n : ''}`));
    }
    if (n === 0) return;
    if (el.slicing && el.slices.length) this.slicing(el, items, parentPath, ctx, out);
    else for (const it of items) this.value(el, it, ctx, out);
  }

  // ---- slicing ----

  private slicing(el: PElement, items: Item[], parentPath: string, ctx: Ctx, out: Issue[]): void {
    const slicing = el.slicing!;
    const counts = new Array<number>(el.slices.length).fill(0);
    let lastSlice = -1;
    const name = el.isChoice ? el.name.slice(0, -3) : el.name;
    for (const it of items) {
      let idx = -1;
      for (let s = 0; s < el.slices.length; s++) {
        if (this.inSlice(el, el.slices[s]!, it, ctx)) {
          idx = s;
          break;
        }
      }
      if (idx < 0) {
        if (slicing.rules === 'closed') out.push(issue('error', 'structure', it.path, `this ${name} matches none of the slices (${el.slices.map((s) => s.sliceName).join(', ')}) and the slicing of ${el.path} is closed`));
        if (slicing.ordered && slicing.rules === 'openAtEnd') lastSlice = el.slices.length;
        this.value(el, it, ctx, out);
        continue;
      }
      counts[idx]!++;
      if (slicing.ordered) {
        if (idx < lastSlice) out.push(issue('error', 'structure', it.path, `slice ${el.slices[idx]!.sliceName} is out of order: the slicing of ${el.path} is ordered`));
        else lastSlice = idx;
      }
      this.value(el.slices[idx]!, it, ctx, out);
    }
    el.slices.forEach((s, i) => {
      const c = counts[i]!;
      if (c < s.min) {
        const miss = ctx.run.profileMisses.get(s);
        const why = miss ? `; ${miss.path} has the right type but does not conform to ${miss.profile}: ${miss.errors.slice(0, 3).map((e) => e.diagnostics).join('; ')}${miss.errors.length > 3 ? ` (and ${miss.errors.length - 3} more)` : ''}` : '';
        out.push(issue('error', 'required', `${parentPath}.${name}`, `slice '${s.sliceName}' of ${el.path} requires at least ${s.min} item(s), found ${c}${why}`));
      }
      if (c > s.max) out.push(issue('error', 'structure', `${parentPath}.${name}`, `slice '${s.sliceName}' of ${el.path} allows at most ${s.max} item(s), found ${c}`));
    });
  }

  private inSlice(el: PElement, slice: PElement, it: Item, ctx: Ctx): boolean {
    const discs = el.slicing!.discriminator;
    if (discs.length === 0) return false;
    for (const d of discs) if (!this.discriminates(d.type, d.path, slice, it, ctx, discs.length > 1)) return false;
    return true;
  }

  private discriminates(kind: string, path: string, slice: PElement, it: Item, ctx: Ctx, multi = false): boolean {
    const target = this.defAt(slice, path);
    const values = this.valuesAt(it, path, ctx);
    switch (kind) {
      case 'value':
      case 'pattern': {
        let expected = target?.fixed ?? target?.pattern;
        if (expected === undefined && path === 'url' && (target ?? slice).types[0]?.profiles[0]) expected = (target ?? slice).types[0]!.profiles[0];
        if (expected === undefined && target?.binding?.strength === 'required' && target.binding.valueSet) {
          return values.some((v) => typeof v.v === 'string' && this.bindings.checkCode(target.binding!.valueSet!, { code: v.v }).ok === true);
        }
        // A slice that sets no value for one of several discriminators is not constrained by that one.
        if (expected === undefined) return multi;
        return values.some((v) => matchesPattern(v.v, expected));
      }
      case 'exists': {
        const t = target ?? slice;
        if (t.max === 0) return values.length === 0;
        if (t.min >= 1) return values.length > 0;
        return true;
      }
      case 'type': {
        const t = target ?? slice;
        const allowed = path.endsWith('resolve()') ? t.types.flatMap((x) => x.targetProfiles.map((p) => this.typeOfProfile(p))) : t.types.map((x) => x.code);
        return values.some((v) => allowed.includes(v.type));
      }
      case 'profile': {
        const t = target ?? slice;
        const profiles = path.endsWith('resolve()') ? t.types.flatMap((x) => x.targetProfiles) : t.types.flatMap((x) => x.profiles);
        if (!profiles.length) return false;
        return values.some((v) => {
          if (!isObject(v.v)) return false;
          const r = v.v;
          if (typeof r.resourceType === 'string') {
            if (profiles.some((p) => this.conforms(r, v.path, r, ctx.run, p))) return true;
            const p0 = profiles.find((p) => this.structures.get(p)?.type === r.resourceType);
            const found = p0 ? ctx.run.results.get(r)?.get(p0) : undefined;
            if (p0 && found) ctx.run.profileMisses.set(slice, { path: v.path, profile: p0, errors: found.filter((i) => i.severity === 'error') });
            return false;
          }
          return profiles.some((p) => {
            const s = this.structures.get(p);
            if (!s) return false;
            const tmp: Issue[] = [];
            this.children(s.root, r, v.path, ctx, tmp);
            return !tmp.some((i) => i.severity === 'error');
          });
        });
      }
      default:
        return false;
    }
  }

  private typeOfProfile(url: string): string {
    if (url.startsWith(CORE) && /^[A-Z]/.test(url.charAt(CORE.length))) return url.slice(CORE.length);
    return this.structures.get(url)?.type ?? url;
  }

  /** The element definition at a discriminator path below a slice. */
  private defAt(slice: PElement, path: string): PElement | undefined {
    let cur: PElement | undefined = slice;
    for (const st of steps(path)) {
      if (!cur) return undefined;
      if (st === '$this' || st === 'resolve()') continue;
      if (st.startsWith('ofType(') || st.startsWith('as(')) continue;
      const m = /^extension\('([^']+)'\)$/.exec(st);
      let holder: PElement | undefined = cur.children.length ? cur : this.childHolder(cur, cur.types[0]?.code ?? '');
      if (!holder) return undefined;
      if (m) {
        const ext: PElement | undefined = holder.children.find((c) => c.name === 'extension');
        cur = ext?.slices.find((s) => s.types[0]?.profiles[0] === m[1] || s.children.find((c) => c.name === 'url')?.fixed === m[1]);
        continue;
      }
      const next: PElement | undefined = holder.children.find((c) => c.name === st || (c.isChoice && c.name.slice(0, -3) === st));
      cur = next;
    }
    return cur;
  }

  /** Values at a discriminator path (a FHIRPath subset: names, ofType, extension('url'), resolve()). */
  private valuesAt(it: Item, path: string, ctx: Ctx): Item[] {
    let cur: Item[] = [it];
    for (const st of steps(path)) {
      const next: Item[] = [];
      if (st === '$this') continue;
      if (st === 'resolve()') {
        for (const c of cur) {
          if (!isObject(c.v) || typeof c.v.reference !== 'string') continue;
          const t = this.resolveRef(c.v.reference, ctx);
          if (t?.resource) next.push({ v: t.resource, type: String(t.resource.resourceType), path: t.path });
        }
      } else if (st.startsWith('ofType(') || st.startsWith('as(')) {
        const want = st.slice(st.indexOf('(') + 1, -1);
        for (const c of cur) if (c.type === want) next.push(c);
      } else {
        const m = /^extension\('([^']+)'\)$/.exec(st);
        for (const c of cur) {
          const o = isObject(c.v) ? c.v : c.x;
          if (!o) continue;
          if (m) {
            const exts = Array.isArray(o.extension) ? o.extension : [];
            exts.forEach((e, i) => isObject(e) && e.url === m[1] && next.push({ v: e, type: 'Extension', path: `${c.path}.extension[${i}]` }));
            continue;
          }
          const push = (v: unknown, type: string, p: string) => {
            if (Array.isArray(v)) v.forEach((x, i) => x != null && next.push({ v: x, type, path: `${p}[${i}]` }));
            else if (v !== undefined) next.push({ v, type: isObject(v) && typeof v.resourceType === 'string' ? v.resourceType : type, path: p });
          };
          if (o[st] !== undefined) push(o[st], '', `${c.path}.${st}`);
          else
            for (const k of Object.keys(o)) {
              if (k.length > st.length && k.startsWith(st) && /^[A-Z]/.test(k.charAt(st.length))) {
                const t = k.slice(st.length);
                push(o[k], PRIMITIVES.has(t.charAt(0).toLowerCase() + t.slice(1)) ? t.charAt(0).toLowerCase() + t.slice(1) : t, `${c.path}.${st}`);
              }
            }
        }
      }
      cur = next;
    }
    return cur;
  }

  // ---- value limits, displays ----

  private limit(kind: 'min' | 'max', el: PElement, item: Item, out: Issue[]): void {
    const l = kind === 'min' ? el.minValue! : el.maxValue!;
    const p = checkLimit(kind, item.type, item.v, l.type, l.value);
    if (p) out.push(issue(p.severity, 'value', item.path, p.message));
  }

  /**
   * A Coding's display must be one of the displays or designations the terminology module knows for its code
   * (compared without case and extra whitespace). Codes of systems not available here are not judged.
   * Graded per run (`displayMismatch`, default warning; HL7's validator grades it error unless configured).
   */
  private display(c: Json, path: string, ctx: Ctx, out: Issue[]): void {
    const known = this.bindings.displays(c.system as string, c.code as string);
    if (!known || known.length === 0) return;
    const norm = (s: string) => s.replace(/\s+/g, ' ').trim().toLowerCase();
    const d = norm(c.display as string);
    if (known.some((k) => norm(k) === d)) return;
    const choices = [...new Set(known)];
    out.push(
      issue(ctx.run.opts.displayMismatch ?? 'warning', 'invalid', `${path}.display`, `wrong display '${String(c.display)}' for ${String(c.system)}#${String(c.code)}: ${choices.length === 1 ? `the valid display is '${choices[0]}'` : `valid displays are ${choices.slice(0, 8).map((x) => `'${x}'`).join(', ')}${choices.length > 8 ? ` (and ${choices.length - 8} more)` : ''}`}`),
    );
  }

  // ---- bindings ----

  private binding(el: PElement, item: Item, out: Issue[]): void {
    const { strength, valueSet } = el.binding!;
    if (strength === 'example' || !valueSet) return;
    const v = item.v;
    let codes: Coded[] = [];
    let what = 'code';
    if (item.type === 'code' || item.type === 'string' || item.type === 'uri') {
      if (typeof v !== 'string') return;
      codes = [{ code: v }];
    } else if (item.type === 'Coding' && isObject(v)) codes = [v as Coded];
    else if (item.type === 'CodeableConcept' && isObject(v)) {
      codes = Array.isArray(v.coding) ? (v.coding.filter(isObject) as Coded[]) : [];
      what = 'CodeableConcept';
      if (!codes.length) return;
    } else if (item.type === 'Quantity' && isObject(v) && typeof v.code === 'string') codes = [{ system: v.system as string | undefined, code: v.code }];
    else return;
    const vsUrl = stripVersion(valueSet);
    let anyUnknown = false;
    const failures: string[] = [];
    for (const c of codes) {
      const r = this.bindings.checkCode(vsUrl, c);
      if (r.ok === true) return;
      if (r.ok === 'unknown') anyUnknown = true;
      else failures.push(r.message);
    }
    if (anyUnknown || !failures.length) return;
    const severity: IssueSeverity = strength === 'required' ? 'error' : strength === 'extensible' ? 'warning' : 'information';
    const shown = codes.map((c) => (c.system ? `${c.system}#${c.code}` : `'${c.code}'`)).join(', ');
    out.push(issue(severity, 'code-invalid', item.path, `the ${what} ${shown} is not in the value set ${valueSet} (${strength} binding)${failures[0] ? ': ' + failures[0] : ''}`));
  }

  // ---- extensions ----

  private extension(el: PElement, item: Item, ctx: Ctx, out: Issue[]): void {
    const v = item.v;
    if (!isObject(v)) return;
    const hasValue = Object.keys(v).some((k) => k.startsWith('value') && k.length > 5);
    const hasExt = Array.isArray(v.extension) && v.extension.length > 0;
    if (hasValue === hasExt) {
      out.push(issue('error', 'invariant', item.path, `Constraint failed: ext-1: an extension must have either extensions or a value[x], not ${hasValue ? 'both' : 'neither'}`));
    }
    const url = typeof v.url === 'string' ? v.url : undefined;
    if (!url || !/^[a-z][a-z0-9+.\-]*:/i.test(url)) return; // nested extension of a complex one: its parent's definition covers it
    const declared = el.types[0]?.profiles[0];
    if (declared && declared !== stripVersion(url)) return; // slice of another extension (cannot happen once sliced by url)
    const s = this.structures.get(url);
    const modifier = el.name === 'modifierExtension';
    if (!s) {
      // Cross-version (http://hl7.org/fhir/5.0/...) and tooling extensions are defined outside any package here.
      if (/^http:\/\/hl7\.org\/fhir\/(\d+\.\d+|tools)\/StructureDefinition\//.test(url)) {
        out.push(issue('information', 'not-found', item.path, `the extension ${url} is not loaded here: it was not checked`));
        return;
      }
      out.push(issue('error', modifier ? 'extension' : 'not-found', item.path, `the extension ${url} is not known to this server, so it is not allowed here${modifier ? ' (unknown modifier extensions change the meaning of the resource)' : ''}`));
      return;
    }
    if (s.type !== 'Extension') {
      out.push(issue('error', 'structure', item.path, `${url} is a ${s.type} definition, not an extension`));
      return;
    }
    // Context
    const contexts = s.sd.context ?? [];
    if (contexts.length) {
      let hostPath = el.path.replace(/\.(modifierExtension|extension)$/, '');
      if (ctx.primitiveHost && hostPath.indexOf('.') < 0 && /^[a-z]/.test(hostPath)) hostPath = ctx.primitiveHost;
      const hostSegs = item.path.split('.');
      hostSegs.pop();
      const hostType = this.hostType(hostPath, ctx);
      const parentUrl = hostPath.endsWith('Extension') ? this.parentExtensionUrl(item.path, ctx) : undefined;
      const ok = contexts.some((c) => {
        if (c.type === 'fhirpath') return true;
        if (c.type === 'extension') return parentUrl === c.expression;
        const e = c.expression;
        if ((e === 'CanonicalResource' || e === 'MetadataResource') && hostPath.indexOf('.') < 0) return this.isCanonicalResource(hostPath);
        return e === 'Element' || e === 'Base' || e === hostPath || e === hostType || (e === 'Resource' || e === 'DomainResource' ? hostPath.indexOf('.') < 0 : false) || hostPath.endsWith('.' + e) || this.pathMatches(e, hostPath);
      });
      if (!ok) out.push(issue('error', 'structure', item.path, `the extension ${url} is not allowed here (on ${hostPath}): its contexts are ${contexts.map((c) => c.expression).join(', ')}`));
    }
    if (modifier && s.sd.snapshot?.element?.[0] && (s.sd.snapshot.element[0] as { isModifier?: boolean }).isModifier === false) {
      out.push(issue('error', 'structure', item.path, `the extension ${url} is not a modifier extension but is used as modifierExtension`));
    }
    if (!el.children.length) {
      this.value(s.root, { ...item, type: 'ExtensionDefinition' }, ctx, out);
    }
  }

  /** R5's CanonicalResource / MetadataResource contexts, for R4 types: resources with a `url` and a `status`. */
  private isCanonicalResource(type: string): boolean {
    const core = this.structures.ofType(type);
    if (!core) return false;
    const { byName } = childIndex(core.root);
    return byName.has('url') && byName.has('status') && byName.has('version');
  }

  private pathMatches(contextExpr: string, hostPath: string): boolean {
    // Contexts name base paths (`Patient.name`); hosts inside a datatype report its type's path.
    return contextExpr.split('.').length > 1 && hostPath.endsWith(contextExpr.slice(contextExpr.indexOf('.')));
  }

  private hostType(hostPath: string, _ctx: Ctx): string {
    const root = hostPath.split('.')[0]!;
    if (hostPath.indexOf('.') < 0) return root;
    const core = this.structures.ofType(root);
    const el = core?.byId.get(hostPath);
    return el?.types[0]?.code ?? root;
  }

  private parentExtensionUrl(_path: string, _ctx: Ctx): string | undefined {
    return undefined;
  }

  // ---- references ----

  private resolveRef(ref: string, ctx: Ctx): Located | undefined {
    if (ref.startsWith('#')) {
      const id = ref.slice(1);
      for (const holder of [ctx.resource, ctx.root]) {
        const list = Array.isArray(holder.contained) ? holder.contained : [];
        const i = list.findIndex((c) => isObject(c) && c.id === id);
        if (i >= 0) return { resource: list[i] as Json, path: `contained[${i}]` };
      }
      return undefined;
    }
    const b = ctx.run.bundle;
    if (!b) return undefined;
    const direct = b.get(ref);
    if (direct) return direct;
    const m = REF_RE.exec(ref);
    if (m) return b.get(`${m[1]}/${m[2]}`);
    return undefined;
  }

  private reference(el: PElement, v: Json, path: string, ctx: Ctx, out: Issue[]): void {
    const ref = v.reference;
    if (typeof ref !== 'string') return;
    const targets = el.types.filter((t) => t.code === 'Reference').flatMap((t) => t.targetProfiles);
    let type: string | undefined;
    const found = this.resolveRef(ref, ctx);
    if (ref.startsWith('#')) {
      if (ref !== '#' && !found) out.push(issue('error', 'invalid', `${path}.reference`, `the reference ${ref} points to no contained resource`));
    } else if (!found && ctx.run.bundle && /^urn:(uuid|oid):/.test(ref)) {
      // Documents and messages must be self-contained; other Bundles may point outside themselves.
      const selfContained = ctx.run.bundleType === 'document' || ctx.run.bundleType === 'message';
      out.push(issue(selfContained ? 'error' : 'warning', 'invalid', `${path}.reference`, `the reference ${ref} does not resolve to an entry of the Bundle`));
    }
    if (found) type = String(found.resource.resourceType);
    else {
      const m = REF_RE.exec(ref);
      if (m) type = m[1];
    }
    if (!type || !targets.length) return;
    const allowedTypes = targets.map((t) => this.typeOfProfile(t));
    if (allowedTypes.includes('Resource') || allowedTypes.includes(type)) {
      if (found && !ref.startsWith('#')) {
        const profiles = targets.filter((t) => !t.startsWith(CORE) && this.typeOfProfile(t) === type);
        const coreAllowed = targets.some((t) => t === CORE + type);
        if (profiles.length && !coreAllowed && !profiles.some((p) => this.conforms(found.resource, found.path, found.resource, ctx.run, p))) {
          out.push(issue('error', 'structure', `${path}.reference`, `the referenced ${type} (${ref}) does not conform to ${profiles.length === 1 ? 'the profile ' + profiles[0] : 'any of the profiles ' + profiles.join(', ')}`));
        }
      }
      return;
    }
    out.push(issue('error', 'structure', `${path}.reference`, `the reference ${ref} points to a ${type}, which is not allowed here: allowed target types are ${[...new Set(allowedTypes)].join(', ')}`));
  }
}

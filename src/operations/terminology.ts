/**
 * Terminology operations: CodeSystem/$lookup, $subsumes, $validate-code; ValueSet/$expand, $validate-code;
 * ConceptMap/$translate. GET with query parameters or POST with a Parameters body; type level (url=...) or
 * instance level (the stored resource). The work is done by src/terminology/engine.ts over a scope made of
 * `tx-resource` parameters, the resources in the store and the static content of terminology/.
 */
import type { CodeSystem, Coding, CodeableConcept, ConceptMap, Parameters, ParametersParameter, Resource, ValueSet } from 'fhir/r4';
import { FhirError, badRequest } from '../fhir/outcome.ts';
import type { FhirRequest, FhirResponse } from '../fhir/request.ts';
import { header } from '../fhir/request.ts';
import type { Context } from '../fhir/interactions.ts';
import { operationRegistry, readsTarget, type OperationTarget } from './registry.ts';
import { terminologyService } from '../terminology/service.ts';
import { parseLanguages } from '../terminology/language.ts';
import type { Scope } from '../terminology/registry.ts';
import {
  expandValueSet,
  lookupCode,
  subsumes,
  translate,
  validateInCodeSystem,
  validateInValueSet,
  type CodeInput,
  type ValidateResult,
  type VersionRules,
  requireSupplements,
} from '../terminology/engine.ts';
import { canonicalSystem } from '../terminology/codesystems.ts';

const MAX_EXPANSION = 1000;

// -- parameters ---------------------------------------------------------------------------------------------

const NONE: ParametersParameter[] = [];

/** Input parameters from the query (GET / form) or a Parameters body (POST). */
export class OpParams {
  readonly list: ParametersParameter[];
  constructor(req: FhirRequest, given?: ParametersParameter[]) {
    if (given) {
      this.list = given;
      return;
    }
    const list: ParametersParameter[] = [];
    for (const [k, v] of req.query) if (!k.startsWith('_')) list.push({ name: k, valueString: v });
    if (req.method === 'POST' && req.body !== undefined) {
      const body = req.body as Resource;
      if (body.resourceType !== 'Parameters') throw badRequest(`The body of a terminology operation must be a Parameters resource, not ${body.resourceType}`);
      list.push(...((body as Parameters).parameter ?? []));
    }
    this.list = list;
  }
  private byName?: Map<string, ParametersParameter[]>;
  /** The parameters of one name, in order (indexed once per request: every option is looked up by name). */
  all(name: string): ParametersParameter[] {
    if (!this.byName) {
      this.byName = new Map();
      for (const p of this.list) {
        const l = this.byName.get(p.name);
        if (l) l.push(p);
        else this.byName.set(p.name, [p]);
      }
    }
    return this.byName.get(name) ?? NONE;
  }
  has(...names: string[]): boolean {
    return names.some((n) => this.all(n).length > 0);
  }
  str(...names: string[]): string | undefined {
    for (const n of names) {
      for (const p of this.all(n)) {
        // Query parameters are valueString: no walk over the keys.
        if (typeof p.valueString === 'string') return p.valueString;
        for (const [k, v] of Object.entries(p)) if (k.startsWith('value') && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) return String(v);
      }
    }
    return undefined;
  }
  strs(name: string): string[] {
    return this.all(name).flatMap((p) => Object.entries(p).filter(([k, v]) => k.startsWith('value') && typeof v === 'string').map(([, v]) => v as string));
  }
  bool(name: string): boolean | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (v !== 'true' && v !== 'false') throw badRequest(`Parameter ${name} must be true or false, not '${v}'`);
    return v === 'true';
  }
  int(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw badRequest(`Parameter ${name} must be a non-negative integer, not '${v}'`);
    return Number(v);
  }
  coding(...names: string[]): Coding | undefined {
    for (const n of names) for (const p of this.all(n)) if (p.valueCoding) return p.valueCoding;
    return undefined;
  }
  codeableConcept(...names: string[]): CodeableConcept | undefined {
    for (const n of names) for (const p of this.all(n)) if (p.valueCodeableConcept) return p.valueCodeableConcept;
    return undefined;
  }
  resource<T extends Resource>(name: string, type: string): T | undefined {
    for (const p of this.all(name)) {
      if (p.resource) {
        if (p.resource.resourceType !== type) throw badRequest(`Parameter ${name} must be a ${type}, not a ${p.resource.resourceType}`);
        return p.resource as T;
      }
    }
    return undefined;
  }
  txResources(): Resource[] {
    return this.all('tx-resource').flatMap((p) => (p.resource ? [p.resource as Resource] : []));
  }
  echo(names: string[]): { name: string; [k: string]: unknown }[] {
    return this.list.filter((p) => names.includes(p.name) && !p.resource && !p.part) as { name: string; [k: string]: unknown }[];
  }
}

/** `system-version`, `force-system-version` and `check-system-version` parameters (`url|version` each). */
export function versionRules(params: OpParams): VersionRules | undefined {
  // The common call names none of them: no maps built.
  if (!params.has('system-version', 'force-system-version', 'check-system-version', 'default-valueset-version')) return undefined;
  const rules: VersionRules = { defaults: new Map(), force: new Map(), check: new Map() };
  let any = false;
  rules.valueSets = new Map();
  for (const [name, map] of [['system-version', rules.defaults], ['force-system-version', rules.force], ['check-system-version', rules.check], ['default-valueset-version', rules.valueSets]] as const) {
    for (const v of params.strs(name)) {
      const i = v.indexOf('|');
      if (i <= 0 || i === v.length - 1) throw badRequest(`Parameter ${name} must be a canonical with a version (url|version), not '${v}'`);
      map.set(name === 'default-valueset-version' ? v.slice(0, i) : canonicalSystem(v.slice(0, i)), v.slice(i + 1));
      any = true;
    }
  }
  return any ? rules : undefined;
}

const LANGUAGE_TAG = /^(\*|[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*)$/;

function languages(req: FhirRequest, params: OpParams): string[] {
  const dl = params.str('displayLanguage');
  if (dl !== undefined && !dl.split(',').every((t) => LANGUAGE_TAG.test(t.trim().split(';')[0]!.trim())))
    throw badRequest(`Parameter displayLanguage must be a language tag (BCP 47), not '${dl}'`);
  return parseLanguages(dl ?? header(req, 'accept-language'));
}

function ok(body: Resource): FhirResponse {
  return { status: 200, headers: {}, body };
}

function parameters(list: Record<string, unknown>[]): Parameters {
  return { resourceType: 'Parameters', parameter: list as unknown as ParametersParameter[] };
}

async function scopeFor(ctx: Context, params: OpParams): Promise<Scope> {
  const scope = await terminologyService().scope(ctx.store, params.txResources());
  requireSupplements(scope, params.strs('useSupplement'));
  return scope;
}

async function instance<T extends Resource>(ctx: Context, target: OperationTarget): Promise<T | undefined> {
  if (target.level !== 'instance') return undefined;
  const rec = await ctx.store.current(target.resourceType!, target.id!);
  if (!rec || rec.deleted || !rec.resource) throw new FhirError(404, `${target.resourceType}/${target.id} is not known`, 'not-found');
  return rec.resource as T;
}

async function resolveValueSet(ctx: Context, scope: Scope, params: OpParams, target: OperationTarget): Promise<ValueSet> {
  const stored = await instance<ValueSet>(ctx, target);
  if (stored) return stored;
  const inline = params.resource<ValueSet>('valueSet', 'ValueSet');
  if (inline) return inline;
  const url = params.str('url', 'context');
  if (!url) throw badRequest('No value set: give url (canonical of the value set), a valueSet resource, or call the operation on ValueSet/{id}');
  const vs = scope.valueSet(url, params.str('valueSetVersion'));
  if (!vs) {
    const v = params.str('valueSetVersion');
    throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `A definition for the value set '${url}'${v ? ` version '${v}'` : ''} could not be found` }]);
  }
  return vs;
}

function codeInputs(params: OpParams, prefix = ''): { inputs: CodeInput[]; path: string } {
  const cc = params.codeableConcept(prefix ? `${prefix}CodeableConcept` : 'codeableConcept');
  if (cc) return { inputs: (cc.coding ?? []).filter((c) => c.code).map((c) => ({ system: c.system, version: c.version, code: c.code!, display: c.display, codingForm: true })), path: 'codeableConcept' };
  const coding = params.coding(prefix ? `${prefix}Coding` : 'coding');
  if (coding) {
    if (!coding.code) throw badRequest('The coding parameter has no code');
    return { inputs: [{ system: coding.system, version: coding.version, code: coding.code, display: coding.display, codingForm: true }], path: 'coding' };
  }
  const code = params.str(prefix ? `${prefix}Code` : 'code');
  if (!code) throw badRequest(`No code to work on: give code (with system), coding or codeableConcept`);
  const system = prefix ? params.str(`${prefix}System`, 'system') : params.str('system');
  return { inputs: [{ system, version: params.str('systemVersion', 'version'), code, display: params.str('display') }], path: 'code' };
}

function validationParameters(res: ValidateResult, cc?: CodeableConcept): Parameters {
  const out: Record<string, unknown>[] = [{ name: 'result', valueBoolean: res.result }];
  if (res.message) out.push({ name: 'message', valueString: res.message });
  if (res.display) out.push({ name: 'display', valueString: res.display });
  if (res.code) out.push({ name: 'code', valueCode: res.code });
  if (res.normalizedCode) out.push({ name: 'normalized-code', valueCode: res.normalizedCode });
  if (res.system) out.push({ name: 'system', valueUri: res.system });
  if (res.version) out.push({ name: 'version', valueString: res.version });
  if (res.inactive) out.push({ name: 'inactive', valueBoolean: true });
  for (const u of new Set(res.unknownSystems ?? [])) out.push({ name: 'x-caused-by-unknown-system', valueCanonical: u });
  if (cc) out.push({ name: 'codeableConcept', valueCodeableConcept: cc });
  if (res.issues.length) {
    out.push({
      name: 'issues',
      resource: {
        resourceType: 'OperationOutcome',
        issue: res.issues.map((i) => ({ severity: i.severity, code: i.code === 'code-invalid' ? 'code-invalid' : i.code, details: { text: i.text } })),
      },
    });
  }
  return parameters(out);
}

/** Combines per-coding results of a CodeableConcept: valid when any coding is valid. */
function combine(results: ValidateResult[]): ValidateResult {
  const good = results.find((r) => r.result);
  // A coding whose code its (complete) code system does not define makes the concept invalid even when another
  // coding is in the value set.
  const unknown = results.filter((r) => r !== good && r.issues.some((i) => i.unknownCode));
  if (good && unknown.length) {
    const issues = [...unknown.flatMap((r) => r.issues.map((i) => ({ ...i, severity: i.unknownCode ? ('error' as const) : ('information' as const) }))), ...good.issues];
    return { ...good, result: false, issues, message: issues.filter((i) => i.severity === 'error').map((i) => i.text).join('; ') };
  }
  if (good) return { ...good, issues: [...good.issues, ...results.filter((r) => r !== good).flatMap((r) => r.issues.map((i) => ({ ...i, severity: 'information' as const })))] };
  const issues = results.flatMap((r) => r.issues);
  return { result: false, issues, message: issues.filter((i) => i.severity === 'error').map((i) => i.text).join('; ') || results[0]?.message, code: results[0]?.code, system: results[0]?.system, display: results[0]?.display, version: results[0]?.version };
}

// -- ValueSet/$expand -----------------------------------------------------------------------------------------

operationRegistry.register({
  name: 'expand',
  definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-expand',
  resourceTypes: ['ValueSet'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'ValueSet'), sharedData: true },
  handler: async (ctx, req, target) => {
    const params = new OpParams(req);
    const scope = await scopeFor(ctx, params);
    const vs = await resolveValueSet(ctx, scope, params, target);
    const count = params.int('count');
    const body = expandValueSet(scope, vs, {
      filter: params.str('filter'),
      count,
      offset: params.int('offset'),
      activeOnly: params.bool('activeOnly'),
      includeDesignations: params.bool('includeDesignations'),
      excludeNested: params.bool('excludeNested'),
      displayLanguage: languages(req, params),
      maxSize: MAX_EXPANSION,
      versions: versionRules(params),
      echo: params.echo(['filter', 'count', 'offset', 'displayLanguage', 'includeDesignations', 'activeOnly', 'excludeNested', 'includeDefinition']),
    });
    return ok(body);
  },
});

// -- $validate-code (ValueSet and CodeSystem) ---------------------------------------------------------------

operationRegistry.register({
  name: 'validate-code',
  definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code',
  resourceTypes: ['ValueSet', 'CodeSystem'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'ValueSet'), sharedData: true },
  handler: async (ctx, req, target) => ok(await validateCode(ctx, req, target, new OpParams(req))),
});

async function validateCode(ctx: Context, req: FhirRequest, target: OperationTarget, params: OpParams): Promise<Parameters> {
  const scope = await scopeFor(ctx, params);
  const opts = { displayLanguage: languages(req, params), abstractAllowed: params.bool('abstract') ?? true, activeOnly: params.bool('activeOnly') ?? false, versions: versionRules(params), lenientDisplay: params.bool('lenient-display-validation') ?? false };
  const { inputs, path } = codeInputs(params);
  const cc = path === 'codeableConcept' ? params.codeableConcept('codeableConcept') : undefined;
  if (!inputs.length) throw badRequest('The codeableConcept has no coding with a code');
  if (target.resourceType === 'CodeSystem') {
    const stored = await instance<CodeSystem>(ctx, target);
    const inline = params.resource<CodeSystem>('codeSystem', 'CodeSystem');
    let extra: Scope = scope;
    let system = stored?.url ?? inline?.url ?? params.str('url');
    if (stored || inline) extra = await terminologyService().scope(ctx.store, [...params.txResources(), (stored ?? inline)!]);
    const results = inputs.map((i) => {
      const sys = i.system ?? system;
      if (!sys) throw badRequest('No code system: give url (or system), a codeSystem resource, or call the operation on CodeSystem/{id}');
      if (system && i.system && i.system !== system) system = system;
      return validateInCodeSystem(extra, { ...i, system: sys, version: i.version ?? params.str('version') }, opts);
    });
    return validationParameters(combine(results), cc);
  }
  const vs = await resolveValueSet(ctx, scope, params, target);
  const results = inputs.map((i) => validateInValueSet(scope, vs, i, opts));
  return validationParameters(combine(results), cc);
}

// -- $batch-validate-code (ValueSet and CodeSystem) ----------------------------------------------------------

/**
 * Several $validate-code requests in one: each `validation` parameter is a Parameters resource with one
 * request's parameters; the other top-level parameters (url, tx-resource, lenient-display-validation...) apply to
 * all, a request's own parameter of the same name winning. Output: one `validation` per request, in order, holding
 * its result Parameters (or the OperationOutcome of a request that fails).
 */
operationRegistry.register({
  name: 'batch-validate-code',
  definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-batch-validate-code',
  resourceTypes: ['ValueSet', 'CodeSystem'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'ValueSet'), sharedData: true },
  handler: async (ctx, req, target) => {
    const outer = new OpParams(req);
    const shared = outer.all('tx-resource');
    const common = outer.list.filter((p) => p.name !== 'validation' && p.name !== 'tx-resource');
    const out: ParametersParameter[] = [];
    for (const v of outer.all('validation')) {
      const inner = ((v.resource as Parameters | undefined)?.parameter ?? []) as ParametersParameter[];
      const names = new Set(inner.map((p) => p.name));
      const params = new OpParams(req, [...common.filter((p) => !names.has(p.name)), ...inner, ...shared]);
      try {
        out.push({ name: 'validation', resource: (await validateCode(ctx, req, target, params)) as ParametersParameter['resource'] });
      } catch (err) {
        if (!(err instanceof FhirError)) throw err;
        out.push({ name: 'validation', resource: err.toOperationOutcome() as ParametersParameter['resource'] });
      }
    }
    return ok(parameters(out as unknown as Record<string, unknown>[]));
  },
});

// -- CodeSystem/$lookup ---------------------------------------------------------------------------------------

operationRegistry.register({
  name: 'lookup',
  definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup',
  resourceTypes: ['CodeSystem'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'CodeSystem'), sharedData: true },
  handler: async (ctx, req, target) => {
    const params = new OpParams(req);
    const stored = await instance<CodeSystem>(ctx, target);
    const scope = await terminologyService().scope(ctx.store, [...params.txResources(), ...(stored ? [stored] : [])]);
    requireSupplements(scope, params.strs('useSupplement'));
    const coding = params.coding('coding');
    const code = coding?.code ?? params.str('code');
    const system = coding?.system ?? params.str('system') ?? stored?.url;
    if (!code) throw badRequest('No code to look up: give code and system, or coding');
    if (!system) throw badRequest(`No system for the code '${code}': give system, or call the operation on CodeSystem/{id}`);
    const body = lookupCode(scope, system, code, coding?.version ?? params.str('version'), languages(req, params), params.strs('property'));
    return ok(parameters(body));
  },
});

// -- CodeSystem/$subsumes -------------------------------------------------------------------------------------

operationRegistry.register({
  name: 'subsumes',
  definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes',
  resourceTypes: ['CodeSystem'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'CodeSystem'), sharedData: true },
  handler: async (ctx, req, target) => {
    const params = new OpParams(req);
    const stored = await instance<CodeSystem>(ctx, target);
    const scope = await terminologyService().scope(ctx.store, [...params.txResources(), ...(stored ? [stored] : [])]);
    const a = params.coding('codingA');
    const b = params.coding('codingB');
    const codeA = a?.code ?? params.str('codeA');
    const codeB = b?.code ?? params.str('codeB');
    const system = params.str('system') ?? a?.system ?? stored?.url;
    if (!codeA || !codeB) throw badRequest('$subsumes needs codeA and codeB (or codingA and codingB)');
    if (!system) throw badRequest('$subsumes needs a system (or call it on CodeSystem/{id})');
    if (a?.system && b?.system && a.system !== b.system) throw badRequest(`codingA and codingB are from different systems (${a.system}, ${b.system})`);
    const outcome = subsumes(scope, system, params.str('version') ?? a?.version, codeA, codeB);
    return ok(parameters([{ name: 'outcome', valueCode: outcome }]));
  },
});

// -- ConceptMap/$translate ----------------------------------------------------------------------------------

operationRegistry.register({
  name: 'translate',
  definition: 'http://hl7.org/fhir/OperationDefinition/ConceptMap-translate',
  resourceTypes: ['ConceptMap'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { ...readsTarget('any', 'ConceptMap'), sharedData: true },
  handler: async (ctx, req, target) => ok(await translateCall(ctx, req, target)),
});

async function translateCall(ctx: Context, req: FhirRequest, target: OperationTarget): Promise<Parameters> {
  const params = new OpParams(req);
  const scope = await scopeFor(ctx, params);
  let cm = (await instance<ConceptMap>(ctx, target)) ?? params.resource<ConceptMap>('conceptMap', 'ConceptMap');
  const url = params.str('url');
  if (!cm && url) {
    cm = scope.conceptMap(url, params.str('conceptMapVersion'));
    if (!cm) throw new FhirError(404, [{ severity: 'error', code: 'not-found', diagnostics: `A definition for the ConceptMap '${url}' could not be found` }]);
  }
  const reverse = params.bool('reverse') ?? false;
  // R4 names (code, system, coding, codeableConcept, targetsystem) and R5 names (sourceCode, sourceSystem, ...).
  let codings: { system?: string; code: string; version?: string }[];
  const cc = params.codeableConcept('codeableConcept', 'sourceCodeableConcept', 'targetCodeableConcept');
  const coding = params.coding('coding', 'sourceCoding', 'targetCoding');
  const code = params.str('code', 'sourceCode', 'targetCode');
  const r5Reverse = params.has('targetCode', 'targetCoding', 'targetCodeableConcept');
  if (cc) codings = (cc.coding ?? []).filter((c) => c.code).map((c) => ({ system: c.system, code: c.code!, version: c.version }));
  else if (coding?.code) codings = [{ system: coding.system, code: coding.code, version: coding.version }];
  else if (code) codings = [{ system: params.str('system', 'sourceSystem', 'targetSystem'), code, version: params.str('version') }];
  else throw badRequest('$translate needs a code (with system), a coding or a codeableConcept');
  const result = translate(scope, {
    codings,
    conceptMap: cm,
    sourceScope: params.str('source', 'sourceScope'),
    targetScope: params.str('target', 'targetScope'),
    targetSystem: r5Reverse ? undefined : params.str('targetsystem', ...(params.has('sourceCode', 'sourceCoding', 'sourceCodeableConcept') ? ['targetSystem'] : [])),
    reverse: reverse || r5Reverse,
  });
  const out: Record<string, unknown>[] = [{ name: 'result', valueBoolean: result.result }];
  if (result.message) out.push({ name: 'message', valueString: result.message });
  for (const m of result.matches) {
    out.push({
      name: 'match',
      part: [
        { name: 'equivalence', valueCode: m.equivalence },
        { name: 'concept', valueCoding: m.concept },
        { name: 'source', valueUri: m.source },
        ...(m.comment ? [{ name: 'comment', valueString: m.comment }] : []),
      ],
    });
  }
  return parameters(out);
}

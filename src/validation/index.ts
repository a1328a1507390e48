/**
 * The server's one validator. This slice: base R4 structure, run on every write.
 *
 * - `validateResource(resource)` returns every issue found;
 * - `assertValidResource(resource)` throws a FhirError 400 carrying the error issues.
 *
 * Two layers (see docs/validation.md): the definition-driven walker always runs and is the authority for
 * structure, cardinality and primitive formats; the R4 JSON schema (ajv, discriminator on resourceType) runs
 * as well and contributes what the walker does not check (required-binding code enumerations) plus a safety
 * net; its errors at, above or below a location the walker already reported are dropped as duplicates.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { badRequest, FhirError, type Issue } from '../fhir/outcome.ts';
import { packageRegistry, type PackageRegistry } from '../packages/registry.ts';
import { ProfileValidator, type ValidationOptions } from './profile.ts';
import { schemaIssues, schemaValidator } from './schema.ts';
import { baseWalker, type VisitedResource } from './walker.ts';

export type { Issue } from '../fhir/outcome.ts';
export type { ValidationOptions } from './profile.ts';

/** True when `a` and `b` are the same location or one contains the other. */
function related(a: string, b: string): boolean {
  if (a.length === b.length) return a === b;
  const [short, long] = a.length < b.length ? [a, b] : [b, a];
  if (!long.startsWith(short)) return false;
  const next = long.charCodeAt(short.length);
  return next === 46 /* . */ || next === 91 /* [ */;
}

export function validateResource(resource: unknown): Issue[] {
  const walker = baseWalker();
  const issues: Issue[] = [];
  const visited: VisitedResource[] = [];
  walker.validate(resource, issues, visited);
  let fromSchema: Issue[] | undefined;
  for (const v of visited) {
    const found = schemaIssues(v.resource, v.resourceType, (pointer) => {
      const at = walker.locate(v.resource, pointer);
      return { expression: v.expression + at.expression.slice(v.resourceType.length), element: at.element };
    });
    if (found.length) (fromSchema ??= []).push(...found);
  }
  if (!fromSchema) return issues;
  const seen = issues.flatMap((i) => i.expression ?? []);
  for (const issue of fromSchema) {
    const expr = issue.expression?.[0] ?? '';
    if (!seen.some((s) => related(s, expr))) issues.push(issue);
  }
  return issues;
}

export function assertValidResource(resource: unknown): void {
  const errors = validateResource(resource).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length > 0) throw new FhirError(400, errors);
}

/**
 * Loads the model and compiles the schema validators of the given resource types ahead of the first write
 * (optional: both happen lazily otherwise).
 */
export function warmUpValidation(resourceTypes: readonly string[] = ['Patient', 'Bundle']): void {
  baseWalker();
  for (const rt of resourceTypes) schemaValidator(rt);
}

// ---- warm-up at server start ----

export interface WarmUpState {
  started: boolean;
  done: boolean;
  cancelled: boolean;
  /** Wall time from start to end (ms), including the waits that let requests through between steps. */
  ms?: number;
  /** Steps completed, in order. */
  steps: string[];
  error?: string;
  /** Settles when the warm-up ends (done, cancelled or failed). */
  finished: Promise<void>;
}

let warmUp: WarmUpState | undefined;

/** The state of the background warm-up (undefined before warmUpValidationInBackground). */
export function validationWarmUpState(): WarmUpState | undefined {
  return warmUp;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Pays the validator's one-off costs (R4 model, schema validators, package indexes, snapshots of the IPS and
 * LU profiles, value sets) in the background, step by step: each step yields to the event loop first, so
 * the server listens and answers while it runs (a request arriving during a step waits for that step only).
 * The work is a full validation of `sample` (default: the LU Patient Summary example and the dataset's
 * Patient Summary, which reach the IPS entry profiles) after the base layer. Idempotent: a second call returns the running/finished state.
 */
export function warmUpValidationInBackground(sample?: unknown): WarmUpState {
  if (warmUp) return warmUp;
  let settle!: () => void;
  const state: WarmUpState = { started: true, done: false, cancelled: false, steps: [], finished: new Promise<void>((r) => (settle = r)) };
  warmUp = state;
  const t0 = performance.now();
  const steps: [string, () => void][] = [
    ['base', () => warmUpValidation(['Bundle', 'Patient', 'Composition', 'Observation'])],
    ['profiles', () => {
      const layer = profileLayer();
      for (const u of ['http://dsp.lu/fhir/StructureDefinition/lu-patient-summary', 'http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips']) layer.structures.get(u);
    }],
    ['sample', () => {
      for (const doc of sample !== undefined ? [sample] : defaultSamples()) validateFull(doc);
    }],
  ];
  void (async () => {
    try {
      for (const [name, run] of steps) {
        await nextTurn();
        if (state.cancelled) return;
        run();
        state.steps.push(name);
      }
      state.done = true;
    } catch (err) {
      state.error = (err as Error).message;
    } finally {
      state.ms = Math.round(performance.now() - t0);
      settle();
    }
  })();
  return state;
}

/** Stops a running warm-up after its current step (server shutdown). */
export function cancelValidationWarmUp(): void {
  if (warmUp && !warmUp.done) warmUp.cancelled = true;
}

/** The LU Patient Summary example and the dataset's Patient Summary, both declaring LU Patient Summary. */
function defaultSamples(): unknown[] {
  const out: unknown[] = [];
  for (const f of ['lu-patient-summary-marie-schmit.json', '05-patient-summary-claire-wagner.json']) {
    const file = fileURLToPath(new URL(`../../examples/${f}`, import.meta.url));
    if (!existsSync(file)) continue;
    const doc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    out.push({ ...doc, meta: { profile: ['http://dsp.lu/fhir/StructureDefinition/lu-patient-summary'] } });
  }
  return out;
}

// ---- profiles (see docs/validation.md, "Profiles") ----

let profileValidator: ProfileValidator | undefined;

/** The process-wide profile layer over packageRegistry(). */
export function profileLayer(registry?: PackageRegistry): ProfileValidator {
  if (registry) return new ProfileValidator(registry);
  if (!profileValidator || profileValidator.registry !== packageRegistry()) profileValidator = new ProfileValidator(packageRegistry());
  return profileValidator;
}

/**
 * Everything the validator knows: base structure (walker + schema), then the core definitions' invariants and
 * bindings, every declared profile and the profiles asked for. Used by $validate and `dsp-fhir validate`.
 */
export function validateFull(resource: unknown, opts: ValidationOptions & { validator?: ProfileValidator } = {}): Issue[] {
  const issues = validateResource(resource);
  const fatal = issues.some((i) => i.code === 'not-supported' || (i.severity === 'error' && i.expression === undefined));
  if (fatal) return issues;
  const { validator, ...run } = opts;
  (validator ?? profileLayer()).validate(resource, run, issues);
  return issues;
}

/** The run options a client sets by name: `$validate` parameters and `dsp-fhir validate` flags. */
export const VALIDATION_OPTION_NAMES = ['display-mismatch', 'security-checks', 'no-html-in-markdown', 'no-example-urls'] as const;
export type ValidationOptionName = (typeof VALIDATION_OPTION_NAMES)[number];

export function isValidationOptionName(name: string): name is ValidationOptionName {
  return (VALIDATION_OPTION_NAMES as readonly string[]).includes(name);
}

/**
 * Sets the option called `name` in `into` from its external value: a string (query parameter, CLI flag,
 * valueCode / valueString) or a boolean (valueBoolean). `display-mismatch` takes `warning` or `error`; the
 * three checks take `true` or `false`. Any other value is a 400 naming the parameter.
 */
export function setValidationOption(into: ValidationOptions, name: ValidationOptionName, value: string | boolean): void {
  if (name === 'display-mismatch') {
    if (value !== 'warning' && value !== 'error') throw badRequest(`${name} must be warning or error (got "${String(value)}")`, [name]);
    into.displayMismatch = value;
    return;
  }
  const on = value === true || value === 'true' ? true : value === false || value === 'false' ? false : undefined;
  if (on === undefined) throw badRequest(`${name} must be true or false (got "${String(value)}")`, [name]);
  if (name === 'security-checks') into.securityChecks = on;
  else if (name === 'no-html-in-markdown') into.noHtmlInMarkdown = on;
  else into.noExampleUrls = on;
}

/** True when the resource, or a resource inside it (Bundle entry, contained), declares a profile. */
export function declaresProfiles(resource: unknown): boolean {
  const seen = (r: unknown): boolean => {
    if (r === null || typeof r !== 'object') return false;
    const o = r as Record<string, unknown>;
    const meta = o.meta as { profile?: unknown[] } | undefined;
    if (Array.isArray(meta?.profile) && meta.profile.length) return true;
    if (Array.isArray(o.contained) && o.contained.some(seen)) return true;
    if (o.resourceType === 'Bundle' && Array.isArray(o.entry)) return o.entry.some((e) => seen((e as { resource?: unknown })?.resource));
    return false;
  };
  return seen(resource);
}

/** DSP_PROFILE_VALIDATION (parsed by src/config.ts). */
export type ProfileValidationMode = 'off' | 'warn' | 'reject';

/**
 * Profile validation on write, for resources that declare profiles (meta.profile, also in Bundle entries
 * and contained resources); base validation (assertValidResource) has already run. Only the declared
 * profiles are checked (no core invariants: that keeps writes fast).
 * - `off`: nothing, returns [];
 * - `warn`: returns the issues found (the caller may add them to the response as an OperationOutcome);
 * - `reject`: throws FhirError 422 with the issues when any is an error; returns the others.
 */
export function validateOnWrite(resource: unknown, mode: ProfileValidationMode): Issue[] {
  if (mode === 'off' || !declaresProfiles(resource)) return [];
  const issues: Issue[] = [];
  profileLayer().validate(resource, { base: false, declared: true }, issues);
  if (mode === 'reject' && issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) throw new FhirError(422, issues);
  return issues;
}

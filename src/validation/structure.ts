/**
 * StructureDefinition snapshots compiled into element trees for profile validation: children by name,
 * slices under their sliced element, fixed/pattern values, bindings, constraints and type profiles resolved
 * once per StructureDefinition (cached per registry generation).
 */
import type { ConformanceResource, PackageRegistry } from '../packages/registry.ts';
import { generateSnapshot } from './snapshot.ts';

export interface RawType {
  code: string;
  profile?: string[];
  targetProfile?: string[];
  extension?: { url: string; valueUrl?: string; valueString?: string }[];
}

export interface RawElement {
  id?: string;
  path: string;
  sliceName?: string;
  min?: number;
  max?: string;
  base?: { path: string; min: number; max: string };
  type?: RawType[];
  contentReference?: string;
  slicing?: { discriminator?: { type: string; path: string }[]; rules?: string; ordered?: boolean };
  binding?: { strength: string; valueSet?: string };
  constraint?: { key: string; severity: string; human: string; expression?: string; source?: string }[];
  [k: string]: unknown;
}

export interface StructureDef extends ConformanceResource {
  type: string;
  kind: string;
  derivation?: string;
  baseDefinition?: string;
  abstract?: boolean;
  context?: { type: string; expression: string }[];
  snapshot?: { element: RawElement[] };
  differential?: { element: RawElement[] };
}

export interface PType {
  code: string;
  profiles: string[];
  targetProfiles: string[];
}

export interface PElement {
  readonly raw: RawElement;
  readonly id: string;
  readonly path: string;
  /** Last path segment, e.g. `value[x]`. */
  readonly name: string;
  readonly sliceName?: string;
  readonly min: number;
  readonly max: number;
  readonly baseMin: number;
  readonly baseMax: number;
  readonly types: PType[];
  readonly isChoice: boolean;
  readonly children: PElement[];
  readonly slices: PElement[];
  readonly slicing?: { discriminator: { type: string; path: string }[]; rules: string; ordered: boolean };
  /** `fixedX` / `patternX` value and the JSON key it came from. */
  fixed?: unknown;
  pattern?: unknown;
  /** minValue[x] / maxValue[x]: the value and the type suffix it came with (`Quantity`, `Date`...). */
  minValue?: { type: string; value: unknown };
  maxValue?: { type: string; value: unknown };
  /** ElementDefinition.maxLength (characters of a primitive's string form). */
  maxLength?: number;
  readonly binding?: { strength: string; valueSet?: string };
  readonly constraints: { key: string; severity: string; human: string; expression: string }[];
  readonly contentReference?: string;
  /** The element a contentReference points to (same structure). */
  ref?: PElement;
  /** Lazily built: the invariants to evaluate (see profile.ts). */
  invariants?: InvariantPlan[];
  /** Lazily built: children by name (choices by prefix). */
  byName?: Map<string, PElement>;
  choices?: PElement[];
}

export interface InvariantPlan {
  key: string;
  severity: string;
  human: string;
  /** The expression evaluated (rewritten where the published one is wrong). */
  expr: string;
  /** Element path without `[x]`, the FHIRPath base type context. */
  base: string;
  memoKey: string;
  /** dom-2/4/5: only meaningful when the resource has contained resources. */
  containedOnly: boolean;
  /** On a resource root: %resource is the value itself. */
  atRoot: boolean;
}

export interface Structure {
  readonly sd: StructureDef;
  readonly url: string;
  readonly type: string;
  readonly root: PElement;
  readonly byId: Map<string, PElement>;
  /** Required fixed/pattern values at the top level (a quick conformance pre-check), built on first use. */
  quick?: { key: string; want: unknown; valueSet?: string; coded?: string }[];
}

const SYSTEM_TYPES: Record<string, string> = {
  'http://hl7.org/fhirpath/System.String': 'string',
  'http://hl7.org/fhirpath/System.Boolean': 'boolean',
  'http://hl7.org/fhirpath/System.Integer': 'integer',
  'http://hl7.org/fhirpath/System.Decimal': 'decimal',
  'http://hl7.org/fhirpath/System.Date': 'date',
  'http://hl7.org/fhirpath/System.DateTime': 'dateTime',
  'http://hl7.org/fhirpath/System.Time': 'time',
};

function typeCode(t: RawType): string {
  const ext = t.extension?.find((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type');
  if (ext) return ext.valueUrl ?? ext.valueString ?? t.code;
  return SYSTEM_TYPES[t.code] ?? t.code;
}

const parseMax = (m: string | undefined) => (m === undefined || m === '*' ? Infinity : Number(m));

function compileElement(raw: RawElement, id: string): PElement {
  const name = raw.path.slice(raw.path.lastIndexOf('.') + 1);
  let fixed: unknown;
  let pattern: unknown;
  let minValue: PElement['minValue'];
  let maxValue: PElement['maxValue'];
  for (const k in raw) {
    if (k.startsWith('fixed') && k.length > 5) fixed = raw[k];
    else if (k.startsWith('pattern') && k.length > 7) pattern = raw[k];
    else if (k.startsWith('minValue') && k.length > 8) minValue = { type: k.slice(8), value: raw[k] };
    else if (k.startsWith('maxValue') && k.length > 8) maxValue = { type: k.slice(8), value: raw[k] };
  }
  const constraints: PElement['constraints'] = [];
  for (const c of raw.constraint ?? []) if (c.expression) constraints.push({ key: c.key, severity: c.severity, human: c.human, expression: c.expression });
  return {
    raw,
    id,
    path: raw.path,
    name,
    sliceName: raw.sliceName,
    min: raw.min ?? 0,
    max: parseMax(raw.max),
    baseMin: raw.base?.min ?? raw.min ?? 0,
    baseMax: parseMax(raw.base?.max ?? raw.max),
    types: (raw.type ?? []).map((t) => ({
      code: typeCode(t),
      profiles: (t.profile ?? []).map(stripVersion),
      targetProfiles: (t.targetProfile ?? []).map(stripVersion),
    })),
    isChoice: name.endsWith('[x]'),
    children: [],
    slices: [],
    slicing: raw.slicing
      ? { discriminator: raw.slicing.discriminator ?? [], rules: raw.slicing.rules ?? 'open', ordered: raw.slicing.ordered === true }
      : undefined,
    fixed,
    pattern,
    minValue,
    maxValue,
    maxLength: typeof raw.maxLength === 'number' && raw.maxLength > 0 ? raw.maxLength : undefined,
    binding: raw.binding,
    constraints,
    contentReference: raw.contentReference,
  };
}

export const stripVersion = (u: string) => {
  const bar = u.indexOf('|');
  return bar < 0 ? u : u.slice(0, bar);
};

/** Builds the element tree of a snapshot. */
export function compileStructure(sd: StructureDef): Structure {
  const elements = sd.snapshot?.element ?? [];
  const byId = new Map<string, PElement>();
  let root: PElement | undefined;
  for (const raw of elements) {
    let id = raw.id;
    if (!id) id = raw.path + (raw.sliceName ? `:${raw.sliceName}` : '');
    const el = compileElement(raw, id);
    if (!root) {
      root = el;
      byId.set(id, el);
      continue;
    }
    const dot = id.lastIndexOf('.');
    const last = id.slice(dot + 1);
    const colon = last.indexOf(':');
    if (raw.sliceName && colon >= 0) {
      // A slice (or re-slice `a/b`) of the element with the same id minus the slice name.
      const sliceName = last.slice(colon + 1);
      const slash = sliceName.lastIndexOf('/');
      const baseId = id.slice(0, dot + 1) + last.slice(0, colon) + (slash >= 0 ? ':' + sliceName.slice(0, slash) : '');
      const base = byId.get(baseId);
      if (base) base.slices.push(el);
      byId.set(id, el);
      continue;
    }
    const parent = byId.get(id.slice(0, dot));
    if (parent) parent.children.push(el);
    byId.set(id, el);
  }
  if (!root) throw new Error(`StructureDefinition ${sd.url} has no snapshot elements`);
  for (const el of byId.values()) {
    if (el.contentReference) el.ref = byId.get(el.contentReference.slice(el.contentReference.indexOf('#') + 1));
  }
  return { sd, url: sd.url!, type: sd.type, root, byId };
}

/** Children by JSON-ish name (choice elements also under their prefix). */
export function childIndex(el: PElement): { byName: Map<string, PElement>; choices: PElement[] } {
  if (!el.byName) {
    el.byName = new Map();
    el.choices = [];
    for (const c of el.children) {
      if (c.isChoice) el.choices.push(c);
      else el.byName.set(c.name, c);
    }
  }
  return { byName: el.byName, choices: el.choices! };
}

/** Structures by URL, compiled once per registry generation (snapshots generated when missing). */
export class StructureCache {
  private readonly registry: PackageRegistry;
  private generation = -1;
  private readonly cache = new Map<string, Structure | null>();
  /** Why a definition could not be used (snapshot generation failed), by url. */
  readonly problems = new Map<string, string>();

  constructor(registry: PackageRegistry) {
    this.registry = registry;
  }

  get(url: string): Structure | undefined {
    if (this.generation !== this.registry.generation) {
      this.cache.clear();
      this.problems.clear();
      this.generation = this.registry.generation;
    }
    const key = stripVersion(url);
    let s = this.cache.get(key);
    if (s === undefined) {
      s = null;
      const sd = this.registry.structureDefinition(url) as StructureDef | undefined;
      if (sd) {
        try {
          const withSnapshot = sd.snapshot?.element?.length ? sd : generateSnapshot(sd, this.registry);
          s = withSnapshot ? compileStructure(withSnapshot) : null;
        } catch (err) {
          this.problems.set(key, (err as Error).message);
        }
      }
      this.cache.set(key, s);
    }
    return s ?? undefined;
  }

  /** The core definition of a type (`Patient`, `HumanName`, `Extension`...). */
  ofType(type: string): Structure | undefined {
    return this.get(type.includes('/') ? type : `http://hl7.org/fhir/StructureDefinition/${type}`);
  }
}

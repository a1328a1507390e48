/**
 * A CodeSystem compiled for lookups: concepts by code (case-insensitive index when the system is not case
 * sensitive), parent/child links from nesting and from `parent`/`child` properties, status flags.
 */
import type { CodeSystem, CodeSystemConcept, Coding } from 'fhir/r4';

export interface Designation {
  language?: string;
  use?: Coding;
  value: string;
}

export type PropertyValue =
  | { type: 'code'; value: string }
  | { type: 'Coding'; value: Coding }
  | { type: 'string'; value: string }
  | { type: 'integer'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'dateTime'; value: string }
  | { type: 'decimal'; value: number };

export interface ConceptDef {
  code: string;
  display?: string;
  definition?: string;
  designations: Designation[];
  properties: { code: string; value: PropertyValue }[];
  parents: string[];
  children: string[];
  inactive: boolean;
  abstract: boolean;
  deprecated: boolean;
  status?: string;
}

const INACTIVE_STATUS = new Set(['retired', 'inactive', 'withdrawn']);

export function propertyValue(p: Record<string, unknown>): PropertyValue | undefined {
  if (p.valueCode !== undefined) return { type: 'code', value: String(p.valueCode) };
  if (p.valueCoding !== undefined) return { type: 'Coding', value: p.valueCoding as Coding };
  if (p.valueString !== undefined) return { type: 'string', value: String(p.valueString) };
  if (p.valueInteger !== undefined) return { type: 'integer', value: Number(p.valueInteger) };
  if (p.valueBoolean !== undefined) return { type: 'boolean', value: Boolean(p.valueBoolean) };
  if (p.valueDateTime !== undefined) return { type: 'dateTime', value: String(p.valueDateTime) };
  if (p.valueDecimal !== undefined) return { type: 'decimal', value: Number(p.valueDecimal) };
  return undefined;
}

export function propertyText(v: PropertyValue): string {
  if (v.type === 'Coding') return v.value.code ?? '';
  return String(v.value);
}

export function propertyToParameter(v: PropertyValue): Record<string, unknown> {
  switch (v.type) {
    case 'code':
      return { valueCode: v.value };
    case 'Coding':
      return { valueCoding: v.value };
    case 'string':
      return { valueString: v.value };
    case 'integer':
      return { valueInteger: v.value };
    case 'boolean':
      return { valueBoolean: v.value };
    case 'dateTime':
      return { valueDateTime: v.value };
    case 'decimal':
      return { valueDecimal: v.value };
  }
}

export class CodeSystemIndex {
  readonly url: string;
  readonly version?: string;
  readonly name?: string;
  readonly title?: string;
  readonly content: string;
  readonly caseSensitive: boolean;
  readonly language?: string;
  readonly resource: CodeSystem;
  /** True for a fragment assembled from value set content (no CodeSystem resource exists). */
  readonly synthetic: boolean;
  readonly concepts = new Map<string, ConceptDef>();
  readonly roots: string[] = [];
  private readonly lower?: Map<string, ConceptDef>;
  private readonly descCache = new Map<string, Set<string>>();

  constructor(cs: CodeSystem, synthetic = false) {
    this.resource = cs;
    this.synthetic = synthetic;
    this.url = cs.url ?? '';
    this.version = cs.version;
    this.name = cs.name;
    this.title = cs.title;
    this.content = cs.content ?? 'complete';
    this.caseSensitive = cs.caseSensitive ?? false;
    this.language = cs.language;
    const walk = (list: CodeSystemConcept[] | undefined, parent?: string) => {
      for (const c of list ?? []) {
        if (!c.code) continue;
        let def = this.concepts.get(c.code);
        if (!def) {
          def = {
            code: c.code,
            display: c.display,
            definition: c.definition,
            designations: (c.designation ?? []).filter((d) => d.value).map((d) => ({ language: d.language, use: d.use, value: d.value })),
            properties: [],
            parents: [],
            children: [],
            inactive: false,
            abstract: false,
            deprecated: false,
          };
          this.concepts.set(c.code, def);
        }
        for (const p of c.property ?? []) {
          const v = propertyValue(p as unknown as Record<string, unknown>);
          if (!v) continue;
          def.properties.push({ code: p.code, value: v });
          if (p.code === 'status' && typeof v.value === 'string') {
            def.status = v.value;
            if (INACTIVE_STATUS.has(v.value)) def.inactive = true;
            if (v.value === 'deprecated') def.deprecated = true;
          }
          if (p.code === 'inactive' && v.value === true) def.inactive = true;
          if (p.code === 'notSelectable' && v.value === true) def.abstract = true;
          if (p.code === 'parent' && (v.type === 'code' || v.type === 'Coding')) def.parents.push(propertyText(v));
          if (p.code === 'child' && (v.type === 'code' || v.type === 'Coding')) def.children.push(propertyText(v));
        }
        if (parent && !def.parents.includes(parent)) def.parents.push(parent);
        walk(c.concept, c.code);
      }
    };
    walk(cs.concept);
    // Symmetric parent/child links.
    for (const def of this.concepts.values()) {
      for (const p of def.parents) {
        const pd = this.concepts.get(p);
        if (pd && !pd.children.includes(def.code)) pd.children.push(def.code);
      }
      for (const ch of def.children) {
        const cd = this.concepts.get(ch);
        if (cd && !cd.parents.includes(def.code)) cd.parents.push(def.code);
      }
    }
    for (const def of this.concepts.values()) if (!def.parents.length) this.roots.push(def.code);
    if (!this.caseSensitive) {
      this.lower = new Map();
      for (const [k, v] of this.concepts) if (!this.lower.has(k.toLowerCase())) this.lower.set(k.toLowerCase(), v);
    }
  }

  get(code: string): ConceptDef | undefined {
    return this.concepts.get(code) ?? this.lower?.get(code.toLowerCase());
  }

  /** Every descendant of `code` (not including it). */
  descendants(code: string): Set<string> {
    let out = this.descCache.get(code);
    if (out) return out;
    out = new Set();
    const stack = [...(this.get(code)?.children ?? [])];
    while (stack.length) {
      const c = stack.pop()!;
      if (out.has(c)) continue;
      out.add(c);
      stack.push(...(this.concepts.get(c)?.children ?? []));
    }
    this.descCache.set(code, out);
    return out;
  }

  /** True when `code` is `ancestor` or one of its descendants. */
  isA(code: string, ancestor: string): boolean {
    const a = this.get(ancestor)?.code;
    const c = this.get(code)?.code;
    if (!a || !c) return false;
    return a === c || this.descendants(a).has(c);
  }

  /** The declared type of a property (from CodeSystem.property). */
  propertyType(code: string): string | undefined {
    return this.resource.property?.find((p) => p.code === code)?.type;
  }
}

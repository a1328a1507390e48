/**
 * Binding checks through the terminology module (src/terminology: `validateInValueSet` over a `Scope`).
 *
 * The scope's first layer reads ValueSets and CodeSystems from the FHIR package registry on demand (R4 core,
 * hl7.terminology.r4, IPS, installed packages); the terminology service's static content (terminology/:
 * the eHDSI MVC) is the second layer when the service has been loaded (the server loads it at start; the
 * validator does not force its 2 s load). A code whose system is not available here in full (SNOMED CT,
 * LOINC, ...) cannot be checked and gives no issue, as HL7's validator does without a terminology server.
 */
import type { CodeSystem, ValueSet } from 'fhir/r4';
import type { PackageRegistry } from '../packages/registry.ts';
import { lookupCode, validateInValueSet } from '../terminology/engine.ts';
import { ResourceSet, Scope } from '../terminology/registry.ts';
import type { CodeSystemIndex } from '../terminology/codesystem-index.ts';
import { terminologyService } from '../terminology/service.ts';

class PackageLayer extends ResourceSet {
  private readonly registry: PackageRegistry;
  private readonly tried = new Set<string>();

  constructor(registry: PackageRegistry) {
    super();
    this.registry = registry;
  }

  override codeSystem(url: string, version?: string): CodeSystemIndex | undefined {
    if (!this.tried.has('cs ' + url)) {
      this.tried.add('cs ' + url);
      const cs = this.registry.codeSystem(url) as CodeSystem | undefined;
      if (cs) this.addCodeSystem(cs);
    }
    return super.codeSystem(url, version);
  }

  override valueSet(url: string, version?: string): ValueSet | undefined {
    if (!this.tried.has('vs ' + url)) {
      this.tried.add('vs ' + url);
      const vs = this.registry.valueSet(url) as ValueSet | undefined;
      if (vs) this.addValueSet(vs);
    }
    return super.valueSet(url, version);
  }
}

export interface Coded {
  system?: string;
  code?: string;
  display?: string;
}

export type BindingVerdict = { ok: true } | { ok: false; message: string } | { ok: 'unknown'; message: string };

export class BindingChecker {
  private readonly layer: PackageLayer;
  private scope: Scope;
  private readonly results = new Map<string, BindingVerdict>();
  private withService = false;

  constructor(registry: PackageRegistry) {
    this.layer = new PackageLayer(registry);
    this.scope = new Scope([this.layer]);
  }

  private currentScope(): Scope {
    if (!this.withService) {
      const svc = terminologyService();
      if ((svc as unknown as { loaded?: boolean }).loaded) {
        this.scope = new Scope([this.layer, svc.static]);
        this.withService = true;
        this.results.clear();
        this.displayCache.clear();
      }
    }
    return this.scope;
  }

  private incomplete(scope: Scope, vs: ValueSet, seen: Set<string>): boolean {
    for (const inc of [...(vs.compose?.include ?? [])]) {
      if (inc.system) {
        const cs = scope.codeSystem(inc.system);
        if (!cs || cs.content !== 'complete') return true;
      }
      for (const ref of inc.valueSet ?? []) {
        if (seen.has(ref)) continue;
        seen.add(ref);
        const sub = scope.valueSet(ref);
        if (!sub || this.incomplete(scope, sub, seen)) return true;
      }
    }
    return false;
  }

  private readonly displayCache = new Map<string, string[] | null>();

  /**
   * Every display and designation the terminology module knows for a code, or undefined when the code system
   * or the code is not available here. Asked of the engine's $lookup (`lookupCode`), so the validator and the
   * terminology operations read displays one way: designations of the code system and of its supplements,
   * with `urn:oid:` and other aliases of a system resolved to the same code system and supplements.
   */
  displays(system: string, code: string): string[] | undefined {
    const key = `${system}\u0000${code}`;
    let r = this.displayCache.get(key);
    if (r === undefined) {
      r = null;
      try {
        const params = lookupCode(this.currentScope(), system, code, undefined, [], ['designation']) as { name: string; valueString?: string; part?: { name: string; valueString?: string }[] }[];
        const list: string[] = [];
        for (const p of params) {
          if (p.name === 'display' && p.valueString) list.push(p.valueString);
          else if (p.name === 'designation') for (const part of p.part ?? []) if (part.name === 'value' && part.valueString) list.push(part.valueString);
        }
        r = list.length ? list : null;
      } catch {
        // Unknown code system or code (a FhirError 404 from the engine): nothing to judge.
        r = null;
      }
      this.displayCache.set(key, r);
    }
    return r ?? undefined;
  }

  /** Whether one code (with or without system) is in the value set. */
  checkCode(valueSet: string, c: Coded): BindingVerdict {
    if (!c.code) return { ok: 'unknown', message: 'no code' };
    const key = `${valueSet}\u0000${c.system ?? ''}\u0000${c.code}`;
    let r = this.results.get(key);
    if (r) return r;
    r = this.compute(valueSet, c);
    this.results.set(key, r);
    return r;
  }

  private compute(valueSet: string, c: Coded): BindingVerdict {
    const scope = this.currentScope();
    const vs = scope.valueSet(valueSet);
    if (!vs) return { ok: 'unknown', message: `the value set ${valueSet} is not available` };
    if (c.system) {
      const cs = scope.codeSystem(c.system);
      const includes = (vs.compose?.include ?? []).map((i) => i.system).filter(Boolean);
      // A system the value set does not name, while it only names systems: certainly not in it.
      const onlySystems = (vs.compose?.include ?? []).every((i) => i.system && !i.valueSet?.length);
      if (!cs || cs.content !== 'complete') {
        // The value set may enumerate the codes of that system itself (UCUM units, for instance).
        const enumerated = (vs.compose?.include ?? []).filter((i) => i.system === c.system);
        if (enumerated.length && enumerated.every((i) => i.concept?.length && !i.filter?.length) && !(vs.compose?.include ?? []).some((i) => i.valueSet?.length)) {
          return enumerated.some((i) => i.concept!.some((x) => x.code === c.code)) ? { ok: true } : { ok: false, message: `the code ${c.system}#${c.code} is not among the codes the value set lists` };
        }
        if (onlySystems && includes.length && !includes.includes(c.system) && vs.compose) {
          return { ok: false, message: `the code system ${c.system} is not part of the value set ${valueSet}` };
        }
        return { ok: 'unknown', message: `the code system ${c.system} is not available here` };
      }
    }
    try {
      const res = validateInValueSet(scope, vs, { system: c.system, code: c.code! }, { displayLanguage: [], abstractAllowed: true, activeOnly: false });
      if (res.result) return { ok: true };
      if (res.issues.some((i) => i.code === 'not-found')) return { ok: 'unknown', message: res.message ?? 'unknown code system' };
      // Not found, but the value set draws on a system (or value set) not available here in full: cannot say.
      if (!c.system && this.incomplete(scope, vs, new Set())) return { ok: 'unknown', message: `the value set ${valueSet} uses content not available here` };
      return { ok: false, message: res.issues.filter((i) => i.severity === 'error').map((i) => i.text).join('; ') || `not in ${valueSet}` };
    } catch (err) {
      return { ok: 'unknown', message: (err as Error).message };
    }
  }
}

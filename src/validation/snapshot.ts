/**
 * Snapshot generation: a profile that ships only a differential gets a snapshot built from its base
 * definition's snapshot (generated first, recursively, when the base has none either).
 *
 * Rules (a practical subset of the FHIR snapshot algorithm):
 * - elements are matched by `id` (or `path` + `sliceName` when a differential element has no id);
 * - a differential element that names a new slice (`Patient.identifier:matricule`) inserts a copy of the
 *   sliced element and its descendants after the existing slices, ids re-rooted on the slice;
 * - a differential element below an element whose type is not expanded yet (`Patient.name.family`) expands
 *   that type's snapshot children (or the type profile's) under it first;
 * - a choice element constrained to one type by name (`Observation.valueQuantity`) constrains `value[x]`;
 * - properties of the differential replace those of the base, except `constraint` (appended), and `base`
 *   (kept from the base definition).
 */
import type { PackageRegistry } from '../packages/registry.ts';
import type { RawElement, StructureDef } from './structure.ts';

const clone = <T>(v: T): T => structuredClone(v);

function diffId(e: RawElement): string {
  if (e.id) return e.id;
  return e.path + (e.sliceName ? `:${e.sliceName}` : '');
}

/** Replaces the id/path prefix `from` with `to` (ids) and keeps paths aligned. */
function reroot(e: RawElement, fromId: string, toId: string, fromPath: string, toPath: string): RawElement {
  const c = clone(e);
  c.id = toId + (c.id ?? c.path).slice(fromId.length);
  c.path = toPath + c.path.slice(fromPath.length);
  return c;
}

function isDescendant(id: string, of: string): boolean {
  return id.startsWith(of) && (id.charAt(of.length) === '.' || id.charAt(of.length) === ':');
}

function merge(target: RawElement, diff: RawElement): void {
  for (const [k, v] of Object.entries(diff)) {
    if (k === 'id' || k === 'path' || k === 'base') continue;
    if (k === 'constraint') {
      const have = new Set((target.constraint ?? []).map((c) => c.key));
      target.constraint = [...(target.constraint ?? []), ...(v as RawElement['constraint'] ?? []).filter((c) => !have.has(c.key))];
      continue;
    }
    if ((k.startsWith('fixed') || k.startsWith('pattern')) && k !== 'fixed' && k !== 'pattern') {
      for (const old of Object.keys(target)) if ((old.startsWith('fixed') || old.startsWith('pattern')) && old !== k) delete target[old];
    }
    target[k] = clone(v);
  }
}

export function generateSnapshot(sd: StructureDef, registry: PackageRegistry, stack: string[] = []): StructureDef | undefined {
  if (sd.snapshot?.element?.length) return sd;
  if (!sd.baseDefinition || stack.includes(sd.url!)) return undefined;
  const baseSd = registry.structureDefinition(sd.baseDefinition) as StructureDef | undefined;
  if (!baseSd) throw new Error(`cannot generate the snapshot of ${sd.url}: base definition ${sd.baseDefinition} not found`);
  const base = generateSnapshot(baseSd, registry, [...stack, sd.url!]);
  if (!base?.snapshot) throw new Error(`cannot generate the snapshot of ${sd.url}: base definition ${sd.baseDefinition} has no snapshot`);
  const out: RawElement[] = base.snapshot.element.map((e) => {
    const c = clone(e);
    if (!c.id) c.id = diffId(c);
    if (!c.base) c.base = { path: c.path, min: c.min ?? 0, max: c.max ?? '*' };
    return c;
  });
  // A specialisation (logical model or new type) renames the root; constraints keep it.
  const rootName = sd.type;
  const baseRoot = out[0]!.path;
  if (sd.derivation === 'specialization' && rootName !== baseRoot) {
    for (const e of out) {
      e.id = rootName + e.id!.slice(baseRoot.length);
      e.path = rootName + e.path.slice(baseRoot.length);
    }
  }
  const indexOf = (id: string) => out.findIndex((e) => e.id === id);
  const childrenEnd = (i: number) => {
    const prefix = out[i]!.id! + '.';
    let j = i + 1;
    while (j < out.length && out[j]!.id!.startsWith(prefix)) j++;
    return j;
  };
  const endOf = (i: number) => {
    const id = out[i]!.id!;
    let j = i + 1;
    while (j < out.length && isDescendant(out[j]!.id!, id)) j++;
    return j;
  };
  const expandType = (i: number): boolean => {
    const e = out[i]!;
    if (childrenEnd(i) > i + 1) return false;
    const t = e.type?.[0];
    if (!t || (e.type?.length ?? 0) > 1) return false;
    const typeSd = registry.structureDefinition(t.profile?.[0] ?? `http://hl7.org/fhir/StructureDefinition/${t.code}`) as StructureDef | undefined;
    const full = typeSd ? generateSnapshot(typeSd, registry, [...stack, sd.url!]) : undefined;
    if (!full?.snapshot) return false;
    const [troot, ...rest] = full.snapshot.element;
    const children = rest.map((c) => {
      const r = reroot({ ...c, id: c.id ?? diffId(c) }, troot!.id ?? troot!.path, e.id!, troot!.path, e.path);
      if (!r.base) r.base = { path: c.path, min: c.min ?? 0, max: c.max ?? '*' };
      return r;
    });
    out.splice(i + 1, 0, ...children);
    return children.length > 0;
  };
  /** Finds (creating as needed) the element with this id. */
  const locate = (id: string, path: string): number => {
    let i = indexOf(id);
    if (i >= 0) return i;
    const dot = id.lastIndexOf('.');
    const last = id.slice(dot + 1);
    const colon = last.indexOf(':');
    if (colon >= 0) {
      // New slice: copy the sliced element (and its descendants) after its last slice.
      const slicedId = id.slice(0, dot + 1) + last.slice(0, colon);
      const b = locate(slicedId, path);
      if (b < 0) return -1;
      let end = endOf(b);
      while (end < out.length && out[end]!.id!.startsWith(slicedId + ':')) end = endOf(end);
      const copies = out.slice(b, childrenEnd(b)).map((c) => reroot(c, slicedId, id, out[b]!.path, out[b]!.path));
      copies[0]!.sliceName = last.slice(colon + 1).split('/').pop();
      delete copies[0]!.slicing;
      out.splice(end, 0, ...copies);
      return end;
    }
    if (dot < 0) return -1;
    const parentId = id.slice(0, dot);
    const parentPath = path.slice(0, path.lastIndexOf('.'));
    const p = locate(parentId, parentPath);
    if (p < 0) return -1;
    // Choice constrained by name: valueQuantity -> value[x].
    const choice = out.findIndex((e, k) => k > p && e.id!.startsWith(parentId + '.') && e.id!.endsWith('[x]') && last.startsWith(e.id!.slice(parentId.length + 1, -3)) && e.id!.slice(parentId.length + 1).indexOf('.') < 0);
    if (choice >= 0) return choice;
    if (expandType(p)) {
      i = indexOf(id);
      if (i >= 0) return i;
    }
    return -1;
  };
  for (const d of sd.differential?.element ?? []) {
    const id = diffId(d);
    if (id === d.path && d.path === rootName) {
      merge(out[0]!, d);
      continue;
    }
    const i = locate(id, d.path);
    if (i < 0) throw new Error(`cannot generate the snapshot of ${sd.url}: differential element ${id} matches nothing in ${sd.baseDefinition}`);
    const target = out[i]!;
    // A choice constrained by name restricts the types.
    const lastSeg = id.slice(id.lastIndexOf('.') + 1);
    if (target.id!.endsWith('[x]') && !lastSeg.endsWith('[x]') && !lastSeg.includes(':')) {
      const prefix = target.id!.slice(target.id!.lastIndexOf('.') + 1, -3);
      const suffix = lastSeg.slice(prefix.length);
      target.type = (target.type ?? []).filter((t) => t.code.charAt(0).toUpperCase() + t.code.slice(1) === suffix);
    }
    merge(target, d);
  }
  return { ...sd, snapshot: { element: out } };
}

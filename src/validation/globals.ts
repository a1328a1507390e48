/**
 * ImplementationGuide.global: profiles that apply to every resource of a type. The answer must not depend on
 * the order packages were loaded in, nor on which of their files happen to have been read already (package
 * files are read lazily, and a package read through its url-index cache never parses an ImplementationGuide
 * nobody asked for by url). So:
 *
 * - the guides every loaded package ships are read from the files the package registry holds for it, once per
 *   package (`PackageRegistry.packageGuides`: the `ImplementationGuide-*.json` files of a folder or `.tgz`);
 * - the guides the registry already holds (added in code, our profiles folder, package files read) come too;
 * - the profiles are sorted by canonical URL, then version (a profile named under two versions: the lowest
 *   first, as the validator applies each URL once).
 */
import type { PackageRegistry } from '../packages/registry.ts';
import { compareVersions } from '../terminology/registry.ts';

/** The `global` entries of one guide, as type -> profile pairs. */
function globalsOf(ig: { [k: string]: unknown }): { type: string; profile: string }[] {
  if (!Array.isArray(ig.global)) return [];
  const out: { type: string; profile: string }[] = [];
  for (const g of ig.global as { type?: unknown; profile?: unknown }[]) if (typeof g?.type === 'string' && typeof g.profile === 'string') out.push({ type: g.type, profile: g.profile });
  return out;
}

const split = (canonical: string) => {
  const bar = canonical.indexOf('|');
  return bar < 0 ? { url: canonical, version: '' } : { url: canonical.slice(0, bar), version: canonical.slice(bar + 1) };
};

/** Orders profile canonicals by URL, then version. */
export function compareCanonicals(a: string, b: string): number {
  const x = split(a);
  const y = split(b);
  if (x.url !== y.url) return x.url < y.url ? -1 : 1;
  return compareVersions(x.version, y.version);
}

const perRegistry = new WeakMap<PackageRegistry, { generation: number; packages: number; byType: Map<string, string[]> }>();

/** The global profiles for resources of `type`, sorted by canonical URL and version (see the module comment). */
export function globalProfiles(registry: PackageRegistry, type: string): string[] {
  let cached = perRegistry.get(registry);
  if (!cached || cached.generation !== registry.generation || cached.packages !== registry.packages.length) {
    cached = { generation: registry.generation, packages: registry.packages.length, byType: new Map() };
    perRegistry.set(registry, cached);
  }
  let list = cached.byType.get(type);
  if (!list) {
    const all = new Set(registry.globalProfiles(type));
    // Most guides declare no global profile: the registry skips, unparsed, those whose text lacks the key.
    for (const ig of registry.packageGuides('"global"')) for (const g of globalsOf(ig)) if (g.type === type) all.add(g.profile);
    list = [...all].sort(compareCanonicals);
    cached.byType.set(type, list);
  }
  return list;
}

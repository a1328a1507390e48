/**
 * ImplementationGuide.global: profiles that apply to every resource of a type. The answer must not depend on
 * the order packages were loaded in, nor on which of their files happen to have been read already (package
 * files are read lazily, and a package read through its url-index cache never parses an ImplementationGuide
 * nobody asked for by url). So:
 *
 * - the guides of every loaded package are read from the package itself, once per package: the
 *   `ImplementationGuide-*.json` files (the IG publisher's naming) of a folder or `.tgz` package;
 * - the guides the registry already holds (added in code, our profiles folder, package files read) come too;
 * - the profiles are sorted by canonical URL, then version (a profile named under two versions: the lowest
 *   first, as the validator applies each URL once).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PackageInfo, PackageRegistry } from '../packages/registry.ts';
import { readTar } from '../packages/tar.ts';
import { compareVersions } from '../terminology/registry.ts';

interface GlobalEntry {
  type: string;
  profile: string;
}

const IG_FILE = /^ImplementationGuide-[^/]+\.json$/;

/** Guides' global entries per package location (and its modification time). */
const packageCache = new Map<string, GlobalEntry[]>();

function globalsOf(ig: unknown): GlobalEntry[] {
  const r = ig as { resourceType?: unknown; global?: unknown };
  if (!r || r.resourceType !== 'ImplementationGuide' || !Array.isArray(r.global)) return [];
  const out: GlobalEntry[] = [];
  for (const g of r.global as { type?: unknown; profile?: unknown }[]) if (typeof g?.type === 'string' && typeof g.profile === 'string') out.push({ type: g.type, profile: g.profile });
  return out;
}

function parse(buf: Buffer): unknown {
  // Most guides declare no global profile; skip parsing them (the terminology package's guide is 2.2 MB).
  if (!buf.includes('"global"')) return undefined;
  try {
    return JSON.parse(buf.toString('utf8')) as unknown;
  } catch {
    return undefined; // a broken file is the registry's problem to report; it defines no global profile
  }
}

/** The global entries of the guides a package (folder or .tgz) ships. */
function packageGlobals(info: PackageInfo): GlobalEntry[] {
  const location = info.source;
  if (!existsSync(location)) return [];
  const stat = statSync(location);
  const key = `${location}\u0000${stat.mtimeMs}`;
  let list = packageCache.get(key);
  if (list) return list;
  list = [];
  if (stat.isDirectory()) {
    const root = existsSync(join(location, 'package', 'package.json')) ? join(location, 'package') : location;
    for (const f of readdirSync(root).sort()) if (IG_FILE.test(f)) list.push(...globalsOf(parse(readFileSync(join(root, f)))));
  } else if (location.endsWith('.tgz') || location.endsWith('.tar.gz')) {
    try {
      const files = readTar(readFileSync(location));
      for (const name of [...files.keys()].sort()) {
        const m = /^package\/([^/]+)$/.exec(name);
        if (m && IG_FILE.test(m[1]!)) list.push(...globalsOf(parse(files.get(name)!)));
      }
    } catch {
      // an unreadable archive was refused when it was added
    }
  }
  packageCache.set(key, list);
  return list;
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
    for (const info of registry.packages) for (const g of packageGlobals(info)) if (g.type === type) all.add(g.profile);
    list = [...all].sort(compareCanonicals);
    cached.byType.set(type, list);
  }
  return list;
}

/**
 * Builds profiles/: reads the authored differentials in profiles/src/ (StructureDefinitions, plus ValueSets
 * copied as they are), generates each snapshot with our generator (src/validation/snapshot.ts) and writes
 * profiles/<file>. Run: `node src/packages/build-profiles.ts` (Node 24). Profiles may build on each other:
 * the sources are added to the registry first, so a snapshot can use another source's snapshot.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PackageRegistry, PROFILES_DIR, configuredPackageLocations, type ConformanceResource } from './registry.ts';
import { generateSnapshot } from '../validation/snapshot.ts';
import type { StructureDef } from '../validation/structure.ts';

export function buildProfiles(srcDir = join(PROFILES_DIR, 'src'), outDir = PROFILES_DIR): string[] {
  const reg = new PackageRegistry();
  for (const loc of configuredPackageLocations()) reg.addPackage(loc);
  const sources = readdirSync(srcDir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, res: JSON.parse(readFileSync(join(srcDir, f), 'utf8')) as ConformanceResource }));
  for (const s of sources) reg.add(s.res);
  const written: string[] = [];
  for (const s of sources) {
    let out = s.res;
    if (s.res.resourceType === 'StructureDefinition') {
      const sd = generateSnapshot(s.res as StructureDef, reg);
      if (!sd) throw new Error(`${s.file}: no snapshot generated`);
      out = sd;
      reg.add(sd); // later profiles build on the snapshot
    }
    writeFileSync(join(outDir, s.file), JSON.stringify(out, null, 2) + '\n');
    written.push(s.file);
  }
  return written;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const f of buildProfiles()) console.log(`profiles/${f}`);
}

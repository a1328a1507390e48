/**
 * `dsp-fhir terminology ...`: terminology tooling.
 *
 * - `import-tsam <folder> [--out <dir>] [--gzip]`: imports a Master Translation Catalogue export (TSAM XML,
 *   one `<ValueSet oid name>` per file with `<concept codeSystem code><designation lang>`) into designation
 *   supplements, one NDJSON file per language (`<dir>/<lang>.ndjson`). The default output folder is
 *   `terminology/designations`, which the server loads at start; any folder listed in TERMINOLOGY_EXTRA_DIRS
 *   is loaded too.
 */
import type { Command } from 'commander';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importTsamFolder, writeSupplements } from '../terminology/tsam.ts';

export function defaultDesignationsDir(): string {
  return join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'terminology', 'designations');
}

/** Runs the import; returns one line per file written. Throws on unreadable or malformed input. */
export function runImportTsam(folder: string, out = defaultDesignationsDir(), gzip = false): string[] {
  const sets = importTsamFolder(folder);
  const concepts = sets.reduce((n, s) => n + s.concepts.length, 0);
  return [`read ${sets.length} value sets, ${concepts} concepts from ${folder}`, ...writeSupplements(sets, out, { gzip })];
}

export function registerTerminology(program: Command): void {
  const cmd = program.command('terminology').description('terminology tooling (MVC, translations)');
  cmd
    .command('import-tsam <folder>')
    .description('import a TSAM (Master Translation Catalogue) XML export into designation supplements')
    .option('-o, --out <dir>', 'output folder (default: terminology/designations)')
    .option('--gzip', 'write .ndjson.gz files')
    .action((folder: string, opts: { out?: string; gzip?: boolean }) => {
      try {
        for (const line of runImportTsam(resolve(folder), opts.out ? resolve(opts.out) : undefined, opts.gzip)) console.log(line);
      } catch (err) {
        console.error(`dsp-fhir terminology import-tsam: ${(err as Error).message}`);
        process.exit(1);
      }
    });
}

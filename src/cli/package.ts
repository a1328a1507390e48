/**
 * `dsp-fhir package install <file|folder>`: copies a FHIR package (NPM package format, .tgz or folder) into
 * <DSP_DATA_DIR>/packages/<name>#<version>/ where the server loads it at start (src/packages/registry.ts).
 * `dsp-fhir package list`: the packages the registry would load.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { installPackage } from '../packages/install.ts';
import { packageRegistry } from '../packages/registry.ts';

export function registerPackage(program: Command): void {
  const cmd = program.command('package').description('FHIR packages (profiles, value sets) used by the validator');
  cmd
    .command('install')
    .description('install a FHIR package (.tgz or folder) into the data folder')
    .argument('<location>', 'package .tgz file or folder')
    .option('--data-dir <dir>', 'data folder (default DSP_DATA_DIR or ./data)')
    .action((location: string, opts: { dataDir?: string }) => {
      try {
        const dataDir = resolve(opts.dataDir ?? process.env.DSP_DATA_DIR ?? 'data');
        const p = installPackage(resolve(location), dataDir);
        console.log(`installed ${p.name}#${p.version} into ${p.folder}${p.files >= 0 ? ` (${p.files} files)` : ''}`);
      } catch (err) {
        console.error(`dsp-fhir package install: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    });
  cmd
    .command('list')
    .description('list the FHIR packages the server loads')
    .action(() => {
      for (const p of packageRegistry().packages) console.log(`${p.name}#${p.version}  ${p.source}`);
    });
}

/**
 * `dsp-fhir translate --to cda <bundle.json|folder> [-o out]` and
 * `dsp-fhir translate --to fhir <doc.xml|folder> [--lang fr] [-o out]`: the cross-border Patient Summary
 * conversions, offline. With a folder, every .json (resp. .xml) file in it is converted; -o is then a folder.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import type { Command } from 'commander';
import type { Bundle } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { bundleToCda } from '../crossborder/to-cda.ts';
import { cdaToBundle } from '../crossborder/from-cda.ts';

export interface TranslateOptions {
  to: string;
  output?: string;
  lang?: string;
}

/** Converts one file's content; returns the output text. */
export function translateText(text: string, opts: TranslateOptions): string {
  if (opts.to === 'cda') {
    let bundle: Bundle;
    try {
      bundle = JSON.parse(text) as Bundle;
    } catch (e) {
      throw new FhirError(400, `Not JSON: ${(e as Error).message}`, 'structure');
    }
    return bundleToCda(bundle, opts.lang ? { language: opts.lang } : {});
  }
  if (opts.to === 'fhir') return `${JSON.stringify(cdaToBundle(text, opts.lang ? { lang: opts.lang } : {}), null, 2)}\n`;
  throw new Error(`--to must be cda or fhir (got ${opts.to})`);
}

export function registerTranslate(program: Command): void {
  program
    .command('translate')
    .description('convert a Patient Summary: FHIR document Bundle -> eHDSI pivot CDA (--to cda) or pivot CDA -> FHIR Bundle (--to fhir)')
    .argument('<input>', 'input file or folder')
    .requiredOption('--to <format>', 'cda or fhir')
    .option('-o, --output <path>', 'output file (or folder when the input is a folder); default: standard output')
    .option('--lang <tag>', 'language of displays (to fhir) or of the document when the Bundle has none (to cda)')
    .action((input: string, opts: TranslateOptions) => {
      if (opts.to !== 'cda' && opts.to !== 'fhir') {
        console.error(`dsp-fhir translate: --to must be cda or fhir (got ${opts.to})`);
        process.exit(2);
      }
      const inExt = opts.to === 'cda' ? '.json' : '.xml';
      const outExt = opts.to === 'cda' ? '.xml' : '.json';
      let failures = 0;
      const one = (file: string, out: string | undefined) => {
        try {
          const result = translateText(readFileSync(file, 'utf8'), opts);
          if (out) writeFileSync(out, result);
          else process.stdout.write(result);
        } catch (e) {
          failures++;
          const msg = e instanceof FhirError ? `${e.status} ${e.message}` : (e as Error).message;
          console.error(`dsp-fhir translate: ${file}: ${msg}`);
        }
      };
      let isDir = false;
      try {
        isDir = statSync(input).isDirectory();
      } catch {
        console.error(`dsp-fhir translate: no such file or folder: ${input}`);
        process.exit(2);
      }
      if (isDir) {
        const files = readdirSync(input).filter((f) => extname(f).toLowerCase() === inExt).sort();
        if (opts.output) mkdirSync(opts.output, { recursive: true });
        for (const f of files) one(join(input, f), opts.output ? join(opts.output, basename(f, extname(f)) + outExt) : undefined);
        console.error(`dsp-fhir translate: ${files.length - failures} of ${files.length} converted`);
      } else one(input, opts.output);
      process.exit(failures ? 1 : 0);
    });
}

/**
 * `dsp-fhir validate <file|folder> [--profile url] [--package dir|tgz] [--display-mismatch warning|error]
 * [--security-checks] [--no-html-in-markdown] [--no-example-urls] [-q]`: validates JSON resources (a folder:
 * every *.json in it, recursively) with the server's validator (base structure, core invariants, declared
 * profiles, the profile asked for) and prints one line per problem. The run options are those of `$validate`,
 * under the same names. Exit code: 0 when no errors, 1 when any file has errors, 2 on bad usage or
 * unreadable input.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Command } from 'commander';
import { packageRegistry } from '../packages/registry.ts';
import { FhirError } from '../fhir/outcome.ts';
import { setValidationOption, validateFull, type ValidationOptions } from '../validation/index.ts';

function jsonFiles(p: string): string[] {
  if (!statSync(p).isDirectory()) return [p];
  return readdirSync(p, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? jsonFiles(join(p, e.name)) : e.name.endsWith('.json') ? [join(p, e.name)] : []));
}

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('validate FHIR JSON resources (a file or a folder) against the base definitions and profiles')
    .argument('<path>', 'a .json file or a folder of them')
    .option('--profile <url...>', 'profile(s) every resource must conform to')
    .option('--package <location...>', 'extra FHIR package(s) to load (folder or .tgz)')
    .option('--display-mismatch <severity>', 'severity of a Coding display the terminology module does not know: warning (default) or error')
    .option('--security-checks', 'refuse HTML-looking text in strings and markdown')
    .option('--no-html-in-markdown', 'refuse unescaped HTML tags in markdown')
    .option('--no-example-urls', 'refuse example.org / example.com URLs')
    .option('-q, --quiet', 'print errors only (no warnings / information)')
    .action((path: string, opts: { profile?: string[]; package?: string[]; quiet?: boolean; displayMismatch?: string; securityChecks?: boolean; htmlInMarkdown?: boolean; exampleUrls?: boolean }) => {
      const run: ValidationOptions = { profiles: opts.profile };
      let files: string[];
      try {
        if (opts.displayMismatch !== undefined) setValidationOption(run, 'display-mismatch', opts.displayMismatch);
        // commander reads `--no-x` as x = false (default true).
        if (opts.securityChecks) setValidationOption(run, 'security-checks', true);
        if (opts.htmlInMarkdown === false) setValidationOption(run, 'no-html-in-markdown', true);
        if (opts.exampleUrls === false) setValidationOption(run, 'no-example-urls', true);
        files = jsonFiles(path);
      } catch (err) {
        console.error(`dsp-fhir validate: ${err instanceof FhirError ? `--${err.message}` : (err as Error).message}`);
        process.exit(2);
      }
      const reg = packageRegistry();
      for (const p of opts.package ?? []) reg.addPackage(p);
      let errors = 0;
      let warnings = 0;
      let failed = 0;
      for (const f of files) {
        let resource: unknown;
        try {
          resource = JSON.parse(readFileSync(f, 'utf8'));
        } catch (err) {
          console.log(`${relative('.', f)}: fatal: not JSON: ${(err as Error).message}`);
          errors++;
          failed++;
          continue;
        }
        const issues = validateFull(resource, run);
        const e = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal').length;
        errors += e;
        warnings += issues.filter((i) => i.severity === 'warning').length;
        if (e) failed++;
        for (const i of issues) {
          if (opts.quiet && i.severity !== 'error' && i.severity !== 'fatal') continue;
          console.log(`${relative('.', f)}: ${i.severity}: ${i.diagnostics}`);
        }
      }
      console.log(`${files.length} file(s), ${failed} with errors: ${errors} error(s), ${warnings} warning(s)`);
      process.exitCode = errors ? 1 : 0;
    });
}

/**
 * External yardstick: HL7's validator test cases (../shared/specs/fhir-test-cases/validator, manifest.json),
 * the R4 ones that need no terminology server and no registry package (module not `tx`, no `packages` on the case,
 * profile variants with `packages` left out, not tx-dependent, JSON instance and JSON supporting files, `supporting5`
 * included), and that validate FHIR resources (not the `cdshooks`
 * module's JSON documents, not `logical` model instances). Each case's instance is validated with
 * validateFull (supporting and profile files added to the registry for that case only; the `profile` variant
 * with its profile asked for) and compared with HL7's Java validator outcome (outcomes/java):
 *   verdict   both find errors, or both find none
 *   count     same number of errors
 *   locations same set of error locations (FHIRPath expressions, indexes and `ofType` normalised)
 * Usage: node bench/validation-yardstick.ts [--verbose] [--only name]   (writes bench/results/validation-yardstick.json)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Issue } from '../src/fhir/outcome.ts';
import { packageRegistry, type ConformanceResource } from '../src/packages/registry.ts';
import { ProfileValidator } from '../src/validation/profile.ts';
import { validateFull } from '../src/validation/index.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = join(root, '..', 'shared', 'specs', 'fhir-test-cases', 'validator');
if (!existsSync(join(dir, 'manifest.json'))) {
  console.log(`skipped: ${dir} not found (the shared test cases are not part of a fresh clone)`);
  process.exit(0);
}
const verbose = process.argv.includes('--verbose');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;

interface Case {
  name: string;
  file: string;
  version?: string;
  module?: string;
  java?: string | { errorCount?: number };
  packages?: unknown;
  'tx-dependent'?: unknown;
  supporting?: (string | { source?: string; file?: string })[];
  /** Supporting files HL7's runner loads as well (R5-era manifests). */
  supporting5?: string[];
  profiles?: (string | { source?: string; file?: string })[];
  profile?: { source: string; java: string; supporting?: (string | { source?: string; file?: string })[] };
}
interface JavaIssue {
  severity: string;
  expression?: string[];
  details?: { text?: string };
}

const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { 'test-cases': Case[] };
const fileOf = (f: string | { source?: string; file?: string }) => (typeof f === 'string' ? f : (f.source ?? f.file ?? ''));
const json = (f: string | { source?: string; file?: string }) => fileOf(f).endsWith('.json');
const cases = manifest['test-cases'].filter(
  (c) => (c.version ?? '5.0').startsWith('4.0') && c.module !== 'tx' && c.module !== 'cdshooks' && !(c as { logical?: unknown }).logical && !c.packages && !c['tx-dependent'] && c.java && json(c.file) &&
    [...(c.supporting ?? []), ...(c.supporting5 ?? []), ...(c.profiles ?? []), ...(c.profile ? [c.profile.source, ...(c.profile.supporting ?? [])] : [])].every(json) && (!only || c.name === only),
);

const norm = (e: string) => e.replace(/\[0\]/g, '').replace(/\.ofType\(([^)]+)\)/g, (_m, t: string) => t.charAt(0).toUpperCase() + t.slice(1)).replace(/\.value(?=[A-Z])/g, '.value');
const reg = packageRegistry();
const stats = { runs: 0, verdict: 0, count: 0, locations: 0, skipped: 0, failedToRun: 0 };
const disagreements: string[] = [];
/** Every run whose verdict differs, with both sides' errors (for grouping disagreements by cause). */
const verdictMisses: { name: string; java: string[]; ours: string[] }[] = [];

function run(name: string, instanceFile: string, extra: (string | { source?: string; file?: string })[], expectedRef: string | { errorCount?: number }, profileUrl?: string, displayMode?: string, flags: { securityChecks?: boolean; noHtmlInMarkdown?: boolean; noExampleUrls?: boolean } = {}): void {
  const expectedPath = typeof expectedRef === 'string' ? join(dir, 'outcomes', expectedRef) : undefined;
  if (expectedPath && !existsSync(expectedPath)) {
    stats.skipped++;
    return;
  }
  reg.clearAdded();
  for (const f of extra) {
    const p = join(dir, fileOf(f));
    if (!existsSync(p)) continue;
    const r = JSON.parse(readFileSync(p, 'utf8')) as ConformanceResource;
    if (r.resourceType === 'Bundle') for (const e of (r.entry as { resource?: ConformanceResource }[] | undefined) ?? []) e.resource && reg.add(e.resource);
    else reg.add(r);
  }
  let ours: Issue[];
  try {
    const resource = JSON.parse(readFileSync(join(dir, instanceFile), 'utf8'));
    // HL7's validator grades a wrong display as an error unless the case sets `wrong-displays`.
    ours = validateFull(resource, { profiles: profileUrl ? [profileUrl] : undefined, validator: new ProfileValidator(reg), displayMismatch: displayMode === 'warning' ? 'warning' : 'error', ...flags });
  } catch (err) {
    if (err instanceof SyntaxError) {
      // Not JSON: the server answers 400 with one fatal issue.
      ours = [{ severity: 'fatal', code: 'structure', diagnostics: err.message }];
    } else {
      stats.failedToRun++;
      disagreements.push(`${name}: failed to run: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
  }
  const expected: JavaIssue[] = expectedPath
    ? ((JSON.parse(readFileSync(expectedPath, 'utf8')) as { issue?: JavaIssue[] }).issue ?? [])
    : Array.from({ length: (expectedRef as { errorCount?: number }).errorCount ?? 0 }, () => ({ severity: 'error' }));
  const theirErrors = expected.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  const ourErrors = ours.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  stats.runs++;
  const v = (theirErrors.length > 0) === (ourErrors.length > 0);
  const c = theirErrors.length === ourErrors.length;
  const locs = (l: { expression?: string[] }[]) => [...new Set(l.map((i) => norm(i.expression?.[0] ?? '')))].sort().join(' | ');
  const l = expectedPath ? locs(theirErrors) === locs(ourErrors) : c;
  if (v) stats.verdict++;
  if (c) stats.count++;
  if (l) stats.locations++;
  if (!v) verdictMisses.push({ name, java: theirErrors.map((i) => `${i.expression?.[0]}: ${i.details?.text ?? ''}`), ours: ourErrors.map((i) => i.diagnostics) });
  if (!v || (verbose && !l)) {
    disagreements.push(
      `${name}: java ${theirErrors.length} error(s) [${theirErrors.map((i) => `${i.expression?.[0]}: ${i.details?.text?.slice(0, 120)}`).join(' ; ')}] ours ${ourErrors.length} [${ourErrors.map((i) => i.diagnostics.slice(0, 160)).join(' ; ')}]`,
    );
  }
}

const t0 = performance.now();
for (const c of cases) {
  const wd = (c as { 'wrong-displays'?: string })['wrong-displays'];
  // Validator settings a case asks for, where ours has the same setting.
  const flags = { securityChecks: (c as { 'security-checks'?: boolean })['security-checks'] === true, noHtmlInMarkdown: (c as { noHtmlInMarkdown?: boolean }).noHtmlInMarkdown === true, noExampleUrls: (c as { examples?: boolean }).examples === false };
  run(c.name, c.file, [...(c.supporting ?? []), ...(c.supporting5 ?? []), ...(c.profiles ?? [])], c.java!, undefined, wd, flags);
  if (c.profile && !(c.profile as { packages?: unknown }).packages) {
    const src = join(dir, c.profile.source);
    const url = existsSync(src) ? (JSON.parse(readFileSync(src, 'utf8')) as { url?: string }).url : undefined;
    if (url) run(`${c.name} (profile)`, c.file, [...(c.supporting ?? []), ...(c.supporting5 ?? []), ...(c.profiles ?? []), c.profile.source, ...(c.profile.supporting ?? [])], c.profile.java, url, wd, flags);
  }
}
reg.clearAdded();
const pct = (n: number) => `${((100 * n) / Math.max(1, stats.runs)).toFixed(1)}%`;
console.log(`${cases.length} cases selected, ${stats.runs} runs (${stats.skipped} without a java outcome, ${stats.failedToRun} failed to run) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
console.log(`verdict agreement ${pct(stats.verdict)}, same error count ${pct(stats.count)}, same error locations ${pct(stats.locations)}`);
for (const d of disagreements) console.log('  ' + d.slice(0, 600));
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'validation-yardstick.json'), JSON.stringify({ selected: cases.length, ...stats, disagreements, verdictMisses }, null, 2) + '\n');

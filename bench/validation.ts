/**
 * Validation benchmark: a 50-resource Patient Summary document (the dataset's Claire Wagner summary,
 * examples/05, grown to 50 entries with more vital-sign Observations) validated in the same process by
 *   ours-base     validateResource (walker + schema: what every write runs)
 *   ours-full     validateFull against LU Patient Summary (→ IPS Bundle, Composition, entry profiles), core
 *                 invariants and bindings for every entry
 *   ours-entries  each entry against its IPS profile, one call per entry (same inputs as medplum-entries)
 *   medplum-base  @medplum/core validateResource on the Bundle (R4 base definitions)
 *   medplum-entries @medplum/core validateResource(entry, { profile }) with the same IPS profiles
 * Medplum cannot load the IPS Bundle profile (profile/exists discriminators), hence the per-entry comparison.
 *
 * Usage: node bench/validation.ts [--iterations N]   (Node 24; prints a table, writes bench/results/validation.json)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { indexStructureDefinitionBundle, validateResource as medplumValidate } from '@medplum/core';
import type { Bundle, Resource, StructureDefinition } from 'fhir/r4';
import { loadavg } from 'node:os';
import { readDefinitionBundle } from '../src/fhir/model.ts';
import { packageRegistry } from '../src/packages/registry.ts';
import { validateFull, validateResource } from '../src/validation/index.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const iterations = Number(process.argv[process.argv.indexOf('--iterations') + 1]) || 200;
const IPS = 'http://hl7.org/fhir/uv/ips/StructureDefinition/';
const LU_PS = 'http://dsp.lu/fhir/StructureDefinition/lu-patient-summary';

function summary50(): Bundle {
  const b = JSON.parse(readFileSync(join(root, 'examples', '05-patient-summary-claire-wagner.json'), 'utf8')) as Bundle;
  const entries = b.entry!;
  const comp = entries[0]!.resource as { section: { code: { coding: { code: string }[] }; entry?: { reference: string }[] }[] };
  const vitals = comp.section.find((s) => s.code.coding[0]!.code === '8716-3')!;
  const template = entries.find((e) => e.fullUrl === vitals.entry![0]!.reference)!;
  for (let i = 0; entries.length < 50; i++) {
    const fullUrl = `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const r = structuredClone(template.resource!);
    r.id = fullUrl.slice(9);
    entries.push({ fullUrl, resource: r });
    vitals.entry!.push({ reference: fullUrl });
  }
  b.meta = { profile: [LU_PS] };
  return b;
}

const ENTRY_PROFILE: Record<string, string> = {
  Composition: IPS + 'Composition-uv-ips',
  Patient: IPS + 'Patient-uv-ips',
  Practitioner: IPS + 'Practitioner-uv-ips',
  Organization: IPS + 'Organization-uv-ips',
  MedicationStatement: IPS + 'MedicationStatement-uv-ips',
  Medication: IPS + 'Medication-uv-ips',
  AllergyIntolerance: IPS + 'AllergyIntolerance-uv-ips',
  Condition: IPS + 'Condition-uv-ips',
  Procedure: IPS + 'Procedure-uv-ips',
  Immunization: IPS + 'Immunization-uv-ips',
  Observation: IPS + 'Observation-results-laboratory-pathology-uv-ips',
};

function time(label: string, fn: () => number, out: Record<string, unknown>): void {
  for (let i = 0; i < Math.min(20, iterations); i++) fn();
  const t: number[] = [];
  let issues = 0;
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    issues = fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  const median = t[Math.floor(t.length / 2)]!;
  const p95 = t[Math.floor(t.length * 0.95)]!;
  out[label] = { minMs: +t[0]!.toFixed(2), medianMs: +median.toFixed(2), p95Ms: +p95.toFixed(2), errors: issues };
  console.log(`${label.padEnd(16)} min ${t[0]!.toFixed(2).padStart(7)} ms   median ${median.toFixed(2).padStart(7)} ms   p95 ${p95.toFixed(2).padStart(7)} ms   errors ${issues}`);
}

const bundle = summary50();
const errorsOf = (l: { severity?: string }[]) => l.filter((i) => i.severity === 'error' || i.severity === 'fatal').length;
const entries = bundle.entry!.map((e) => e.resource!).filter((r) => ENTRY_PROFILE[r.resourceType]);

// medplum: R4 base definitions, then the IPS profiles it can parse.
const t0 = performance.now();
for (const f of ['profiles-types.json', 'profiles-resources.json']) indexStructureDefinitionBundle(readDefinitionBundle<StructureDefinition>(f).entry.map((e) => e.resource));
const medplumProfiles = new Map<string, StructureDefinition>();
for (const url of new Set(Object.values(ENTRY_PROFILE))) {
  const sd = packageRegistry().structureDefinition(url) as unknown as StructureDefinition;
  try {
    medplumValidate({ resourceType: sd.type } as Resource, { profile: sd });
    medplumProfiles.set(url, sd);
  } catch {
    medplumProfiles.set(url, sd); // a validation error is fine; loading failures show below
  }
}
console.log(`medplum definitions loaded in ${(performance.now() - t0).toFixed(0)} ms`);
const t1 = performance.now();
validateFull(bundle);
console.log(`ours: first full validation (loads packages and compiles) ${(performance.now() - t1).toFixed(0)} ms`);

const results: Record<string, unknown> = { entries: bundle.entry!.length, iterations, node: process.version, loadAverage: loadavg()[0] };
console.log(`load average ${loadavg()[0]!.toFixed(1)} (medians are inflated on a busy machine; min is the best case)`);
const medplumIssues = (r: Resource, profile?: StructureDefinition) => {
  try {
    return medplumValidate(r, profile ? { profile } : undefined);
  } catch (err) {
    return [{ severity: 'fatal', diagnostics: (err as Error).message }];
  }
};
time('ours-base', () => errorsOf(validateResource(bundle)), results);
time('ours-full', () => errorsOf(validateFull(bundle)), results);
time('ours-entries', () => entries.reduce((n, r) => n + errorsOf(validateFull(r, { profiles: [ENTRY_PROFILE[r.resourceType]!], declared: false, base: false })), 0), results);
time('medplum-base', () => errorsOf(medplumIssues(bundle)), results);
time('medplum-entries', () => entries.reduce((n, r) => n + errorsOf(medplumIssues(r, medplumProfiles.get(ENTRY_PROFILE[r.resourceType]!))), 0), results);

// Verdict differences, entry by entry.
const diffs: string[] = [];
for (const r of entries) {
  const url = ENTRY_PROFILE[r.resourceType]!;
  const ours = validateFull(r, { profiles: [url], declared: false, base: false }).filter((i) => i.severity === 'error');
  const theirs = medplumIssues(r, medplumProfiles.get(url)).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (!!ours.length !== !!theirs.length) {
    diffs.push(`${r.resourceType}/${r.id} vs ${url.split('/').pop()}: ours ${ours.length} error(s)${ours[0] ? ` (${ours[0].diagnostics})` : ''}; medplum ${theirs.length}${theirs[0] ? ` (${theirs[0].diagnostics})` : ''}`);
  }
}
results.verdictDifferences = diffs;
const m = (k: string) => (results[k] as { medianMs: number }).medianMs;
results.ratioBase = +(m('medplum-base') / m('ours-base')).toFixed(2);
results.ratioEntries = +(m('medplum-entries') / m('ours-entries')).toFixed(2);
// Our full profile validation against medplum's base-only validation of the same Bundle (medplum cannot load
// the IPS Bundle profile): how much the profiles, invariants and bindings cost relative to a structural peer.
results.ratioFullToMedplumBase = +(m('ours-full') / m('medplum-base')).toFixed(2);
console.log(`speed ratio medplum/ours: base ${results.ratioBase}x, per-entry profiles ${results.ratioEntries}x; ours-full / medplum-base ${results.ratioFullToMedplumBase}x (median)`);
console.log(`verdict differences (per entry): ${diffs.length}`);
for (const d of diffs) console.log('  ' + d.slice(0, 400));
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'validation.json'), JSON.stringify(results, null, 2) + '\n');

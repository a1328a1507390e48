/**
 * Review fixes of the validator: one date parser (impossible calendar dates refused, never compared with a
 * limit); Coding displays through the terminology engine's lookup (supplements under an aliased system);
 * validation options reachable from $validate and the CLI; ImplementationGuide global profiles independent of
 * the order packages were loaded and read in.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Resource } from 'fhir/r4';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Issue } from '../src/fhir/outcome.ts';
import { PackageRegistry, packageRegistry, type ConformanceResource } from '../src/packages/registry.ts';
import { compareCanonicals } from '../src/validation/globals.ts';
import { profileLayer, validateFull, validateResource } from '../src/validation/index.ts';
import { checkLimit } from '../src/validation/limits.ts';
import { terminologyService } from '../src/terminology/service.ts';
import { makeApp, type TestApp } from './support/app.ts';
import { ROOT } from './support/process.ts';

const BASE = 'http://example.org/fhir/StructureDefinition/';
const CORE = 'http://hl7.org/fhir/StructureDefinition/';
const narrative = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' };
const show = (issues: Issue[]) => issues.map((i) => `${i.severity} ${i.expression?.[0]}: ${i.diagnostics}`).join('\n');
const at = (issues: Issue[], path: string) => issues.filter((i) => i.expression?.[0] === path);

describe('dates: one parser, impossible calendar dates refused', () => {
  beforeAll(() => {
    packageRegistry().add({
      resourceType: 'StructureDefinition',
      url: BASE + 'leap-observation',
      name: 'LeapObservation',
      status: 'draft',
      kind: 'resource',
      abstract: false,
      type: 'Observation',
      baseDefinition: CORE + 'Observation',
      derivation: 'constraint',
      differential: { element: [{ id: 'Observation', path: 'Observation' }, { id: 'Observation.effective[x]', path: 'Observation.effective[x]', maxValueDateTime: '2024-02-29T23:59:59Z' }] },
    } as ConformanceResource);
  });

  it('a date, dateTime and instant of 2024-02-30 are refused at their element paths', () => {
    const p = validateResource({ resourceType: 'Patient', birthDate: '2024-02-30' });
    expect(at(p, 'Patient.birthDate').map((i) => i.diagnostics), show(p)).toEqual([expect.stringMatching(/not a valid date/)]);
    const o = validateResource({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, effectiveDateTime: '2024-02-30T10:00:00Z', issued: '2024-02-30T10:00:00.000Z' });
    expect(at(o, 'Observation.effective.ofType(dateTime)').map((i) => i.diagnostics), show(o)).toEqual([expect.stringMatching(/not a valid dateTime/)]);
    expect(at(o, 'Observation.issued').map((i) => i.diagnostics), show(o)).toEqual([expect.stringMatching(/not a valid instant/)]);
    // 2024 is a leap year, 2023 is not.
    expect(validateResource({ resourceType: 'Patient', birthDate: '2024-02-29' })).toEqual([]);
    expect(at(validateResource({ resourceType: 'Patient', birthDate: '2023-02-29' }), 'Patient.birthDate')).toHaveLength(1);
  });

  it('an impossible date is not read as another day by the limit checks', () => {
    // 2024-02-30 would roll over to 1 March, after the profile's maximum; the only error is the format one.
    const r = { resourceType: 'Observation', meta: { profile: [BASE + 'leap-observation'] }, text: narrative, status: 'final', code: { text: 'x' }, effectiveDateTime: '2024-02-30T10:00:00Z' };
    const issues = validateFull(r);
    const here = at(issues, 'Observation.effective.ofType(dateTime)');
    expect(here.map((i) => i.diagnostics), show(issues)).toEqual([expect.stringMatching(/not a valid dateTime/)]);
    expect(checkLimit('max', 'dateTime', '2024-02-30T10:00:00Z', 'DateTime', '2024-02-29T23:59:59Z')).toBeUndefined();
    expect(checkLimit('max', 'date', '2023-02-29', 'Date', '2023-02-28')).toBeUndefined();
    // Valid values are still compared, at their earliest instant.
    expect(checkLimit('max', 'dateTime', '2024-03-01T00:00:00Z', 'DateTime', '2024-02-29T23:59:59Z')?.message).toMatch(/greater than the maximum/);
    expect(checkLimit('max', 'dateTime', '2024-02-29T23:00:00-01:00', 'DateTime', '2024-02-29T23:59:59Z')?.message).toMatch(/greater than the maximum/);
    expect(checkLimit('max', 'date', '2024-02-29', 'DateTime', '2024-02-29T23:59:59Z')).toBeUndefined();
    const ok = validateFull({ ...r, effectiveDateTime: '2024-02-29T10:00:00Z' });
    expect(at(ok, 'Observation.effective.ofType(dateTime)'), show(ok)).toEqual([]);
  });
});

describe('Coding displays through the terminology engine', () => {
  const NDC = 'http://hl7.org/fhir/sid/ndc';
  const NDC_OID = 'urn:oid:2.16.840.1.113883.6.69';
  beforeAll(() => {
    // The terminology service's static layer is what the validator reads once the server has loaded it.
    const svc = terminologyService().load();
    svc.add({ resourceType: 'CodeSystem', url: NDC, version: 'review-test', status: 'active', content: 'complete', concept: [{ code: '0777-3105-02', display: 'Prozac 100 capsules' }] } as Resource);
    // A French supplement that names the code system by its OID.
    svc.add({
      resourceType: 'CodeSystem',
      url: 'http://example.org/fhir/CodeSystem/ndc-fr',
      status: 'active',
      content: 'supplement',
      supplements: NDC_OID,
      language: 'fr',
      concept: [{ code: '0777-3105-02', designation: [{ language: 'fr', value: 'Prozac 100 gélules' }] }],
    } as Resource);
  });
  const med = (system: string, display: string) => ({ resourceType: 'Medication', text: narrative, code: { coding: [{ system, code: '0777-3105-02', display }] } });
  const displayIssues = (r: unknown) => validateFull(r).filter((i) => /display/.test(i.diagnostics));

  it('a display from a supplement is accepted whether the Coding names the system by URI or by OID', () => {
    expect(displayIssues(med(NDC, 'Prozac 100 gélules'))).toEqual([]);
    expect(displayIssues(med(NDC_OID, 'Prozac 100 gélules'))).toEqual([]);
    expect(displayIssues(med(NDC_OID, 'prozac 100  CAPSULES'))).toEqual([]);
  });
  it('a display neither the code system nor its supplement gives is a warning listing both', () => {
    const issues = displayIssues(med(NDC_OID, 'Fluoxetine'));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.severity).toBe('warning');
    expect(issues[0]!.expression).toEqual(['Medication.code.coding[0].display']);
    expect(issues[0]!.diagnostics).toMatch(/wrong display 'Fluoxetine'.*'Prozac 100 capsules'.*'Prozac 100 gélules'/);
  });
});

describe('run options through $validate and dsp-fhir validate', () => {
  // One resource that trips every opt-in check: an unknown display, HTML in a string and in markdown, an example URL.
  const patient = {
    resourceType: 'Patient',
    text: narrative,
    name: [{ text: '<b>Anne</b> Muller' }],
    maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M', display: 'Verheiratet' }] },
    photo: [{ url: 'http://example.org/photo.png' }],
  };
  const observation = { resourceType: 'Observation', text: narrative, status: 'final', code: { text: 'x' }, note: [{ text: 'see <i>this</i>' }] };
  const errorsAt = (body: { issue?: { severity: string; expression?: string[] }[] }) =>
    (body.issue ?? []).filter((i) => i.severity === 'error').map((i) => i.expression?.[0]).sort();
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
  });

  it('off by default: only the display, as a warning', async () => {
    const res = await t.http.post('/fhir/Patient/$validate').send(patient);
    expect(res.status).toBe(200);
    expect(errorsAt(res.body)).toEqual([]);
    expect(JSON.stringify(res.body)).toMatch(/"severity":"warning".*wrong display 'Verheiratet'/);
  });
  it('as query parameters', async () => {
    const res = await t.http.post('/fhir/Patient/$validate?display-mismatch=error&security-checks=true&no-example-urls=true').send(patient);
    expect(res.status).toBe(200);
    expect(errorsAt(res.body)).toEqual(['Patient.maritalStatus.coding[0].display', 'Patient.name[0].text', 'Patient.photo[0].url']);
  });
  it('as Parameters entries (valueBoolean, valueCode)', async () => {
    const params = (extra: unknown[]) => ({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: observation }, ...extra] });
    const off = await t.http.post('/fhir/Observation/$validate').send(params([]));
    expect(errorsAt(off.body)).toEqual([]);
    const on = await t.http.post('/fhir/Observation/$validate').send(params([{ name: 'no-html-in-markdown', valueBoolean: true }]));
    expect(errorsAt(on.body)).toEqual(['Observation.note[0].text']);
    const display = await t.http.post('/fhir/Patient/$validate').send({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: patient }, { name: 'display-mismatch', valueCode: 'error' }] });
    expect(errorsAt(display.body)).toEqual(['Patient.maritalStatus.coding[0].display']);
  });
  it('a value an option does not take is a 400 naming it', async () => {
    const bad = await t.http.post('/fhir/Patient/$validate?display-mismatch=fatal').send(patient);
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['display-mismatch']);
    const bad2 = await t.http.post('/fhir/Patient/$validate').send({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: patient }, { name: 'security-checks', valueString: 'yes' }] });
    expect(bad2.status).toBe(400);
    expect(bad2.body.issue[0].diagnostics).toMatch(/security-checks must be true or false/);
  });
  it('dsp-fhir validate takes the same options as flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsp-validate-'));
    try {
      writeFileSync(join(dir, 'patient.json'), JSON.stringify(patient));
      writeFileSync(join(dir, 'observation.json'), JSON.stringify(observation));
      const cli = (...args: string[]) => spawnSync(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), 'validate', dir, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, DSP_LOG_LEVEL: 'silent' } });
      const plain = cli();
      expect(plain.status, plain.stderr).toBe(0);
      expect(plain.stdout).toMatch(/2 file\(s\), 0 with errors: 0 error\(s\), 1 warning\(s\)/);
      const strict = cli('--display-mismatch', 'error', '--security-checks', '--no-html-in-markdown', '--no-example-urls');
      expect(strict.status).toBe(1);
      expect(strict.stdout).toMatch(/2 file\(s\), 2 with errors: 4 error\(s\)/);
      expect(strict.stdout).toMatch(/patient\.json: error: Patient\.photo\[0\]\.url: example URLs are not allowed/);
      expect(strict.stdout).toMatch(/observation\.json: error: Observation\.note\[0\]\.text: the markdown contains text that looks like an HTML tag/);
      const bad = cli('--display-mismatch', 'fatal');
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/--display-mismatch must be warning or error/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('ImplementationGuide global profiles from loaded packages', () => {
  const profile = (id: string, element: string) => ({
    resourceType: 'StructureDefinition',
    url: `http://example.org/fhir/global-test/StructureDefinition/${id}`,
    version: '1.0.0',
    name: id,
    status: 'active',
    kind: 'resource',
    abstract: false,
    type: 'Patient',
    baseDefinition: CORE + 'Patient',
    derivation: 'constraint',
    differential: { element: [{ id: 'Patient', path: 'Patient' }, { id: `Patient.${element}`, path: `Patient.${element}`, min: 1 }] },
  });
  /** A package folder holding one guide whose global profile requires `element`. */
  const makePackage = (dir: string, name: string, id: string, element: string) => {
    const root = join(dir, name, 'package');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name, version: '1.0.0', canonical: 'http://example.org/fhir/global-test' }));
    const sd = profile(id, element);
    writeFileSync(join(root, `StructureDefinition-${id}.json`), JSON.stringify(sd));
    writeFileSync(
      join(root, `ImplementationGuide-${name}.json`),
      JSON.stringify({ resourceType: 'ImplementationGuide', id: name, url: `http://example.org/fhir/global-test/ImplementationGuide/${name}`, version: '1.0.0', name, status: 'active', packageId: name, fhirVersion: ['4.0.1'], global: [{ type: 'Patient', profile: `${sd.url}|1.0.0` }] }),
    );
    return join(dir, name);
  };
  const patient = { resourceType: 'Patient', text: narrative, active: true };
  const key = (issues: Issue[]) => issues.map((i) => `${i.severity} ${i.expression?.[0]} ${i.diagnostics}`);

  it('two loads in different orders, with and without the package index cache, give the same issues', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsp-global-'));
    const indexDir = process.env.DSP_PACKAGE_INDEX_DIR;
    process.env.DSP_PACKAGE_INDEX_DIR = join(dir, 'index');
    try {
      // Package names in the opposite order of their profile URLs, so that load order and URL order differ.
      const a = makePackage(dir, 'test.global.a', 'z-needs-gender', 'gender');
      const b = makePackage(dir, 'test.global.b', 'a-needs-birthdate', 'birthDate');
      const load = (order: string[], scanFirst: boolean) => {
        const reg = new PackageRegistry();
        for (const p of order) reg.addPackage(p);
        // A lookup that misses reads every package in full (the first time) or through its url index (later).
        if (scanFirst) expect(reg.structureDefinition('http://example.org/fhir/global-test/StructureDefinition/unknown')).toBeUndefined();
        return key(validateFull(patient, { validator: profileLayer(reg) }));
      };
      const first = load([a, b], false);
      expect(first.filter((i) => i.startsWith('error')), first.join('\n')).toEqual([
        // a-needs-birthdate, then z-needs-gender: by profile URL, not by package load order.
        expect.stringMatching(/^error Patient\.birthDate .*requires at least 1/),
        expect.stringMatching(/^error Patient\.gender .*requires at least 1/),
      ]);
      expect(load([b, a], true)).toEqual(first); // full read, index cache written
      expect(load([a, b], true)).toEqual(first); // read through the index cache: the guides were never parsed
      expect(load([b, a], false)).toEqual(first);
    } finally {
      if (indexDir === undefined) delete process.env.DSP_PACKAGE_INDEX_DIR;
      else process.env.DSP_PACKAGE_INDEX_DIR = indexDir;
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('a .tgz package\'s guides come from the archive the registry read, not from the file on disk later', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsp-global-tgz-'));
    try {
      const folder = makePackage(dir, 'test.global.tgz', 'needs-gender', 'gender');
      const tgz = join(dir, 'test.global.tgz-1.0.0.tgz');
      execFileSync('tar', ['czf', tgz, '-C', folder, 'package']);
      const reg = new PackageRegistry();
      reg.addPackage(tgz);
      rmSync(tgz); // the registry holds every file of the archive: nothing is read from disk again
      expect(reg.packageGuides().map((g) => g.id)).toEqual(['test.global.tgz']);
      expect(reg.packageGuides('"no such text"')).toEqual([]);
      const issues = key(validateFull(patient, { validator: profileLayer(reg) }));
      expect(issues.filter((i) => i.startsWith('error')), issues.join('\n')).toEqual([expect.stringMatching(/^error Patient\.gender .*requires at least 1/)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('global profiles are ordered by canonical URL and version', () => {
    expect(['http://x/b|2.0.0', 'http://x/a|10.0.0', 'http://x/a|9.1.0', 'http://x/a'].sort(compareCanonicals)).toEqual(['http://x/a', 'http://x/a|9.1.0', 'http://x/a|10.0.0', 'http://x/b|2.0.0']);
  });
});

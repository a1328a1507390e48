import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OperationOutcome } from 'fhir/r4';
import { installPackage } from '../src/packages/install.ts';
import { PackageRegistry } from '../src/packages/registry.ts';
import { readTar } from '../src/packages/tar.ts';
import { operationRegistry } from '../src/operations/index.ts';
import type { FhirRequest } from '../src/fhir/request.ts';
import type { Context } from '../src/fhir/interactions.ts';

const SD_URL = 'http://example.org/fhir/StructureDefinition/pkg-patient';

/** A FHIR package folder and its .tgz (made with the system tar, as npm would). */
function makePackage(): { dir: string; tgz: string } {
  const base = mkdtempSync(join(tmpdir(), 'dsp-pkg-'));
  const dir = join(base, 'package');
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'example.fhir.test', version: '1.0.0', canonical: 'http://example.org/fhir' }));
  writeFileSync(
    join(dir, 'StructureDefinition-pkg-patient.json'),
    JSON.stringify({
      resourceType: 'StructureDefinition',
      id: 'pkg-patient',
      url: SD_URL,
      name: 'PkgPatient',
      status: 'draft',
      kind: 'resource',
      abstract: false,
      type: 'Patient',
      baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient',
      derivation: 'constraint',
      differential: { element: [{ id: 'Patient', path: 'Patient' }, { id: 'Patient.birthDate', path: 'Patient.birthDate', min: 1 }] },
    }),
  );
  writeFileSync(join(dir, 'ValueSet-x.json'), JSON.stringify({ resourceType: 'ValueSet', id: 'x', url: 'http://example.org/fhir/ValueSet/x', status: 'draft' }));
  const tgz = join(base, 'example.fhir.test-1.0.0.tgz');
  execFileSync('tar', ['czf', tgz, '-C', base, 'package']);
  return { dir: base, tgz };
}

describe('FHIR packages', () => {
  const pkg = makePackage();

  it('reads a .tgz with our tar reader', () => {
    const files = readTar(readFileSync(pkg.tgz));
    expect([...files.keys()].sort()).toEqual(['package/StructureDefinition-pkg-patient.json', 'package/ValueSet-x.json', 'package/package.json']);
  });

  it('loads a package from a .tgz and from a folder, by canonical URL', () => {
    for (const loc of [pkg.tgz, pkg.dir]) {
      const reg = new PackageRegistry();
      const info = reg.addPackage(loc);
      expect(info).toMatchObject({ name: 'example.fhir.test', version: '1.0.0' });
      expect(reg.structureDefinition(SD_URL)?.id).toBe('pkg-patient');
      expect(reg.valueSet('http://example.org/fhir/ValueSet/x')?.id).toBe('x');
      expect(reg.structureDefinition(SD_URL + '|1.0.0')).toBeUndefined(); // the SD itself has no version
    }
  });

  it('installs a package into the data folder where the registry finds it', () => {
    const data = mkdtempSync(join(tmpdir(), 'dsp-data-'));
    const out = installPackage(pkg.tgz, data);
    expect(out.name).toBe('example.fhir.test');
    expect(readdirSync(join(data, 'packages'))).toEqual(['example.fhir.test#1.0.0']);
    const reg = new PackageRegistry();
    reg.addPackage(join(data, 'packages', 'example.fhir.test#1.0.0'));
    expect(reg.structureDefinition(SD_URL)).toBeDefined();
  });

  it('refuses archives with paths escaping the folder', () => {
    const header = Buffer.alloc(512);
    header.write('../evil.json', 0);
    header.write('0000644\0', 100);
    header.write('00000000002\0', 124);
    header.write('0', 156);
    const body = Buffer.alloc(512);
    body.write('{}');
    expect(() => readTar(Buffer.concat([header, body, Buffer.alloc(1024)]))).toThrow(/unsafe path/);
  });
});

describe('$validate', () => {
  const stored = {
    resourceType: 'StructureDefinition',
    url: 'http://example.org/fhir/StructureDefinition/stored-patient',
    name: 'StoredPatient',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Patient',
    baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient',
    derivation: 'constraint',
    differential: { element: [{ id: 'Patient', path: 'Patient' }, { id: 'Patient.gender', path: 'Patient.gender', min: 1 }] },
  };
  const store = {
    async search() {
      return { resources: [stored], next: undefined };
    },
    async current(type: string, id: string) {
      return id === 'p1' ? { resource: { resourceType: type, id, text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' } }, deleted: false } : undefined;
    },
  };
  const ctx = { store } as unknown as Context;
  const req = (body: unknown, query: [string, string][] = []): FhirRequest => ({ method: 'POST', path: 'Patient/$validate', query, body, headers: {} }) as unknown as FhirRequest;
  const invoke = async (parts: string[], r: FhirRequest) => (await operationRegistry.invoke(ctx, r, parts)).body as OperationOutcome;

  it('type level with a profile stored through the API (found by url)', async () => {
    const oo = await invoke(['Patient', '$validate'], req({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient' } }, { name: 'profile', valueUri: stored.url }] }));
    expect(oo.issue.some((i) => i.severity === 'error' && i.expression?.[0] === 'Patient.gender')).toBe(true);
  });

  it('a valid resource gives one information issue; mode=update needs the id', async () => {
    const ok = await invoke(['Patient', '$validate'], req({ resourceType: 'Patient', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' } }));
    expect(ok.issue.filter((i) => i.severity === 'error')).toEqual([]);
    const upd = await invoke(['Patient', '$validate'], req({ resourceType: 'Patient' }, [['mode', 'update']]));
    expect(upd.issue.some((i) => i.severity === 'error' && /id/.test(i.diagnostics ?? ''))).toBe(true);
  });

  it('instance level validates the stored resource; mode=delete on a missing one is 404', async () => {
    const oo = await invoke(['Patient', 'p1', '$validate'], req(undefined));
    expect(oo.issue.filter((i) => i.severity === 'error')).toEqual([]);
    await expect(invoke(['Patient', 'nope', '$validate'], req(undefined, [['mode', 'delete']]))).rejects.toMatchObject({ status: 404 });
    await expect(invoke(['Patient', '$validate'], req({ resourceType: 'Patient' }, [['mode', 'bogus']]))).rejects.toMatchObject({ status: 400 });
  });
});

/**
 * `dsp-fhir package install <file>`: puts a FHIR package (.tgz or folder in NPM package format) into
 * <dataDir>/packages/<name>#<version>/package/, where the registry finds it at the next start. Archives are
 * read with our own tar reader (src/packages/tar.ts, gzip through node:zlib): no external `tar` needed.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readTar } from './tar.ts';

export interface InstalledPackage {
  name: string;
  version: string;
  folder: string;
  files: number;
}

function checkName(s: string, what: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._\-]*$/.test(s)) throw new Error(`package ${what} "${s}" is not a valid package ${what}`);
  return s;
}

export function installPackage(location: string, dataDir: string): InstalledPackage {
  if (!existsSync(location)) throw new Error(`${location}: no such file or folder`);
  const target = (name: string, version: string) => join(dataDir, 'packages', `${checkName(name, 'name')}#${checkName(version, 'version')}`);
  if (statSync(location).isDirectory()) {
    const root = existsSync(join(location, 'package', 'package.json')) ? join(location, 'package') : location;
    if (!existsSync(join(root, 'package.json'))) throw new Error(`${location}: not a FHIR package (no package.json)`);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string };
    const folder = target(manifest.name, manifest.version);
    rmSync(folder, { recursive: true, force: true });
    cpSync(root, join(folder, 'package'), { recursive: true });
    return { name: manifest.name, version: manifest.version, folder, files: -1 };
  }
  const files = readTar(readFileSync(location));
  const manifestBuf = files.get('package/package.json');
  if (!manifestBuf) throw new Error(`${location}: not a FHIR package (no package/package.json in the archive)`);
  const manifest = JSON.parse(manifestBuf.toString('utf8')) as { name: string; version: string };
  const folder = target(manifest.name, manifest.version);
  rmSync(folder, { recursive: true, force: true });
  let n = 0;
  for (const [name, buf] of files) {
    if (!name.startsWith('package/')) continue;
    const out = join(folder, name);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, buf);
    n++;
  }
  return { name: manifest.name, version: manifest.version, folder, files: n };
}

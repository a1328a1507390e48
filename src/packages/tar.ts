/**
 * A minimal reader for (gzipped) tar archives, enough for FHIR NPM packages (`package/...` entries):
 * ustar headers with the name prefix field, GNU long names (`L`) and pax extended headers (`x`, `path=`).
 * Only regular files are returned; links, devices and directories are ignored. Names that would escape the
 * extraction folder (absolute, or with `..` segments) are refused.
 */
import { gunzipSync } from 'node:zlib';

function field(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end >= 0 && end < off + len ? end : off + len);
}

function octal(buf: Buffer, off: number, len: number): number {
  // Base-256 (GNU) for large sizes: high bit of the first byte set.
  if (buf[off]! & 0x80) {
    let n = 0;
    for (let i = off + 1; i < off + len; i++) n = n * 256 + buf[i]!;
    return n;
  }
  const s = field(buf, off, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function safeName(name: string): string {
  const clean = name.replace(/\\/g, '/').replace(/^\.\//, '');
  if (clean.startsWith('/') || clean.split('/').includes('..')) throw new Error(`unsafe path in archive: ${name}`);
  return clean;
}

/** Regular files of a tar (or .tgz: gzip is detected by its magic bytes) archive, by path. */
export function readTar(data: Buffer): Map<string, Buffer> {
  const buf = data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data;
  const files = new Map<string, Buffer>();
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= buf.length) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] || 48);
    const magic = field(header, 257, 6);
    let name = field(header, 0, 100);
    if (magic.startsWith('ustar')) {
      const prefix = field(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const body = buf.subarray(off + 512, off + 512 + size);
    if (body.length < size) throw new Error('truncated tar archive');
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = field(body, 0, body.length);
      continue;
    }
    if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (type === 'g') continue;
    if (longName !== undefined) {
      name = longName;
      longName = undefined;
    }
    if (type === '0' || type === '7') files.set(safeName(name), Buffer.from(body));
  }
  return files;
}

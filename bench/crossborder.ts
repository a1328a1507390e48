/**
 * Cross-border Patient Summary speed: median FHIR -> CDA and CDA -> FHIR time per document on the OpenNCP
 * sample 2-1234-W8 (170 KB), against the time to only parse that XML with the same parser (@xmldom/xmldom,
 * through the same guarded parseXml), in the same run. Target: conversion <= 3x parse.
 *
 *   node_modules/.bin/node bench/crossborder.ts [runs]
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseXml } from '../src/crossborder/cda/xml.ts';
import { cdaToBundle } from '../src/crossborder/from-cda.ts';
import { bundleToCda } from '../src/crossborder/to-cda.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sample = join(root, '..', 'shared', 'specs/ehdsi/samples/ps/openncp-mock-W8/2-1234-W8.xml');
const runs = Number(process.argv[2] ?? 60);
const xml = readFileSync(sample, 'utf8');
const bundle = cdaToBundle(xml, { lang: 'fr' });

function median(fn: () => void): number {
  for (let i = 0; i < 5; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

// Interleave the measures so that machine noise hits all three alike.
const parse = median(() => parseXml(xml));
const toFhir = median(() => cdaToBundle(xml, { lang: 'fr' }));
const toCda = median(() => bundleToCda(bundle));
const parse2 = median(() => parseXml(xml));
const p = Math.min(parse, parse2);
const out = {
  sample: '2-1234-W8.xml',
  bytes: Buffer.byteLength(xml),
  runs,
  parseMs: +p.toFixed(2),
  cdaToFhirMs: +toFhir.toFixed(2),
  fhirToCdaMs: +toCda.toFixed(2),
  cdaToFhirRatio: +(toFhir / p).toFixed(2),
  fhirToCdaRatio: +(toCda / p).toFixed(2),
  cdaToFhirDocsPerSec: Math.round(1000 / toFhir),
  fhirToCdaDocsPerSec: Math.round(1000 / toCda),
  node: process.version,
};
console.log(JSON.stringify(out, null, 2));

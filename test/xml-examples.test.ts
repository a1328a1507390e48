/** XML round trip of every resource of the project's own examples (JSON -> XML -> JSON, exact). */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from 'fhir/r4';
import { parseFhirXml, toFhirXml } from '../src/formats/xml.ts';

const dir = new URL('../examples/', import.meta.url).pathname;
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

describe('examples round trip through XML', () => {
  it('has examples', () => expect(files.length).toBeGreaterThan(0));
  for (const file of files) {
    it(file, () => {
      const resource = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Resource;
      const xml = toFhirXml(resource, { pretty: true });
      expect(parseFhirXml(xml)).toEqual(resource);
      const entries = (resource as { entry?: { resource?: Resource }[] }).entry ?? [];
      for (const e of entries) if (e.resource) expect(parseFhirXml(toFhirXml(e.resource))).toEqual(e.resource);
    });
  }
});

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { Element as XmlElement } from '@xmldom/xmldom';
import type { Bundle, Resource } from 'fhir/r4';
import { describe, expect, it } from 'vitest';
import { parseFhirXml, toFhirXml } from '../src/formats/xml.ts';
import { FhirError } from '../src/fhir/outcome.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const shared = join(root, '..', 'shared');
const syntheaDir = join(shared, 'data', 'synthea');
const patchTests = join(shared, 'specs', 'fhir-test-cases', 'r4', 'patch', 'fhir-patch-tests.xml');

function roundTrip(resource: Resource, pretty = false): Resource {
  return parseFhirXml(toFhirXml(resource, { pretty }));
}

function expectFhirError(fn: () => unknown, code: string, pattern: RegExp): FhirError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(FhirError);
  const err = caught as FhirError;
  expect(err.status).toBe(400);
  expect(err.issues[0].code).toBe(code);
  expect(err.message).toMatch(pattern);
  return err;
}

const DIV =
  '<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">Tom &amp; Jerry &lt;3 <b>bold <i>and</i> italic</b></p>\n' +
  '  <table><tr><td>a&#160;b</td><td/></tr></table><br/><!-- a comment --><a href="http://x/?a=1&amp;b=\'2\'">link</a></div>';

const patient = {
  resourceType: 'Patient',
  id: 'p1',
  _id: { extension: [{ url: 'http://example.org/id-ext', valueString: 'on the resource id' }] },
  meta: { versionId: '3', lastUpdated: '2024-01-02T03:04:05.678+01:00', profile: ['http://example.org/p1', 'http://example.org/p2'] },
  text: { status: 'generated', div: DIV },
  contained: [
    { resourceType: 'Practitioner', id: 'doc', name: [{ family: 'Who', given: ['Doctor'] }] },
    { resourceType: 'Organization', id: 'org', name: 'ACME', active: true },
  ],
  extension: [
    {
      url: 'http://example.org/complex',
      extension: [
        { url: 'code', valueCodeableConcept: { coding: [{ system: 'http://loinc.org', code: '1234-5', display: 'Some <code> & "quotes"' }] } },
        { url: 'amount', valueQuantity: { value: 1.5, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } },
        { url: 'flag', valueBoolean: false },
        { url: 'nested', extension: [{ url: 'deeper', valueInteger: -42 }, { url: 'when', valuePeriod: { start: '2020' } }] },
      ],
    },
    { url: 'http://example.org/decimal', valueDecimal: 0.1 },
  ],
  modifierExtension: [{ url: 'http://example.org/mod', valueCode: 'x' }],
  identifier: [{ id: 'ident-1', system: 'urn:oid:1.2.3', value: 'line1\nline2\ttab\rcr "quoted" <lt> >gt &amp; \u00e9\u2028' }],
  active: true,
  name: [
    {
      id: 'n1',
      use: 'official',
      family: 'Müller',
      _family: { id: 'fam', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/humanname-own-prefix', valueString: 'von' }] },
      given: ['Anna', null, 'Maria', 'Luise'],
      _given: [null, { extension: [{ url: 'http://example.org/masked', valueCode: 'masked' }] }, { id: 'g3' }, null],
      prefix: ['Dr.'],
    },
    { text: 'Only text' },
  ],
  telecom: [{ system: 'phone', value: '+352 123', rank: 1 }],
  gender: 'female',
  birthDate: '1970-03-30',
  _birthDate: { id: 'bd', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1970-03-30T14:35:45-05:00' }] },
  deceasedBoolean: false,
  address: [{ line: ['1 rue de la Gare', 'Bâtiment B'], city: 'Luxembourg', country: 'LU', period: { start: '2001-01-01' } }],
  multipleBirthInteger: 2,
  generalPractitioner: [{ reference: '#doc' }, { reference: 'Organization/org', display: 'ACME' }],
  managingOrganization: { reference: '#org' },
  communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'lb' }] }, preferred: true }],
} as unknown as Resource;

const observation = {
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }], text: 'Heart rate' },
  subject: { reference: 'Patient/p1' },
  effectivePeriod: { start: '2024-05-01T10:00:00Z', end: '2024-05-01T10:05:00Z' },
  valueQuantity: { value: 72.25, comparator: '<', unit: '/min' },
  interpretation: [{ text: 'normal' }],
  component: [
    { code: { text: 'a' }, valueInteger: 0 },
    { code: { text: 'b' }, valueString: '' },
    { code: { text: 'c' }, valueRange: { low: { value: -0.001 }, high: { value: 123456789.123 } } },
    { code: { text: 'd' }, valueQuantity: { value: 1e-7 } },
    { code: { text: 'e' }, valueBoolean: true, dataAbsentReason: { text: 'n/a' } },
    { code: { text: 'f' }, valueSampledData: { origin: { value: 0 }, period: 0.5, dimensions: 1, data: '1 2 3' } },
  ],
} as unknown as Resource;

const bundle = {
  resourceType: 'Bundle',
  id: 'b1',
  type: 'batch-response',
  total: 3,
  link: [{ relation: 'self', url: 'http://example.org/fhir/Patient?name=x&_count=2' }],
  entry: [
    { fullUrl: 'urn:uuid:1', resource: patient, search: { mode: 'match', score: 0.75 } },
    { resource: observation, response: { status: '201 Created', location: 'Observation/o1/_history/1', etag: 'W/"1"' } },
    {
      response: {
        status: '400 Bad Request',
        outcome: {
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'invalid', diagnostics: 'Bad <thing> & more', expression: ['Patient.name[0]'] }],
        },
      },
    },
  ],
} as unknown as Resource;

const parameters = {
  resourceType: 'Parameters',
  parameter: [
    { name: 'return', resource: patient },
    {
      name: 'multi',
      part: [
        { name: 'resource', resource: { resourceType: 'Basic', id: 'x', code: { text: 'basic' } } },
        { name: 'count', valueUnsignedInt: 0 },
        { name: 'positive', valuePositiveInt: 2147483647 },
        { name: 'when', valueInstant: '2024-01-01T00:00:00.000Z' },
        { name: 'bin', valueBase64Binary: 'SGVsbG8=' },
        { name: 'dec', valueDecimal: -12.5e-3 },
      ],
    },
  ],
} as unknown as Resource;

describe('handcrafted round trips (JSON -> XML -> JSON)', () => {
  const cases: [string, Resource][] = [
    ['Patient with primitive extensions, partial given extensions, contained, narrative, choice types', patient],
    ['Observation with choice types and decimals', observation],
    ['Bundle with entries, search, response and outcome', bundle],
    ['Parameters with resource parts and typed values', parameters],
  ];
  for (const [name, resource] of cases) {
    it(name, () => {
      expect(roundTrip(resource)).toStrictEqual(resource);
      expect(roundTrip(resource, true)).toStrictEqual(resource);
    });
  }

  it('writes the FHIR XML forms', () => {
    const xml = toFhirXml(patient);
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    expect(xml).toContain('<Patient xmlns="http://hl7.org/fhir"><id value="p1">');
    expect(xml).toContain('<name id="n1">');
    expect(xml).toContain('<extension url="http://example.org/decimal"><valueDecimal value="0.1"/></extension>');
    expect(xml).toContain('<given value="Anna"/><given><extension url="http://example.org/masked">');
    expect(xml).toContain('<given id="g3" value="Maria"/>');
    expect(xml).toContain('<birthDate id="bd" value="1970-03-30"><extension');
    expect(xml).toContain('<contained><Practitioner><id value="doc"/>');
    expect(xml).toContain(`<text><status value="generated"/>${DIV}</text>`);
    expect(xml).toContain('value="line1&#xA;line2&#x9;tab&#xD;cr &quot;quoted&quot; &lt;lt&gt; &gt;gt &amp;amp; \u00e9\u2028"');
    expect(xml).toContain('<deceasedBoolean value="false"/>');
    const b = toFhirXml(bundle);
    expect(b).toContain('<outcome><OperationOutcome>');
    expect(b).toContain('<resource><Patient><id value="p1"');
    expect(b).toContain('<score value="0.75"/>');
  });

  it('orders children by the definition, whatever the JSON key order', () => {
    const odd = {
      birthDate: '2000-01-01',
      name: [{ given: ['B'], family: 'A', use: 'usual' }],
      gender: 'male',
      meta: { lastUpdated: '2024-01-01T00:00:00Z', versionId: '1' },
      extension: [{ valueString: 'v', url: 'http://example.org/e' }],
      id: 'odd',
      active: false,
      resourceType: 'Patient',
      text: { div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>', status: 'generated' },
    } as unknown as Resource;
    const xml = toFhirXml(odd);
    const order = ['<id ', '<meta>', '<versionId ', '<lastUpdated ', '<text>', '<status ', '<div ', '<extension ', '<valueString ', '<active ', '<name>', '<use ', '<family ', '<given ', '<gender ', '<birthDate '];
    const positions = order.map((tag) => xml.indexOf(tag));
    expect(positions.every((p) => p > 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(parseFhirXml(xml)).toStrictEqual(odd);
  });

  it('reads values written by other tools (decimal precision, whitespace, comments)', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<!-- leading comment -->
<Observation xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\r
  <status value="final"/>
  <code><text value="a&#10;b"/></code>
  <!-- inner comment -->
  <valueQuantity><value value="1.50"/></valueQuantity>
</Observation>`;
    // 1.50 becomes the JSON number 1.5: JSON numbers cannot hold the written precision.
    expect(parseFhirXml(xml)).toStrictEqual({ resourceType: 'Observation', status: 'final', code: { text: 'a\nb' }, valueQuantity: { value: 1.5 } });
  });

  it('keeps a narrative div whose namespace is declared with a prefix or on an ancestor', () => {
    const xml = `<Patient xmlns="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml"><text><status value="generated"/><h:div><h:p>hi</h:p></h:div></text></Patient>`;
    const p = parseFhirXml(xml) as unknown as { text: { div: string } };
    const reparsed = new DOMParser().parseFromString(p.text.div, 'text/xml').documentElement!;
    expect(reparsed.namespaceURI).toBe('http://www.w3.org/1999/xhtml');
    expect(reparsed.localName).toBe('div');
    expect(reparsed.textContent).toBe('hi');
  });
});

describe('errors', () => {
  it('refuses a DOCTYPE with an entity', () => {
    const xml = '<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Patient>';
    expectFhirError(() => parseFhirXml(xml), 'structure', /DOCTYPE/);
  });

  it('reports malformed XML with line and column', () => {
    const err = expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir">\n  <active value="true">\n</Patient>'), 'structure', /line \d+, column \d+/);
    expect(err.message).toMatch(/Malformed XML/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><active value=true/></Patient>'), 'structure', /Malformed XML at line 1/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir">&nbsp;</Patient>'), 'structure', /Malformed XML/);
    expectFhirError(() => parseFhirXml(''), 'structure', /Malformed XML/);
  });

  it('reports an unknown element with its path', () => {
    const err = expectFhirError(
      () => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><name><given value="a"/></name><name><family value="b"/><foo value="x"/></name></Patient>'),
      'structure',
      /Unknown element 'foo' at Patient\.name\[1\]\.foo/,
    );
    expect(err.issues[0].expression).toEqual(['Patient.name[1].foo']);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><name bogus="1"/></Patient>'), 'structure', /Unknown attribute 'bogus' at Patient\.name\[0\]/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><name>text</name></Patient>'), 'structure', /Unexpected text/);
  });

  it('refuses a root outside the FHIR namespace and unknown resource types', () => {
    expectFhirError(() => parseFhirXml('<Patient><id value="x"/></Patient>'), 'structure', /not in the FHIR namespace/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://example.org"/>'), 'structure', /not in the FHIR namespace/);
    expectFhirError(() => parseFhirXml('<Patientx xmlns="http://hl7.org/fhir"/>'), 'structure', /Unknown resource type 'Patientx'/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div><p>x</p></div></text></Patient>'), 'structure', /namespace http:\/\/www\.w3\.org\/1999\/xhtml/);
  });

  it('refuses nesting deeper than the limit', () => {
    let inner = '<valueString value="x"/>';
    for (let i = 0; i < 200; i++) inner = `<extension url="u">${inner}</extension>`;
    const xml = `<Patient xmlns="http://hl7.org/fhir">${inner}</Patient>`;
    expectFhirError(() => parseFhirXml(xml), 'structure', /deeper than 128/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><name><period><start value="2020"/></period></name></Patient>', { maxDepth: 3 }), 'structure', /deeper than 3 .*Patient\.name\[0\]\.period\.start/);
    expect(parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><name><period><start value="2020"/></period></name></Patient>', { maxDepth: 4 })).toStrictEqual({
      resourceType: 'Patient',
      name: [{ period: { start: '2020' } }],
    });
    const deepDiv = `<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">${'<b>'.repeat(10)}x${'</b>'.repeat(10)}</div></text></Patient>`;
    expectFhirError(() => parseFhirXml(deepDiv, { maxDepth: 8 }), 'structure', /deeper than 8 elements inside the narrative/);
  });

  it('refuses primitive values that are not valid for their JSON kind', () => {
    const err = expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>'), 'invalid', /Invalid boolean value "yes" at Patient\.active/);
    expect(err.issues[0].expression).toEqual(['Patient.active']);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="1.5"/></Patient>'), 'invalid', /Invalid integer value "1\.5"/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="99999999999"/></Patient>'), 'invalid', /Invalid integer/);
    expectFhirError(() => parseFhirXml('<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/></valueQuantity></Observation>'), 'invalid', /Invalid decimal/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><birthDate/></Patient>'), 'invalid', /neither a value nor extensions/);
    expectFhirError(() => parseFhirXml('<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>'), 'structure', /repeats/);
  });

  it('refuses JSON that XML cannot carry', () => {
    expectFhirError(() => toFhirXml({ resourceType: 'Patient', foo: 1 } as unknown as Resource), 'structure', /Unknown property 'foo'/);
    expectFhirError(() => toFhirXml({ resourceType: 'Patient', active: 'true' } as unknown as Resource), 'invalid', /boolean/);
    expectFhirError(
      () => toFhirXml({ resourceType: 'Patient', extension: [{ url: 'u', _url: { id: 'x' } }] } as unknown as Resource),
      'structure',
      /XML attribute/,
    );
    expectFhirError(() => toFhirXml({ resourceType: 'Nope' } as unknown as Resource), 'structure', /resourceType/);
    const withDiv = (div: string) => ({ resourceType: 'Basic', code: { text: 'x' }, text: { status: 'generated', div } }) as unknown as Resource;
    for (const bad of [
      '<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
      '<div xmlns="http://www.w3.org/1999/xhtml">a &nbsp; b</div>',
      '<div xmlns="http://www.w3.org/1999/xhtml"><a href=x>y</a></div>',
      '<div xmlns="http://www.w3.org/1999/xhtml">x</div><extra/>',
      '<div xmlns="http://www.w3.org/1999/xhtml">1 < 2</div>',
      '<p>not a div</p>',
    ]) {
      expectFhirError(() => toFhirXml(withDiv(bad)), 'invalid', /narrative at Basic\.text\.div/);
    }
    const ok = '<div xmlns="http://www.w3.org/1999/xhtml"><![CDATA[<raw>]]> 2 &gt; 1 <img src="a.png" alt=\'a "b"\'/><br /></div>';
    expect(roundTrip(withDiv(ok))).toStrictEqual(withDiv(ok));
    // A div without its namespace declaration gets one, so that it does not fall into the FHIR namespace.
    expect(toFhirXml(withDiv('<div>plain</div>'))).toContain('<div xmlns="http://www.w3.org/1999/xhtml">plain</div>');
    let deep: Record<string, unknown> = { url: 'u', valueString: 'x' };
    for (let i = 0; i < 2000; i++) deep = { url: 'u', extension: [deep] };
    expectFhirError(() => toFhirXml({ resourceType: 'Patient', extension: [deep] } as unknown as Resource), 'structure', /nested deeper than 1000/);
  });
});

describe('Synthea bundles round trip exactly', () => {
  const files = existsSync(syntheaDir) ? readdirSync(syntheaDir).filter((f) => f.endsWith('.json.bz2')).sort() : [];
  if (files.length === 0) {
    it.skip(`skipped: no Synthea data at ${syntheaDir} (../shared is absent)`, () => {});
    return;
  }
  it.each(files)('%s', (file) => {
    const json = JSON.parse(execFileSync('bzip2', ['-dc', join(syntheaDir, file)], { maxBuffer: 1 << 30 }).toString('utf8')) as Bundle;
    const back = parseFhirXml(toFhirXml(json)) as Bundle;
    if (!isDeepStrictEqual(back, json)) {
      // Narrow the failure to the first differing entry for a readable diff.
      const i = (json.entry ?? []).findIndex((e, k) => !isDeepStrictEqual(e, back.entry?.[k]));
      if (i >= 0) expect(back.entry?.[i]).toStrictEqual(json.entry?.[i]);
      expect(back).toStrictEqual(json);
    }
  });
});

describe('FHIR patch test-case resources (XML -> JSON -> XML -> JSON is stable)', () => {
  if (!existsSync(patchTests)) {
    it.skip(`skipped: ${patchTests} is absent (../shared is absent)`, () => {});
    return;
  }
  const doc = new DOMParser().parseFromString(readFileSync(patchTests, 'utf8'), 'text/xml');
  const serializer = new XMLSerializer();
  const samples: [string, string][] = [];
  const cases = doc.getElementsByTagName('case');
  for (let i = 0; i < cases.length; i++) {
    const c = cases.item(i)!;
    for (let n = c.firstChild; n; n = n.nextSibling) {
      if (n.nodeType !== 1) continue;
      const holder = n as XmlElement;
      if (!['input', 'output', 'diff'].includes(holder.localName ?? '')) continue;
      for (let r = holder.firstChild; r; r = r.nextSibling) {
        if (r.nodeType === 1) samples.push([`${c.getAttribute('name')} / ${holder.localName}`, serializer.serializeToString(r)]);
      }
    }
  }

  it('finds the resources', () => {
    expect(samples.length).toBeGreaterThan(90);
  });

  it.each(samples)('%s', (_name, xml) => {
    const first = parseFhirXml(xml);
    const second = parseFhirXml(toFhirXml(first));
    expect(second).toStrictEqual(first);
    expect(toFhirXml(second)).toBe(toFhirXml(first));
  });
});

/**
 * The FHIR REST interactions through HTTP (R4 http.html): create, read, vread, update, delete, history,
 * versioning and conditional interactions, Prefer, _summary / _elements, errors as OperationOutcomes.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Bundle, OperationOutcome, Patient } from 'fhir/r4';
import { FHIR_JSON, FHIR_XML, makeApp, type TestApp } from './support/app.ts';

const patient = (family = 'Wagner', extra: Partial<Patient> = {}): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: 'urn:oid:1.3.182.4.4', value: '1985031512345' }],
  name: [{ family, given: ['Claire'] }],
  gender: 'female',
  birthDate: '1985-03-15',
  ...extra,
});

let t: TestApp;
beforeEach(async () => {
  t = await makeApp();
});

function expectOutcome(body: unknown, code?: string): OperationOutcome {
  const oo = body as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  expect(oo.issue.length).toBeGreaterThan(0);
  if (code) expect(oo.issue.map((i) => i.code)).toContain(code);
  return oo;
}

describe('create and read', () => {
  it('creates with a server id, version 1, ETag, Location and Last-Modified', async () => {
    const res = await t.http.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient());
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toContain('application/fhir+json');
    const created = res.body as Patient;
    expect(created.id).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
    expect(created.meta?.versionId).toBe('1');
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers.location).toBe(`http://test/fhir/Patient/${created.id}/_history/1`);
    expect(new Date(res.headers['last-modified']).getTime()).toBeGreaterThan(0);

    const read = await t.http.get(`/fhir/Patient/${created.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created);
    expect(read.headers.etag).toBe('W/"1"');
  });

  it('ignores a client id on create and drops client meta.versionId', async () => {
    const res = await t.http.post('/fhir/Patient').send({ ...patient(), id: 'mine', meta: { versionId: '77', tag: [{ code: 'x' }] } });
    expect(res.status).toBe(201);
    expect(res.body.id).not.toBe('mine');
    expect(res.body.meta.versionId).toBe('1');
    expect(res.body.meta.tag).toEqual([{ code: 'x' }]);
  });

  it('answers 404 for an unknown id and for an unknown type, with an OperationOutcome', async () => {
    const a = await t.http.get('/fhir/Patient/nope');
    expect(a.status).toBe(404);
    expectOutcome(a.body, 'not-found');
    const b = await t.http.get('/fhir/Patientx/1');
    expect(b.status).toBe(404);
    expectOutcome(b.body);
  });

  it('answers 400 for an invalid id', async () => {
    const res = await t.http.get('/fhir/Patient/' + 'x'.repeat(65));
    expect(res.status).toBe(400);
    expectOutcome(res.body, 'invalid');
  });

  it('rejects structurally invalid resources with the path of the problem', async () => {
    const res = await t.http.post('/fhir/Patient').send({ resourceType: 'Patient', nmae: [{ family: 'x' }] });
    expect(res.status).toBe(400);
    const oo = expectOutcome(res.body);
    expect(JSON.stringify(oo)).toContain('nmae');
    expect(await t.ctx.store.count('Patient')).toBe(0);
  });

  it('rejects a body of another type than the URL', async () => {
    const res = await t.http.post('/fhir/Observation').send(patient());
    expect(res.status).toBe(400);
    expectOutcome(res.body);
  });

  it('rejects malformed JSON and unsupported media types', async () => {
    const bad = await t.http.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send('{"resourceType": "Patient",');
    expect(bad.status).toBe(400);
    expectOutcome(bad.body, 'structure');
    const media = await t.http.post('/fhir/Patient').set('Content-Type', 'text/plain').send('hello');
    expect(media.status).toBe(415);
    expectOutcome(media.body);
  });
});

describe('update, vread, delete', () => {
  it('updates with a new version and keeps the old one readable by vread', async () => {
    const c = await t.http.post('/fhir/Patient').send(patient());
    const id = c.body.id;
    const u = await t.http.put(`/fhir/Patient/${id}`).send({ ...patient('Muller'), id });
    expect(u.status).toBe(200);
    expect(u.body.meta.versionId).toBe('2');
    expect(u.headers.etag).toBe('W/"2"');
    const v1 = await t.http.get(`/fhir/Patient/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.name[0].family).toBe('Wagner');
    const v2 = await t.http.get(`/fhir/Patient/${id}/_history/2`);
    expect(v2.body.name[0].family).toBe('Muller');
    expect((await t.http.get(`/fhir/Patient/${id}/_history/3`)).status).toBe(404);
  });

  it('update-as-create with a client id answers 201', async () => {
    const res = await t.http.put('/fhir/Patient/lu-001').send({ ...patient(), id: 'lu-001' });
    expect(res.status).toBe(201);
    expect(res.body.id).toBe('lu-001');
    expect(res.body.meta.versionId).toBe('1');
  });

  it('update needs the body id to match the URL', async () => {
    const missing = await t.http.put('/fhir/Patient/a1').send(patient());
    expect(missing.status).toBe(400);
    const other = await t.http.put('/fhir/Patient/a1').send({ ...patient(), id: 'b2' });
    expect(other.status).toBe(400);
    expectOutcome(other.body);
  });

  it('delete gives 204, then read gives 410, vread of the deletion 410, and a new put revives', async () => {
    await t.http.put('/fhir/Patient/d1').send({ ...patient(), id: 'd1' });
    const del = await t.http.delete('/fhir/Patient/d1');
    expect(del.status).toBe(204);
    const read = await t.http.get('/fhir/Patient/d1');
    expect(read.status).toBe(410);
    expectOutcome(read.body, 'deleted');
    expect((await t.http.get('/fhir/Patient/d1/_history/2')).status).toBe(410);
    expect((await t.http.get('/fhir/Patient/d1/_history/1')).status).toBe(200);
    const again = await t.http.delete('/fhir/Patient/d1');
    expect(again.status).toBe(204);
    const revive = await t.http.put('/fhir/Patient/d1').send({ ...patient(), id: 'd1' });
    expect(revive.status).toBe(201);
    expect(revive.body.meta.versionId).toBe('3');
    expect((await t.http.delete('/fhir/Patient/never')).status).toBe(404);
  });
});

describe('versioning and concurrency', () => {
  it('If-Match: matching version updates, stale version gives 412 and changes nothing', async () => {
    await t.http.put('/fhir/Patient/v1').send({ ...patient(), id: 'v1' });
    const ok = await t.http.put('/fhir/Patient/v1').set('If-Match', 'W/"1"').send({ ...patient('A'), id: 'v1' });
    expect(ok.status).toBe(200);
    const stale = await t.http.put('/fhir/Patient/v1').set('If-Match', 'W/"1"').send({ ...patient('B'), id: 'v1' });
    expect(stale.status).toBe(412);
    expectOutcome(stale.body, 'conflict');
    const read = await t.http.get('/fhir/Patient/v1');
    expect(read.body.name[0].family).toBe('A');
    const badTag = await t.http.put('/fhir/Patient/v1').set('If-Match', 'abc').send({ ...patient('C'), id: 'v1' });
    expect(badTag.status).toBe(400);
  });

  it('two concurrent writers with the same If-Match: exactly one wins', async () => {
    await t.http.put('/fhir/Patient/race').send({ ...patient(), id: 'race' });
    const writers = Array.from({ length: 8 }, (_, i) =>
      t.http.put('/fhir/Patient/race').set('If-Match', 'W/"1"').send({ ...patient(`W${i}`), id: 'race' }),
    );
    const results = await Promise.all(writers);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(7);
    const read = await t.http.get('/fhir/Patient/race');
    expect(read.body.meta.versionId).toBe('2');
  });

  it('If-None-Match and If-Modified-Since give 304', async () => {
    const c = await t.http.put('/fhir/Patient/c1').send({ ...patient(), id: 'c1' });
    const nm = await t.http.get('/fhir/Patient/c1').set('If-None-Match', 'W/"1"');
    expect(nm.status).toBe(304);
    expect(nm.text).toBe('');
    const other = await t.http.get('/fhir/Patient/c1').set('If-None-Match', 'W/"9"');
    expect(other.status).toBe(200);
    const ims = await t.http.get('/fhir/Patient/c1').set('If-Modified-Since', c.headers['last-modified']);
    expect(ims.status).toBe(304);
    const older = await t.http.get('/fhir/Patient/c1').set('If-Modified-Since', new Date(Date.now() - 3_600_000).toUTCString());
    expect(older.status).toBe(200);
  });
});

describe('conditional interactions', () => {
  const ident = 'identifier=urn:oid:1.3.182.4.4|1985031512345';

  it('If-None-Exist creates once, then returns the existing resource; 412 when several match', async () => {
    const first = await t.http.post('/fhir/Patient').set('If-None-Exist', ident).send(patient());
    expect(first.status).toBe(201);
    const second = await t.http.post('/fhir/Patient').set('If-None-Exist', ident).send(patient());
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    expect(await t.ctx.store.count('Patient')).toBe(1);
    await t.http.post('/fhir/Patient').send(patient());
    const many = await t.http.post('/fhir/Patient').set('If-None-Exist', ident).send(patient());
    expect(many.status).toBe(412);
  });

  it('conditional update: creates when none match, updates the single match, 412 on several', async () => {
    const created = await t.http.put(`/fhir/Patient?${ident}`).send(patient());
    expect(created.status).toBe(201);
    const updated = await t.http.put(`/fhir/Patient?${ident}`).send(patient('Schmit'));
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(created.body.id);
    expect(updated.body.meta.versionId).toBe('2');
    await t.http.post('/fhir/Patient').send(patient());
    const many = await t.http.put(`/fhir/Patient?${ident}`).send(patient('X'));
    expect(many.status).toBe(412);
  });

  it('conditional delete: deletes the single match, 412 on several', async () => {
    const c = await t.http.post('/fhir/Patient').send(patient());
    const del = await t.http.delete(`/fhir/Patient?${ident}`);
    expect(del.status).toBe(204);
    expect((await t.http.get(`/fhir/Patient/${c.body.id}`)).status).toBe(410);
    await t.http.post('/fhir/Patient').send(patient());
    await t.http.post('/fhir/Patient').send(patient());
    expect((await t.http.delete(`/fhir/Patient?${ident}`)).status).toBe(412);
  });

  it('a conditional interaction with an unknown parameter is refused', async () => {
    const res = await t.http.put('/fhir/Patient?nosuchparam=1').send(patient());
    expect(res.status).toBe(400);
    expectOutcome(res.body);
  });
});

describe('Prefer return', () => {
  it('minimal, representation and OperationOutcome', async () => {
    const minimal = await t.http.post('/fhir/Patient').set('Prefer', 'return=minimal').send(patient());
    expect(minimal.status).toBe(201);
    expect(minimal.text).toBe('');
    expect(minimal.headers.location).toContain('/Patient/');
    const oo = await t.http.post('/fhir/Patient').set('Prefer', 'return=OperationOutcome').send(patient());
    expect(oo.status).toBe(201);
    expect(oo.body.resourceType).toBe('OperationOutcome');
    const rep = await t.http.post('/fhir/Patient').set('Prefer', 'return=representation').send(patient());
    expect(rep.body.resourceType).toBe('Patient');
  });
});

describe('history', () => {
  it('instance, type and system history, newest first, with _count paging and _since', async () => {
    await t.http.put('/fhir/Patient/h1').send({ ...patient('A'), id: 'h1' });
    await t.http.put('/fhir/Patient/h1').send({ ...patient('B'), id: 'h1' });
    await t.http.delete('/fhir/Patient/h1');
    const mid = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    await t.http.post('/fhir/Observation').send({ resourceType: 'Observation', status: 'final', code: { text: 'x' } });

    const inst = await t.http.get('/fhir/Patient/h1/_history');
    expect(inst.status).toBe(200);
    const b = inst.body as Bundle;
    expect(b.type).toBe('history');
    expect(b.total).toBe(3);
    expect(b.entry!.map((e) => e.response!.etag)).toEqual(['W/"3"', 'W/"2"', 'W/"1"']);
    expect(b.entry![0].request).toEqual({ method: 'DELETE', url: 'Patient/h1' });
    expect(b.entry![0].resource).toBeUndefined();

    const type = await t.http.get('/fhir/Patient/_history');
    expect(type.body.total).toBe(3);
    const system = await t.http.get('/fhir/_history');
    expect(system.body.total).toBe(4);
    expect(system.body.entry[0].resource.resourceType).toBe('Observation');

    const since = await t.http.get('/fhir/_history').query({ _since: mid });
    expect(since.body.entry).toHaveLength(1);

    // Paging: follow next links until done, collecting every version exactly once.
    const seen: string[] = [];
    let url: string | undefined = '/fhir/_history?_count=1';
    while (url) {
      const page = await t.http.get(url);
      expect(page.status).toBe(200);
      for (const e of page.body.entry ?? []) seen.push(`${e.fullUrl}|${e.response.etag}`);
      const next = (page.body as Bundle).link?.find((l) => l.relation === 'next')?.url;
      url = next?.replace('http://test', '');
    }
    expect(seen).toHaveLength(4);
    expect(new Set(seen).size).toBe(4);
  });

  it('history of an unknown id is 404; a bad _since is 400', async () => {
    expect((await t.http.get('/fhir/Patient/zz/_history')).status).toBe(404);
    const bad = await t.http.get('/fhir/_history?_since=yesterday');
    expect(bad.status).toBe(400);
    expectOutcome(bad.body);
  });
});

describe('XML', () => {
  const xmlPatient = `<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="x1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Claire <b>Wagner</b></p></div></text>
  <identifier><system value="urn:oid:1.3.182.4.4"/><value value="1985031512345"/></identifier>
  <name><family value="Wagner"/><given value="Claire"><extension url="http://example.org/x"><valueString value="y"/></extension></given></name>
  <birthDate value="1985-03-15"/>
</Patient>`;

  it('accepts XML, answers XML on Accept and on _format, and the content survives', async () => {
    const put = await t.http.put('/fhir/Patient/x1').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send(xmlPatient);
    expect(put.status).toBe(201);
    expect(put.headers['content-type']).toContain('application/fhir+xml');
    expect(put.text).toContain('<Patient xmlns="http://hl7.org/fhir">');
    const json = await t.http.get('/fhir/Patient/x1');
    expect(json.body.name[0]._given[0].extension[0].valueString).toBe('y');
    expect(json.body.text.div).toContain('<b>Wagner</b>');
    const viaFormat = await t.http.get('/fhir/Patient/x1?_format=xml');
    expect(viaFormat.headers['content-type']).toContain('application/fhir+xml');
    expect(viaFormat.text).toContain('<family value="Wagner"/>');
  });

  it('errors are OperationOutcomes in XML too', async () => {
    const res = await t.http.get('/fhir/Patient/missing').set('Accept', FHIR_XML);
    expect(res.status).toBe(404);
    expect(res.text).toContain('<OperationOutcome xmlns="http://hl7.org/fhir">');
    const bad = await t.http.post('/fhir/Patient').set('Content-Type', FHIR_XML).set('Accept', FHIR_XML).send('<Patient xmlns="http://hl7.org/fhir"><birthDate value="1985"/></Patien>');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('OperationOutcome');
  });

  it('refuses a DOCTYPE (no entity expansion)', async () => {
    const evil = `<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="e"/></Patient>`;
    const res = await t.http.post('/fhir/Patient').set('Content-Type', FHIR_XML).send(evil);
    expect(res.status).toBe(400);
    expectOutcome(res.body);
  });

  it('an unsupported _format gives 406', async () => {
    const res = await t.http.get('/fhir/metadata?_format=text/csv');
    expect(res.status).toBe(406);
  });
});

describe('_pretty, _summary and _elements', () => {
  it('_pretty indents; _summary=true keeps summary elements; _elements keeps the listed ones', async () => {
    await t.http.put('/fhir/Patient/s1').send({
      ...patient(),
      id: 's1',
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Claire</div>' },
      maritalStatus: { text: 'married' },
    });
    const pretty = await t.http.get('/fhir/Patient/s1?_pretty=true');
    expect(pretty.text).toContain('\n  "resourceType"');
    const summary = await t.http.get('/fhir/Patient/s1?_summary=true');
    expect(summary.body.name).toBeDefined();
    expect(summary.body.text).toBeUndefined();
    expect(summary.body.maritalStatus).toBeUndefined();
    expect(summary.body.meta.tag.map((x: { code: string }) => x.code)).toContain('SUBSETTED');
    const text = await t.http.get('/fhir/Patient/s1?_summary=text');
    expect(text.body.text).toBeDefined();
    expect(text.body.name).toBeUndefined();
    const data = await t.http.get('/fhir/Patient/s1?_summary=data');
    expect(data.body.text).toBeUndefined();
    expect(data.body.maritalStatus).toBeDefined();
    const elements = await t.http.get('/fhir/Patient/s1?_elements=birthDate,gender');
    expect(Object.keys(elements.body).sort()).toEqual(['birthDate', 'gender', 'id', 'meta', 'resourceType']);
    const bad = await t.http.get('/fhir/Patient/s1?_summary=maybe');
    expect(bad.status).toBe(400);
  });
});

describe('limits and errors', () => {
  it('a body over the size limit gives 413', async () => {
    const small = await makeApp({ limits: { maxBodyBytes: 1000 } as never });
    const res = await small.http.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...patient(), name: [{ text: 'x'.repeat(2000) }] }));
    expect(res.status).toBe(413);
    expectOutcome(res.body);
  });

  it('JSON nested beyond the limit gives 400 before parsing', async () => {
    const deep = '['.repeat(500) + ']'.repeat(500);
    const res = await t.http.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(`{"resourceType":"Patient","x":${deep}}`);
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('deeper');
  });

  it('unsupported methods and paths give OperationOutcomes, never HTML', async () => {
    const m = await t.http.post('/fhir/Patient/abc').send(patient());
    expect(m.status).toBe(405);
    expectOutcome(m.body);
    const p = await t.http.get('/nothing-here');
    expect(p.status).toBe(404);
    expectOutcome(p.body);
  });
});

describe('CapabilityStatement', () => {
  it('is generated from the implementation', async () => {
    const res = await t.http.get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.body.resourceType).toBe('CapabilityStatement');
    expect(res.body.fhirVersion).toBe('4.0.1');
    expect(res.body.format).toEqual(expect.arrayContaining(['application/fhir+json', 'application/fhir+xml']));
    const rest = res.body.rest[0];
    const patientRes = rest.resource.find((r: { type: string }) => r.type === 'Patient');
    expect(patientRes.interaction.map((i: { code: string }) => i.code)).toEqual(expect.arrayContaining(['read', 'vread', 'update', 'patch', 'delete', 'create', 'history-instance', 'search-type']));
    expect(patientRes.searchParam.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['identifier', 'birthdate', 'name', '_id']));
    expect(rest.interaction.map((i: { code: string }) => i.code)).toEqual(expect.arrayContaining(['transaction', 'batch']));
    expect(rest.resource.length).toBeGreaterThan(140);
  });
});

describe('Binary and _summary=count', () => {
  it('serves a Binary as raw bytes for a non-FHIR Accept, and as a resource otherwise', async () => {
    const pdf = Buffer.from('%PDF-1.4\n%fake but enough\n');
    await t.http.put('/fhir/Binary/b1').send({ resourceType: 'Binary', id: 'b1', contentType: 'application/pdf', data: pdf.toString('base64') });
    const raw = await t.http.get('/fhir/Binary/b1').set('Accept', 'application/pdf').buffer(true).parse((res, cb) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => cb(null, Buffer.concat(chunks)));
    });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toBe('application/pdf');
    expect(Buffer.compare(raw.body as Buffer, pdf)).toBe(0);
    expect(raw.headers.etag).toBe('W/"1"');
    const asResource = await t.http.get('/fhir/Binary/b1').set('Accept', 'application/fhir+json');
    expect(asResource.body.resourceType).toBe('Binary');
    const missing = await t.http.get('/fhir/Binary/none').set('Accept', 'application/pdf');
    expect(missing.status).toBe(404);
  });

  it('_summary=count gives the total and no entries', async () => {
    for (let i = 0; i < 3; i++) await t.http.post('/fhir/Patient').send(patient(`F${i}`));
    const res = await t.http.get('/fhir/Patient?_summary=count');
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(3);
    expect(res.body.entry).toBeUndefined();
  });
});

describe('XML nesting limit', () => {
  it('refuses XML nested beyond the limit before building it, and accepts ordinary nesting', async () => {
    const deep = '<extension url="http://x">'.repeat(200) + '</extension>'.repeat(200);
    const res = await t.http.post('/fhir/Patient').set('Content-Type', 'application/fhir+xml').send(`<Patient xmlns="http://hl7.org/fhir">${deep}</Patient>`);
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('deeper');
    const ok = await t.http
      .post('/fhir/Patient')
      .set('Content-Type', 'application/fhir+xml')
      .send('<?xml version="1.0"?><!-- a comment with <tags> --><Patient xmlns="http://hl7.org/fhir"><name><family value="a &gt; b"/><given value="x/y"/></name></Patient>');
    expect(ok.status).toBe(201);
    expect(ok.body.name[0].family).toBe('a > b');
  });
});

describe('profile validation on write (DSP_PROFILE_VALIDATION)', () => {
  const LU_PATIENT = 'http://dsp.lu/fhir/StructureDefinition/lu-patient';
  // Declares LU Patient but has no matricule, name, gender or birth date.
  const bad = { resourceType: 'Patient', meta: { profile: [LU_PATIENT] }, active: true };

  it('reject: a resource that does not conform to a profile it declares gets 422 and is not stored', async () => {
    const strict = await makeApp({ profileValidation: 'reject' });
    const res = await strict.http.post('/fhir/Patient').send(bad);
    expect(res.status).toBe(422);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(await strict.ctx.store.count('Patient')).toBe(0);
  });

  it('warn: stored, and the issues come back with Prefer: return=OperationOutcome', async () => {
    const lenient = await makeApp({ profileValidation: 'warn' });
    const res = await lenient.http.post('/fhir/Patient').set('Prefer', 'return=OperationOutcome').send(bad);
    expect(res.status).toBe(201);
    expect(res.body.issue.some((i: { severity: string }) => i.severity === 'error')).toBe(true);
  });

  it('off: not checked', async () => {
    const off = await makeApp({ profileValidation: 'off' });
    const res = await off.http.post('/fhir/Patient').set('Prefer', 'return=OperationOutcome').send(bad);
    expect(res.status).toBe(201);
    expect(res.body.issue).toHaveLength(1);
  });
});

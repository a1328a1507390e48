/**
 * Issue 6: the patient-facing access operations (Patient/[id]/$access-grant ... $access-log), declared care
 * relationships (CareTeam, EpisodeOfCare) and SMART scopes on every operation for every principal.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, Parameters, ParametersParameter } from 'fhir/r4';
import { makeApp, type Http, type TestApp } from './support/app.ts';
import { careTeam, consent, seed } from './access-fixture.ts';

let t: TestApp;
let anna: Http, ben: Http, asst: Http, gp: Http, none: Http, author: Http, er: Http, ncp: Http, system: Http, team: Http;

const FLAG = 'https://dsp.lu/fhir/CodeSystem/audit-flag';
const params = (...p: ParametersParameter[]): Parameters => ({ resourceType: 'Parameters', parameter: p });
const actor = (r: string) => params({ name: 'practitioner', valueReference: { reference: r } });
const value = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);
const all = (p: Parameters, name: string) => (p.parameter ?? []).filter((x) => x.name === name);
const part = (p: ParametersParameter, name: string) => p.part?.find((x) => x.name === name);
const links = (p: Parameters) => all(p, 'link').map((l) => `${part(l, 'actor')!.valueReference!.reference} ${part(l, 'basis')!.valueCode}`).sort();

beforeAll(async () => {
  t = await makeApp();
  await seed(t);
  anna = await t.as({ role: 'patient', id: 'Patient/anna' });
  ben = await t.as({ role: 'patient', id: 'Patient/ben' });
  asst = await t.as({ role: 'assistant', id: 'RelatedPerson/asst' });
  gp = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp' });
  none = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none' });
  author = await t.as({ role: 'practitioner', id: 'Practitioner/dr-author' });
  er = await t.as({ role: 'practitioner', id: 'Practitioner/dr-none', purpose: 'EMERGENCY', reason: 'found unconscious' });
  ncp = await t.as({ role: 'ncp', id: 'Organization/ncp-be' });
  system = await t.as({ role: 'system', id: 'Device/lab' });
  team = await t.as({ role: 'practitioner', id: 'Practitioner/dr-team' });
});

describe('$access-grant / $access-revoke', () => {
  it('grants a professional until a date, with restricted documents; idempotent; the Consent is readable', async () => {
    expect((await none.get('/fhir/Observation/o-normal')).status).toBe(404);
    const body = params({ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'end', valueDate: '2099-12-31' }, { name: 'restricted', valueBoolean: true });
    const res = await anna.post('/fhir/Patient/anna/$access-grant').send(body);
    expect(res.status).toBe(200);
    expect(value(res.body, 'outcome')!.valueCode).toBe('created');
    const consentRef = value(res.body, 'consent')!.valueReference!.reference!;
    const link = all(res.body, 'link').find((l) => part(l, 'actor')!.valueReference!.reference === 'Practitioner/dr-none')!;
    expect(part(link, 'source')!.valueReference!.reference).toBe(consentRef);
    expect(part(link, 'end')!.valueDateTime).toBe('2099-12-31');
    expect(part(link, 'restricted')!.valueBoolean).toBe(true);
    expect((await none.get('/fhir/Observation/o-normal')).status).toBe(200);
    expect((await none.get('/fhir/Observation/o-r')).status).toBe(200);
    // The Consent is the source of truth, readable by the patient.
    const c = await anna.get(`/fhir/${consentRef}`);
    expect(c.status).toBe(200);
    expect(c.body.policyRule.coding[0].code).toBe('grant');
    expect(c.body.provision.actor[0].reference.reference).toBe('Practitioner/dr-none');
    expect(c.body.provision.period.end).toBe('2099-12-31');
    expect(c.body.performer[0].reference).toBe('Patient/anna');
    // A valid R4 Consent (consent invariants included).
    const validated = await t.http.post('/fhir/Consent/$validate').send(c.body);
    expect(validated.body.issue.filter((i: { severity: string }) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    // The same call again changes nothing.
    const again = await anna.post('/fhir/Patient/anna/$access-grant').send(body);
    expect(value(again.body, 'outcome')!.valueCode).toBe('unchanged');
    expect(value(again.body, 'consent')).toBeUndefined();
    expect((await anna.get(`/fhir/${consentRef}`)).body.meta.versionId).toBe('1');
    // Another end and no R: the same Consent is updated.
    const changed = await anna.post('/fhir/Patient/anna/$access-grant').send(actor('Practitioner/dr-none'));
    expect(value(changed.body, 'outcome')!.valueCode).toBe('updated');
    expect(value(changed.body, 'consent')!.valueReference!.reference).toBe(consentRef);
    expect((await none.get('/fhir/Observation/o-r')).status).toBe(404);
    expect((await none.get('/fhir/Observation/o-normal')).status).toBe(200);
  });

  it('revokes every grant naming the professional (also one shared with another actor); idempotent', async () => {
    // A Consent written directly by the patient, naming two professionals.
    const shared = consent('c-shared', 'anna', 'grant', { actor: 'Practitioner/dr-none' }) as unknown as { provision: { actor: unknown[] }; meta?: unknown };
    shared.meta = { tag: [{ system: 'https://example.org/tags', code: 'from-gp-software' }] };
    shared.provision.actor.push({ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] }, reference: { reference: 'Practitioner/dr-expired' } });
    expect((await anna.put('/fhir/Consent/c-shared').send(shared)).status).toBe(201);
    const expired = await t.as({ role: 'practitioner', id: 'Practitioner/dr-expired' });
    expect((await expired.get('/fhir/Observation/o-normal')).status).toBe(200);
    const res = await anna.post('/fhir/Patient/anna/$access-revoke').send(actor('Practitioner/dr-none'));
    expect(res.status).toBe(200);
    expect(value(res.body, 'outcome')!.valueCode).toBe('updated');
    expect(all(res.body, 'consent').map((c) => c.valueReference!.reference)).toContain('Consent/c-shared');
    expect((await none.get('/fhir/Observation/o-normal')).status).toBe(404);
    // dr-expired keeps the shared Consent.
    expect((await expired.get('/fhir/Observation/o-normal')).status).toBe(200);
    const sharedNow = await anna.get('/fhir/Consent/c-shared');
    expect(sharedNow.body.status).toBe('active');
    expect(sharedNow.body.provision.actor.map((a: { reference: { reference: string } }) => a.reference.reference)).toEqual(['Practitioner/dr-expired']);
    // The operation's update keeps the Consent's own meta (a tag written by the patient's software).
    expect(sharedNow.body.meta.tag).toEqual([{ system: 'https://example.org/tags', code: 'from-gp-software' }]);
    expect(sharedNow.body.meta.versionId).toBe('2');
    const again = await anna.post('/fhir/Patient/anna/$access-revoke').send(actor('Practitioner/dr-none'));
    expect(value(again.body, 'outcome')!.valueCode).toBe('unchanged');
    await anna.delete('/fhir/Consent/c-shared');
  });

  it('refuses bad input with precise 4xx answers', async () => {
    const past = await anna.post('/fhir/Patient/anna/$access-grant').send(params({ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'end', valueDateTime: '2020-01-01T00:00:00Z' }));
    expect(past.status).toBe(422);
    expect(past.body.issue[0].expression[0]).toBe("Parameters.parameter.where(name='end')");
    expect((await anna.post('/fhir/Patient/anna/$access-grant').send(params({ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'end', valueString: 'tomorrow' }))).status).toBe(400);
    expect((await anna.post('/fhir/Patient/anna/$access-grant').send(actor('Practitioner/nobody'))).status).toBe(422);
    expect((await anna.post('/fhir/Patient/anna/$access-grant').send(actor('Organization/x'))).status).toBe(422);
    const missing = await anna.post('/fhir/Patient/anna/$access-grant').send(params());
    expect(missing.status).toBe(400);
    expect(missing.body.issue[0].expression[0]).toBe("Parameters.parameter.where(name='practitioner')");
    expect((await anna.post('/fhir/Patient/anna/$access-grant').send(actor('not a reference'))).status).toBe(400);
    expect((await anna.post('/fhir/Patient/anna/$access-grant').send({ resourceType: 'Patient' })).status).toBe(400);
    expect((await anna.get('/fhir/Patient/anna/$access-grant?practitioner=Practitioner/dr-none')).status).toBe(405);
    expect((await anna.post('/fhir/Observation/o-normal/$access-grant').send(actor('Practitioner/dr-none'))).status).toBe(400);
    expect((await t.http.post('/fhir/Patient/nobody/$access-block').send(actor('Practitioner/dr-none'))).status).toBe(404);
  });
});

describe('block, hide, objection, close, emergency access, cross-border', () => {
  it('$access-block beats the médecin référent; $access-unblock restores; both idempotent', async () => {
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
    const res = await asst.post('/fhir/Patient/anna/$access-block').send(actor('Practitioner/dr-gp'));
    expect(res.status).toBe(200);
    expect(value(res.body, 'outcome')!.valueCode).toBe('created');
    expect(all(res.body, 'block').map((b) => part(b, 'actor')!.valueReference!.reference)).toContain('Practitioner/dr-gp');
    // The Consent names the assistant who wrote it.
    const c = await anna.get(`/fhir/${value(res.body, 'consent')!.valueReference!.reference}`);
    expect(c.body.performer[0].reference).toBe('RelatedPerson/asst');
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect(value((await anna.post('/fhir/Patient/anna/$access-block').send(actor('Practitioner/dr-gp'))).body, 'outcome')!.valueCode).toBe('unchanged');
    const un = await anna.post('/fhir/Patient/anna/$access-unblock').send(actor('Practitioner/dr-gp'));
    expect(value(un.body, 'outcome')!.valueCode).toBe('updated');
    expect((await anna.get(`/fhir/${value(res.body, 'consent')!.valueReference!.reference}`)).body.status).toBe('inactive');
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
    expect(value((await anna.post('/fhir/Patient/anna/$access-unblock').send(actor('Practitioner/dr-gp'))).body, 'outcome')!.valueCode).toBe('unchanged');
  });

  it('$hide / $unhide: any resource of the record; outside the record is 422', async () => {
    const hide = (ref: string) => anna.post('/fhir/Patient/anna/$hide').send(params({ name: 'resource', valueReference: { reference: ref } }));
    const res = await hide('Observation/o-normal');
    expect(res.status).toBe(200);
    expect(all(res.body, 'hidden').map((h) => part(h, 'resource')!.valueReference!.reference)).toContain('Observation/o-normal');
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await anna.get('/fhir/Observation/o-normal')).status).toBe(200);
    expect(value((await hide('Observation/o-normal')).body, 'outcome')!.valueCode).toBe('unchanged');
    for (const outside of ['Observation/o-ben', 'Observation/does-not-exist', 'Patient/anna', 'Practitioner/dr-gp']) {
      const r = await hide(outside);
      expect(r.status, outside).toBe(422);
      expect(r.body.issue[0].expression[0]).toBe("Parameters.parameter.where(name='resource')");
    }
    // Not existing and someone else's look the same.
    expect((await hide('Observation/o-ben')).body.issue[0].diagnostics.replace('o-ben', 'X')).toBe((await hide('Observation/zzz')).body.issue[0].diagnostics.replace('zzz', 'X'));
    const un = await anna.post('/fhir/Patient/anna/$unhide').send(params({ name: 'resource', valueReference: { reference: 'Observation/o-normal' } }));
    expect(value(un.body, 'outcome')!.valueCode).toBe('updated');
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
  });

  it('$object-encounter hides the visit and what refers to it; $withdraw-objection restores', async () => {
    const body = params({ name: 'encounter', valueReference: { reference: 'Encounter/enc-1' } });
    expect((await anna.post('/fhir/Patient/anna/$object-encounter').send(body)).status).toBe(200);
    expect((await gp.get('/fhir/Encounter/enc-1')).status).toBe(404);
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await anna.post('/fhir/Patient/anna/$object-encounter').send(params({ name: 'encounter', valueReference: { reference: 'Observation/o-normal' } }))).status).toBe(422);
    expect((await anna.post('/fhir/Patient/anna/$withdraw-objection').send(body)).status).toBe(200);
    expect((await gp.get('/fhir/Observation/o-normal')).status).toBe(200);
  });

  it('$close / $reopen; a close written as a raw Consent is reopened too', async () => {
    const res = await anna.post('/fhir/Patient/anna/$close');
    expect(res.status).toBe(200);
    expect(value(res.body, 'closed')!.valueBoolean).toBe(true);
    expect((await gp.get('/fhir/Patient/anna')).status).toBe(404);
    expect((await author.get('/fhir/DocumentReference/doc-plain')).status).toBe(200);
    expect(value((await anna.post('/fhir/Patient/anna/$close')).body, 'outcome')!.valueCode).toBe('unchanged');
    expect((await anna.put('/fhir/Consent/c-raw-close').send(consent('c-raw-close', 'anna', 'close'))).status).toBe(201);
    const reopen = await anna.post('/fhir/Patient/anna/$reopen');
    expect(value(reopen.body, 'closed')!.valueBoolean).toBe(false);
    expect(all(reopen.body, 'consent').length).toBe(2);
    expect((await gp.get('/fhir/Patient/anna')).status).toBe(200);
  });

  it('$emergency-access enabled=false refuses emergency access; true restores it', async () => {
    expect((await er.get('/fhir/Patient/anna')).status).toBe(200);
    const off = await anna.post('/fhir/Patient/anna/$emergency-access').send(params({ name: 'enabled', valueBoolean: false }));
    expect(value(off.body, 'emergency-access')!.valueBoolean).toBe(false);
    expect((await er.get('/fhir/Patient/anna')).status).toBe(404);
    expect((await anna.post('/fhir/Patient/anna/$emergency-access').send(params()))).toMatchObject({ status: 400 });
    expect((await anna.post('/fhir/Patient/anna/$emergency-access').send(params({ name: 'enabled', valueString: 'maybe' }))).status).toBe(400);
    const on = await anna.post('/fhir/Patient/anna/$emergency-access').send(params({ name: 'enabled', valueBoolean: true }));
    expect(value(on.body, 'emergency-access')!.valueBoolean).toBe(true);
    expect((await er.get('/fhir/Patient/anna')).status).toBe(200);
  });

  it('$cross-border: withdrawing stops the national contact point, consenting again restores it', async () => {
    expect((await ncp.get('/fhir/Patient/anna')).status).toBe(200);
    const off = await anna.post('/fhir/Patient/anna/$cross-border').send(params({ name: 'enabled', valueBoolean: false }));
    expect(value(off.body, 'cross-border')!.valueBoolean).toBe(false);
    expect((await ncp.get('/fhir/Patient/anna')).status).toBe(404);
    const on = await anna.post('/fhir/Patient/anna/$cross-border').send(params({ name: 'enabled', valueBoolean: true }));
    expect(value(on.body, 'outcome')!.valueCode).toBe('created');
    expect((await ncp.get('/fhir/Patient/anna')).status).toBe(200);
    // ben had no cross-border Consent: the NCP sees nothing until he consents.
    expect((await ncp.get('/fhir/Patient/ben')).status).toBe(404);
    expect((await ben.post('/fhir/Patient/ben/$cross-border').send(params({ name: 'enabled', valueBoolean: true }))).status).toBe(200);
    expect((await ncp.get('/fhir/Patient/ben')).status).toBe(200);
  });
});

describe('malformed calls are 4xx OperationOutcomes, never 500', () => {
  it('every changing operation with broken parameters', async () => {
    const bad: unknown[] = [
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner' }] },
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: {} }] },
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: { reference: 5 } }] },
      { resourceType: 'Parameters', parameter: [{ name: 'resource', valueReference: { reference: 'Foo/1' } }, { name: 'encounter', valueReference: { reference: 'Binary/x' } }] },
      { resourceType: 'Parameters', parameter: [{ name: 'resource', valueString: '../etc/passwd' }, { name: 'encounter', valueString: 'Encounter/' }] },
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'end', valueDate: '2099-13-45' }] },
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'end', valueDateTime: 2099 }] },
      { resourceType: 'Parameters', parameter: [{ name: 'practitioner', valueReference: { reference: 'Practitioner/dr-none' } }, { name: 'restricted', valueString: 'yes' }] },
      { resourceType: 'Parameters', parameter: [{ name: 'enabled', valueBoolean: 'no' }, { name: 'enabled', valueBoolean: true }] },
      { resourceType: 'Parameters', parameter: 'x' },
      { resourceType: 'Parameters', parameter: [null] },
      { resourceType: 'Observation' },
      [],
    ];
    const ops = ['access-grant', 'access-revoke', 'access-block', 'access-unblock', 'hide', 'unhide', 'object-encounter', 'withdraw-objection', 'emergency-access', 'cross-border'];
    for (const op of ops) {
      for (const body of bad) {
        const r = await anna.post(`/fhir/Patient/anna/$${op}`).send(body as object);
        expect(r.status, `${op} ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400);
        expect(r.status, `${op} ${JSON.stringify(body)}`).toBeLessThan(500);
        expect(r.body.resourceType).toBe('OperationOutcome');
      }
    }
    for (const q of ['_count=-1', '_count=abc', '_cursor=zzz', 'self=1', 'emergency=yes', '_sort=date']) {
      const r = await anna.get(`/fhir/Patient/anna/$access-log?${q}`);
      expect(r.status, q).toBe(400);
    }
    // Nothing was written by the refused calls.
    const p = (await anna.get('/fhir/Patient/anna/$access-policy')).body as Parameters;
    expect(all(p, 'block').map((b) => part(b, 'actor')!.valueReference!.reference)).toEqual(['Practitioner/dr-blocked']);
  });
});

describe('who may call them', () => {
  it('the patient, their assistant and an administrator; professionals, NCP and system clients 403; another patient 404', async () => {
    for (const c of [anna, asst, t.http]) expect((await c.get('/fhir/Patient/anna/$access-policy')).status).toBe(200);
    for (const c of [gp, none, er, ncp, system, team]) {
      const r = await c.post('/fhir/Patient/anna/$access-block').send(actor('Practitioner/dr-none'));
      expect(r.status).toBe(403);
      expect(r.body.issue[0].code).toBe('forbidden');
      expect((await c.get('/fhir/Patient/anna/$access-log')).status).toBe(403);
    }
    expect((await ben.post('/fhir/Patient/anna/$close')).status).toBe(404);
    expect((await ben.get('/fhir/Patient/anna/$access-policy')).status).toBe(404);
    // An assistant of anna is nobody's assistant for ben.
    expect((await asst.get('/fhir/Patient/ben/$access-policy')).status).toBe(404);
    expect((await gp.get('/fhir/Patient/anna')).status).toBe(200);
  });

  it('the CapabilityStatement lists them on Patient', async () => {
    const cs = await t.anon.get('/fhir/metadata');
    const patient = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    const names = patient.operation.map((o: { name: string }) => o.name);
    for (const op of ['access-grant', 'access-revoke', 'access-block', 'access-unblock', 'hide', 'unhide', 'object-encounter', 'withdraw-objection', 'close', 'reopen', 'emergency-access', 'cross-border', 'access-policy', 'access-log']) expect(names).toContain(op);
    // Not offered on other types.
    const obs = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Observation');
    expect(obs.operation.map((o: { name: string }) => o.name)).not.toContain('hide');
  });

  it('$access-policy tells each link and where it comes from', async () => {
    const p = (await anna.get('/fhir/Patient/anna/$access-policy')).body as Parameters;
    expect(value(p, 'closed')!.valueBoolean).toBe(false);
    expect(links(p)).toEqual(expect.arrayContaining(['Practitioner/dr-gp general-practitioner', 'Practitioner/dr-grant grant', 'Practitioner/dr-team care-team', 'PractitionerRole/role-team care-team', 'Practitioner/dr-team-role care-team', 'Practitioner/dr-episode episode-of-care']));
    expect(links(p).some((l) => l.startsWith('Practitioner/dr-expired '))).toBe(false);
    expect(links(p).some((l) => l.startsWith('Practitioner/dr-team-ended ') || l.startsWith('Practitioner/dr-team-inactive ') || l.startsWith('Practitioner/dr-left '))).toBe(false);
    const blockedLink = all(p, 'link').find((l) => part(l, 'actor')!.valueReference!.reference === 'Practitioner/dr-blocked' && part(l, 'basis')!.valueCode === 'care-team')!;
    expect(part(blockedLink, 'blocked')!.valueBoolean).toBe(true);
    expect(all(p, 'hidden').map((h) => part(h, 'resource')!.valueReference!.reference)).toEqual(['DocumentReference/doc-hidden']);
    expect(all(p, 'objection').map((h) => part(h, 'encounter')!.valueReference!.reference)).toEqual(['Encounter/enc-2']);
    expect(all(p, 'assistant').map((h) => part(h, 'actor')!.valueReference!.reference)).toEqual(['RelatedPerson/asst']);
  });

  it('a transaction Bundle can carry the operations; a failing entry rolls the Consents back', async () => {
    const tx = await anna.post('/fhir').send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: actor('Practitioner/dr-none'), request: { method: 'POST', url: 'Patient/anna/$access-block' } },
        { resource: params({ name: 'resource', valueReference: { reference: 'Observation/o-ben' } }), request: { method: 'POST', url: 'Patient/anna/$hide' } },
      ],
    });
    expect(tx.status).toBe(422);
    const p = (await anna.get('/fhir/Patient/anna/$access-policy')).body as Parameters;
    expect(all(p, 'block').map((b) => part(b, 'actor')!.valueReference!.reference)).not.toContain('Practitioner/dr-none');
  });
});

describe('$access-log: who accessed my record', () => {
  it('newest first, emergency accesses flagged, own requests left out unless self=true, paged', async () => {
    await gp.get('/fhir/Observation/o-normal');
    await er.get('/fhir/AllergyIntolerance/allergy');
    await none.get('/fhir/Patient/anna/$everything'); // denied (404): recorded in anna's trail too
    const log = await anna.get('/fhir/Patient/anna/$access-log?_count=100');
    expect(log.status).toBe(200);
    const events = (log.body as Bundle).entry!.map((e) => e.resource as { recorded: string; agent: { who: { reference: string } }[]; meta?: { tag?: { code: string }[] }; outcome: string });
    expect(events.length).toBeGreaterThan(3);
    const recorded = events.map((e) => e.recorded);
    expect([...recorded].sort().reverse()).toEqual(recorded);
    const who = events.map((e) => e.agent[0].who.reference);
    expect(who).not.toContain('Patient/anna');
    expect(who).not.toContain('RelatedPerson/asst');
    expect(who).toContain('Practitioner/dr-gp');
    const emergency = events.find((e) => e.agent[0].who.reference === 'Practitioner/dr-none' && e.meta?.tag?.some((x) => x.code === 'emergency-access'));
    expect(emergency).toBeDefined();
    expect(events.some((e) => e.agent[0].who.reference === 'Practitioner/dr-none' && e.outcome === '4' && !e.meta?.tag?.some((x) => x.code === 'emergency-access'))).toBe(true);
    // Administrators' operations on the record are listed too (the seed's own writes are not: see docs/access.md).
    await t.http.get('/fhir/Patient/anna/$access-policy');
    const withAdmin = await anna.get('/fhir/Patient/anna/$access-log?_count=1');
    expect(withAdmin.body.entry[0].resource.agent[0].who.reference).toBe('Practitioner/test-admin');
    // Only emergency accesses.
    const onlyEr = await anna.get('/fhir/Patient/anna/$access-log?emergency=true');
    expect(onlyEr.body.entry.length).toBeGreaterThan(0);
    for (const e of onlyEr.body.entry) expect(e.resource.meta.tag.map((x: { system: string; code: string }) => `${x.system}|${x.code}`)).toContain(`${FLAG}|emergency-access`);
    // With self=true the patient's own requests (the operations called above included) are listed.
    const mine = await asst.get('/fhir/Patient/anna/$access-log?self=true&_count=500');
    const queries = mine.body.entry.map((e: { resource: { entity?: { query?: string }[] } }) => (e.resource.entity ?? []).map((x) => (x.query ? Buffer.from(x.query, 'base64').toString() : '')).join(' ')).join('\n');
    expect(queries).toContain('Patient/anna/$access-block');
    // Paging: _count=2, the next link keeps the parameters and gives older, different events.
    const first = await anna.get('/fhir/Patient/anna/$access-log?_count=2&emergency=false');
    const next = (first.body as Bundle).link!.find((l) => l.relation === 'next')!.url.replace('http://test', '');
    expect(next).toContain('$access-log');
    const second = await anna.get(next);
    expect(second.status).toBe(200);
    const ids1 = first.body.entry.map((e: { resource: { id: string } }) => e.resource.id);
    const ids2 = second.body.entry.map((e: { resource: { id: string } }) => e.resource.id);
    expect(ids2.length).toBe(2);
    expect(ids2.some((id: string) => ids1.includes(id))).toBe(false);
    expect(second.body.entry[0].resource.recorded <= first.body.entry[1].resource.recorded).toBe(true);
    // Another principal cannot follow the patient's link.
    expect((await asst.get(next)).status).toBe(400);
    expect((await anna.get('/fhir/Patient/anna/$access-log?bogus=1')).status).toBe(400);
  });

  it('reads, searches and writes by system clients and administrators are in the trail of each patient they touched', async () => {
    const whoFor = async (patient: Http, id: string) => {
      const log = await patient.get(`/fhir/Patient/${id}/$access-log?_count=20`);
      expect(log.status).toBe(200);
      return (log.body as Bundle).entry!.map((e) => e.resource as { agent: { who: { reference: string } }[]; entity?: { what?: { reference?: string } }[] });
    };
    expect((await system.get('/fhir/Observation/o-normal')).status).toBe(200);
    let events = await whoFor(anna, 'anna');
    expect(events[0].agent[0].who.reference).toBe('Device/lab');
    expect(events[0].entity?.some((e) => e.what?.reference === 'Observation/o-normal')).toBe(true);
    // A search over several records names every patient whose data it returned, and no other.
    const search = await system.get('/fhir/Observation?_count=100');
    expect(search.status).toBe(200);
    const subjects = new Set((search.body as Bundle).entry!.map((e) => (e.resource as { subject?: { reference?: string } }).subject?.reference));
    expect(subjects.has('Patient/anna') && subjects.has('Patient/ben')).toBe(true);
    expect((await whoFor(anna, 'anna'))[0].agent[0].who.reference).toBe('Device/lab');
    expect((await whoFor(ben, 'ben'))[0].agent[0].who.reference).toBe('Device/lab');
    // A write with Prefer: return=minimal (no body in the answer) is attributed from the request body.
    const created = await t.http.post('/fhir/Observation').set('Prefer', 'return=minimal').send({ resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: 'Patient/ben' } });
    expect(created.status).toBe(201);
    events = await whoFor(ben, 'ben');
    expect(events[0].agent[0].who.reference).toBe('Practitioner/test-admin');
    // Ben's trail does not get anna's reads.
    await system.get('/fhir/Observation/o-normal');
    expect((await whoFor(ben, 'ben'))[0].agent[0].who.reference).toBe('Practitioner/test-admin');
  });

  it('a refused read of a resource of the record is in the patient’s trail (the caller got a plain 404)', async () => {
    const denied = await none.get('/fhir/Observation/o-normal');
    expect(denied.status).toBe(404);
    const log = await anna.get('/fhir/Patient/anna/$access-log?_count=5');
    const latest = (log.body as Bundle).entry![0].resource as { agent: { who: { reference: string } }[]; outcome: string; entity?: { what?: { reference?: string } }[] };
    expect(latest.agent[0].who.reference).toBe('Practitioner/dr-none');
    expect(latest.outcome).toBe('4');
    expect(latest.entity?.some((e) => e.what?.reference === 'Observation/o-normal')).toBe(true);
    // A read of an id that does not exist names nobody.
    expect((await none.get('/fhir/Observation/does-not-exist')).status).toBe(404);
    const after = await anna.get('/fhir/Patient/anna/$access-log?_count=1');
    expect(((after.body as Bundle).entry![0].resource as { entity?: { what?: { reference?: string } }[] }).entity?.some((e) => e.what?.reference === 'Observation/does-not-exist')).toBe(false);
  });

  it('ben sees none of anna’s log; an administrator sees it', async () => {
    expect((await ben.get('/fhir/Patient/anna/$access-log')).status).toBe(404);
    const admin = await t.http.get('/fhir/Patient/anna/$access-log?_count=5');
    expect(admin.status).toBe(200);
    expect(admin.body.entry.length).toBe(5);
  });
});

describe('declared care relationships (CareTeam, EpisodeOfCare)', () => {
  it('members of an active CareTeam (directly or through a PractitionerRole) and the care manager are linked', async () => {
    const role = await t.as({ role: 'practitioner', id: 'PractitionerRole/role-team' });
    const rolePractitioner = await t.as({ role: 'practitioner', id: 'Practitioner/dr-team-role' });
    const episode = await t.as({ role: 'practitioner', id: 'Practitioner/dr-episode' });
    for (const c of [team, role, rolePractitioner, episode]) {
      expect((await c.get('/fhir/Observation/o-normal')).status).toBe(200);
      // A care relationship is not a grant of restricted documents.
      expect((await c.get('/fhir/Observation/o-r')).status).toBe(404);
      expect((await c.get('/fhir/DocumentReference/doc-hidden')).status).toBe(404);
    }
    // Unpinned searches find the record through the CareTeam.
    const s = await team.get('/fhir/Observation?_total=accurate');
    expect(((s.body as Bundle).entry ?? []).map((e) => e.resource!.id).sort()).toEqual(['o-blood', 'o-normal']);
    const viaRole = await rolePractitioner.get('/fhir/Patient');
    expect((viaRole.body as Bundle).entry!.map((e) => e.resource!.id)).toEqual(['anna']);
    expect(((await episode.get('/fhir/Patient')).body as Bundle).entry!.map((e) => e.resource!.id)).toEqual(['anna']);
  });

  it('an ended or inactive CareTeam, an ended participation and a block give nothing', async () => {
    for (const id of ['dr-team-ended', 'dr-team-inactive', 'dr-left', 'dr-blocked']) {
      const c = await t.as({ role: 'practitioner', id: `Practitioner/${id}` });
      expect((await c.get('/fhir/Observation/o-normal')).status, id).toBe(404);
      expect(((await c.get('/fhir/Patient')).body as Bundle).entry ?? [], id).toEqual([]);
    }
  });

  it('CareTeam writes take effect at once (policy cache cleared)', async () => {
    expect((await team.get('/fhir/Observation/o-normal')).status).toBe(200);
    const ended = careTeam('ct-active', 'anna', ['Practitioner/dr-team', 'PractitionerRole/role-team', 'Practitioner/dr-blocked'], { start: '2020-01-01', end: '2021-01-01' });
    expect((await t.http.put('/fhir/CareTeam/ct-active').send(ended)).status).toBe(200);
    expect((await team.get('/fhir/Observation/o-normal')).status).toBe(404);
    const back = careTeam('ct-active', 'anna', ['Practitioner/dr-team', 'PractitionerRole/role-team', 'Practitioner/dr-blocked'], { start: '2020-01-01', left: ['Practitioner/dr-left'] });
    expect((await t.http.put('/fhir/CareTeam/ct-active').send(back)).status).toBe(200);
    expect((await team.get('/fhir/Observation/o-normal')).status).toBe(200);
    // A PractitionerRole that is no longer active stops the link through it.
    const role = await t.as({ role: 'practitioner', id: 'Practitioner/dr-team-role' });
    expect((await t.http.put('/fhir/PractitionerRole/role-team').send({ resourceType: 'PractitionerRole', id: 'role-team', active: false, practitioner: { reference: 'Practitioner/dr-team-role' } })).status).toBe(200);
    expect((await role.get('/fhir/Observation/o-normal')).status).toBe(404);
    expect((await t.http.put('/fhir/PractitionerRole/role-team').send({ resourceType: 'PractitionerRole', id: 'role-team', active: true, practitioner: { reference: 'Practitioner/dr-team-role' } })).status).toBe(200);
    expect((await role.get('/fhir/Observation/o-normal')).status).toBe(200);
  });

  it('the patient can block a care team member', async () => {
    await anna.post('/fhir/Patient/anna/$access-block').send(actor('Practitioner/dr-team'));
    expect((await team.get('/fhir/Observation/o-normal')).status).toBe(404);
    await anna.post('/fhir/Patient/anna/$access-unblock').send(actor('Practitioner/dr-team'));
    expect((await team.get('/fhir/Observation/o-normal')).status).toBe(200);
  });
});

describe('SMART scopes on every operation, for every principal', () => {
  const doc = { resourceType: 'Bundle', type: 'document', entry: [] };
  it('a system token without Bundle scope gets 403 on $to-cda; with it, the operation runs', async () => {
    const obsOnly = await t.as({ role: 'system', id: 'Device/lab', scope: 'system/Observation.rs' });
    const r = await obsOnly.post('/fhir/Bundle/$to-cda').send(doc);
    expect(r.status).toBe(403);
    expect(r.body.issue[0].diagnostics).toMatch(/read on Bundle/);
    const bundleRead = await t.as({ role: 'system', id: 'Device/lab', scope: 'system/Bundle.r' });
    // Past the scope check, the operation itself refuses the empty document.
    const ran = await bundleRead.post('/fhir/Bundle/$to-cda').send(doc);
    expect(ran.status).toBe(400);
    expect(ran.body.resourceType).toBe('OperationOutcome');
    expect(ran.body.issue[0].code).not.toBe('forbidden');
    expect((await obsOnly.post('/fhir/Bundle/$from-cda').send({ resourceType: 'Binary', contentType: 'application/xml', data: '' })).status).toBe(403);
  });

  it('$everything needs read on Patient, also for administrators', async () => {
    const admin = await t.as({ role: 'admin', id: 'Practitioner/a', scope: 'system/Observation.rs' });
    expect((await admin.get('/fhir/Patient/anna/$everything')).status).toBe(403);
    const withPatient = await t.as({ role: 'admin', id: 'Practitioner/a', scope: 'system/Patient.rs system/Observation.rs' });
    const ev = await withPatient.get('/fhir/Patient/anna/$everything');
    expect(ev.status).toBe(200);
    expect(new Set((ev.body as Bundle).entry!.map((e) => e.resource!.resourceType))).toEqual(new Set(['Patient', 'Observation']));
  });

  it('terminology operations need read on their resource type; $validate read or write on the validated type', async () => {
    const obsOnly = await t.as({ role: 'system', id: 'Device/lab', scope: 'system/Observation.rs' });
    const vs = await t.as({ role: 'system', id: 'Device/lab', scope: 'system/ValueSet.r system/CodeSystem.r' });
    const gender = '/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender';
    expect((await obsOnly.get(gender)).status).toBe(403);
    expect((await vs.get(gender)).status).toBe(200);
    expect((await obsOnly.get('/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male')).status).toBe(403);
    expect((await vs.get('/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male')).status).toBe(200);
    expect((await obsOnly.get('/fhir/ConceptMap/$translate?system=x&code=y')).status).toBe(403);
    expect((await obsOnly.post('/fhir/Patient/$validate').send({ resourceType: 'Patient' })).status).toBe(403);
    expect((await obsOnly.post('/fhir/Observation/$validate').send({ resourceType: 'Observation', status: 'final', code: { text: 'x' } })).status).toBe(200);
    const writer = await t.as({ role: 'practitioner', id: 'Practitioner/dr-gp', scope: 'user/Observation.c' });
    expect((await writer.post('/fhir/Observation/$validate').send({ resourceType: 'Observation', status: 'final', code: { text: 'x' } })).status).toBe(200);
    // Instance-level $validate reads the stored resource: read scope.
    expect((await writer.get('/fhir/Observation/o-normal/$validate')).status).toBe(403);
  });

  it('patient operations need create and update on Consent ($access-policy read, $access-log search on AuditEvent)', async () => {
    const readOnly = await t.as({ role: 'patient', id: 'Patient/anna', scope: 'patient/*.rs' });
    expect((await readOnly.post('/fhir/Patient/anna/$close')).status).toBe(403);
    expect((await readOnly.get('/fhir/Patient/anna/$access-policy')).status).toBe(200);
    expect((await readOnly.get('/fhir/Patient/anna/$access-log')).status).toBe(200);
    const consentOnly = await t.as({ role: 'patient', id: 'Patient/anna', scope: 'patient/Consent.cru' });
    expect((await consentOnly.post('/fhir/Patient/anna/$access-unblock').send(actor('Practitioner/dr-none'))).status).toBe(200);
    expect((await consentOnly.get('/fhir/Patient/anna/$access-log')).status).toBe(403);
    const adminNoConsent = await t.as({ role: 'admin', id: 'Practitioner/a', scope: 'system/Patient.rs' });
    expect((await adminNoConsent.post('/fhir/Patient/anna/$reopen')).status).toBe(403);
  });

  it('$reindex needs a wildcard write scope', async () => {
    const admin = await t.as({ role: 'admin', id: 'Practitioner/a', scope: 'system/Observation.cruds' });
    expect((await admin.post('/fhir/$reindex').send({ resourceType: 'Parameters', parameter: [{ name: 'type', valueCode: 'Observation' }] })).status).toBe(403);
  });
});

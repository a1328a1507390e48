/**
 * Repeated index values of one parameter are stored once (src/search/indexer.ts, dedupe): short runs are compared
 * pairwise, long runs through key strings. Both keep the first of each distinct value, in order, and never merge
 * values that differ in any field.
 */
import { describe, expect, it } from 'vitest';
import type { Identifier, Patient } from 'fhir/r4';
import { extractIndex } from '../src/search/indexer.ts';

const of = (p: Patient, params: string[]) => extractIndex(p).filter((v) => params.includes(v.param)).map((v) => JSON.parse(JSON.stringify(v)));

describe('index values: one row per distinct value of a parameter', () => {
  it('a short run: repeated identifiers, names and telecoms kept once, distinct ones all kept, first-seen order', () => {
    const p: Patient = {
      resourceType: 'Patient',
      identifier: [{ system: 'urn:a', value: '1' }, { system: 'urn:a', value: '1' }, { system: 'urn:b', value: '1' }, { value: '1' }, { system: 'urn:a', value: '1' }],
      name: [{ family: 'Dupont', given: ['Jean', 'Jean', 'Marie'] }, { family: 'Dupont' }],
      telecom: [{ system: 'phone', value: '123' }, { system: 'phone', value: '123' }, { system: 'email', value: '123' }],
    };
    expect(of(p, ['identifier'])).toEqual([
      { param: 'identifier', type: 'token', system: 'urn:a', code: '1' },
      { param: 'identifier', type: 'token', system: 'urn:b', code: '1' },
      { param: 'identifier', type: 'token', code: '1' },
    ]);
    expect(of(p, ['given']).map((v) => v.exact)).toEqual(['Jean', 'Marie']);
    expect(of(p, ['name']).map((v) => v.exact)).toEqual(['Dupont', 'Jean', 'Marie']);
    expect(of(p, ['telecom'])).toEqual([
      { param: 'telecom', type: 'token', system: 'phone', code: '123' },
      { param: 'telecom', type: 'token', system: 'email', code: '123' },
    ]);
  });

  it('values differing in one field only (system, code, the identifier type) stay apart', () => {
    const typed = (code: string): Identifier => ({ system: 'urn:a', value: '7', type: { coding: [{ system: 'urn:t', code }] } });
    const p: Patient = { resourceType: 'Patient', identifier: [typed('MR'), typed('MR'), typed('SS'), { system: 'urn:a', value: '70' }, { system: 'urn:a7', value: '0' }] };
    const values = of(p, ['identifier']);
    expect(values).toEqual([
      { param: 'identifier', type: 'token', system: 'urn:a', code: '7' },
      { param: 'identifier', type: 'token', system: 'urn:a', code: '7', ofType: 'urn:t|MR|7' },
      { param: 'identifier', type: 'token', system: 'urn:a', code: '7', ofType: 'urn:t|SS|7' },
      { param: 'identifier', type: 'token', system: 'urn:a', code: '70' },
      { param: 'identifier', type: 'token', system: 'urn:a7', code: '0' },
    ]);
  });

  it('a long run (more values than the pairwise comparison takes) gives the same answer', () => {
    const ids: Identifier[] = [];
    for (let i = 0; i < 30; i++) ids.push({ system: `urn:s${i % 7}`, value: String(i % 5) });
    const values = of({ resourceType: 'Patient', identifier: ids }, ['identifier']);
    const expected: { system: string; code: string }[] = [];
    for (const id of ids) if (!expected.some((e) => e.system === id.system && e.code === id.value)) expected.push({ system: id.system!, code: id.value! });
    expect(values).toEqual(expected.map((e) => ({ param: 'identifier', type: 'token', ...e })));
    // The same identifiers cut into short runs (one resource each) give the same distinct values.
    const short: unknown[] = [];
    for (let k = 0; k < ids.length; k += 6) for (const v of of({ resourceType: 'Patient', identifier: ids.slice(k, k + 6) }, ['identifier'])) if (!short.some((s) => JSON.stringify(s) === JSON.stringify(v))) short.push(v);
    expect(short).toEqual(values);
  });
});

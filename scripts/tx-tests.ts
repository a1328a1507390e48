/**
 * Runs HL7's terminology service test cases (fhir-tx-ecosystem-ig tests/test-cases.json) against our
 * operations, in process through the FHIR router (the same path as HTTP, without the socket).
 *
 * Each test's setup resources are passed as `tx-resource` parameters. The expected responses are R5-shaped;
 * only the parts R4 shares are compared (see compare()):
 * - expected OperationOutcome (or an `http-code` of 4xx): the operation must fail with a 4xx;
 * - expected ValueSet: the set of (system, code) in expansion.contains, `total` when given, and each display;
 * - expected Parameters: `result`, `display`, `code`, `system` (validate-code), `name`/`display` (lookup),
 *   `outcome` (subsumes), `result` and the matched (system, code) pairs (translate).
 * Messages, issue texts and R5-only parameters are not compared (every server words them differently).
 *
 * Usage: node_modules/.bin/node scripts/tx-tests.ts [<tx tests folder>] [--verbose] [--suite name] [--write-passing]
 * (--write-passing rewrites scripts/tx-tests-passing.json, the tests test/terminology-tx.test.ts pins).
 */
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Parameters, ParametersParameter, Resource, ValueSet, ValueSetExpansionContains } from 'fhir/r4';
import { dispatch } from '../src/fhir/router.ts';
import type { Context } from '../src/fhir/interactions.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import type { FhirRequest } from '../src/fhir/request.ts';
import { SqliteStore } from '../src/store/sqlite/store.ts';
import { testConfig } from '../src/config.ts';

export interface TxTest {
  name: string;
  operation: string;
  request: string;
  response: string;
  'response:flat'?: string;
  profile?: string;
  'http-code'?: string;
  'Accept-Language'?: string;
  mode?: string;
}
export interface TxSuite {
  name: string;
  mode?: string;
  setup?: string[];
  tests: TxTest[];
}
export interface TxResult {
  suite: string;
  test: string;
  pass: boolean;
  reason?: string;
}

export function defaultTxDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'specs', 'fhir-tx-tests');
}

export function loadSuites(dir: string): TxSuite[] {
  const all = (JSON.parse(readFileSync(join(dir, 'test-cases.json'), 'utf8')) as { suites: TxSuite[] }).suites;
  return all.filter((s) => s.mode === 'general');
}

const read = (dir: string, f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8').replace(/^\uFEFF/, '')) as Resource & Record<string, unknown>;

function pathFor(op: string, params: Parameters): string | undefined {
  const names = new Set((params.parameter ?? []).map((p) => p.name));
  switch (op) {
    case 'expand':
      return 'ValueSet/$expand';
    case 'validate-code':
      return names.has('url') || names.has('valueSet') || names.has('context') ? 'ValueSet/$validate-code' : 'CodeSystem/$validate-code';
    case 'cs-validate-code':
      return 'CodeSystem/$validate-code';
    case 'lookup':
      return 'CodeSystem/$lookup';
    case 'translate':
      return 'ConceptMap/$translate';
    case 'batch-validate':
      return 'ValueSet/$batch-validate-code';
    default:
      return undefined;
  }
}

function flatten(list: ValueSetExpansionContains[] | undefined, out: ValueSetExpansionContains[] = []): ValueSetExpansionContains[] {
  for (const c of list ?? []) {
    if (c.code) out.push(c);
    flatten(c.contains, out);
  }
  return out;
}

const param = (p: Parameters, name: string) => (p.parameter ?? []).find((x) => x.name === name);
const pval = (p: ParametersParameter | undefined): unknown => {
  if (!p) return undefined;
  for (const [k, v] of Object.entries(p)) if (k.startsWith('value')) return v;
  return undefined;
};

/** Compares the parts R4 shares; returns undefined when they agree, else a reason. */
export function compare(op: string, expected: Record<string, unknown>, status: number, actual: Resource | undefined): string | undefined {
  if (expected.resourceType === 'OperationOutcome') return status >= 400 ? undefined : `expected an error, got ${status}`;
  if (status >= 400) return `unexpected error ${status}: ${JSON.stringify(actual).slice(0, 300)}`;
  if (expected.resourceType === 'ValueSet') {
    if (actual?.resourceType !== 'ValueSet') return `expected a ValueSet, got ${actual?.resourceType}`;
    const exp = expected as unknown as ValueSet;
    const got = flatten((actual as ValueSet).expansion?.contains);
    const want = flatten(exp.expansion?.contains).filter((c) => !(c as Record<string, unknown>)['$optional$']);
    // The same code from two versions of a system is two entries: then the version is part of the key.
    const plain = want.map((c) => `${c.system}|${c.code}`);
    const byVersion = new Set(plain).size < plain.length;
    const key = (c: ValueSetExpansionContains) => (byVersion ? `${c.system}|${c.code}|${c.version ?? ''}` : `${c.system}|${c.code}`);
    const gotMap = new Map(got.map((c) => [key(c), c]));
    const wantKeys = new Set(want.map(key));
    const missing = want.filter((c) => !gotMap.has(key(c))).map(key);
    const extra = got.filter((c) => !wantKeys.has(key(c))).map(key);
    if (missing.length || extra.length) return `codes differ: missing [${missing.slice(0, 5).join(', ')}] extra [${extra.slice(0, 5).join(', ')}]`;
    const total = exp.expansion?.total;
    if (typeof total === 'number' && (actual as ValueSet).expansion?.total !== total) return `total ${(actual as ValueSet).expansion?.total} != ${total}`;
    for (const c of want) {
      const g = gotMap.get(key(c))!;
      if (c.display && typeof c.display === 'string' && !c.display.startsWith('$') && g.display !== c.display) return `display of ${key(c)}: '${g.display}' != '${c.display}'`;
    }
    return undefined;
  }
  if (expected.resourceType === 'Parameters' && op === 'batch-validate') {
    // One `validation` per request, in order, each compared as a $validate-code response.
    const list = (p: Resource | undefined) => ((p as Parameters | undefined)?.parameter ?? []).filter((x) => x.name === 'validation').map((x) => x.resource as Resource | undefined);
    const e = list(expected as unknown as Resource);
    const a = list(actual);
    if (e.length !== a.length) return `validations: ${a.length} != ${e.length}`;
    for (let i = 0; i < e.length; i++) {
      const r = compare('validate-code', e[i] as unknown as Record<string, unknown>, a[i]?.resourceType === 'OperationOutcome' ? 400 : 200, a[i]);
      if (r) return `validation[${i}]: ${r}`;
    }
    return undefined;
  }
  if (expected.resourceType === 'Parameters') {
    if (actual?.resourceType !== 'Parameters') return `expected Parameters, got ${actual?.resourceType}`;
    const e = expected as unknown as Parameters;
    const a = actual as Parameters;
    const names = op === 'lookup' ? ['name', 'display'] : op === 'translate' ? ['result'] : ['result', 'display', 'code', 'system', 'outcome'];
    for (const n of names) {
      const ep = param(e, n);
      if (!ep || (ep as unknown as Record<string, unknown>)['$optional$']) continue;
      const ev = pval(ep);
      if (typeof ev === 'string' && ev.startsWith('$')) continue;
      const av = pval(param(a, n));
      if (av !== ev) return `${n}: ${JSON.stringify(av)} != ${JSON.stringify(ev)}`;
    }
    if (op === 'translate') {
      const pairs = (p: Parameters) =>
        (p.parameter ?? [])
          .filter((x) => x.name === 'match')
          .map((m) => m.part?.find((x) => x.name === 'concept')?.valueCoding)
          .map((c) => `${c?.system}|${c?.code}`)
          .sort()
          .join(' ');
      if (pairs(a) !== pairs(e)) return `matches ${pairs(a)} != ${pairs(e)}`;
    }
    return undefined;
  }
  return `unsupported expected type ${String(expected.resourceType)}`;
}

export async function makeContext(): Promise<Context> {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  return { store, config: testConfig({ baseUrl: 'http://test/fhir' }) };
}

export async function runTest(ctx: Context, dir: string, suite: TxSuite, test: TxTest): Promise<TxResult> {
  const res = (pass: boolean, reason?: string): TxResult => ({ suite: suite.name, test: test.name, pass, reason });
  const params = read(dir, test.request) as unknown as Parameters;
  const path = pathFor(test.operation, params);
  if (!path) return res(false, `operation ${test.operation} not supported`);
  const setup = (suite.setup ?? []).map((f) => read(dir, f));
  const profile = test.profile ? ((read(dir, test.profile) as unknown as Parameters).parameter ?? []) : [];
  const body: Parameters = {
    resourceType: 'Parameters',
    parameter: [...(params.parameter ?? []), ...profile, ...setup.map((r): ParametersParameter => ({ name: 'tx-resource', resource: r as Resource as ParametersParameter['resource'] }))],
  };
  const req: FhirRequest = {
    method: 'POST',
    path,
    query: [],
    body,
    contentType: 'application/fhir+json',
    headers: test['Accept-Language'] ? { 'accept-language': test['Accept-Language'] } : {},
    baseUrl: 'http://test/fhir',
  };
  let status: number;
  let out: Resource | undefined;
  try {
    const r = await dispatch(ctx, req);
    status = r.status;
    out = r.body;
  } catch (err) {
    if (!(err instanceof FhirError)) return res(false, `crash: ${(err as Error).stack?.split('\n').slice(0, 3).join(' ')}`);
    status = err.status;
    out = err.toOperationOutcome();
  }
  const flat = test['response:flat'];
  const expected = read(dir, flat && existsSync(join(dir, flat)) ? flat : test.response);
  if (test['http-code']?.startsWith('4') && status < 400) return res(false, `expected ${test['http-code']}, got ${status}`);
  const reason = compare(test.operation, expected, status, out);
  return res(!reason, reason);
}

export async function runAll(dir: string, only?: string): Promise<TxResult[]> {
  const ctx = await makeContext();
  const results: TxResult[] = [];
  for (const suite of loadSuites(dir)) {
    if (only && suite.name !== only) continue;
    for (const t of suite.tests) {
      if (t.mode) continue; // tests for one server's modes (tx.fhir.org, ontoserver)
      results.push(await runTest(ctx, dir, suite, t));
    }
  }
  await ctx.store.close();
  return results;
}

export function summarize(results: TxResult[]): { suite: string; passed: number; total: number }[] {
  const by = new Map<string, { suite: string; passed: number; total: number }>();
  for (const r of results) {
    const s = by.get(r.suite) ?? { suite: r.suite, passed: 0, total: 0 };
    s.total++;
    if (r.pass) s.passed++;
    by.set(r.suite, s);
  }
  return [...by.values()];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const verbose = args.includes('--verbose');
  const si = args.indexOf('--suite');
  const only = si >= 0 ? args[si + 1] : undefined;
  const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--suite') ?? defaultTxDir();
  if (!existsSync(join(dir, 'test-cases.json'))) {
    console.error(`tx-tests: ${dir}/test-cases.json not found`);
    process.exit(2);
  }
  const results = await runAll(dir, only);
  if (args.includes('--write-passing')) {
    const file = join(dirname(fileURLToPath(import.meta.url)), 'tx-tests-passing.json');
    writeFileSync(file, JSON.stringify(results.filter((r) => r.pass).map((r) => `${r.suite}/${r.test}`), null, 1) + '\n');
  }
  if (verbose) for (const r of results) if (!r.pass) console.log(`FAIL ${r.suite}/${r.test}: ${r.reason}`);
  let p = 0;
  let t = 0;
  console.log('| suite | passed | total | rate |\n|---|---|---|---|');
  for (const s of summarize(results)) {
    p += s.passed;
    t += s.total;
    console.log(`| ${s.suite} | ${s.passed} | ${s.total} | ${((100 * s.passed) / s.total).toFixed(0)}% |`);
  }
  console.log(`| **all** | ${p} | ${t} | ${((100 * p) / t).toFixed(1)}% |`);
}

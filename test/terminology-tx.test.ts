/**
 * HL7's terminology service test cases (../shared/specs/fhir-tx-tests, the "general" suites) run against our
 * operations. Every test that passes today is pinned here (a regression fails the build); the pass rate per
 * suite is printed by `node_modules/.bin/node scripts/tx-tests.ts` and reported in docs/terminology.md. What is
 * compared (the parts R4 shares with the R5-shaped expectations) is described in scripts/tx-tests.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defaultTxDir, loadSuites, makeContext, runTest } from '../scripts/tx-tests.ts';
import type { Context } from '../src/fhir/interactions.ts';
import { readFileSync } from 'node:fs';

const PASSING = new Set(JSON.parse(readFileSync(join(__dirname, '..', 'scripts', 'tx-tests-passing.json'), 'utf8')) as string[]);

const dir = defaultTxDir();
const present = existsSync(join(dir, 'test-cases.json'));
if (!present) console.warn(`terminology-tx: ${dir} is absent (fresh clone without ../shared): HL7 tx test cases skipped`);

let ctx: Context;
beforeAll(async () => {
  if (present) ctx = await makeContext();
});
afterAll(async () => {
  await ctx?.store.close();
});

describe.skipIf(!present)('HL7 terminology test cases (general suites)', () => {
  const suites = present ? loadSuites(dir) : [];
  it('finds every pinned passing case in the suites (so none silently stops running)', () => {
    const found = suites.flatMap((s) => s.tests.map((t) => `${s.name}/${t.name}`)).filter((k) => PASSING.has(k));
    expect(new Set(found).size).toBe(PASSING.size);
  });
  for (const suite of suites) {
    if (!suite.tests.some((t) => PASSING.has(`${suite.name}/${t.name}`))) continue;
    describe(suite.name, () => {
      for (const test of suite.tests) {
        if (!PASSING.has(`${suite.name}/${test.name}`)) continue;
        it(test.name, async () => {
          const r = await runTest(ctx, dir, suite, test);
          expect(r.reason ?? 'ok').toBe('ok');
        });
      }
    });
  }
});

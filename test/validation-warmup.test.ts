/**
 * The validator's warm-up runs in the background once the server listens: startServer returns (listening)
 * before the warm-up has done any step, requests are answered while it runs, and it ends with every step done.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { validateFull, validationWarmUpState } from '../src/validation/index.ts';

let running: RunningServer | undefined;
afterAll(async () => {
  await running?.close();
});

describe('validation warm-up at server start', () => {
  it('starts after listening, does not block requests, and completes every step', async () => {
    expect(validationWarmUpState()).toBeUndefined();
    running = await startServer(testConfig({ port: 0, host: '127.0.0.1', validationWarmUp: true, dataDir: mkdtempSync(join(tmpdir(), 'dsp-warmup-')) }));
    const state = validationWarmUpState();
    // Listening (startServer has returned) while the warm-up has been started but has not run a step yet:
    // its steps are scheduled on later turns of the event loop.
    expect(running.server.listening).toBe(true);
    expect(state?.started).toBe(true);
    expect(state?.done).toBe(false);
    expect(state?.steps).toEqual([]);
    // A request is answered while the warm-up is under way (or after it, on a fast machine).
    const res = await fetch(running.url + '/metadata', { headers: { accept: 'application/fhir+json' } });
    expect(res.status).toBe(200);
    await state!.finished;
    expect(state!.error).toBeUndefined();
    expect(state!.done).toBe(true);
    expect(state!.steps).toEqual(['base', 'profiles', 'sample']);
    // The profile layer is warm: the LU profiles resolve without loading anything new.
    const issues = validateFull({ resourceType: 'Patient', meta: { profile: ['http://dsp.lu/fhir/StructureDefinition/lu-patient'] }, name: [{ family: 'Schmit' }], gender: 'female', birthDate: '1980-01-01' });
    expect(issues.filter((i) => i.code === 'not-found')).toEqual([]);
  }, 120_000);
});

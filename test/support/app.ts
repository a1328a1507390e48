/** Test support: an app over a fresh in-memory SQLite store, plus small request helpers. */
import request from 'supertest';
import type { Express } from 'express';
import { testConfig, type Config } from '../../src/config.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import { createApp } from '../../src/http/app.ts';
import type { Context } from '../../src/fhir/interactions.ts';

export interface TestApp {
  app: Express;
  ctx: Context;
  http: ReturnType<typeof request>;
}

export async function makeApp(overrides: Partial<Config> = {}): Promise<TestApp> {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  const ctx: Context = { store, config: testConfig({ baseUrl: 'http://test/fhir', ...overrides }) };
  const app = createApp({ ctx });
  return { app, ctx, http: request(app) };
}

export const FHIR_JSON = 'application/fhir+json';
export const FHIR_XML = 'application/fhir+xml';

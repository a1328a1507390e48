/**
 * Test support: an app over a fresh in-memory SQLite store, plus small request helpers.
 *
 * `http` sends a valid administrator token on every request (so tests of interactions, search and operations
 * are unaffected by access control); `anon` sends none; `client(token)` sends the given one, and
 * `tokenFor({ role, id, ... })` mints a development token for any principal.
 */
import request from 'supertest';
import type { Express } from 'express';
import { testConfig, type Config } from '../../src/config.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import { createApp } from '../../src/http/app.ts';
import type { Context } from '../../src/fhir/interactions.ts';
import { accessRuntime, defaultAuth } from '../../src/access/service.ts';
import { type DevTokenClaims, signDevToken } from '../../src/access/tokens.ts';

export type Http = ReturnType<typeof request>;

export interface TestApp {
  app: Express;
  ctx: Context;
  /** Requests as an administrator. */
  http: Http;
  /** Requests without any token. */
  anon: Http;
  /** Requests with `Authorization: Bearer <token>`. */
  client(token: string): Http;
  /** A development token for the given principal. */
  tokenFor(claims: DevTokenClaims): Promise<string>;
  /** A client acting as the given principal. */
  as(claims: DevTokenClaims): Promise<Http>;
}

const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete', 'head', 'options', 'del']);

/** Wraps a supertest agent so that every request carries the token. */
export function withToken(agent: Http, token: string): Http {
  return new Proxy(agent, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop === 'string' && METHODS.has(prop) && typeof value === 'function') {
        return (...args: unknown[]) => (value as (...a: unknown[]) => { set(k: string, v: string): unknown }).apply(target, args).set('Authorization', `Bearer ${token}`);
      }
      return value;
    },
  });
}

export async function makeApp(overrides: Partial<Config> = {}): Promise<TestApp> {
  const store = new SqliteStore({ path: ':memory:' });
  await store.init();
  // A signing key in memory (no data folder), development mode, unless the test says otherwise.
  const ctx: Context = { store, config: testConfig({ baseUrl: 'http://test/fhir', auth: defaultAuth(), ...overrides }) };
  const app = createApp({ ctx });
  const rt = await accessRuntime(ctx);
  const tokenFor = (claims: DevTokenClaims) => signDevToken(rt.key, rt.auth.audience, claims);
  const admin = await tokenFor({ role: 'admin', id: 'Practitioner/test-admin' });
  const client = (token: string) => withToken(request(app), token);
  return { app, ctx, http: client(admin), anon: request(app), client, tokenFor, as: async (claims) => client(await tokenFor(claims)) };
}

export const FHIR_JSON = 'application/fhir+json';
export const FHIR_XML = 'application/fhir+xml';

/**
 * Configuration, read from environment variables (documented in README.md, "Configuration").
 * Every value is checked at start-up: a bad value stops the server with a message naming the variable.
 */
import { resolve } from 'node:path';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Limits {
  /** Largest request body in bytes (413 above). */
  maxBodyBytes: number;
  /** Deepest JSON / XML nesting accepted (400 above). */
  maxDepth: number;
  /** Most entries in a batch or transaction Bundle (413 above). */
  maxBundleEntries: number;
  /** Default and maximum page sizes for search and history. */
  defaultCount: number;
  maxCount: number;
}

export interface Config {
  port: number;
  host: string;
  /** Public base URL of the FHIR endpoint; derived from each request when unset. */
  baseUrl?: string;
  /** Folder of the embedded store (data/fhir.sqlite inside it). */
  dataDir: string;
  /** When set, the MongoDB store is used instead of the embedded one. */
  mongodbUri?: string;
  mongodbDb: string;
  logLevel: LogLevel;
  /** Load examples/ into an empty store at start. */
  loadExamples: boolean;
  examplesDir: string;
  sqliteSynchronous: 'FULL' | 'NORMAL';
  limits: Limits;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min} (got "${raw}")`);
  return n;
}

function bool(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new Error(`${name} must be true or false (got "${raw}")`);
}

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const logLevel = (env.DSP_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LEVELS.includes(logLevel)) throw new Error(`DSP_LOG_LEVEL must be one of ${LEVELS.join(', ')}`);
  const sync = (env.DSP_SQLITE_SYNCHRONOUS ?? 'FULL').toUpperCase();
  if (sync !== 'FULL' && sync !== 'NORMAL') throw new Error('DSP_SQLITE_SYNCHRONOUS must be FULL or NORMAL');
  const baseUrl = env.DSP_BASE_URL?.replace(/\/+$/, '') || undefined;
  if (baseUrl && !/^https?:\/\/[^/]+/.test(baseUrl)) throw new Error('DSP_BASE_URL must be an http(s) URL');
  const defaultCount = int(env, 'DSP_DEFAULT_COUNT', 20);
  const maxCount = int(env, 'DSP_MAX_COUNT', 1000);
  if (defaultCount > maxCount) throw new Error('DSP_DEFAULT_COUNT must not exceed DSP_MAX_COUNT');
  return {
    port: int(env, 'PORT', 8080, 0),
    host: env.DSP_HOST ?? '0.0.0.0',
    baseUrl,
    dataDir: resolve(cwd, env.DSP_DATA_DIR ?? 'data'),
    mongodbUri: env.MONGODB_URI || undefined,
    mongodbDb: env.MONGODB_DB ?? 'dsp',
    logLevel,
    loadExamples: bool(env, 'DSP_LOAD_EXAMPLES', true),
    examplesDir: resolve(cwd, env.DSP_EXAMPLES_DIR ?? 'examples'),
    sqliteSynchronous: sync,
    limits: {
      maxBodyBytes: int(env, 'DSP_MAX_BODY_BYTES', 20 * 1024 * 1024),
      maxDepth: int(env, 'DSP_MAX_DEPTH', 64),
      maxBundleEntries: int(env, 'DSP_MAX_BUNDLE_ENTRIES', 10_000),
      defaultCount,
      maxCount,
    },
  };
}

/** Configuration for tests and embedding: defaults with overrides, no environment. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base = loadConfig({}, process.cwd());
  return { ...base, loadExamples: false, logLevel: 'silent', ...overrides, limits: { ...base.limits, ...overrides.limits } };
}

/**
 * Configuration, read from environment variables (documented in README.md, "Configuration").
 * Every value is checked at start-up: a bad value stops the server with a message naming the variable.
 */
// Types only: the validator (about a second to import) is loaded by what validates, not by every CLI command.
import type { ProfileValidationMode } from './validation/index.ts';
import { readFileSync } from 'node:fs';
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
  /**
   * What an answer that carries patient data waits for, for its audit entry: `commit` (the entry is committed
   * before the answer leaves, and on disk within the next group fsync, started at once) or `disk` (the answer
   * also waits for that fsync).
   */
  auditSync: 'commit' | 'disk';
  /** The embedded store's audit trail is written by a worker thread, or on the event loop (default). */
  auditThread: boolean;
  /** Profile validation of written resources that declare profiles (meta.profile): off, warn or reject. */
  profileValidation: ProfileValidationMode;
  /** Warm the validator up in the background once listening (DSP_VALIDATION_WARMUP, default on). */
  validationWarmUp: boolean;
  limits: Limits;
  /**
   * HTTPS: PEM files of the server certificate and key; with `ca`, clients may present certificates issued by
   * those trust anchors (mutual TLS, mapped to registered clients in DSP_AUTH_CLIENTS).
   */
  tls?: { cert: string; key: string; ca?: string };
  /** Authentication and access control (src/access, docs/access.md). */
  auth?: AuthConfig;
}

/** Authentication settings (docs/access.md). */
export interface AuthConfig {
  /** `development` accepts tokens from `dsp-fhir token`; `production` refuses them. */
  mode: 'development' | 'production';
  /** The `aud` every bearer token must carry. */
  audience: string;
  /** Trusted OAuth2 authorization servers: tokens with this `iss` are verified against the key set. */
  issuers: { issuer: string; jwksUri?: string; jwks?: { keys: object[] } }[];
  /** Registered clients (SMART Backend Services, mutual TLS), from DSP_AUTH_CLIENTS (JSON or a JSON file). */
  clients: RegisteredClient[];
  /** JWK file of the server's local signing key (dev tokens, token endpoint); undefined: in memory. */
  keyFile?: string;
}

export interface RegisteredClient {
  clientId: string;
  role: 'system' | 'ncp';
  /** The actor reference recorded in the audit trail (`Device/lab-x`, `Organization/ncp-be`). */
  ref: string;
  organization?: string;
  /** Scopes the client may be granted (SMART v2). */
  scope: string;
  /** Public keys of its private_key_jwt assertions. */
  jwks?: { keys: object[] };
  /** SHA-256 fingerprint (hex, no colons) of its TLS client certificate. */
  certFingerprint?: string;
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

function tlsConfig(env: NodeJS.ProcessEnv, cwd: string): Config['tls'] {
  const cert = env.DSP_TLS_CERT;
  const key = env.DSP_TLS_KEY;
  if (!cert && !key) {
    if (env.DSP_TLS_CA) throw new Error('DSP_TLS_CA needs DSP_TLS_CERT and DSP_TLS_KEY');
    return undefined;
  }
  if (!cert || !key) throw new Error('DSP_TLS_CERT and DSP_TLS_KEY go together');
  const read = (name: string, file: string) => {
    try {
      return readFileSync(resolve(cwd, file), 'utf8');
    } catch {
      throw new Error(`${name}: cannot read ${file}`);
    }
  };
  return { cert: read('DSP_TLS_CERT', cert), key: read('DSP_TLS_KEY', key), ...(env.DSP_TLS_CA ? { ca: read('DSP_TLS_CA', env.DSP_TLS_CA) } : {}) };
}

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** DSP_PROFILE_VALIDATION: off | warn | reject (default warn). */
function profileValidationMode(raw: string | undefined): ProfileValidationMode {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '') return 'warn';
  if (v === 'off' || v === 'warn' || v === 'reject') return v;
  throw new Error(`DSP_PROFILE_VALIDATION must be off, warn or reject (got "${raw}")`);
}

/** The server's signing key (dev tokens, token endpoint) in a data folder. */
function signingKeyFile(dataDir: string): string {
  return resolve(dataDir, 'signing-key.jwk.json');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const logLevel = (env.DSP_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LEVELS.includes(logLevel)) throw new Error(`DSP_LOG_LEVEL must be one of ${LEVELS.join(', ')}`);
  const sync = (env.DSP_SQLITE_SYNCHRONOUS ?? 'FULL').toUpperCase();
  if (sync !== 'FULL' && sync !== 'NORMAL') throw new Error('DSP_SQLITE_SYNCHRONOUS must be FULL or NORMAL');
  const auditSync = (env.DSP_AUDIT_SYNC ?? 'commit').toLowerCase();
  if (auditSync !== 'commit' && auditSync !== 'disk') throw new Error('DSP_AUDIT_SYNC must be commit or disk');
  const baseUrl = env.DSP_BASE_URL?.replace(/\/+$/, '') || undefined;
  if (baseUrl && !/^https?:\/\/[^/]+/.test(baseUrl)) throw new Error('DSP_BASE_URL must be an http(s) URL');
  const defaultCount = int(env, 'DSP_DEFAULT_COUNT', 20);
  const maxCount = int(env, 'DSP_MAX_COUNT', 1000);
  if (defaultCount > maxCount) throw new Error('DSP_DEFAULT_COUNT must not exceed DSP_MAX_COUNT');
  const dataDir = resolve(cwd, env.DSP_DATA_DIR ?? 'data');
  return {
    port: int(env, 'PORT', 8080, 0),
    host: env.DSP_HOST ?? '0.0.0.0',
    baseUrl,
    dataDir,
    mongodbUri: env.MONGODB_URI || undefined,
    mongodbDb: env.MONGODB_DB ?? 'dsp',
    logLevel,
    loadExamples: bool(env, 'DSP_LOAD_EXAMPLES', true),
    examplesDir: resolve(cwd, env.DSP_EXAMPLES_DIR ?? 'examples'),
    sqliteSynchronous: sync,
    auditSync,
    auditThread: bool(env, 'DSP_AUDIT_THREAD', false),
    profileValidation: profileValidationMode(env.DSP_PROFILE_VALIDATION),
    validationWarmUp: bool(env, 'DSP_VALIDATION_WARMUP', true),
    auth: authConfig(env, cwd, dataDir),
    tls: tlsConfig(env, cwd),
    limits: {
      maxBodyBytes: int(env, 'DSP_MAX_BODY_BYTES', 20 * 1024 * 1024),
      maxDepth: int(env, 'DSP_MAX_DEPTH', 64),
      maxBundleEntries: int(env, 'DSP_MAX_BUNDLE_ENTRIES', 10_000),
      defaultCount,
      maxCount,
    },
  };
}

function authConfig(env: NodeJS.ProcessEnv, cwd: string, dataDir: string): AuthConfig {
  const mode = env.DSP_AUTH_MODE ?? 'development';
  if (mode !== 'development' && mode !== 'production') throw new Error('DSP_AUTH_MODE must be development or production');
  const json = (name: string): unknown => {
    const raw = env[name];
    if (!raw) return undefined;
    try {
      return JSON.parse(raw.trim().startsWith('[') || raw.trim().startsWith('{') ? raw : readFileSync(resolve(cwd, raw), 'utf8'));
    } catch (err) {
      throw new Error(`${name} must be JSON or the path of a JSON file (${(err as Error).message})`);
    }
  };
  const issuers = (json('DSP_AUTH_ISSUERS') ?? []) as AuthConfig['issuers'];
  const clients = (json('DSP_AUTH_CLIENTS') ?? []) as RegisteredClient[];
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isJwks = (v: unknown): boolean => isObject(v) && Array.isArray(v.keys);
  const badIssuer = (i: unknown) => !isObject(i) || typeof i.issuer !== 'string' || !(typeof i.jwksUri === 'string' || isJwks(i.jwks));
  if (!Array.isArray(issuers) || issuers.some(badIssuer)) throw new Error('DSP_AUTH_ISSUERS must be a list of {issuer, jwksUri | jwks}');
  const badClient = (c: unknown) =>
    !isObject(c) ||
    typeof c.clientId !== 'string' ||
    !['system', 'ncp'].includes(c.role as string) ||
    typeof c.ref !== 'string' ||
    typeof c.scope !== 'string' ||
    (c.organization !== undefined && typeof c.organization !== 'string') ||
    !(isJwks(c.jwks) || typeof c.certFingerprint === 'string');
  if (!Array.isArray(clients) || clients.some(badClient)) {
    throw new Error('DSP_AUTH_CLIENTS must be a list of {clientId, role: system|ncp, ref, scope, jwks | certFingerprint}');
  }
  return {
    mode,
    audience: env.DSP_AUTH_AUDIENCE ?? 'dsp-fhir',
    issuers,
    clients,
    keyFile: signingKeyFile(dataDir),
  };
}

/**
 * Configuration for tests and embedding: defaults with overrides, no environment. The signing key (and with
 * it the audit files, src/access/service.ts) lives in the data folder: a `dataDir` override moves it too,
 * unless `auth` is given as well.
 */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base = loadConfig({}, process.cwd());
  const auth = overrides.auth ?? (overrides.dataDir !== undefined && base.auth ? { ...base.auth, keyFile: signingKeyFile(overrides.dataDir) } : base.auth);
  return { ...base, loadExamples: false, logLevel: 'silent', validationWarmUp: false, ...overrides, auth, limits: { ...base.limits, ...overrides.limits } };
}

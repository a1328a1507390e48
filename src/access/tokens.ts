/**
 * Bearer tokens: the server's local signing key (development tokens and the SMART Backend Services token
 * endpoint), verification of development tokens, of tokens from configured OAuth2 issuers (JWKS), and of
 * private_key_jwt client assertions (exp at most 5 minutes ahead, jti replay refused).
 *
 * Every failure is a 401 with an OperationOutcome; the message says what was wrong with the token, never
 * anything about data.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { TYPE_ID_PATTERN } from '../fhir/model.ts';
import {
  type CryptoKey,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  SignJWT,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  decodeJwt,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
} from 'jose';
import type { AuthConfig, RegisteredClient } from '../config.ts';
import { FhirError } from '../fhir/outcome.ts';
import { type Principal, type Role, ROLES, defaultScopes, parseScopes } from './principal.ts';

/** `iss` of tokens printed by `dsp-fhir token` (refused in production mode). */
export const DEV_ISSUER = 'urn:dsp-fhir:development';
/** `iss` of access tokens issued by the server's token endpoint (SMART Backend Services). */
export const SERVER_ISSUER = 'urn:dsp-fhir:token-endpoint';
const ALGS = ['ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256', 'EdDSA'];

export function unauthorized(message: string): FhirError {
  return new FhirError(401, message, 'login', { 'WWW-Authenticate': 'Bearer realm="dsp-fhir"' });
}

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** Loads the local signing key from `file`, creating it once (0600) when missing; in memory without a file. */
export async function loadSigningKey(file?: string): Promise<SigningKey> {
  if (file && existsSync(file)) {
    const jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    const { d: _d, ...pub } = jwk;
    return {
      kid: jwk.kid ?? 'local',
      privateKey: (await importJWK(jwk, 'ES256')) as CryptoKey,
      publicKey: (await importJWK(pub, 'ES256')) as CryptoKey,
    };
  }
  const pair = await generateKeyPair('ES256', { extractable: true });
  const kid = randomUUID();
  if (file) {
    const jwk = { ...(await exportJWK(pair.privateKey)), kid, alg: 'ES256' };
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
  }
  return { kid, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

export interface DevTokenClaims {
  role: Role;
  /** Actor reference, e.g. `Practitioner/dr-weber`. */
  id: string;
  patient?: string;
  purpose?: string;
  reason?: string;
  organization?: string;
  scope?: string;
  /** Lifetime in seconds (default 8 hours). */
  ttl?: number;
}

export async function signDevToken(key: SigningKey, audience: string, claims: DevTokenClaims): Promise<string> {
  if (!ROLES.includes(claims.role)) throw new Error(`role must be one of ${ROLES.join(', ')}`);
  if (!TYPE_ID_PATTERN.test(claims.id)) throw new Error(`--id must be a reference like Practitioner/123 (got "${claims.id}")`);
  if (claims.purpose === 'EMERGENCY' && !claims.reason) throw new Error('emergency access needs a reason (--reason)');
  const payload: JWTPayload & Record<string, unknown> = {
    role: claims.role,
    fhirUser: claims.id,
    scope: claims.scope ?? defaultScopes(claims.role),
  };
  if (claims.role === 'patient') payload.patient = claims.id.replace(/^Patient\//, '');
  if (claims.patient) payload.patient = claims.patient.replace(/^Patient\//, '');
  if (claims.purpose) payload.purpose_of_use = claims.purpose;
  if (claims.reason) payload.reason = claims.reason;
  if (claims.organization) payload.organization = claims.organization;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuer(DEV_ISSUER)
    .setSubject(claims.id)
    .setAudience(audience)
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime(`${claims.ttl ?? 8 * 3600}s`)
    .sign(key.privateKey);
}

/** Maps verified claims to a principal; unknown roles or malformed references are refused. */
function principalOf(payload: JWTPayload & Record<string, unknown>, method: Principal['method']): Principal {
  const ref = String(payload.fhirUser ?? payload.sub ?? '').replace(/^https?:\/\/[^]*?\/(?=[A-Z][A-Za-z]+\/[^/]+$)/, '');
  let role = payload.role as Role | undefined;
  if (!role) {
    // External issuers: the role follows from fhirUser's type and the scope contexts.
    const type = ref.split('/')[0];
    role = type === 'Patient' ? 'patient' : type === 'Practitioner' || type === 'PractitionerRole' ? 'practitioner' : type === 'RelatedPerson' || type === 'Person' ? 'assistant' : undefined;
  }
  if (!role || !ROLES.includes(role)) throw unauthorized('The token names no known role (fhirUser or role claim)');
  if (!TYPE_ID_PATTERN.test(ref)) throw unauthorized('The token has no valid fhirUser reference');
  return {
    role,
    ref,
    organization: typeof payload.organization === 'string' ? payload.organization : undefined,
    scopes: parseScopes(typeof payload.scope === 'string' ? payload.scope : ''),
    patient: typeof payload.patient === 'string' ? payload.patient : undefined,
    purpose: typeof payload.purpose_of_use === 'string' ? payload.purpose_of_use : undefined,
    reason: typeof payload.reason === 'string' ? payload.reason : undefined,
    method,
    tokenId: typeof payload.jti === 'string' ? payload.jti : undefined,
    clientId: typeof payload.client_id === 'string' ? payload.client_id : undefined,
  };
}

/** Remembers jti values until they expire, so that a client assertion is accepted once. */
export class ReplayCache {
  private readonly seen = new Map<string, number>();
  /** False when the jti was already used. */
  use(jti: string, exp: number): boolean {
    const now = Date.now() / 1000;
    if (this.seen.size > 10_000) for (const [k, e] of this.seen) if (e < now) this.seen.delete(k);
    const known = this.seen.get(jti);
    if (known !== undefined && known >= now) return false;
    this.seen.set(jti, exp);
    return true;
  }
}

const VERIFIED_MAX = 10_000;

export class TokenVerifier {
  private readonly issuers = new Map<string, JWTVerifyGetKey>();
  private readonly key: SigningKey;
  private readonly auth: AuthConfig;

  constructor(auth: AuthConfig, key: SigningKey) {
    this.auth = auth;
    this.key = key;
    for (const i of auth.issuers) {
      if (i.jwks) this.issuers.set(i.issuer, createLocalJWKSet(i.jwks as { keys: JWK[] }));
      else if (i.jwksUri) this.issuers.set(i.issuer, createRemoteJWKSet(new URL(i.jwksUri)));
    }
  }

  /**
   * Tokens whose signature and claims were verified, with their principal, until they expire (or, without an
   * `exp`, for a minute): a client sends the same token on every request, and an ECDSA/RSA verification per
   * request would dominate a read. Bounded: cleared when it grows past VERIFIED_MAX entries.
   */
  private readonly verified = new Map<string, { principal: Principal; until: number }>();

  /** Verifies an `Authorization` header value; 401 for anything missing or wrong. */
  async verify(authorization: string | undefined): Promise<Principal> {
    if (!authorization) throw unauthorized('An access token is required (Authorization: Bearer <token>)');
    // Keyed by the whole header value: a hit is a value that passed the checks below before (no regex per request).
    const hit = this.verified.get(authorization);
    if (hit) {
      if (Date.now() < hit.until) return { ...hit.principal };
      this.verified.delete(authorization);
    }
    const m = /^Bearer\s+([A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]*\.[A-Za-z0-9\-_=]*)\s*$/i.exec(authorization);
    if (!m) throw unauthorized('The Authorization header must be "Bearer <JWT>"');
    const token = m[1];
    const principal = await this.verifyToken(token);
    if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
    const exp = decodeJwt(token).exp;
    this.verified.set(authorization, { principal, until: exp !== undefined ? exp * 1000 : Date.now() + 60_000 });
    return { ...principal };
  }

  private async verifyToken(token: string): Promise<Principal> {
    let alg: string | undefined;
    let iss: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch {
      throw unauthorized('The access token is not a well-formed JWT');
    }
    if (!alg || !ALGS.includes(alg)) throw unauthorized(`Token algorithm "${alg ?? 'none'}" is not accepted`);
    if (iss === DEV_ISSUER && this.auth.mode !== 'development') {
      throw unauthorized('Development tokens are refused in production mode');
    }
    const opts = { issuer: iss, audience: this.auth.audience, algorithms: ALGS, clockTolerance: 5 };
    try {
      if (iss === DEV_ISSUER || iss === SERVER_ISSUER) {
        const { payload } = await jwtVerify(token, this.key.publicKey, opts);
        return principalOf(payload as JWTPayload & Record<string, unknown>, iss === DEV_ISSUER ? 'development' : 'backend-services');
      }
      const keys = iss ? this.issuers.get(iss) : undefined;
      if (!keys) throw unauthorized('The token issuer is not trusted by this server');
      const { payload } = await jwtVerify(token, keys, opts);
      return principalOf(payload as JWTPayload & Record<string, unknown>, 'oauth');
    } catch (err) {
      if (err instanceof FhirError) throw err;
      const code = (err as { code?: string }).code ?? '';
      const why: Record<string, string> = {
        ERR_JWT_EXPIRED: 'The access token has expired',
        ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'The access token signature is invalid',
        ERR_JWKS_NO_MATCHING_KEY: 'The access token signature is invalid (no matching key)',
      };
      const claim = (err as { claim?: string }).claim;
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
        throw unauthorized(claim === 'nbf' ? 'The access token is not yet valid' : claim === 'aud' ? 'The access token is not meant for this server (aud)' : `The access token claim "${claim}" is invalid`);
      }
      throw unauthorized(why[code] ?? 'The access token could not be verified');
    }
  }

  /**
   * SMART Backend Services (client_credentials with a private_key_jwt assertion): verifies the assertion of
   * a registered client and returns a short-lived access token signed by the server.
   */
  async clientCredentials(form: URLSearchParams, tokenUrl: string, replay: ReplayCache): Promise<{ access_token: string; token_type: 'bearer'; expires_in: number; scope: string }> {
    const bad = (error: string, description: string) => Object.assign(new FhirError(400, description, 'security'), { oauthError: error });
    if (form.get('grant_type') !== 'client_credentials') throw bad('unsupported_grant_type', 'grant_type must be client_credentials');
    if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') throw bad('invalid_request', 'client_assertion_type must be jwt-bearer');
    const assertion = form.get('client_assertion') ?? '';
    let claims: JWTPayload;
    try {
      claims = decodeJwt(assertion);
      const alg = decodeProtectedHeader(assertion).alg;
      if (!alg || !ALGS.includes(alg)) throw new Error('alg');
    } catch {
      throw bad('invalid_client', 'client_assertion is not an acceptable JWT');
    }
    const client: RegisteredClient | undefined = this.auth.clients.find((c) => c.clientId === claims.iss);
    if (!client?.jwks || claims.sub !== claims.iss) throw bad('invalid_client', 'Unknown client, or iss and sub differ');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks as { keys: JWK[] }), { issuer: client.clientId, subject: client.clientId, audience: tokenUrl, algorithms: ALGS, requiredClaims: ['exp', 'jti'] }));
    } catch {
      throw bad('invalid_client', 'The client assertion could not be verified (signature, aud, exp)');
    }
    if (payload.exp! > Date.now() / 1000 + 300) throw bad('invalid_client', 'The client assertion expires more than 5 minutes ahead');
    if (!replay.use(`${client.clientId}:${payload.jti}`, payload.exp!)) throw bad('invalid_client', 'The client assertion jti was already used');
    const allowed = new Set(client.scope.split(/\s+/));
    const asked = (form.get('scope') ?? client.scope).split(/\s+/).filter(Boolean);
    const granted = asked.filter((s) => allowed.has(s));
    if (!granted.length) throw bad('invalid_scope', 'None of the requested scopes is allowed for this client');
    const expiresIn = 300;
    const access_token = await new SignJWT({ role: client.role, fhirUser: client.ref, scope: granted.join(' '), client_id: client.clientId, ...(client.organization ? { organization: client.organization } : {}) })
      .setProtectedHeader({ alg: 'ES256', kid: this.key.kid, typ: 'JWT' })
      .setIssuer(SERVER_ISSUER)
      .setSubject(client.ref)
      .setAudience(this.auth.audience)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${expiresIn}s`)
      .sign(this.key.privateKey);
    return { access_token, token_type: 'bearer', expires_in: expiresIn, scope: granted.join(' ') };
  }
}

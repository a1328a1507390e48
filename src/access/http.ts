/**
 * The HTTP side of access control: who is calling (bearer JWT, or a TLS client certificate of a registered
 * client), SMART discovery, the SMART Backend Services token endpoint, and the audit flush that every
 * response waits for.
 */
import type { TLSSocket } from 'node:tls';
import express, { type Express, type Request, type Response } from 'express';
import type { Context } from '../fhir/interactions.ts';
import { FhirError } from '../fhir/outcome.ts';
import type { FhirRequest } from '../fhir/request.ts';
import { type Principal, parseScopes } from './principal.ts';
import { accessRuntime } from './service.ts';
import { buildAuditEvent } from '../audit/event.ts';

/** The principal of public endpoints (CapabilityStatement, SMART configuration): no scopes at all. */
export const ANONYMOUS: Principal = { role: 'patient', ref: 'Device/anonymous', scopes: [], method: 'oauth' };

function isPublic(req: Request): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const path = req.path.replace(/^\/+|\/+$/g, '');
  return path === 'metadata' || path === '.well-known/smart-configuration';
}

/** 401 unless the request proves who it is; public discovery endpoints get the scope-less ANONYMOUS. */
export async function authenticate(ctx: Context, req: Request): Promise<Principal> {
  if (isPublic(req)) return ANONYMOUS;
  const rt = await accessRuntime(ctx);
  const socket = req.socket as TLSSocket;
  if (socket.encrypted && socket.authorized && !req.get('authorization')) {
    const cert = socket.getPeerCertificate();
    const fp = cert?.fingerprint256?.replace(/:/g, '').toLowerCase();
    const client = fp ? rt.auth.clients.find((c) => c.certFingerprint?.replace(/:/g, '').toLowerCase() === fp) : undefined;
    if (!client) throw new FhirError(401, 'The TLS client certificate is not registered', 'login');
    return { role: client.role, ref: client.ref, organization: client.organization, scopes: parseScopes(client.scope), method: 'mtls', clientId: client.clientId, tokenId: fp };
  }
  try {
    return await rt.verifier.verify(req.get('authorization'));
  } catch (err) {
    // A refused authentication is a denial too: recorded (without the token) before the 401 leaves.
    rt.audit.record(buildAuditEvent({ principal: { ...ANONYMOUS, ref: 'Device/unauthenticated' }, interaction: 'authenticate', action: 'E', status: err instanceof FhirError ? err.status : 500, patients: [], emergency: false, outcomeText: err instanceof FhirError ? err.message : undefined }));
    await rt.audit.flush();
    throw err;
  }
}

/**
 * Awaits the interaction, then the audit trail's flush (also when the interaction failed). A request that read
 * only shared, non-patient data (`auditNoWait`, set by the access decision point) starts the flush without
 * waiting for it: its entry joins the same group commit, the answer does not wait for the disk.
 */
export async function flushAudit<T>(ctx: Context, work: Promise<T>, req?: FhirRequest): Promise<T> {
  const rt = await accessRuntime(ctx);
  try {
    return await work;
  } finally {
    // An answer that does not wait lets its entry's window stay open a little (window.ts): more entries per commit.
    const flushed = rt.audit.flush(req?.auditNoWait ? { lazy: true } : undefined);
    // Once the trail has failed, no answer goes out, shared data included (fail closed).
    if (req?.auditNoWait && !rt.audit.failed) flushed.catch(() => undefined);
    else await flushed;
  }
}

function origin(ctx: Context, req: Request): string {
  return ctx.config.baseUrl ? new URL(ctx.config.baseUrl).origin : `${req.protocol}://${req.get('host')}`;
}

export function tokenEndpoint(ctx: Context, req: Request): string {
  return `${origin(ctx, req)}/auth/token`;
}

export function registerAuthRoutes(app: Express, ctx: Context, fhirBase: string): void {
  app.get(`${fhirBase}/.well-known/smart-configuration`, (req: Request, res: Response) => {
    res.json({
      token_endpoint: tokenEndpoint(ctx, req),
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'RS256', 'RS384'],
      scopes_supported: ['system/*.rs', 'system/*.cruds', 'user/*.rs', 'patient/*.rs'],
      capabilities: ['permission-v2', 'client-confidential-asymmetric', 'context-ehr-patient'],
    });
  });
  app.post('/auth/token', express.urlencoded({ extended: false, limit: '64kb' }), (req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');
    const form = new URLSearchParams(req.body as Record<string, string>);
    accessRuntime(ctx)
      .then((rt) => rt.verifier.clientCredentials(form, tokenEndpoint(ctx, req), rt.replay))
      .then((token) => res.json(token))
      .catch((err: unknown) => {
        const error = (err as { oauthError?: string }).oauthError ?? 'server_error';
        res.status(error === 'invalid_client' ? 401 : error === 'server_error' ? 500 : 400).json({ error, error_description: err instanceof FhirError ? err.message : 'token request failed' });
      });
  });
}

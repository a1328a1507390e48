/**
 * Who is asking: the authenticated principal of a request, and SMART App Launch v2 scopes
 * (`patient/Observation.rs`, `user/*.cruds`, `system/*.read` in the v1 form).
 */
import { FhirError } from '../fhir/outcome.ts';

export const ROLES = ['patient', 'practitioner', 'assistant', 'ncp', 'system', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** SMART v2 permission letters: create, read, update, delete, search. */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface Scope {
  context: 'patient' | 'user' | 'system';
  /** Resource type or `*`. */
  type: string;
  permissions: Set<Permission>;
}

export interface Principal {
  role: Role;
  /** FHIR reference of the actor: `Patient/p1`, `Practitioner/x`, `RelatedPerson/a`, `Device/lab`... */
  ref: string;
  /** The organisation the actor acts for (`Organization/chl`), when known. */
  organization?: string;
  scopes: Scope[];
  /** SMART patient context (`patient` claim), as a plain id. */
  patient?: string;
  /** Purpose of use (`EMERGENCY` for break-the-glass; otherwise treatment). */
  purpose?: string;
  /** Free-text reason given with a purpose (emergency access requires one). */
  reason?: string;
  /** How the principal was authenticated. */
  method: 'development' | 'oauth' | 'backend-services' | 'mtls' | 'internal';
  /** Token id (jti) or certificate fingerprint, for the audit trail. */
  tokenId?: string;
  clientId?: string;
}

/** The principal of in-process callers (example loading, CLI tools): never reachable from the network. */
export const INTERNAL: Principal = {
  role: 'admin',
  ref: 'Device/dsp-fhir-server',
  scopes: [{ context: 'system', type: '*', permissions: new Set(['c', 'r', 'u', 'd', 's']) }],
  method: 'internal',
};

const V1: Record<string, Permission[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': ['c', 'r', 'u', 'd', 's'] };

/** Parses a space-separated scope string; scopes that are not resource scopes (openid, launch...) are skipped. */
export function parseScopes(raw: string | undefined): Scope[] {
  const out: Scope[] = [];
  for (const s of (raw ?? '').split(/\s+/).filter(Boolean)) {
    const m = /^(patient|user|system)\/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$/.exec(s);
    if (!m) continue;
    const [, context, type, perms] = m;
    let permissions: Permission[];
    if (V1[perms]) permissions = V1[perms];
    else if (/^c?r?u?d?s?$/.test(perms)) permissions = [...perms] as Permission[];
    else continue;
    out.push({ context: context as Scope['context'], type, permissions: new Set(permissions) });
  }
  return out;
}

export function formatScopes(scopes: Scope[]): string {
  return scopes.map((s) => `${s.context}/${s.type}.${['c', 'r', 'u', 'd', 's'].filter((p) => s.permissions.has(p as Permission)).join('')}`).join(' ');
}

/** Default scopes of development tokens, per role. */
export function defaultScopes(role: Role): string {
  switch (role) {
    case 'patient':
      return 'patient/*.cruds';
    case 'assistant':
    case 'practitioner':
      return 'user/*.cruds';
    case 'ncp':
      return 'user/*.rs';
    case 'system':
    case 'admin':
      return 'system/*.cruds';
  }
}

/** True when some scope grants `permission` on `type`. */
export function hasScope(principal: Principal, type: string, permission: Permission): boolean {
  return principal.scopes.some((s) => (s.type === '*' || s.type === type) && s.permissions.has(permission));
}

/** 403: the token is valid but does not cover the interaction (telling this leaks nothing about data). */
export function requireScope(principal: Principal, type: string, permission: Permission): void {
  if (!hasScope(principal, type, permission)) {
    const names: Record<Permission, string> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' };
    throw new FhirError(403, `The access token has no scope allowing ${names[permission]} on ${type}`, 'forbidden');
  }
}

/** Splits `Type/id`. */
export function splitRef(ref: string): { type: string; id: string } {
  const i = ref.indexOf('/');
  return { type: ref.slice(0, i), id: ref.slice(i + 1) };
}

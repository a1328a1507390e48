/**
 * FHIR operations ($name). Each operation registers itself here with the levels it supports; the router
 * hands every `$` path to `invoke`, and the CapabilityStatement lists what is registered. A new operation is
 * a new module that calls `operationRegistry.register`, not an edit to the router.
 */
import type { OperationDefinition } from 'fhir/r4';
import type { StoreSession } from '../store/port.ts';
import { FhirError, badRequest } from '../fhir/outcome.ts';
import type { FhirRequest, FhirResponse } from '../fhir/request.ts';
import type { Context } from '../fhir/interactions.ts';
import type { Permission, Principal, Role } from '../access/principal.ts';

export type OperationLevel = 'system' | 'type' | 'instance';

export interface OperationTarget {
  level: OperationLevel;
  resourceType?: string;
  id?: string;
}

/** A SMART scope an operation needs: one of `perms` on `type` (`*`: only a wildcard scope covers it). */
export interface ScopeNeed {
  type: string;
  perms: Permission[];
}

/**
 * Who may invoke an operation, beyond its SMART scopes (src/access/enforce.ts applies it before the handler
 * runs; docs/access.md):
 * - `any`: every authenticated principal; an instance target is checked like a read of it;
 * - `patient`: the patient and their appointed assistant (the target Patient must be visible to them) and
 *   administrators; system clients and professionals are refused;
 * - `admin`: administrators and system clients only.
 * `roles` narrows any audience to the roles it lists (`['admin']`: administrators only, system clients too are
 * refused).
 */
export type OperationAudience = 'any' | 'patient' | 'admin';

/** An operation's access rule: every operation declares one; one without it is refused to everybody. */
export interface OperationAccess {
  audience: OperationAudience;
  /** The SMART scopes it needs, for every principal (administrators and system clients included). */
  scopes(target: OperationTarget, req: FhirRequest): ScopeNeed[];
  /** Only principals of these roles may call it, within the audience (403 for the others, before the handler runs). */
  roles?: readonly Role[];
  /** Beyond the audience: a principal this accepts may call it on a target it can read (the NCP's `$to-cda`). */
  alsoAllows?(principal: Principal, target: OperationTarget): boolean;
  /** It answers from shared, non-patient data only (terminology): its audit entry need not be awaited. */
  sharedData?: boolean;
}

/**
 * The common rule of an operation that only reads (the terminology operations): `r` on the target type, or on
 * `fallbackType` at system level (`*`: a wildcard scope). An operation that changes data names its own scopes.
 */
export function readsTarget(audience: OperationAudience, fallbackType = '*'): OperationAccess {
  return { audience, scopes: (target) => [{ type: target.resourceType ?? fallbackType, perms: ['r'] }] };
}

export interface Operation {
  /** Name without the dollar sign, e.g. `validate`. */
  name: string;
  /** Canonical URL of the OperationDefinition it implements. */
  definition: string;
  /** Resource types it applies to at type/instance level (empty: any). */
  resourceTypes: string[];
  levels: OperationLevel[];
  /** True when it changes data: refused with GET (405), and the access caches are renewed after it. */
  affectsState: boolean;
  /** Who may call it (src/access/enforce.ts). Required: an operation registered without one is refused. */
  access: OperationAccess;
  handler: (ctx: Context, req: FhirRequest, target: OperationTarget, session?: StoreSession) => Promise<FhirResponse>;
  /**
   * Non-FHIR XML documents (the cross-border CDA): `body` - an `application/xml` request body reaches the handler
   * as its text (the handler parses it under its own guards); `response` - with `Accept: application/xml` the
   * HTTP layer sends the Binary the handler answers as raw bytes. `application/fhir+xml` stays FHIR XML.
   */
  rawXml?: { body?: boolean; response?: boolean };
}

class OperationRegistry {
  private readonly ops = new Map<string, Operation>();

  register(op: Operation): void {
    this.ops.set(op.name, op);
  }

  get(name: string): Operation | undefined {
    return this.ops.get(name);
  }

  list(): Operation[] {
    return [...this.ops.values()];
  }

  async invoke(ctx: Context, req: FhirRequest, parts: string[], session?: StoreSession): Promise<FhirResponse> {
    const name = parts[parts.length - 1].slice(1);
    const op = this.ops.get(name);
    if (!op) throw new FhirError(404, `Operation $${name} is not supported`, 'not-supported');
    const target: OperationTarget =
      parts.length === 1
        ? { level: 'system' }
        : parts.length === 2
          ? { level: 'type', resourceType: parts[0] }
          : parts.length === 3
            ? { level: 'instance', resourceType: parts[0], id: parts[1] }
            : (() => {
                throw new FhirError(404, `No operation at /${req.path}`, 'not-found');
              })();
    if (!op.levels.includes(target.level)) {
      throw new FhirError(400, `Operation $${name} is not available at ${target.level} level`, 'not-supported');
    }
    if (target.resourceType && op.resourceTypes.length && !op.resourceTypes.includes(target.resourceType)) {
      throw new FhirError(400, `Operation $${name} does not apply to ${target.resourceType}`, 'not-supported');
    }
    // Bodies are parsed but not yet validated: an operation receives a resource (usually Parameters) or nothing.
    // An operation that takes raw XML gets an application/xml body as text (the HTTP layer left it unparsed).
    const rawText = typeof req.body === 'string' && !!op.rawXml?.body && req.contentType === 'application/xml';
    if (req.body !== undefined && !rawText) {
      const body = req.body as { resourceType?: unknown; parameter?: unknown } | null;
      if (body === null || typeof body !== 'object' || Array.isArray(body) || typeof body.resourceType !== 'string') {
        throw badRequest(`The body of $${name} must be a FHIR resource (usually Parameters)`);
      }
      // Parameters are shaped enough for the handlers (each validates what it reads; tx-resource parts may
      // carry resources that only the operation interprets).
      if (body.resourceType === 'Parameters' && body.parameter !== undefined) {
        const list = body.parameter;
        if (!Array.isArray(list) || list.some((p) => p === null || typeof p !== 'object' || Array.isArray(p))) {
          throw badRequest(`Parameters.parameter of $${name} must be a list of parameters`, ['Parameters.parameter']);
        }
      }
    }
    if (req.method === 'GET' && op.affectsState) {
      throw new FhirError(405, `Operation $${name} changes data and must be invoked with POST`, 'not-supported');
    }
    return op.handler(ctx, req, target, session);
  }
}

export const operationRegistry = new OperationRegistry();
export type { OperationDefinition };

/**
 * Cross-border Patient Summary operations (issue 7):
 *
 * - `POST [base]/Bundle/$to-cda` with a document Bundle (or Parameters with `document` = the Bundle), and
 *   `GET|POST [base]/Bundle/{id}/$to-cda` for a stored one: the eHDSI pivot CDA, returned as a Binary
 *   (contentType application/xml, the XML base64 in data).
 * - `POST [base]/Bundle/$from-cda` with a Binary holding the CDA (or Parameters with `document` as a Binary
 *   resource, a valueBase64Binary or a valueString, and optionally `lang`), and `GET|POST
 *   [base]/Binary/{id}/$from-cda` for a stored Binary: the FHIR document Bundle. `lang` (query or Parameters,
 *   else Accept-Language) selects the language of displays.
 *
 * Raw XML (registry flag `rawXml`): `POST Bundle/$from-cda` with `Content-Type: application/xml` takes the CDA
 * itself as the body (the HTTP layer hands it over as text; application/fhir+xml stays a FHIR resource), and
 * `$to-cda` with `Accept: application/xml` answers the CDA text itself instead of the Binary.
 */
import type { Binary, Bundle, Parameters, Resource } from 'fhir/r4';
import { badRequest, gone, notFound, FhirError } from '../fhir/outcome.ts';
import { header, queryValue, type FhirRequest } from '../fhir/request.ts';
import { parseLanguages } from '../terminology/language.ts';
import { assertValidResource } from '../validation/index.ts';
import { bundleToCda } from '../crossborder/to-cda.ts';
import { cdaToBundle } from '../crossborder/from-cda.ts';
import { operationRegistry } from './registry.ts';
import { ncpOperationAllowed } from '../crossborder/ncp.ts';
import type { StoreSession } from '../store/port.ts';

const BASE = 'http://dsp.lu/fhir/OperationDefinition/';

function param(body: unknown, name: string): NonNullable<Parameters['parameter']>[number] | undefined {
  const p = body as Parameters | undefined;
  if (p?.resourceType !== 'Parameters') return undefined;
  return p.parameter?.find((x) => x.name === name);
}

function ok(body: Resource): { status: number; body: Resource; headers: Record<string, string> } {
  return { status: 200, body, headers: {} };
}

async function stored<T extends Resource>(session: Pick<StoreSession, 'current'>, type: string, id: string): Promise<T> {
  const found = await session.current(type, id);
  if (!found) throw notFound(`${type}/${id} is not known`);
  if (found.deleted) throw gone(`${type}/${id} was deleted`);
  return found.resource as T;
}

function cdaText(binary: Binary, where: string): string {
  if (binary.contentType && !/xml/i.test(binary.contentType)) throw badRequest(`${where}: Binary.contentType is ${binary.contentType}; a CDA document is application/xml`, [`${where}.contentType`]);
  if (!binary.data) throw badRequest(`${where}: the Binary has no data`, [`${where}.data`]);
  return Buffer.from(binary.data, 'base64').toString('utf8');
}

/** `lang` of the query, else of the Parameters body (valueCode or valueString: anything else is a 400), else Accept-Language. */
function language(req: FhirRequest): string | undefined {
  const q = queryValue(req, 'lang');
  if (q) return q;
  const list = (req.body as Parameters | undefined)?.resourceType === 'Parameters' ? ((req.body as Parameters).parameter ?? []) : [];
  const at = list.findIndex((x) => x?.name === 'lang');
  if (at >= 0) {
    const p = list[at]!;
    const v: unknown = p.valueCode ?? p.valueString;
    if (typeof v !== 'string' || !v.trim()) throw badRequest('Parameter `lang` must be a valueCode (or valueString) holding a language tag such as fr or de-LU', [`Parameters.parameter[${at}]`]);
    return v;
  }
  return parseLanguages(header(req, 'accept-language'))[0];
}

operationRegistry.register({
  name: 'to-cda',
  definition: `${BASE}Bundle-to-cda`,
  resourceTypes: ['Bundle'],
  levels: ['type', 'instance'],
  affectsState: false,
  // Administrators and system clients; the national contact point on a stored Bundle it can read.
  access: { audience: 'admin', scopes: () => [{ type: 'Bundle', perms: ['r'] }], alsoAllows: (principal, target) => ncpOperationAllowed(principal, 'to-cda', target.resourceType, target.id) },
  rawXml: { response: true },
  async handler(ctx, req, target, session) {
    let bundle: Bundle;
    if (target.level === 'instance') bundle = await stored<Bundle>(session ?? ctx.store, 'Bundle', target.id!);
    else {
      if (req.method !== 'POST') throw new FhirError(405, 'Bundle/$to-cda needs a document Bundle in a POST body (or use Bundle/{id}/$to-cda)', 'not-supported');
      const body = req.body as Resource | undefined;
      const fromParams = param(body, 'document')?.resource;
      bundle = (fromParams ?? body) as Bundle;
      if (bundle?.resourceType !== 'Bundle') throw badRequest('The body must be a document Bundle or Parameters with a `document` Bundle', ['Bundle']);
      // A posted Bundle has not been through the write path's validation: malformed entries are refused here
      // (400 with the issues) rather than failing inside the converter.
      assertValidResource(bundle);
    }
    // Only ?lang= (README, docs/crossborder.md): the document's own language, not the reader's Accept-Language
    // that $from-cda's language(req) also reads.
    const lang = queryValue(req, 'lang');
    const xml = bundleToCda(bundle, lang ? { language: lang } : {});
    const out: Binary = { resourceType: 'Binary', contentType: 'application/xml', data: Buffer.from(xml, 'utf8').toString('base64') };
    return ok(out);
  },
});

operationRegistry.register({
  name: 'from-cda',
  definition: `${BASE}Bundle-from-cda`,
  resourceTypes: ['Bundle', 'Binary'],
  levels: ['type', 'instance'],
  affectsState: false,
  access: { audience: 'admin', scopes: (target) => [{ type: target.level === 'instance' ? (target.resourceType ?? 'Binary') : 'Bundle', perms: ['r'] }] },
  rawXml: { body: true },
  async handler(ctx, req, target, session) {
    // A posted resource (Binary or Parameters, at either level) has not been through the write path's validation:
    // a malformed one (document as a number, Binary.data as an object...) is a 400 with its issues, not a 500.
    if (req.body && typeof req.body === 'object') assertValidResource(req.body);
    let xml: string;
    if (target.level === 'instance') {
      if (target.resourceType !== 'Binary') throw badRequest('Instance-level $from-cda reads a stored Binary: Binary/{id}/$from-cda');
      xml = cdaText(await stored<Binary>(session ?? ctx.store, 'Binary', target.id!), 'Binary');
    } else {
      if (target.resourceType !== 'Bundle') throw badRequest('Type-level $from-cda is Bundle/$from-cda');
      if (req.method !== 'POST') throw new FhirError(405, 'Bundle/$from-cda needs the CDA in a POST body (application/xml, a Binary or Parameters)', 'not-supported');
      const body = req.body as Resource | string | undefined;
      if (typeof body === 'string') xml = body;
      else if (body?.resourceType === 'Binary') xml = cdaText(body as Binary, 'Binary');
      else {
        const p = param(body, 'document');
        if (!p) throw badRequest('The body must be a Binary holding the CDA, or Parameters with `document`', ['Parameters.parameter']);
        if (p.resource?.resourceType === 'Binary') xml = cdaText(p.resource as Binary, 'Parameters.parameter[document].resource');
        else if (p.valueBase64Binary) xml = Buffer.from(p.valueBase64Binary, 'base64').toString('utf8');
        else if (p.valueString) xml = p.valueString;
        else throw badRequest('Parameter `document` must hold a Binary, a valueBase64Binary or a valueString', ['Parameters.parameter[document]']);
      }
    }
    const lang = language(req);
    return ok(cdaToBundle(xml, { ...(lang ? { lang } : {}), limits: { maxBytes: ctx.config?.limits?.maxBodyBytes ?? undefined, maxDepth: ctx.config?.limits?.maxDepth ?? undefined } }));
  },
});

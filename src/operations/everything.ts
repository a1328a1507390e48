/**
 * Patient/[id]/$everything (R4 patient-operation-everything): the patient and every resource of its
 * compartment, as a searchset Bundle paged like any search (`_count`, `first` / `previous` / `next` links),
 * with `_type` and `_since` to narrow it. The patient itself comes first, on the first page (the page
 * without a `previous` link, however it was reached).
 */
import type { Bundle, FhirResource } from 'fhir/r4';
import { badRequest, gone, notFound } from '../fhir/outcome.ts';
import { compartmentFilter, compartmentTypes } from '../fhir/compartments.ts';
import { search } from '../fhir/interactions.ts';
import { operationRegistry } from './registry.ts';

operationRegistry.register({
  name: 'everything',
  definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything',
  resourceTypes: ['Patient'],
  levels: ['instance'],
  affectsState: false,
  // Anyone who may read the Patient: the search inside is narrowed to what the caller sees.
  access: { audience: 'any', scopes: () => [{ type: 'Patient', perms: ['r'] }] },
  async handler(ctx, req, target, session) {
    const reads = session ?? ctx.store;
    const id = target.id!;
    const patient = await reads.current('Patient', id);
    if (!patient) throw notFound(`Patient/${id} is not known`);
    if (patient.deleted) throw gone(`Patient/${id} was deleted`);
    const allowed = compartmentTypes('Patient');
    let types = allowed;
    const params: [string, string][] = [];
    for (const [k, v] of req.query) {
      if (k === '_type') {
        types = v.split(',').map((t) => t.trim()).filter(Boolean);
        const unknown = types.filter((t) => t !== 'Patient' && !allowed.includes(t));
        if (unknown.length) throw badRequest(`_type: ${unknown.join(', ')} not in the Patient compartment`, ['_type']);
      } else if (k === '_since') {
        params.push(['_lastUpdated', `gt${v}`]);
      } else if (k === '_lastUpdated') {
        params.push([k, v]); // what the paging links carry for `_since`
      } else if (['_count', '_cursor', '_format', '_pretty', '_summary', '_elements'].includes(k)) {
        params.push([k, v]);
      } else if (k !== 'start' && k !== 'end') {
        throw badRequest(`Parameter ${k} is not supported by $everything`, [k]);
      }
    }
    const memberTypes = types.filter((t) => t !== 'Patient' || allowed.includes('Patient'));
    params.push(['_type', memberTypes.join(',')]);
    const res = await search(ctx, reads, req, undefined, params, {
      path: `Patient/${id}/$everything`,
      filters: [compartmentFilter('Patient', id, memberTypes)],
    });
    const bundle = res.body as Bundle;
    const firstPage = !bundle.link?.some((l) => l.relation === 'previous');
    if (firstPage && types.includes('Patient') && !bundle.entry?.some((e) => e.resource?.resourceType === 'Patient' && e.resource.id === id)) {
      bundle.entry = [
        { fullUrl: `${req.baseUrl}/Patient/${id}`, resource: patient.resource as FhirResource, search: { mode: 'match' } },
        ...(bundle.entry ?? []),
      ];
      if (bundle.total !== undefined) bundle.total += 1;
    }
    return res;
  },
});

/**
 * [base]/$reindex: `GET` lists the re-index jobs with their progress (started automatically when
 * SearchParameter resources change); `POST` starts one for the given `type` parameters (all types when none).
 */
import type { Parameters, ParametersParameter } from 'fhir/r4';
import { badRequest } from '../fhir/outcome.ts';
import { fhirModel } from '../fhir/model.ts';
import { type ReindexJob, reindexJobs, startReindex } from '../search/reindex.ts';
import { operationRegistry } from './registry.ts';

function jobParameter(job: ReindexJob): ParametersParameter {
  return {
    name: 'job',
    part: [
      { name: 'id', valueString: job.id },
      { name: 'status', valueCode: job.status },
      { name: 'reason', valueString: job.reason },
      ...job.resourceTypes.map((t) => ({ name: 'type', valueCode: t })),
      { name: 'processed', valueInteger: job.processed },
      { name: 'total', valueInteger: job.total },
      { name: 'started', valueInstant: job.started },
      ...(job.finished ? [{ name: 'finished', valueInstant: job.finished }] : []),
      ...(job.error ? [{ name: 'error', valueString: job.error }] : []),
    ],
  };
}

operationRegistry.register({
  name: 'reindex',
  definition: 'http://dsp.lu/fhir/OperationDefinition/reindex',
  resourceTypes: [],
  levels: ['system'],
  affectsState: false,
  // Re-indexing is administration: administrators only (system clients too are refused; in-process callers,
  // without a principal, pass no access check). Listing jobs reads SearchParameters' state; starting one
  // rewrites every index: a wildcard write scope.
  access: {
    audience: 'admin',
    roles: ['admin'],
    scopes: (_target, req) => (req.method === 'GET' || req.method === 'HEAD' ? [{ type: 'SearchParameter', perms: ['r'] }] : [{ type: '*', perms: ['u'] }]),
  },
  async handler(ctx, req) {
    if (req.method === 'GET' || req.method === 'HEAD') {
      const body: Parameters = { resourceType: 'Parameters', parameter: reindexJobs().map(jobParameter) };
      return { status: 200, headers: {}, body };
    }
    const input = req.body as Parameters | undefined;
    const model = fhirModel();
    const types = [
      ...req.query.filter(([k]) => k === 'type').map(([, v]) => v),
      ...(input?.parameter ?? []).filter((p) => p.name === 'type').map((p) => p.valueCode ?? p.valueString ?? ''),
    ];
    for (const t of types) if (!model.isResourceType(t)) throw badRequest(`type "${t}" is not a resource type`, ['type']);
    const job = await startReindex(ctx.store, types.length ? types : [...model.resourceTypes], 'requested through $reindex');
    return { status: 202, headers: {}, body: { resourceType: 'Parameters', parameter: [jobParameter(job)] } };
  },
});

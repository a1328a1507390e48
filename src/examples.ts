/**
 * Loads the example dataset (examples/*.json, in file-name order) through the same router as HTTP requests:
 * batch and transaction Bundles are processed as such; any other resource is stored with its id (PUT).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, Resource } from 'fhir/r4';
import type { Context } from './fhir/interactions.ts';
import { dispatch } from './fhir/router.ts';

export async function loadExamples(ctx: Context, dir: string): Promise<number> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  let count = 0;
  for (const file of files) {
    const resource = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Resource;
    const base = { query: [], headers: {}, baseUrl: ctx.config.baseUrl ?? 'http://localhost/fhir' };
    if (resource.resourceType === 'Bundle' && ['transaction', 'batch'].includes((resource as Bundle).type)) {
      await dispatch(ctx, { ...base, method: 'POST', path: '', body: resource });
      count += (resource as Bundle).entry?.length ?? 0;
    } else if (resource.id) {
      await dispatch(ctx, { ...base, method: 'PUT', path: `${resource.resourceType}/${resource.id}`, body: resource });
      count++;
    } else {
      await dispatch(ctx, { ...base, method: 'POST', path: resource.resourceType, body: resource });
      count++;
    }
  }
  return count;
}

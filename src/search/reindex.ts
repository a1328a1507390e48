/**
 * SearchParameter resources defined on the server: keeping the registry in step with the store, and
 * re-indexing the resources whose parameters changed, as background jobs whose progress is visible through
 * `GET [base]/$reindex`.
 */
import { randomUUID } from 'node:crypto';
import type { SearchParameter } from 'fhir/r4';
import type { Store } from '../store/port.ts';
import { reindexCompleted, registryGeneration, setServerSearchParameters } from './registry.ts';
import { extractIndex } from './indexer.ts';

export interface ReindexJob {
  id: string;
  reason: string;
  resourceTypes: string[];
  status: 'running' | 'completed' | 'failed';
  /** Resources re-indexed so far / to re-index in all (counted at start). */
  processed: number;
  total: number;
  started: string;
  finished?: string;
  error?: string;
}

const BATCH = 500;
const jobs = new Map<string, ReindexJob>();
const running = new Map<string, Promise<void>>();

export function reindexJobs(): ReindexJob[] {
  return [...jobs.values()].sort((a, b) => b.started.localeCompare(a.started));
}

export function reindexJob(id: string): ReindexJob | undefined {
  return jobs.get(id);
}

/** Resolves when the job has finished (for tests and the CLI). */
export async function waitForReindex(id: string): Promise<ReindexJob | undefined> {
  await running.get(id);
  return jobs.get(id);
}

/** Reads every live SearchParameter of the store. */
async function storedSearchParameters(store: Store): Promise<SearchParameter[]> {
  const out: SearchParameter[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.search({ resourceTypes: ['SearchParameter'], filters: [], sort: [], count: 500, cursor, total: 'none', include: [] });
    out.push(...(page.resources as SearchParameter[]));
    cursor = page.next;
  } while (cursor);
  return out;
}

/**
 * Brings the registry in step with the SearchParameters stored on the server; starts a re-index job for the
 * resource types whose parameters changed (when `reindex` is true). Returns the job, if one started.
 */
export async function syncSearchParameters(store: Store, reindex = true): Promise<ReindexJob | undefined> {
  const changed = setServerSearchParameters(await storedSearchParameters(store), !reindex);
  if (!changed.length || !reindex) return undefined;
  return startReindex(store, changed, 'SearchParameter resources changed');
}

/** Starts a background job re-indexing every live resource of `resourceTypes`. */
export async function startReindex(store: Store, resourceTypes: string[], reason: string): Promise<ReindexJob> {
  // The registry state this job's rows follow (index aliases held back until it completes, search-sql.ts).
  const generation = registryGeneration();
  let total = 0;
  for (const t of resourceTypes) total += await store.count(t);
  const job: ReindexJob = { id: randomUUID(), reason, resourceTypes, status: 'running', processed: 0, total, started: new Date().toISOString() };
  jobs.set(job.id, job);
  const work = (async () => {
    try {
      for (const type of resourceTypes) {
        let cursor: string | undefined;
        do {
          const page = await store.search({ resourceTypes: [type], filters: [], sort: [], count: BATCH, cursor, total: 'none', include: [] });
          await store.reindex(page.resources.map((r) => ({ resourceType: r.resourceType, id: r.id!, index: extractIndex(r) })));
          job.processed += page.resources.length;
          cursor = page.next;
          // Let requests run between batches.
          await new Promise((resolve) => setImmediate(resolve));
        } while (cursor);
      }
      job.status = 'completed';
      reindexCompleted(resourceTypes, generation);
    } catch (err) {
      job.status = 'failed';
      job.error = (err as Error).message;
    } finally {
      job.finished = new Date().toISOString();
      running.delete(job.id);
    }
  })();
  running.set(job.id, work);
  return job;
}

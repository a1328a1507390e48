/**
 * The comparison peer: the same Synthea resources with nothing but `JSON.parse` + `JSON.stringify` + a
 * node:sqlite insert (WAL, the server's `synchronous` setting, 500-row transactions). This is the ceiling an
 * ingest path on this machine could reach; the server's figures are reported as fractions of it.
 */
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import type { BundleFile } from './data.ts';

export interface PeerIngest {
  resources: number;
  seconds: number;
  cpuSeconds: number;
  perSecond: number;
  /** Ids written, for the read peer. */
  ids: { Patient: string[]; Observation: string[] };
}

export const PEER_SCHEMA = `CREATE TABLE IF NOT EXISTS resources (
  resource_type TEXT NOT NULL, id TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (resource_type, id))`;

export function peerIngest(path: string, bundles: BundleFile[], synchronous: 'FULL' | 'NORMAL', rowsPerTx = 500): PeerIngest {
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA cache_size = -65536;`);
  db.exec(PEER_SCHEMA);
  const insert = db.prepare('INSERT OR REPLACE INTO resources (resource_type, id, content) VALUES (?, ?, ?)');
  const ids: PeerIngest['ids'] = { Patient: [], Observation: [] };
  let n = 0;
  let inTx = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  db.exec('BEGIN');
  for (const b of bundles) {
    const bundle = JSON.parse(b.text) as { entry?: { resource?: { resourceType: string; id?: string } }[] };
    for (const e of bundle.entry ?? []) {
      const r = e.resource;
      if (!r) continue;
      const id = r.id ?? randomUUID();
      insert.run(r.resourceType, id, JSON.stringify(r));
      if (r.resourceType === 'Patient' || r.resourceType === 'Observation') ids[r.resourceType].push(id);
      n++;
      if (++inTx === rowsPerTx) {
        db.exec('COMMIT; BEGIN');
        inTx = 0;
      }
    }
  }
  db.exec('COMMIT');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  db.close();
  return { resources: n, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, perSecond: n / seconds, ids };
}

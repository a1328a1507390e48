/**
 * The read peer, spawned by bench/run.ts: a bare node:http server answering GET /fhir/<Type>/<id> with the
 * stored JSON text from the peer's SQLite file (prepared point SELECT, no parsing, no framework).
 *
 * Usage: node bench/peer-server.ts <sqlite file> <port>
 */
import { createServer } from 'node:http';
import { DatabaseSync } from 'node:sqlite';

const [file, portArg] = process.argv.slice(2);
if (!file || !portArg) {
  console.error('usage: node bench/peer-server.ts <sqlite file> <port>');
  process.exit(2);
}
const db = new DatabaseSync(file, { readOnly: true });
db.exec('PRAGMA cache_size = -65536;');
const select = db.prepare('SELECT content FROM resources WHERE resource_type = ? AND id = ?');

const server = createServer((req, res) => {
  const m = /^\/fhir\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(req.url ?? '');
  if (req.url === '/fhir/metadata') {
    res.writeHead(200, { 'content-type': 'application/fhir+json' }).end('{}');
    return;
  }
  const row = m ? (select.get(m[1], m[2]) as { content: string } | undefined) : undefined;
  if (!row) {
    res.writeHead(404, { 'content-type': 'application/fhir+json' }).end('{"resourceType":"OperationOutcome"}');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(row.content) });
  res.end(row.content);
});
server.keepAliveTimeout = 30_000;
server.listen(Number(portArg), '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

/** Keep-alive HTTP client for the load generator (node:http; talks to 127.0.0.1 only). */
import { Agent, request } from 'node:http';

export interface Reply {
  status: number;
  body: string;
  /** Milliseconds from sending the request to the last byte of the response. */
  ms: number;
}

export class Client {
  readonly agent: Agent;
  readonly host = '127.0.0.1';
  readonly port: number;
  /** Sent with every request (the server's Authorization header). */
  readonly defaultHeaders: Record<string, string> = {};

  constructor(port: number, maxSockets: number, keepAlive = true) {
    this.port = port;
    this.agent = new Agent({ keepAlive, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  }

  send(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
    return new Promise((ok, fail) => {
      const started = process.hrtime.bigint();
      const req = request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: {
            accept: 'application/fhir+json',
            ...this.defaultHeaders,
            ...(body !== undefined ? { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            ok({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString('utf8'),
              ms: Number(process.hrtime.bigint() - started) / 1e6,
            }),
          );
          res.on('error', fail);
        },
      );
      req.on('error', fail);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Polls `path` until it answers 200 (or gives up after `timeoutMs`). */
export async function waitUntilUp(client: Client, path: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the server process exited during start-up');
    try {
      const r = await client.send('GET', path);
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server did not answer ${path} within ${timeoutMs} ms (${last})`);
}

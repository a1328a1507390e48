/** Test support: an HTTPS GET that trusts the development CA and presents its client certificate on request. */
import { request } from 'node:https';
import type { DevPki } from '../../src/cli/pki.ts';

export function httpsGet(url: string, pki: DevPki, withCert: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options = { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, ca: pki.caCert, servername: 'localhost', ...(withCert ? { cert: pki.clientCert, key: pki.clientKey } : {}) };
    const req = request(options, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

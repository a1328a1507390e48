/**
 * `dsp-fhir pki dev`: a development PKI made with node-forge — a CA, a server certificate (SAN localhost,
 * 127.0.0.1; EKU serverAuth) and a client certificate (EKU clientAuth) for an NCP peer or system client,
 * PEM files plus the client's SHA-256 fingerprint to register in DSP_AUTH_CLIENTS (`certFingerprint`).
 * Development only: runtime TLS uses Node's own crypto.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import forge from 'node-forge';

export interface DevPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** SHA-256 of the client certificate's DER, hex lower case. */
  clientFingerprint: string;
}

function serial(): string {
  return forge.util.bytesToHex(forge.random.getBytesSync(15)).replace(/^[89a-f]/, '1');
}

function issue(subjectCn: string, keys: forge.pki.rsa.KeyPair, issuer: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } | undefined, extensions: object[], days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * 86_400_000);
  const subject = [{ name: 'commonName', value: subjectCn }, { name: 'organizationName', value: 'DSP development' }, { name: 'countryName', value: 'LU' }];
  cert.setSubject(subject);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : subject);
  cert.setExtensions(extensions);
  cert.sign(issuer ? issuer.key : keys.privateKey, forge.md.sha256.create());
  return cert;
}

export function createDevPki(clientName = 'dev-client', bits = 2048): DevPki {
  const caKeys = forge.pki.rsa.generateKeyPair(bits);
  const ca = issue('DSP development CA', caKeys, undefined, [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }], 3650);
  const issuer = { cert: ca, key: caKeys.privateKey };
  const serverKeys = forge.pki.rsa.generateKeyPair(bits);
  const server = issue('localhost', serverKeys, issuer, [
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
  ], 825);
  const clientKeys = forge.pki.rsa.generateKeyPair(bits);
  const client = issue(clientName, clientKeys, issuer, [
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
  ], 825);
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(client)).getBytes(), 'binary');
  return {
    caCert: forge.pki.certificateToPem(ca),
    serverCert: forge.pki.certificateToPem(server),
    serverKey: forge.pki.privateKeyToPem(serverKeys.privateKey),
    clientCert: forge.pki.certificateToPem(client),
    clientKey: forge.pki.privateKeyToPem(clientKeys.privateKey),
    clientFingerprint: createHash('sha256').update(der).digest('hex'),
  };
}

export function registerPki(program: Command): void {
  const pki = program.command('pki').description('certificates for mutual TLS');
  pki
    .command('dev')
    .description('create a development CA, a server certificate and a client certificate (PEM)')
    .option('--out <dir>', 'output folder', 'data/pki')
    .option('--client <name>', 'client certificate common name', 'dev-client')
    .action((opts: { out: string; client: string }) => {
      const out = resolve(opts.out);
      mkdirSync(out, { recursive: true });
      const p = createDevPki(opts.client);
      writeFileSync(join(out, 'ca.pem'), p.caCert);
      writeFileSync(join(out, 'server.pem'), p.serverCert);
      writeFileSync(join(out, 'server-key.pem'), p.serverKey, { mode: 0o600 });
      writeFileSync(join(out, 'client.pem'), p.clientCert);
      writeFileSync(join(out, 'client-key.pem'), p.clientKey, { mode: 0o600 });
      console.log(`development PKI written to ${out}`);
      console.log(`client certificate SHA-256 fingerprint (certFingerprint): ${p.clientFingerprint}`);
    });
}

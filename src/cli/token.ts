/** `dsp-fhir token`: prints a development access token signed by the data folder's local key. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { ROLES, type Role } from '../access/principal.ts';
import { loadSigningKey, signDevToken } from '../access/tokens.ts';

export function registerToken(program: Command): void {
  program
    .command('token')
    .description('print a development access token (refused by a server in production mode)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .requiredOption('--id <reference>', 'the actor, e.g. Practitioner/dr-weber or Patient/p1')
    .option('--purpose <purpose>', 'purpose of use, e.g. EMERGENCY')
    .option('--reason <text>', 'reason given with the purpose (required for EMERGENCY)')
    .option('--patient <id>', 'SMART patient context')
    .option('--organization <reference>', 'organisation the actor acts for')
    .option('--scope <scopes>', 'SMART v2 scopes (default per role)')
    .option('--ttl <seconds>', 'lifetime in seconds', '28800')
    .action(async (opts: { role: string; id: string; purpose?: string; reason?: string; patient?: string; organization?: string; scope?: string; ttl: string }) => {
      try {
        const config = loadConfig();
        const auth = config.auth!;
        if (auth.mode !== 'development') throw new Error('DSP_AUTH_MODE is production: development tokens are not available');
        if (!ROLES.includes(opts.role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
        const ttl = Number(opts.ttl);
        if (!Number.isInteger(ttl) || ttl < 1) throw new Error('--ttl must be a positive number of seconds');
        const key = await loadSigningKey(auth.keyFile);
        const token = await signDevToken(key, auth.audience, { role: opts.role as Role, id: opts.id, purpose: opts.purpose, reason: opts.reason, patient: opts.patient, organization: opts.organization, scope: opts.scope, ttl });
        process.stdout.write(`${token}\n`);
      } catch (err) {
        console.error(`dsp-fhir token: ${(err as Error).message}`);
        process.exit(2);
      }
    });
}

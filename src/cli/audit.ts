/** `dsp-fhir audit verify`: checks the audit trail's hash chain (edited, removed or truncated entries). */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { openAuditStore } from '../access/service.ts';
import { verifyAuditChain } from '../audit/chain.ts';

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('audit trail tools');
  audit
    .command('verify')
    .description('verify the hash chain of the audit trail; exit code 1 when it was tampered with')
    .action(async () => {
      let config;
      try {
        config = loadConfig();
      } catch (err) {
        console.error(`dsp-fhir: configuration error: ${(err as Error).message}`);
        process.exit(2);
      }
      const store = await openAuditStore(config);
      try {
        const report = await verifyAuditChain(store);
        for (const p of report.problems) console.log(`TAMPERED: ${p}`);
        console.log(report.ok ? `audit trail intact: ${report.entries} entries` : `audit trail NOT intact: ${report.problems.length} problem(s) in ${report.entries} entries`);
        process.exitCode = report.ok ? 0 : 1;
      } finally {
        await store.close();
      }
    });
}

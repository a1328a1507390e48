/** `dsp-fhir serve`: starts the FHIR server with the configuration from the environment. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { startServer } from '../server.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the FHIR server (configuration from environment variables, see README)')
    .option('-p, --port <port>', 'port to listen on (overrides PORT)')
    .option('--no-examples', 'do not load examples/ into an empty store')
    .action(async (opts: { port?: string; examples: boolean }) => {
      let config;
      try {
        config = loadConfig({ ...process.env, ...(opts.port ? { PORT: opts.port } : {}) });
      } catch (err) {
        console.error(`dsp-fhir: configuration error: ${(err as Error).message}`);
        process.exit(2);
      }
      if (!opts.examples) config.loadExamples = false;
      const running = await startServer(config);
      const stop = (signal: string) => {
        running.logger.info({ signal }, 'shutting down');
        running.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}

/** Child processes for the benchmark: spawn, free port, CPU time and peak memory from /proc, stop. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

export interface Child {
  proc: ChildProcess;
  alive(): boolean;
  /** Last lines written to stderr/stdout (for error messages). */
  output(): string;
  /** User + system CPU seconds used so far (Linux /proc; NaN elsewhere). */
  cpuSeconds(): number;
  /** Peak resident memory in MB (VmHWM; NaN elsewhere). */
  peakRssMb(): number;
  stop(): Promise<number | null>;
}

const CLK_TCK = 100;

export function startChild(args: string[], env: NodeJS.ProcessEnv, cwd: string): Child {
  const proc = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  let code: number | null = null;
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const done = new Promise<void>((ok) =>
    proc.on('exit', (c) => {
      exited = true;
      code = c;
      ok();
    }),
  );
  return {
    proc,
    alive: () => !exited,
    output: () => tail,
    cpuSeconds() {
      try {
        const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
      } catch {
        return NaN;
      }
    },
    peakRssMb() {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
        return m ? Number(m[1]) / 1024 : NaN;
      } catch {
        return NaN;
      }
    },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await done;
        clearTimeout(timer);
      }
      return code;
    },
  };
}

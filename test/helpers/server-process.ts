import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The built command line (`npm test`'s pretest builds it). */
export const MAIN = path.resolve(__dirname, '../../dist/main.js');

export interface ServerProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  /** Peak resident set size of the server so far, in bytes (Linux VmHWM). */
  peakRss(): number;
  /** Everything the server wrote on stdout and stderr so far. */
  output(): string;
  /** Sends `signal` (SIGTERM, SIGINT) and returns at once; `exited` tells how it ended. */
  signal(signal: NodeJS.Signals): void;
  /** Settles once the process is gone: its exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/**
 * Starts the built server (`dist/main.js`, built by `npm test`'s pretest) as its own process,
 * for what must be measured apart from jest: memory, signals, the real command line.
 */
export async function startServerProcess(cwd: string, args: string[] = []): Promise<ServerProcess> {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--log_level', 'warn', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url,
    pid: child.pid!,
    child,
    peakRss: () => {
      const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kib = /VmHWM:\s+(\d+) kB/.exec(status);
      if (!kib) throw new Error('no VmHWM in /proc status');
      return Number(kib[1]) * 1024;
    },
    output: () => output,
    signal: (signal) => void child.kill(signal),
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

// There is no Docker engine to build the image with, so CI replays the Dockerfile instead: a clean
// `npm ci` (better-sqlite3 compiled from source, about two minutes), the build, the runtime stage started
// from its own files as a non-root user, its HEALTHCHECK, a push and a pull, SIGTERM.
const MIRROR = path.resolve(__dirname, '../../scripts/dockerfile-mirror.mjs');
const FIFTEEN_MINUTES = 15 * 60_000;

describe('the Dockerfile, replayed without Docker (scripts/dockerfile-mirror.mjs)', () => {
  let running: ChildProcess | null = null;
  // On a timeout, end the mirror with everything it started (npm, node-gyp, the registry): its own process group.
  afterEach(() => {
    if (running && running.exitCode === null && running.signalCode === null) process.kill(-running.pid!, 'SIGKILL');
  });

  test(
    'builds, starts as the image would, passes its HEALTHCHECK, serves a push and a pull, and stops cleanly',
    async () => {
      const child = spawn(process.execPath, [MIRROR], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      running = child;
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('close', (exitCode, exitSignal) => resolve({ code: exitCode, signal: exitSignal })),
      );
      // The whole log on failure: the step that failed and what it printed.
      expect({ code, signal, output }).toEqual({ code: 0, signal: null, output: expect.stringMatching(/\ndockerfile-mirror: OK in /) });
      expect(output).toMatch(/checked: HEALTHCHECK CMD exited 0/);
      expect(output).toMatch(/checked: pushed dockerfile-mirror\/hello:v1 .* and pulled it back/);
      expect(output).toMatch(/checked: SIGTERM → exit 0/);
    },
    FIFTEEN_MINUTES,
  );
});

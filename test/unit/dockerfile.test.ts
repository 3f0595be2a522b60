import fs from 'node:fs';
import path from 'node:path';
import { CONFIG_SCHEMA, settableKeys } from '../../src/config/schema';
import { HEALTHCHECK_TIMEOUT_MS } from '../../src/server/health-probe';
import { runtimeOf } from '../helpers/dockerfile';

// A lint of the Dockerfile for the mistakes a build does not catch: root at run time, a shell-form entry
// point (sh would be PID 1 and swallow SIGTERM), no HEALTHCHECK, storage outside the volume. That the image
// builds and runs is test/e2e/docker-image.test.ts's part, with Docker itself.

const ROOT = path.join(__dirname, '../..');
const DOCKERFILE = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

/** What is wrong with a Dockerfile, one line each. */
function problemsOf(text: string): string[] {
  const runtime = runtimeOf(text);
  const problems: string[] = [];
  const user = runtime.user?.split(':')[0];
  if (user === undefined || user === 'root' || user === '0') problems.push('USER: the image would run as root');
  if (!runtime.entrypoint) problems.push('ENTRYPOINT: not exec form (a JSON array), so node would not be PID 1 and get SIGTERM');
  if (!runtime.cmd) problems.push('CMD: not exec form (a JSON array)');
  if (!runtime.healthcheck) problems.push('HEALTHCHECK: none');
  else if (!runtime.healthcheck.command) problems.push('HEALTHCHECK: CMD not exec form');
  return problems;
}

describe("the project's Dockerfile", () => {
  test('runs as a non-root user, with exec-form ENTRYPOINT, CMD and HEALTHCHECK', () => {
    expect(problemsOf(DOCKERFILE)).toEqual([]);
  });

  test.each([
    ['no USER', /^USER node\n/m, '', /^USER/],
    ['USER root', /^USER node$/m, 'USER root', /^USER/],
    ['a shell-form ENTRYPOINT', /^ENTRYPOINT .*$/m, 'ENTRYPOINT node /app/dist/main.js', /^ENTRYPOINT/],
    ['no HEALTHCHECK', /^HEALTHCHECK .*\n.*\n/m, '', /^HEALTHCHECK: none/],
  ])('the lint catches %s', (_name, pattern, replacement, problem) => {
    expect(DOCKERFILE).toMatch(pattern);
    expect(problemsOf(DOCKERFILE.replace(pattern, replacement))).toEqual([expect.stringMatching(problem)]);
  });

  test("probes with the registry's own healthcheck command, which gives up before Docker's --timeout", () => {
    const { healthcheck, entrypoint } = runtimeOf(DOCKERFILE);
    expect(healthcheck!.command).toEqual([...entrypoint!, 'healthcheck']);
    const timeout = /--timeout=(\d+)s/.exec(healthcheck!.options);
    expect(HEALTHCHECK_TIMEOUT_MS).toBeLessThan(Number(timeout![1]) * 1000);
  });

  test('runs `serve` from /app; every storage path of the configuration is under VOLUME /storage', () => {
    const { entrypoint, cmd, env, volumes } = runtimeOf(DOCKERFILE);
    expect([...entrypoint!, ...cmd!]).toEqual(['node', '/app/dist/main.js', 'serve']);
    expect(volumes).toEqual(['/storage']);
    const storageKeys = settableKeys(CONFIG_SCHEMA).filter((key) => key.spec.type === 'path' && key.spec.is !== 'input');
    expect(storageKeys.length).toBeGreaterThan(0);
    for (const key of storageKeys) expect([key.env, env[key.env]]).toEqual([key.env, expect.stringMatching(/^\/storage\//)]);
    expect(env.REGISTRY_HOST).toBe('0.0.0.0');
  });

  test('keeps local state and secrets out of the build context (.dockerignore)', () => {
    const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim());
    for (const entry of ['.git', 'node_modules', 'dist', 'storage', 'configuration.toml']) expect(ignored).toContain(entry);
  });
});

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CONFIG_SCHEMA, settableKeys } from '../../../src/config/schema';
import { HEALTHCHECK_TIMEOUT_MS } from '../../../src/server/health-probe';

// The parser and the requirement checks of scripts/dockerfile-mirror.mjs, in CommonJS so jest can load them.
interface Command {
  form: 'exec' | 'shell';
  argv?: string[];
  text?: string;
}
interface StageConfig {
  env: Record<string, string>;
  workdir: string;
  user: string | null;
  volumes: string[];
  expose: { port: number; protocol: string }[];
  healthcheck: (Command & { none: boolean; options: Record<string, number> }) | null;
  entrypoint: Command | null;
  cmd: Command | null;
}
interface Step {
  keyword: string;
  from?: number | null;
  sources?: string[];
  destination?: string;
}
interface Stage {
  name: string | null;
  base: string;
  config: StageConfig;
  steps: Step[];
}
interface RunPart {
  kind: 'run' | 'not-replayed' | 'check-packages' | 'mkdir' | 'chown';
  text: string;
  commands?: string[];
  paths?: string[];
}
interface DockerfileModule {
  DockerfileError: new (message: string) => Error;
  parseDockerfile(text: string): unknown;
  evaluate(parsed: unknown): Stage[];
  checkRequirements(stages: Stage[], options?: { today?: string }): { problems: string[]; found: string[] };
  classifyRun(text: string): RunPart[];
  dockerignore(text: string): (file: string) => boolean;
  parseDuration(text: string, where: string): number;
  STORAGE_VARIABLES: string[];
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dockerfile = require('../../../scripts/dockerfile.cjs') as DockerfileModule;

const ROOT = path.join(__dirname, '../../..');
const MIRROR = path.join(ROOT, 'scripts/dockerfile-mirror.mjs');
const DOCKERFILE = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const TODAY = '2026-11-23';

const stagesOf = (text: string) => dockerfile.evaluate(dockerfile.parseDockerfile(text));
const problemsOf = (text: string, today = TODAY) => dockerfile.checkRequirements(stagesOf(text), { today }).problems;
const runtimeOf = (text: string) => stagesOf(text).at(-1)!.config;

/** The project's Dockerfile with the lines matching `pattern` replaced (or removed). */
function edited(pattern: RegExp, replacement = ''): string {
  expect(DOCKERFILE).toMatch(pattern);
  return DOCKERFILE.replace(pattern, replacement);
}

function parseErrorOf(text: string): string {
  try {
    stagesOf(text);
  } catch (error) {
    expect(error).toBeInstanceOf(dockerfile.DockerfileError);
    return (error as Error).message;
  }
  throw new Error('expected a DockerfileError');
}

describe("the project's Dockerfile", () => {
  it('meets the requirements of issue #8', () => {
    expect(problemsOf(DOCKERFILE)).toEqual([]);
  });

  it('EXPOSEs the port the registry listens on by default', () => {
    expect(runtimeOf(DOCKERFILE).expose).toEqual([{ port: CONFIG_SCHEMA.port.default, protocol: 'tcp' }]);
  });

  it('puts every storage path of the configuration under VOLUME /storage', () => {
    const storageKeys = settableKeys(CONFIG_SCHEMA).filter((key) => key.spec.type === 'path' && key.spec.is !== 'input');
    // A new storage key must be added to the requirement check (and to the Dockerfile's ENV).
    expect(storageKeys.map((key) => key.env).sort()).toEqual([...dockerfile.STORAGE_VARIABLES].sort());
    const { env, volumes } = runtimeOf(DOCKERFILE);
    expect(volumes).toEqual(['/storage']);
    for (const key of storageKeys) expect(env[key.env]).toMatch(/^\/storage\//);
  });

  it('probes readiness with the registry\'s own healthcheck command, which reads the whole configuration', () => {
    const { healthcheck, entrypoint } = runtimeOf(DOCKERFILE);
    expect(healthcheck).toMatchObject({ none: false, form: 'exec' });
    // The same node and program as the ENTRYPOINT: a port or host set in configuration.toml is known to it.
    expect(healthcheck!.argv).toEqual([...entrypoint!.argv!, 'healthcheck']);
    // Docker kills a probe at --timeout; the probe's own fetch gives up first and reports unhealthy.
    expect(HEALTHCHECK_TIMEOUT_MS).toBeLessThan(healthcheck!.options.timeout);
  });

  it('runs `serve` from /app, where a mounted /app/configuration.toml is read', () => {
    const { entrypoint, cmd, workdir } = runtimeOf(DOCKERFILE);
    expect(workdir).toBe('/app');
    expect([...entrypoint!.argv!, ...cmd!.argv!]).toEqual(['node', '/app/dist/main.js', 'serve']);
  });

  it('keeps local state and secrets out of the build context (.dockerignore)', () => {
    const ignored = dockerfile.dockerignore(fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
    for (const file of ['node_modules/koa/package.json', 'dist/main.js', 'storage/index.db', 'configuration.toml', '.git/config']) {
      expect([file, ignored(file)]).toEqual([file, true]);
    }
    for (const file of ['package.json', 'package-lock.json', 'src/main.ts', 'tsconfig.build.json', 'configuration.toml.example']) {
      expect([file, ignored(file)]).toEqual([file, false]);
    }
  });
});

describe('requirement checks: each one names what is missing', () => {
  it.each([
    ['USER', /^USER node\n/m, '', /^USER: .*has no USER, so the image would run as root/],
    ['USER root', /^USER node$/m, 'USER root', /^USER: .*runs as root/],
    ['VOLUME', /^VOLUME \/storage\n/m, '', /^VOLUME: .*no VOLUME \/storage/],
    ['REGISTRY_HOST', /^ {4}REGISTRY_HOST=0\.0\.0\.0 \\\n/m, '', /^ENV: .*REGISTRY_HOST=0\.0\.0\.0.*found none/],
    ['a storage path', /^ {4}REGISTRY_DATABASE=\/storage\/index\.db$/m, '    REGISTRY_DATABASE=/data/index.db', /^ENV: .*REGISTRY_DATABASE .*found \/data\/index\.db/],
    ['NODE_ENV', /NODE_ENV=production/, 'NODE_ENV=development', /^ENV: .*NODE_ENV=production; found development/],
    ['exec-form ENTRYPOINT', /^ENTRYPOINT .*$/m, 'ENTRYPOINT node /app/dist/main.js', /^ENTRYPOINT: .*shell form/],
    ['an ENTRYPOINT', /^ENTRYPOINT .*\n/m, '', /^ENTRYPOINT: .*has none/],
    ['HEALTHCHECK', /^HEALTHCHECK [^\n]*\\\n[^\n]*\n/m, '', /^HEALTHCHECK: .*has none/],
    ['HEALTHCHECK NONE', /^HEALTHCHECK [^\n]*\\\n[^\n]*\n/m, 'HEALTHCHECK NONE\n', /^HEALTHCHECK: .*has none/],
    ['a slim image', /node:26-trixie-slim/g, 'node:26-trixie', /^FROM node:26-trixie .*node:<LTS major>-<debian>-slim/],
    ['an LTS line', /node:26-trixie-slim/g, 'node:25-trixie-slim', /^FROM .*Node 25 is not an LTS line/],
    ['a supported LTS line', /node:26-trixie-slim/g, 'node:20-bookworm-slim', /^FROM .*Node 20 reached its end of life on 2026-04-30/],
    ['one base image', /^FROM node:26-trixie-slim$/m, 'FROM node:24-trixie-slim', /^FROM: the stages use different base images/],
  ])('fails without %s', (_what, pattern, replacement, message) => {
    const problems = problemsOf(edited(pattern, replacement));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
  });

  it('fails a single-stage Dockerfile', () => {
    const single = 'FROM node:26-trixie-slim\nENV NODE_ENV=production REGISTRY_HOST=0.0.0.0\nUSER node\nVOLUME /storage\nHEALTHCHECK CMD ["true"]\nENTRYPOINT ["node", "main.js"]\n';
    expect(problemsOf(single)).toContainEqual(expect.stringMatching(/^multi-stage: /));
  });

  it('accepts a pinned digest and a newer even major than its table knows', () => {
    const pinned = `node:26.11.0-trixie-slim@sha256:${'a'.repeat(64)}`;
    expect(problemsOf(DOCKERFILE.replace(/node:26-trixie-slim/g, pinned))).toEqual([]);
    expect(problemsOf(DOCKERFILE.replace(/node:26-trixie-slim/g, 'node:28-forky-slim'))).toEqual([]);
  });
});

describe('parsing', () => {
  it('fails on an instruction it does not understand, naming it and its line', () => {
    expect(parseErrorOf(`${DOCKERFILE}\nARG VERSION=1\n`)).toMatch(/^line \d+ \(ARG\): the mirror does not understand ARG/);
    expect(parseErrorOf(DOCKERFILE.replace('COPY src ./src', 'ADD src ./src'))).toMatch(/\(ADD\): the mirror does not understand ADD/);
  });

  it('fails on exec form that is not JSON, which Docker would silently run through a shell', () => {
    expect(parseErrorOf(DOCKERFILE.replace('CMD ["serve"]', "CMD ['serve']"))).toMatch(/looks like exec form but is not a JSON array/);
  });

  it('fails on COPY flags and sources it cannot replay', () => {
    expect(parseErrorOf(DOCKERFILE.replace('COPY src ./src', 'COPY --link src ./src'))).toMatch(/COPY --link is not understood/);
    expect(parseErrorOf(DOCKERFILE.replace('COPY src ./src', 'COPY src/*.ts ./src/'))).toMatch(/wildcards/);
    expect(parseErrorOf(DOCKERFILE.replace('--from=build /app/dist', '--from=nginx:latest /app/dist'))).toMatch(/names no earlier stage/);
  });

  it('joins continuation lines, skipping comments inside them', () => {
    const [stage] = stagesOf('FROM node:26-trixie-slim AS one\nENV A=1 \\\n# a comment\n    B="two words" \\\n\n    D=\\$A\nENV C=$A-${B}\nWORKDIR app\nWORKDIR sub\n');
    expect(stage.name).toBe('one');
        // Docker: variables set by an ENV are visible from the next instruction on.
    expect(stage.config.env).toEqual({ A: '1', B: 'two words', D: '$A', C: '1-two words' });
    expect(stage.config.workdir).toBe('/app/sub');
  });

  it('fails on a variable no ENV of the stage sets (the base image is not there to ask)', () => {
    expect(parseErrorOf('FROM node:26-trixie-slim\nWORKDIR /home/$NODE_USER\n')).toMatch(/\$NODE_USER is not set/);
  });

  it('resolves COPY destinations against WORKDIR and --from against earlier stages', () => {
    const [, runtime] = stagesOf(DOCKERFILE);
    const copies = runtime.steps.filter((step) => step.keyword === 'COPY');
    expect(copies.map(({ from, sources, destination }) => ({ from, sources, destination }))).toEqual([
      { from: 0, sources: ['/app/node_modules'], destination: '/app/node_modules' },
      { from: 0, sources: ['/app/dist'], destination: '/app/dist' },
      { from: null, sources: ['package.json', 'configuration.toml.example'], destination: '/app/' },
    ]);
  });

  it('reads HEALTHCHECK options as Docker does', () => {
    expect(stagesOf('FROM node:26-trixie-slim\nHEALTHCHECK --interval=1m30s --retries=5 CMD curl -f http://localhost/\n')[0].config.healthcheck).toEqual({
      none: false,
      form: 'shell',
      text: 'curl -f http://localhost/',
      options: { interval: 90_000, timeout: 30_000, 'start-period': 0, 'start-interval': 5_000, retries: 5 },
    });
  });
});

describe('RUN steps that act on the operating system', () => {
  it('checks apt-get installs by their commands and does not replay the package index', () => {
    expect(dockerfile.classifyRun('apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*')).toEqual([
      expect.objectContaining({ kind: 'not-replayed', text: 'apt-get update' }),
      expect.objectContaining({ kind: 'check-packages', commands: ['python3', 'make', 'g++'] }),
      expect.objectContaining({ kind: 'not-replayed', text: 'rm -rf /var/lib/apt/lists/*' }),
    ]);
  });

  it('fails on a package it does not know how to check', () => {
    expect(() => dockerfile.classifyRun('apt-get install -y libvips-dev')).toThrow(/libvips-dev/);
  });

  it('relocates mkdir and chown of absolute paths, and runs the rest as written', () => {
    expect(dockerfile.classifyRun('mkdir -p /storage && chown node:node /storage')).toEqual([
      expect.objectContaining({ kind: 'mkdir', paths: ['/storage'] }),
      expect.objectContaining({ kind: 'chown', paths: ['/storage'] }),
    ]);
    expect(dockerfile.classifyRun('npm run build && npm prune --omit=dev')).toEqual([
      { kind: 'run', text: 'npm run build' },
      { kind: 'run', text: 'npm prune --omit=dev' },
    ]);
  });

  it('fails on any other command that names an absolute path, which would act on this machine', () => {
    expect(() => dockerfile.classifyRun('npm ci && cp node_modules/.bin/x /usr/local/bin/')).toThrow(/acts on \/usr\/local\/bin\//);
  });
});

describe('.dockerignore patterns', () => {
  it('matches directories with their contents, globs, ** and exceptions; the last match decides', () => {
    const ignored = dockerfile.dockerignore('# comment\nnode_modules\n*.log\n**/*.tmp\ndocs/**\n!docs/keep.md\n/dist/\n');
    expect(['node_modules/a/b.js', 'x.log', 'a/b/c.tmp', 'docs/x.md', 'dist/main.js'].filter((file) => !ignored(file))).toEqual([]);
    expect(['src/node_modules/a.js', 'src/x.log', 'docs/keep.md', 'distance.txt'].filter(ignored)).toEqual([]);
  });
});

describe('scripts/dockerfile-mirror.mjs --check', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dockerfile-mirror-test-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function check(text: string) {
    const file = path.join(dir, 'Dockerfile');
    fs.writeFileSync(file, text);
    return spawnSync(process.execPath, [MIRROR, '--check', '--dockerfile', file], { encoding: 'utf8' });
  }

  it("passes the project's Dockerfile", () => {
    const result = check(DOCKERFILE);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/requirements met \(--check: not replayed\)/);
    expect(result.status).toBe(0);
  });

  it('fails a Dockerfile without USER, naming it', () => {
    const result = check(edited(/^USER node\n/m));
    expect(result.stderr).toMatch(/FAILED .*does not meet the requirements of issue #8:\n {2}- USER: .*has no USER/);
    expect(result.status).toBe(1);
  });

  it('fails a Dockerfile with an instruction it does not understand, naming it', () => {
    const result = check(`${DOCKERFILE}\nSTOPSIGNAL SIGINT\n`);
    expect(result.stderr).toMatch(/FAILED .*\(STOPSIGNAL\): the mirror does not understand STOPSIGNAL/);
    expect(result.status).toBe(1);
  });
});

describe('Docker-style durations', () => {
  it.each([
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
  ])('%s', (text, ms) => expect(dockerfile.parseDuration(text, 'test')).toBe(ms));

  it('fails on anything else', () => {
    expect(() => dockerfile.parseDuration('30', 'test')).toThrow(/not a duration/);
  });
});

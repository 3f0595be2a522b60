import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadConfig, parseDuration } from '../../../src/config/load-config';
import { CONFIG_SCHEMA, settableKeys } from '../../../src/config/schema';
import { runtimeOf } from '../../helpers/dockerfile';

// docker-compose.yml, docs/scale-out.md's compose example and deploy/registry.service are not run here (compose and systemd as PID 1 are not
// installed): these tests hold them to the Dockerfile and to the configuration schema instead.
const ROOT = path.join(__dirname, '../../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const image = runtimeOf(read('Dockerfile'));
const ENV_NAMES = new Set(settableKeys(CONFIG_SCHEMA).map((key) => key.env));
const SHUTDOWN_TIMEOUT = parseDuration(CONFIG_SCHEMA.shutdown_timeout.default)!;

/** Every REGISTRY_* name in a text, commented-out examples included: each must be a configuration key. */
function registryVariables(text: string): string[] {
  return [...new Set(text.match(/\bREGISTRY_[A-Z0-9_]+/g) ?? [])];
}

describe('docker-compose.yml', () => {
  const text = read('docker-compose.yml');
  const compose = parse(text) as {
    services: Record<string, Record<string, unknown>>;
    volumes?: Record<string, unknown>;
  };
  const service = compose.services.registry as {
    build: string;
    image: string;
    ports: string[];
    volumes: string[];
    environment: Record<string, string>;
    restart: string;
    stop_grace_period: string;
  };

  it('builds the image from this directory and names it', () => {
    expect(Object.keys(compose.services)).toEqual(['registry']);
    expect(service.build).toBe('.');
    expect(service.image).toMatch(/^[a-z0-9./-]+:[\w.-]+$/);
    expect(service.restart).toBe('unless-stopped');
  });

  it('publishes the port the Dockerfile EXPOSEs', () => {
    const [port] = image.expose;
    expect(service.ports).toEqual([`${port}:${port}`]);
  });

  it("mounts a named volume at the image's VOLUME", () => {
    expect(image.volumes).toEqual(['/storage']);
    expect(service.volumes).toEqual(['registry-storage:/storage']);
    expect(Object.keys(compose.volumes ?? {})).toEqual(['registry-storage']);
  });

  it('shows the optional configuration mount where the image reads it (WORKDIR/configuration.toml), read-only', () => {
    const mount = /^\s*#\s*-\s*\.\/configuration\.toml:(\S+?):ro\s*$/m.exec(text);
    expect(mount?.[1]).toBe(path.posix.join(image.workdir, 'configuration.toml'));
  });

  it('names only configuration keys in its environment examples', () => {
    const names = registryVariables(text);
    expect(names.length).toBeGreaterThan(3);
    expect(names.filter((name) => !ENV_NAMES.has(name))).toEqual([]);
    for (const name of Object.keys(service.environment)) expect(ENV_NAMES.has(name)).toBe(true);
  });

  it('gives the registry longer than shutdown_timeout to drain before docker stop sends SIGKILL', () => {
    expect(parseDuration(service.stop_grace_period)!).toBeGreaterThan(SHUTDOWN_TIMEOUT);
  });
});

describe('deploy/registry.service', () => {
  const text = read('deploy/registry.service');
  /** [Service] key → values, in order (Environment= and friends repeat). */
  const service = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1];
    const entry = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (entry && section === 'Service') service.set(entry[1], [...(service.get(entry[1]) ?? []), entry[2]]);
  }
  const one = (key: string) => {
    expect(service.get(key)).toHaveLength(1);
    return service.get(key)![0];
  };
  const environment = Object.fromEntries((service.get('Environment') ?? []).map((value) => value.split(/=(.*)/s).slice(0, 2)));

  it('runs `serve` from the built dist/ as an unprivileged user', () => {
    expect(one('User')).not.toMatch(/^(root|0)$/);
    const workingDirectory = one('WorkingDirectory');
    expect(one('ExecStart')).toBe(`/usr/bin/node ${workingDirectory}/dist/main.js serve`);
    expect(environment.NODE_ENV).toBe('production');
  });

  it('restarts on failure and waits longer than shutdown_timeout after SIGTERM', () => {
    expect(one('Restart')).toBe('on-failure');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(parseDuration(one('TimeoutStopSec'))!).toBeGreaterThan(SHUTDOWN_TIMEOUT);
  });

  it('keeps every storage path in the one directory it may write', () => {
    expect(one('NoNewPrivileges')).toBe('true');
    expect(one('ProtectSystem')).toBe('strict');
    const writable = one('ReadWritePaths');
    expect(writable).toBe(`/var/lib/${one('StateDirectory')}`);
    const storageKeys = settableKeys(CONFIG_SCHEMA).filter((key) => key.spec.type === 'path' && key.spec.is !== 'input');
    for (const key of storageKeys) expect([key.env, environment[key.env]]).toEqual([key.env, expect.stringMatching(new RegExp(`^${writable}/`))]);
  });

  it('names only configuration keys', () => {
    expect(registryVariables(text).filter((name) => !ENV_NAMES.has(name))).toEqual([]);
  });

  it('passes systemd-analyze verify without a warning', () => {
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (analyze.error) throw new Error('systemd-analyze is not installed: apt-get install systemd');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-unit-'));
    try {
      // verify requires ExecStart's program to exist: the node running this test stands in for /usr/bin/node.
      const unit = path.join(dir, 'oci-cache-registry.service');
      fs.writeFileSync(unit, text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
      const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      expect(result.stderr + result.stdout).toBe('');
      expect(result.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("docs/scale-out.md's compose example", () => {
  const doc = read('docs/scale-out.md');
  const block = (language: string) => {
    const start = doc.indexOf('### A docker compose example');
    const match = new RegExp('```' + language + '\\n([\\s\\S]*?)```').exec(doc.slice(start));
    if (!match) throw new Error(`no ${language} block after "A docker compose example" in docs/scale-out.md`);
    return match[1];
  };
  const compose = parse(block('yaml')) as { services: Record<string, Record<string, unknown>> };
  const registry = compose.services.registry as { image: string; environment: Record<string, string>; deploy: { replicas: number } };
  const balancer = block('nginx');

  it('runs the image docker-compose.yml builds, three of it', () => {
    const single = parse(read('docker-compose.yml')) as { services: { registry: { image: string } } };
    expect(registry.image).toBe(single.services.registry.image);
    expect(registry.deploy.replicas).toBe(3);
  });

  it("sets only configuration keys, which load as the bucket and PostgreSQL, listening where nginx sends", () => {
    const names = Object.keys(registry.environment);
    expect(names.filter((name) => !ENV_NAMES.has(name))).toEqual([]);
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'scale-out-example-'));
    try {
      // As the container sees it: the image's ENV, then the service's environment over it.
      const config = loadConfig({ cwd, env: { ...image.env, ...registry.environment } });
      expect(config.database).toMatch(/^postgres:\/\/registry:registry@postgres:5432\//);
      expect(config.storage.backend).toBe('s3');
      expect(config.storage.s3).toMatchObject({ endpoint: 'http://minio:9000', bucket: 'registry', path_style: true });
      expect(config.trust_proxy).toBe(true);
      expect(config.host).toBe('0.0.0.0');
      expect(image.expose).toEqual([config.port]);
      expect(balancer).toContain(`server registry:${config.port};`);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('gives the S3 service the keys the registry uses, and PostgreSQL the database it names', () => {
    const minio = compose.services.minio as { environment: Record<string, string> };
    expect(minio.environment.MINIO_ROOT_USER).toBe(registry.environment.REGISTRY_STORAGE_S3_ACCESS_KEY_ID);
    expect(minio.environment.MINIO_ROOT_PASSWORD).toBe(registry.environment.REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY);
    const postgres = (compose.services.postgres as { environment: Record<string, string> }).environment;
    expect(registry.environment.REGISTRY_DATABASE).toBe(
      `postgres://${postgres.POSTGRES_USER}:${postgres.POSTGRES_PASSWORD}@postgres:5432/${postgres.POSTGRES_DB}`,
    );
  });

  it('streams uploads through nginx without a body limit', () => {
    for (const directive of ['client_max_body_size 0;', 'proxy_request_buffering off;', 'proxy_buffering off;']) {
      expect(balancer).toContain(directive);
    }
  });
});

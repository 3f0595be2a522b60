import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeReadOnly } from '../helpers/read-only';
import { MAIN, ServerProcess, startServerProcess } from '../helpers/server-process';

const VERSION = (JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as { version: string }).version;

let cwd: string;
beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
});
beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-test-'));
});
afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));

/** The built command line, as `npm start` and the Docker image run it, in a temp working directory. */
function registry(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [MAIN, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 20_000,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('registry --version and --help', () => {
  test.each([['--version'], ['-v']])('%s prints the package version', (flag) => {
    expect(registry([flag])).toEqual({ status: 0, stdout: `oci-cache-registry ${VERSION}\n`, stderr: '' });
  });

  test('--help lists every command and how keys are set', () => {
    const { status, stdout } = registry(['--help']);
    expect(status).toBe(0);
    for (const command of ['serve', 'gc [--dry-run]', 'verify', 'config check', '--config <file>', '--version']) {
      expect(stdout).toContain(command);
    }
    expect(stdout).toContain('REGISTRY_<KEY>');
  });

  test('an unknown command fails with exit 1 and the usage on stderr, starting nothing', () => {
    const { status, stdout, stderr } = registry(['srve']);
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^unknown command "srve"\nusage: registry/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });
});

describe('registry config check', () => {
  test('with no file: the embedded defaults, OK, a note that it is open to everyone, and nothing created', () => {
    const { status, stdout, stderr } = registry(['config', 'check']);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout).toContain('port = 5000\n');
    expect(stdout).toContain(`registry_storage = "${path.join(cwd, 'storage/registry')}"`);
    expect(stdout).toContain('[metrics]');
    expect(stdout).toContain('note: no [auth] htpasswd: anyone who can reach the registry may pull, push and delete');
    expect(stdout).toMatch(/configuration OK\n$/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  test('shows what the file, the environment and flags set, in that precedence', () => {
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), 'port = 6000\nlog_level = "warn"\n[gc]\ngrace = "2h"\n');
    const { status, stdout } = registry(['config', 'check', '--gc.grace', '10m'], { REGISTRY_PORT: '6001' });
    expect(status).toBe(0);
    expect(stdout).toContain('port = 6001\n');
    expect(stdout).toContain('log_level = "warn"\n');
    expect(stdout).toMatch(/\[gc\][^[]*grace = 600000\n/); // durations in force, in ms
  });

  test('censors upstream passwords, the GitHub token and the object store secret', () => {
    fs.writeFileSync(
      path.join(cwd, 'configuration.toml'),
      '[github]\ntoken = "ghp_secret-github-token"\n\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "https://upstream.test"\nusername = "bot"\npassword = "upstream-secret-password"\n',
    );
    const s3 = { REGISTRY_STORAGE_BACKEND: 's3', REGISTRY_STORAGE_S3_BUCKET: 'images', REGISTRY_STORAGE_S3_ACCESS_KEY_ID: 'AKIAKEY', REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY: 's3-secret-key' };
    const { status, stdout } = registry(['config', 'check'], s3);
    expect(status).toBe(0);
    expect(stdout).not.toContain('ghp_secret-github-token');
    expect(stdout).not.toContain('upstream-secret-password');
    expect(stdout).not.toContain('s3-secret-key');
    expect(stdout).toContain('secret_access_key = "[redacted]"');
    expect(stdout).toContain('access_key_id = "AKIAKEY"');
    expect(stdout).toContain('password = "[redacted]"');
    expect(stdout).toContain('token = "[redacted]"');
    expect(stdout).toContain('username = "bot"');
  });

  test('notes what an s3 backend asks of the operator, without connecting to it', () => {
    const s3 = {
      REGISTRY_STORAGE_BACKEND: 's3',
      REGISTRY_STORAGE_S3_ENDPOINT: 'http://127.0.0.1:9',
      REGISTRY_STORAGE_S3_BUCKET: 'images',
      REGISTRY_STORAGE_S3_PREFIX: 'team/',
      REGISTRY_STORAGE_S3_REDIRECT: 'true',
    };
    const { status, stdout } = registry(['config', 'check'], s3);
    expect(status).toBe(0);
    expect(stdout).toContain('note: storage: s3://images/team/ at http://127.0.0.1:9;');
    expect(stdout).toContain('note: storage: one registry per bucket prefix and index');
    expect(stdout).toContain('note: storage.s3.redirect: blob GETs answer 307 to presigned URLs of http://127.0.0.1:9: every client must be able to reach it');
    expect(stdout).toContain('note: proxy.min_free = "100MiB" does not apply with storage.backend = "s3"');
    expect(stdout).toContain('configuration OK');
  });

  test('a wrong value fails with exit 1 and one line naming the key and where it came from', () => {
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), 'port = "five thousand"\n');
    const { status, stdout, stderr } = registry(['config', 'check']);
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('port: expected an integer from 0 to 65535, got "five thousand"');
  });

  test('an unreadable htpasswd file and an unwritable storage directory are problems: exit 1', () => {
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), '[auth]\nhtpasswd = "missing.htpasswd"\n');
    fs.writeFileSync(path.join(cwd, 'not-a-directory'), '');
    const { status, stdout } = registry(['config', 'check', '--proxy_storage', 'not-a-directory/proxy']);
    expect(status).toBe(1);
    expect(stdout).toMatch(/problem: auth\.htpasswd: cannot read ".*missing\.htpasswd"/);
    expect(stdout).toContain(`problem: proxy_storage: ${path.join(cwd, 'not-a-directory')} is not a directory`);
    expect(stdout).toMatch(/2 problem\(s\)\n$/);
  });

  test('accel_redirect gets a note that only nginx may reach the port', () => {
    const { status, stdout } = registry(['config', 'check'], { REGISTRY_ACCEL_REDIRECT: '/_blobs/' });
    expect(status).toBe(0);
    expect(stdout).toContain('accel_redirect = "/_blobs/"\n');
    expect(stdout).toContain(
      'note: accel_redirect = "/_blobs/": blob GETs name files for nginx (X-Accel-Redirect) and send no bytes; ' +
        'only nginx with deploy/nginx-accel.conf should reach this port, and it must be able to read registry_storage and proxy_storage',
    );
  });

  test('config without check is a usage error', () => {
    const { status, stderr } = registry(['config']);
    expect(status).toBe(1);
    expect(stderr).toContain('usage: registry config check');
  });
});

describe('registry serve', () => {
  let server: ServerProcess | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });
  /** The JSON log lines the server wrote so far (stdout also carries the banner). */
  const logLines = () =>
    server!
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

  test('says where it listens, where data goes, which upstreams it caches and that it is open, then serves', async () => {
    fs.writeFileSync(
      path.join(cwd, 'configuration.toml'),
      '[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "http://127.0.0.1:9"\nusername = "bot"\npassword = "upstream-secret-password"\n',
    );
    server = await startServerProcess(cwd, ['--log_level', 'info', '--log_format', 'json']);
    const banner = server.output();
    expect(banner).toMatch(new RegExp(`^oci-cache-registry ${VERSION.replace(/\./g, '\\.')} listening on http://127\\.0\\.0\\.1:\\d+\\n`));
    expect(banner).toContain(`  registry_storage: ${path.join(cwd, 'storage/registry')}\n`);
    expect(banner).toContain(`  database: ${path.join(cwd, 'storage/index.db')}\n`);
    expect(banner).toContain('configured upstreams: upstream.test (http://127.0.0.1:9, as bot)');
    expect(banner).toContain('  health: /healthz, /readyz; metrics: /metrics\n');
    expect(banner).toContain('WARNING: no [auth] htpasswd configured: anyone who can reach this registry may pull, push and delete');

    expect((await fetch(`${server.url}/v2/`)).status).toBe(200);
    await settle();
    // The request log is JSON on stderr, one line per request.
    expect(logLines().find((line) => line.msg === 'request')).toMatchObject({
      level: 'info',
      method: 'GET',
      route: '/v2/',
      path: '/v2/',
      status: 200,
    });
    expect(server.output()).not.toContain('upstream-secret-password');
  });

  test('[metrics] listen: the banner names the listener it got, and it serves /metrics', async () => {
    server = await startServerProcess(cwd, ['--metrics.listen', '127.0.0.1:0']);
    const metricsUrl = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)\n/.exec(server.output())?.[1];
    expect(metricsUrl).toBeDefined();
    expect(metricsUrl).not.toContain(':0/');
    const response = await fetch(metricsUrl!);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('# TYPE registry_http_requests_total counter');
  });

  test('healthcheck: exit 0 while the configured registry is ready, 1 with the reason when not', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const down = registry(['healthcheck', '--port', String(closedPort)]);
    expect(down.status).toBe(1);
    expect(down.stderr).toMatch(new RegExp(`^not ready: http://127\\.0\\.0\\.1:${closedPort}/readyz: .*ECONNREFUSED`));

    server = await startServerProcess(cwd, ['--host', '0.0.0.0']);
    const { port } = new URL(server.url);
    // The port comes from the file, as a user of the Docker image may set it: the probe has none of its own.
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), `host = "0.0.0.0"\nport = ${port}\n`);
    expect(registry(['healthcheck'])).toEqual({ status: 0, stdout: '', stderr: '' });
    // Storage that takes no writes makes it unhealthy, with /readyz's answer.
    const restore = makeReadOnly(path.join(cwd, 'storage/registry'));
    try {
      const unready = registry(['healthcheck']);
      expect(unready.status).toBe(1);
      expect(unready.stderr).toContain(`not ready: http://127.0.0.1:${port}/readyz answered 503:`);
      expect(unready.stderr).toContain('registry_storage');
    } finally {
      restore();
    }
  });

  test('log_format pretty writes lines for people', async () => {
    server = await startServerProcess(cwd, ['--log_level', 'info', '--log_format', 'pretty']);
    await fetch(`${server.url}/v2/`);
    await settle();
    expect(server.output()).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: request \{.*"route":"\/v2\/"/m);
  });
});

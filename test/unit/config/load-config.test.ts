import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, ensureStorageDirectories, loadConfig, parseSize, resolveSchema } from '../../../src/config/load-config';
import { CONFIG_SCHEMA, Schema, settableKeys } from '../../../src/config/schema';
import { describeDatabase } from '../../../src/config/config';
import { checkConfig } from '../../../src/check-config';

const EXAMPLE_FILE = path.join(__dirname, '../../../configuration.toml.example');

let cwd: string;

beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'config-test-'));
});

afterEach(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

function writeConfig(text: string, name = 'configuration.toml'): string {
  const file = path.join(cwd, name);
  fs.writeFileSync(file, text);
  return file;
}

/** Runs fn, asserts it throws a one-line ConfigError, and returns the message. */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const { message } = err as ConfigError;
    expect(message).toMatch(/^configuration error: /);
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('uses the embedded defaults when there is no configuration.toml', () => {
    expect(loadConfig({ cwd, env: {} })).toEqual({
      host: '127.0.0.1',
      port: 5000,
      registry_storage: path.join(cwd, 'storage/registry'),
      temporary_registry_storage: path.join(cwd, 'storage/_tmp'),
      max_upload_sessions: 1000,
      proxy_storage: path.join(cwd, 'storage/proxy'),
      database: path.join(cwd, 'storage/index.db'),
      accel_redirect: '',
      min_free_space: 100 * 1024 * 1024,
      max_manifest_size: 4 * 1024 * 1024,
      public_url: '',
      client_idle_timeout: 300_000,
      log_level: 'info',
      log_format: 'auto',
      trust_proxy: false,
      shutdown_timeout: 30_000,
      metrics: { enabled: true, listen: '' },
      proxy: {
        enabled: true,
        allowed_upstreams: [],
        tag_ttl: 300_000,
        not_found_ttl: 30_000,
        timeout: 30_000,
        concurrency: 8,
        max_concurrent_downloads: 16,
        max_age: 0,
        max_size: 0,
        min_free: '100MiB',
        sync_concurrency: 2,
        sync_bandwidth: 0,
        sync: [],
        serve_deleted: 'pinned',
        rate_limit_reserve: 10,
        upstreams: [],
        pin: [],
      },
      mirror: [],
      storage: {
        backend: 'filesystem',
        s3: {
          endpoint: '',
          region: 'us-east-1',
          bucket: '',
          prefix: '',
          path_style: false,
          access_key_id: '',
          secret_access_key: '',
          redirect: false,
          redirect_expiry: 300_000,
        },
      },
      gc: { interval: 3_600_000, grace: 3_600_000, upload_ttl: 86_400_000, delete_untagged: false },
      github: { token: '', api_url: 'https://api.github.com', users: [], orgs: [], cache_ttl: 600_000 },
      auth: {
        htpasswd: '',
        anonymous: 'none',
        challenge: 'auto',
        realm: 'registry',
        token: false,
        token_ttl: 300_000,
        max_uploads: 32,
        groups: [],
        rules: [],
      },
      ui: { enabled: true, path: '/ui/' },
    });
  });

  it('reads configuration.toml from the working directory', () => {
    writeConfig(`
      host = "0.0.0.0"
      port = 6000
      max_manifest_size = "512KB"
      public_url = "https://registry.example.com/"
      log_level = "debug"
    `);
    const config = loadConfig({ cwd, env: {} });
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 6000,
      max_manifest_size: 512_000,
      public_url: 'https://registry.example.com',
      log_level: 'debug',
    });
  });

  it('reads the file named by --config instead', () => {
    writeConfig('port = 6000');
    const file = writeConfig('port = 7000', 'other.toml');
    expect(loadConfig({ cwd, env: {}, configPath: 'other.toml' }).port).toBe(7000);
    expect(loadConfig({ cwd: os.tmpdir(), env: {}, configPath: file }).port).toBe(7000);
  });

  it('lets the environment override the file, parsing values by type', () => {
    writeConfig('port = 6000\nhost = "0.0.0.0"\nmax_manifest_size = 1000');
    const config = loadConfig({
      cwd,
      env: { REGISTRY_PORT: '6001', REGISTRY_MAX_MANIFEST_SIZE: '20GiB', REGISTRY_PUBLIC_URL: 'http://localhost:5000' },
    });
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 6001,
      max_manifest_size: 20 * 2 ** 30,
      public_url: 'http://localhost:5000',
    });
  });

  it('lets the command line override the environment', () => {
    writeConfig('port = 6000');
    const config = loadConfig({
      cwd,
      env: { REGISTRY_PORT: '6001', REGISTRY_HOST: '10.0.0.1' },
      overrides: { port: '5001', host: '0.0.0.0' },
    });
    expect(config.port).toBe(5001);
    expect(config.host).toBe('0.0.0.0');
  });

  it('resolves relative paths against the working directory and keeps absolute ones', () => {
    const absolute = path.join(os.tmpdir(), 'elsewhere', 'registry');
    writeConfig(`registry_storage = ${JSON.stringify(absolute)}\ndatabase = "data/../db/index.db"`);
    const config = loadConfig({ cwd, env: { REGISTRY_PROXY_STORAGE: 'cache' } });
    expect(config.registry_storage).toBe(absolute);
    expect(config.database).toBe(path.join(cwd, 'db/index.db'));
    expect(config.proxy_storage).toBe(path.join(cwd, 'cache'));
    expect(config.temporary_registry_storage).toBe(path.join(cwd, 'storage/_tmp'));
  });

  it('ignores REGISTRY_* variables that name no key', () => {
    const env = {
      REGISTRY_HTTP_ADDR: ':5000',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/var/lib/registry',
      REGISTRY_PORTS: 'not a number',
    };
    expect(loadConfig({ cwd, env })).toEqual(loadConfig({ cwd, env: {} }));
  });

  it('returns a deeply frozen configuration', () => {
    const config = loadConfig({ cwd, env: {} });
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('takes the GitHub token from GITHUB_TOKEN unless REGISTRY_GITHUB_TOKEN is set', () => {
    expect(loadConfig({ cwd, env: { GITHUB_TOKEN: 'ghp_a' } }).github.token).toBe('ghp_a');
    expect(loadConfig({ cwd, env: { GITHUB_TOKEN: 'ghp_a', REGISTRY_GITHUB_TOKEN: 'ghp_b' } }).github.token).toBe('ghp_b');
    writeConfig('[github]\ntoken = "ghp_file"\n');
    expect(loadConfig({ cwd, env: {} }).github.token).toBe('ghp_file');
  });

  it('resolves [auth] htpasswd against the working directory, and keeps "" as no auth', () => {
    writeConfig('[auth]\nhtpasswd = "users.htpasswd"\n[[auth.rules]]\nprefix = "team/"\npush = ["alice"]\n');
    const config = loadConfig({ cwd, env: {} });
    expect(config.auth.htpasswd).toBe(path.join(cwd, 'users.htpasswd'));
    expect(config.auth.rules).toEqual([{ prefix: 'team/', pull: [], push: ['alice'], delete: [] }]);
    expect(loadConfig({ cwd, env: { REGISTRY_AUTH_HTPASSWD: '' } }).auth.htpasswd).toBe('');
  });

  it('treats configuration.toml.example as the defaults', () => {
    expect(loadConfig({ cwd, env: {}, configPath: EXAMPLE_FILE })).toEqual(loadConfig({ cwd, env: {} }));
  });

  it('documents every key and its environment variable in configuration.toml.example', () => {
    const example = fs.readFileSync(EXAMPLE_FILE, 'utf8');
    for (const key of settableKeys(CONFIG_SCHEMA)) {
      // A key of a [section] is written under that section's header, by its own name.
      const section = key.path.slice(0, -1).join('.');
      const scope = section ? example.slice(example.indexOf(`\n[${section}]\n`)) : example;
      expect(scope).toMatch(new RegExp(`^${key.path[key.path.length - 1]} = `, 'm'));
      expect(example).toContain(`Env: ${key.env}\n`);
    }
  });
});

describe('loadConfig errors: one line naming the key and where the value came from', () => {
  it('rejects a wrong type in the file', () => {
    const file = writeConfig('port = "5000"');
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toBe(
      `configuration error: port: expected an integer from 0 to 65535, got "5000" (from ${file})`,
    );
  });

  it('rejects an s3 backend without a bucket, with half its credentials, or with accel_redirect', () => {
    const s3 = { REGISTRY_STORAGE_BACKEND: 's3', REGISTRY_STORAGE_S3_BUCKET: 'images' };
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_STORAGE_BACKEND: 's3' } }))).toBe(
      'configuration error: storage.s3.bucket: required with storage.backend = "s3", but not set',
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { ...s3, REGISTRY_STORAGE_S3_ACCESS_KEY_ID: 'key' } }))).toMatch(
      /^configuration error: storage\.s3: access_key_id and secret_access_key go together/,
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { ...s3, REGISTRY_ACCEL_REDIRECT: '/_blobs/' } }))).toMatch(
      /^configuration error: accel_redirect: nginx sends files, and with storage\.backend = "s3" there are none/,
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { ...s3, REGISTRY_STORAGE_S3_BUCKET: 'Images' } }))).toMatch(
      /^configuration error: storage\.s3\.bucket: expected a bucket name/,
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { ...s3, REGISTRY_STORAGE_S3_PREFIX: '/abs' } }))).toMatch(
      /^configuration error: storage\.s3\.prefix: expected a key prefix/,
    );
    expect(loadConfig({ cwd, env: { ...s3, REGISTRY_STORAGE_S3_PREFIX: 'team/a/' } }).storage.s3.prefix).toBe('team/a/');
  });

  it('rejects a [ui] path without its slashes or one the registry API owns', () => {
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_UI_PATH: 'ui' } }))).toMatch(/^configuration error: ui\.path: /);
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_UI_PATH: '/v2/ui/' } }))).toMatch(/^configuration error: ui\.path: /);
    expect(loadConfig({ cwd, env: { REGISTRY_UI_PATH: '/console/' } }).ui.path).toBe('/console/');
  });

  it('rejects an out-of-range or unparseable environment value', () => {
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_PORT: 'abc' } }))).toBe(
      'configuration error: port: expected an integer from 0 to 65535, got "abc" (from REGISTRY_PORT)',
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_PORT: '70000' } }))).toContain('port:');
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_MAX_MANIFEST_SIZE: '4 lbs' } }))).toMatch(
      /^configuration error: max_manifest_size: .*got "4 lbs" \(from REGISTRY_MAX_MANIFEST_SIZE\)$/,
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_LOG_LEVEL: 'verbose' } }))).toBe(
      'configuration error: log_level: expected one of debug, info, warn, error, silent, got "verbose" (from REGISTRY_LOG_LEVEL)',
    );
  });

  it('rejects a bad command-line value and an unknown command-line key', () => {
    expect(configErrorOf(() => loadConfig({ cwd, env: {}, overrides: { public_url: 'ftp://example.com' } }))).toBe(
      'configuration error: public_url: expected an http or https URL, or "" for none, got "ftp://example.com" ' +
        '(from --public_url on the command line)',
    );
    expect(configErrorOf(() => loadConfig({ cwd, env: {}, overrides: { prot: '5001' } }))).toBe(
      'configuration error: prot: unknown key (from --prot on the command line)',
    );
  });

  it('takes accel_redirect as a path prefix of plain segments outside /v2/, or "" (off, the default)', () => {
    expect(loadConfig({ cwd, env: {} }).accel_redirect).toBe('');
    expect(loadConfig({ cwd, env: { REGISTRY_ACCEL_REDIRECT: '/_blobs/' } }).accel_redirect).toBe('/_blobs/');
    expect(loadConfig({ cwd, env: { REGISTRY_ACCEL_REDIRECT: '/internal/registry-files/' } }).accel_redirect).toBe('/internal/registry-files/');
    for (const value of ['_blobs/', '/_blobs', '/', '/../', '/a/./', '/v2/files/', '/a b/', '/_blobs/?x=']) {
      expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_ACCEL_REDIRECT: value } }))).toBe(
        'configuration error: accel_redirect: expected a path prefix such as "/_blobs/" (starting and ending with "/", ' +
          `not under /v2/), or "" for off, got ${JSON.stringify(value)} (from REGISTRY_ACCEL_REDIRECT)`,
      );
    }
  });

  it('rejects an unknown key in the file', () => {
    const file = writeConfig('prot = 5001');
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toBe(
      `configuration error: prot: unknown key (from ${file})`,
    );
  });

  it('rejects a table where a value is expected', () => {
    const file = writeConfig('[port]\nnumber = 1');
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toBe(
      `configuration error: port: expected an integer from 0 to 65535, got a table (from ${file})`,
    );
  });

  it('rejects an unparseable file with its line and column', () => {
    const file = writeConfig('port = 5000\nhost = [');
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toMatch(
      new RegExp(`^configuration error: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid TOML at line 2, column \\d+: `),
    );
  });

  it('rejects an unusable path', () => {
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_DATABASE: '' } }))).toBe(
      'configuration error: database: expected a non-empty path, got "" (from REGISTRY_DATABASE)',
    );
  });

  it('rejects a missing file named by --config', () => {
    const message = configErrorOf(() => loadConfig({ cwd, env: {}, configPath: 'missing.toml' }));
    expect(message).toContain(path.join(cwd, 'missing.toml'));
    expect(message).toContain('ENOENT');
    expect(message).toContain('--config');
  });
});

describe('parseSize', () => {
  it.each([
    ['4194304', 4194304],
    ['512B', 512],
    ['512KB', 512_000],
    ['4MiB', 4 * 2 ** 20],
    ['4 mib', 4 * 2 ** 20],
    ['20GiB', 20 * 2 ** 30],
    ['1.5KiB', 1536],
    ['2TB', 2e12],
  ])('parses %s', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'MiB', '-1', '4M', '4 lbs', '0.3B', '1.5'])('rejects %j', (text) => {
    expect(parseSize(text)).toBeNull();
  });

  it('accepts whole non-negative numbers only', () => {
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize(-1)).toBeNull();
    expect(parseSize(1.5)).toBeNull();
  });
});

describe('resolveSchema: sections and arrays of tables', () => {
  const schema: Schema = {
    port: { type: 'integer', default: 5000, min: 0, max: 65535, description: 'port' },
    proxy: {
      type: 'section',
      description: 'pull-through cache',
      keys: {
        enabled: { type: 'boolean', default: false, description: 'on or off' },
        upstreams: {
          type: 'tables',
          description: 'registries to cache',
          keys: { url: { type: 'url', default: '', description: 'upstream origin' } },
        },
      },
    },
  };
  const origin = '/etc/registry.toml';

  it('reads a section and an array of tables from the file and fills defaults', () => {
    const table = { proxy: { upstreams: [{ url: 'https://ghcr.io/' }, {}] } };
    expect(resolveSchema(schema, { cwd, file: { table, origin }, env: {}, overrides: {} })).toEqual({
      port: 5000,
      proxy: { enabled: false, upstreams: [{ url: 'https://ghcr.io' }, { url: '' }] },
    });
  });

  it('overrides section keys as REGISTRY_<SECTION>_<KEY> and by dotted name on the command line', () => {
    const fromEnv = resolveSchema(schema, { cwd, env: { REGISTRY_PROXY_ENABLED: '1' }, overrides: {} });
    expect(fromEnv.proxy).toEqual({ enabled: true, upstreams: [] });
    const fromFlag = resolveSchema(schema, {
      cwd,
      env: { REGISTRY_PROXY_ENABLED: 'true' },
      overrides: { 'proxy.enabled': 'false' },
    });
    expect(fromFlag.proxy).toEqual({ enabled: false, upstreams: [] });
  });

  it('names nested keys with dots and indexes in errors', () => {
    const unknown = { proxy: { upstream: [] } };
    expect(configErrorOf(() => resolveSchema(schema, { cwd, file: { table: unknown, origin }, env: {}, overrides: {} }))).toBe(
      `configuration error: proxy.upstream: unknown key (from ${origin})`,
    );
    const badUrl = { proxy: { upstreams: [{ url: 'https://ghcr.io' }, { url: 'ghcr.io' }] } };
    expect(configErrorOf(() => resolveSchema(schema, { cwd, file: { table: badUrl, origin }, env: {}, overrides: {} }))).toBe(
      `configuration error: proxy.upstreams[1].url: expected an http or https URL, or "" for none, got "ghcr.io" (from ${origin})`,
    );
    expect(configErrorOf(() => resolveSchema(schema, { cwd, env: { REGISTRY_PROXY_ENABLED: 'yes' }, overrides: {} }))).toBe(
      'configuration error: proxy.enabled: expected true, false, 1 or 0, got "yes" (from REGISTRY_PROXY_ENABLED)',
    );
  });

  it('refuses a schema where two keys share an environment variable', () => {
    const clash: Schema = {
      proxy_storage: { type: 'string', default: '', description: 'top level' },
      proxy: { type: 'section', description: 'section', keys: { storage: { type: 'string', default: '', description: 'nested' } } },
    };
    expect(() => settableKeys(clash)).toThrow(/REGISTRY_PROXY_STORAGE/);
  });
});

describe('ensureStorageDirectories', () => {
  it('creates the storage directories and the database directory', () => {
    const config = loadConfig({ cwd, env: { REGISTRY_DATABASE: 'db/nested/index.db' } });
    ensureStorageDirectories(config);
    for (const directory of [
      config.registry_storage,
      config.temporary_registry_storage,
      config.proxy_storage,
      path.join(cwd, 'db/nested'),
    ]) {
      expect(fs.statSync(directory).isDirectory()).toBe(true);
    }
    expect(fs.existsSync(config.database)).toBe(false);
    ensureStorageDirectories(config); // existing directories are fine
  });

  it('fails naming the key when a directory cannot be created', () => {
    fs.writeFileSync(path.join(cwd, 'file'), '');
    const config = loadConfig({ cwd, env: {}, overrides: { proxy_storage: 'file/proxy' } });
    expect(configErrorOf(() => ensureStorageDirectories(config))).toBe(
      `configuration error: proxy_storage: cannot create directory "${path.join(cwd, 'file/proxy')}": ENOTDIR: not a directory`,
    );
  });

  it('takes a postgres:// database as a URL, not a path: nothing is created for it, and it is shown without its password', () => {
    const url = 'postgres://registry:s3cret@db.example.com:5432/registry';
    const config = loadConfig({ cwd, env: { REGISTRY_DATABASE: url } });
    expect(config.database).toBe(url);
    ensureStorageDirectories(config);
    expect(fs.readdirSync(cwd).filter((entry) => entry.startsWith('postgres'))).toEqual([]);
    expect(describeDatabase(config.database)).toBe('postgres://registry:***@db.example.com:5432/registry');
    const check = checkConfig(config);
    expect(check.effective).not.toContain('s3cret');
    expect(check.notes.join('\n')).toContain('PostgreSQL at postgres://registry:***@db.example.com:5432/registry');
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_DATABASE: 'postgres://[bad' } }))).toMatch(/database: .*postgres:\/\/user:password@host:port\/database/);
  });

  it('fails naming the key when the database path is a directory', () => {
    const config = loadConfig({ cwd, env: {}, overrides: { database: 'storage' } });
    expect(configErrorOf(() => ensureStorageDirectories(config))).toBe(
      `configuration error: database: "${path.join(cwd, 'storage')}" is a directory, expected a file`,
    );
  });
});

describe('[proxy] section', () => {
  it('reads durations, lists and upstream tables from the file', () => {
    writeConfig(`
[proxy]
tag_ttl = "90s"
timeout = 12
allowed_upstreams = ["ghcr.io", "quay.io"]

[[proxy.upstreams]]
host = "docker.io"
url = "https://registry-1.docker.io/"
aliases = ["hub"]
username = "me"
password = "secret"
`);
    const { proxy } = loadConfig({ cwd, env: {} });
    expect(proxy.tag_ttl).toBe(90_000);
    expect(proxy.timeout).toBe(12_000);
    expect(proxy.allowed_upstreams).toEqual(['ghcr.io', 'quay.io']);
    expect(proxy.upstreams).toEqual([
      {
        host: 'docker.io',
        url: 'https://registry-1.docker.io',
        urls: ['https://registry-1.docker.io'],
        aliases: ['hub'],
        username: 'me',
        password: 'secret',
      },
    ]);
  });

  it('reads [[proxy.upstreams]] urls, tried in order: url is the first', () => {
    writeConfig('[[proxy.upstreams]]\nhost = "docker.io"\nurls = ["https://mirror.gcr.io/", "https://registry-1.docker.io"]\n');
    const [upstream] = loadConfig({ cwd, env: {} }).proxy.upstreams;
    expect(upstream.urls).toEqual(['https://mirror.gcr.io', 'https://registry-1.docker.io']);
    expect(upstream.url).toBe('https://mirror.gcr.io');
  });

  it.each([
    ['url = "https://a.test"\nurls = ["https://b.test"]', 'proxy.upstreams[0]: set exactly one of url (one URL) and urls (several, tried in order)'],
    ['urls = []', 'proxy.upstreams[0]: set exactly one of url (one URL) and urls (several, tried in order)'],
    ['urls = ["https://a.test", "ftp://b.test"]', 'proxy.upstreams[0].urls: expected http or https URLs, got "ftp://b.test"'],
    ['urls = ["https://a.test", "https://a.test/"]', 'proxy.upstreams[0].urls: https://a.test is listed twice'],
  ])('refuses [[proxy.upstreams]] with %s', (lines, problem) => {
    const file = writeConfig(`[[proxy.upstreams]]\nhost = "upstream.test"\n${lines}\n`);
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toBe(`configuration error: ${problem} (from ${file})`);
  });

  it('takes section keys from REGISTRY_PROXY_<KEY>, lists comma-separated', () => {
    const { proxy } = loadConfig({
      cwd,
      env: { REGISTRY_PROXY_TAG_TTL: '500ms', REGISTRY_PROXY_ALLOWED_UPSTREAMS: 'ghcr.io, quay.io', REGISTRY_PROXY_ENABLED: '0' },
    });
    expect(proxy).toMatchObject({ tag_ttl: 500, allowed_upstreams: ['ghcr.io', 'quay.io'], enabled: false });
  });

  it('names a bad duration and a missing upstream url in one line', () => {
    expect(configErrorOf(() => loadConfig({ cwd, env: { REGISTRY_PROXY_TAG_TTL: 'soon' } }))).toBe(
      'configuration error: proxy.tag_ttl: expected a duration such as 30, "30s", "5m", "1h" or "500ms", got "soon" (from REGISTRY_PROXY_TAG_TTL)',
    );
    const file = writeConfig('[[proxy.upstreams]]\nhost = "upstream.test"\n');
    expect(configErrorOf(() => loadConfig({ cwd, env: {} }))).toBe(
      `configuration error: proxy.upstreams[0]: set exactly one of url (one URL) and urls (several, tried in order) (from ${file})`,
    );
  });
});

import { ProxyConfig } from '../../../src/config/config';
import { RegistryError } from '../../../src/oci/errors';
import { NameSource, storedName } from '../../../src/config/stored-names';

function proxyConfig(overrides: Partial<ProxyConfig> = {}): ProxyConfig {
  return {
    enabled: true,
    allowed_upstreams: [],
    tag_ttl: 300_000,
    not_found_ttl: 30_000,
    timeout: 30_000,
    concurrency: 8,
    max_concurrent_downloads: 16,
    max_age: 0,
    max_size: 0,
    min_free: "100MiB",
    sync_concurrency: 2,
    sync_bandwidth: 0,
    sync: [],
    serve_deleted: 'pinned',
    rate_limit_reserve: 10,
    pin: [],
    upstreams: [],
    ...overrides,
  };
}

const WITH_ALIASES = proxyConfig({
  upstreams: [
    { host: 'docker.io', url: 'http://127.0.0.1:1', urls: ['http://127.0.0.1:1'], aliases: ['hub'], username: '', password: '' },
    { host: 'harbor.lan', url: 'http://127.0.0.1:2', urls: ['http://127.0.0.1:2'], aliases: ['harbor'], username: '', password: '' },
  ],
});

function errorCode(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof RegistryError) return error.code;
    throw error;
  }
  return undefined;
}

describe('storedName: every spelling of a repository to the name its content is stored under', () => {
  test.each<[string, NameSource, string]>([
    ['proxy/docker.io/library/alpine', {}, 'proxy/docker.io/library/alpine'],
    ['proxy/index.docker.io/library/alpine', {}, 'proxy/docker.io/library/alpine'],
    ['proxy/registry-1.docker.io/library/alpine', {}, 'proxy/docker.io/library/alpine'],
    ['proxy/docker.io/alpine', {}, 'proxy/docker.io/library/alpine'],
    ['proxy/hub/alpine', {}, 'proxy/docker.io/library/alpine'],
    ['proxy/hub/bitnami/redis', {}, 'proxy/docker.io/bitnami/redis'],
    ['proxy/harbor/team/app', {}, 'proxy/harbor.lan/team/app'],
    ['proxy/quay.io/app', {}, 'proxy/quay.io/app'], // library/ is Docker Hub's alone
    ['alpine', { mirror: 'docker.io' }, 'proxy/docker.io/library/alpine'],
    ['library/alpine', { mirror: 'hub' }, 'proxy/docker.io/library/alpine'],
    ['proxy/index.docker.io/alpine', { mirror: 'docker.io' }, 'proxy/docker.io/library/alpine'],
    // A Docker Hub account called "proxy": its images, not a cache prefix, on a mirror.
    ['proxy/tool', { mirror: 'docker.io' }, 'proxy/docker.io/proxy/tool'],
    ['proxy/harbor/app', { mirror: 'docker.io' }, 'proxy/docker.io/proxy/harbor/app'],
    ['library/alpine', { ns: 'docker.io' }, 'proxy/docker.io/library/alpine'],
    ['alpine', { ns: 'registry-1.docker.io' }, 'proxy/docker.io/library/alpine'],
    ['team/app', { ns: 'harbor' }, 'proxy/harbor.lan/team/app'],
    // Hosted names stay; ns naming a host the cache does not serve is ignored, and so is ns beside proxy/.
    ['team/app', {}, 'team/app'],
    ['library/alpine', { ns: 'notahost' }, 'library/alpine'],
    ['proxy/docker.io/alpine', { ns: 'quay.io' }, 'proxy/docker.io/library/alpine'],
  ])('%s %j is %s', (name, source, stored) => {
    expect(storedName(WITH_ALIASES, name, source)).toBe(stored);
    // Stored names are fixed points: mapping one again changes nothing.
    expect(storedName(WITH_ALIASES, stored)).toBe(stored);
  });

  test("an upstream configured under one of Docker Hub's host names is Docker Hub, under all its names", () => {
    const config = proxyConfig({
      upstreams: [{ host: 'registry-1.docker.io', url: 'http://127.0.0.1:1', urls: ['http://127.0.0.1:1'], aliases: ['hub'], username: '', password: '' }],
    });
    expect(storedName(config, 'proxy/hub/alpine')).toBe('proxy/docker.io/library/alpine');
    expect(storedName(config, 'alpine', { mirror: 'hub' })).toBe('proxy/docker.io/library/alpine');
  });

  test('with the cache off, ?ns= maps nothing', () => {
    expect(storedName(proxyConfig({ enabled: false }), 'library/alpine', { ns: 'docker.io' })).toBe('library/alpine');
  });

  test('proxy/ names of hosts the cache does not serve throw what the cache answers', () => {
    expect(errorCode(() => storedName(WITH_ALIASES, 'proxy/notahost/alpine'))).toBe('NAME_UNKNOWN');
    expect(errorCode(() => storedName(WITH_ALIASES, 'proxy/docker.io'))).toBe('NAME_UNKNOWN');
    const restricted = proxyConfig({ allowed_upstreams: ['ghcr.io'] });
    expect(errorCode(() => storedName(restricted, 'proxy/quay.io/app'))).toBe('DENIED');
    expect(storedName(restricted, 'proxy/index.docker.io/alpine')).toBe('proxy/docker.io/library/alpine');
  });
});

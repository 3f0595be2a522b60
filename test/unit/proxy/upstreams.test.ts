import { ProxyConfig } from '../../../src/config/config';
import { RegistryError } from '../../../src/oci/errors';
import { createLogger } from '../../../src/log';
import { Upstreams } from '../../../src/proxy/upstreams';

function upstreams(overrides: Partial<ProxyConfig> = {}): Upstreams {
  const config: ProxyConfig = {
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
  return new Upstreams(config, createLogger('silent'));
}

function errorCode(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof RegistryError) return error.code;
    throw error;
  }
  return undefined;
}

describe('Upstreams.parse: proxy/<upstream>/<name>', () => {
  test('Docker Hub names are one upstream, and one-component names get library/', () => {
    const hub = upstreams();
    for (const name of ['proxy/docker.io/alpine', 'proxy/index.docker.io/library/alpine', 'proxy/registry-1.docker.io/library/alpine']) {
      const parsed = hub.parse(name);
      expect(parsed.name).toBe('proxy/docker.io/library/alpine');
      expect(parsed.remoteName).toBe('library/alpine');
      expect(parsed.upstream.url).toBe('https://registry-1.docker.io');
    }
    expect(hub.parse('proxy/docker.io/alpine').upstream).toBe(hub.parse('proxy/registry-1.docker.io/x/y').upstream);
  });

  test('other hosts keep their names as they are, many segments included', () => {
    const parsed = upstreams().parse('proxy/ghcr.io/owner/team/some_image-name.x');
    expect(parsed).toMatchObject({ name: 'proxy/ghcr.io/owner/team/some_image-name.x', remoteName: 'owner/team/some_image-name.x' });
    expect(parsed.upstream.url).toBe('https://ghcr.io');
    // A one-component name is not Docker Hub's library/ convention elsewhere.
    expect(upstreams().parse('proxy/quay.io/app').remoteName).toBe('app');
  });

  test('a configured upstream is reached at its url, under its host and its aliases', () => {
    const configured = upstreams({
      upstreams: [{ host: 'upstream.test', url: 'http://127.0.0.1:5056', urls: ['http://127.0.0.1:5056'], aliases: ['up'], username: '', password: '' }],
    });
    expect(configured.parse('proxy/upstream.test/a/b').upstream.url).toBe('http://127.0.0.1:5056');
    expect(configured.parse('proxy/up/a/b').name).toBe('proxy/upstream.test/a/b');
  });

  test('an upstream with several urls has one client per URL, in the order they are tried', () => {
    const urls = ['http://127.0.0.1:5058', 'http://localhost:5059'];
    const configured = upstreams({ upstreams: [{ host: 'two.test', url: urls[0], urls, aliases: [], username: '', password: '' }] });
    const { upstream } = configured.parse('proxy/two.test/a');
    expect(upstream.url).toBe(urls[0]);
    expect(upstream.clients.map((client) => client.url)).toEqual(urls);
    expect(upstreams().parse('proxy/ghcr.io/a/b').upstream.clients.map((client) => client.url)).toEqual(['https://ghcr.io']);
  });

  test('configuring any Docker Hub name configures all of them', () => {
    const configured = upstreams({
      upstreams: [{ host: 'registry-1.docker.io', url: 'http://127.0.0.1:5057', urls: ['http://127.0.0.1:5057'], aliases: [], username: '', password: '' }],
    });
    expect(configured.parse('proxy/docker.io/alpine').upstream.url).toBe('http://127.0.0.1:5057');
    expect(configured.parse('proxy/docker.io/alpine').name).toBe('proxy/docker.io/library/alpine');
  });

  test("an alias of an upstream configured under a Docker Hub host name is Docker Hub, cached under docker.io", () => {
    const configured = upstreams({
      upstreams: [{ host: 'registry-1.docker.io', url: 'http://127.0.0.1:5057', urls: ['http://127.0.0.1:5057'], aliases: ['hub'], username: '', password: '' }],
    });
    const parsed = configured.parse('proxy/hub/alpine');
    expect(parsed).toMatchObject({ name: 'proxy/docker.io/library/alpine', remoteName: 'library/alpine' });
    expect(parsed.upstream).toBe(configured.parse('proxy/docker.io/alpine').upstream);
  });

  test('an allow-list refuses other hosts with DENIED; configured upstreams stay allowed', () => {
    const restricted = upstreams({
      allowed_upstreams: ['ghcr.io'],
      upstreams: [{ host: 'mine.test', url: 'http://127.0.0.1:1', urls: ['http://127.0.0.1:1'], aliases: [], username: '', password: '' }],
    });
    expect(restricted.parse('proxy/ghcr.io/a/b').upstream.url).toBe('https://ghcr.io');
    expect(restricted.parse('proxy/mine.test/a').upstream.url).toBe('http://127.0.0.1:1');
    expect(errorCode(() => restricted.parse('proxy/quay.io/a/b'))).toBe('DENIED');
  });

  test('names that do not name an upstream and an image are NAME_UNKNOWN', () => {
    expect(errorCode(() => upstreams().parse('proxy/ghcr.io'))).toBe('NAME_UNKNOWN');
    expect(errorCode(() => upstreams().parse('proxy/notahost/image'))).toBe('NAME_UNKNOWN');
  });
});

describe('Upstreams: clients kept', () => {
  test('clients for upstreams a client named are kept for the 64 most recently used only; configured ones always', () => {
    const kept = upstreams({
      upstreams: [{ host: 'mine.test', url: 'http://127.0.0.1:1', urls: ['http://127.0.0.1:1'], aliases: [], username: '', password: '' }],
    });
    const mine = kept.parse('proxy/mine.test/a').upstream;
    const hub = kept.parse('proxy/docker.io/a').upstream;
    const first = kept.parse('proxy/host-0.example/a').upstream;
    for (let i = 1; i < 64; i++) kept.parse(`proxy/host-${i}.example/a`);
    // host-0 is used again: it becomes the most recent, and host-1 the oldest.
    expect(kept.parse('proxy/host-0.example/a').upstream).toBe(first);
    const second = kept.parse('proxy/host-1.example/a').upstream;
    for (let i = 64; i < 1000; i++) kept.parse(`proxy/host-${i}.example/a`);
    expect(kept.parse('proxy/host-999.example/a').upstream).toBe(kept.parse('proxy/host-999.example/b').upstream);
    expect(kept.parse('proxy/host-1.example/a').upstream).not.toBe(second);
    expect(kept.parse('proxy/mine.test/a').upstream).toBe(mine);
    expect(kept.parse('proxy/docker.io/a').upstream).toBe(hub);
  });
});

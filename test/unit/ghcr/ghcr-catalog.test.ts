import { ProxyConfig, UpstreamConfig } from '../../../src/config/config';
import { GHCR_TOKEN_USERNAME, mergeRepositoryPages, withGhcrToken } from '../../../src/ghcr/ghcr-catalog';

const github = { token: 'ghp_x', api_url: 'https://api.github.com', users: [], orgs: [], cache_ttl: 600_000 };
const proxy = (upstreams: UpstreamConfig[] = [], allowed: string[] = []): ProxyConfig => ({
  enabled: true,
  allowed_upstreams: allowed,
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
  upstreams,
});
const entry = (fields: Partial<UpstreamConfig>): UpstreamConfig => ({
  host: 'ghcr.io',
  url: 'https://ghcr.io',
  urls: ['https://ghcr.io'],
  aliases: [],
  username: '',
  password: '',
  ...fields,
});

describe('withGhcrToken', () => {
  test('adds ghcr.io with the token as password', () => {
    expect(withGhcrToken(proxy(), github).upstreams).toEqual([
      entry({ username: GHCR_TOKEN_USERNAME, password: 'ghp_x' }),
    ]);
  });

  test('keeps a configured ghcr.io URL and aliases; its own credentials win', () => {
    const configured = entry({ url: 'http://127.0.0.1:5000', urls: ['http://127.0.0.1:5000'], aliases: ['gh'] });
    expect(withGhcrToken(proxy([configured]), github).upstreams).toEqual([
      { ...configured, username: GHCR_TOKEN_USERNAME, password: 'ghp_x' },
    ]);
    const own = entry({ username: 'me', password: 'other' });
    expect(withGhcrToken(proxy([own]), github).upstreams).toEqual([own]);
  });

  test('changes nothing without a token, or when allowed_upstreams leaves ghcr.io out', () => {
    expect(withGhcrToken(proxy(), { ...github, token: '' }).upstreams).toEqual([]);
    expect(withGhcrToken(proxy([], ['quay.io']), github).upstreams).toEqual([]);
  });
});

describe('mergeRepositoryPages', () => {
  test('merges, deduplicates and cuts to n, with next when either side has more', () => {
    expect(mergeRepositoryPages({ items: ['a', 'c'], next: 'c' }, ['b', 'c', 'd'], { n: 2 })).toEqual({ items: ['a', 'b'], next: 'b' });
    expect(mergeRepositoryPages({ items: ['a'] }, ['a', 'b'], { n: 2 })).toEqual({ items: ['a', 'b'] });
    expect(mergeRepositoryPages({ items: ['a', 'b'], next: 'b' }, [], { n: 2 })).toEqual({ items: ['a', 'b'], next: 'b' });
    expect(mergeRepositoryPages({ items: ['m'] }, ['b', 'z'], { n: 5, last: 'c' })).toEqual({ items: ['m', 'z'] });
    expect(mergeRepositoryPages({ items: ['b'] }, ['a'], {})).toEqual({ items: ['a', 'b'] });
  });
});

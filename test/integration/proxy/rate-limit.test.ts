import http from 'node:http';
import { AddressInfo } from 'node:net';
import { createLogger } from '../../../src/log';
import { digestOf } from '../../../src/oci/digest';
import { MediaType } from '../../../src/oci/media-types';
import { MAX_RATE_LIMIT_PAUSE_MS } from '../../../src/proxy/rate-limits';
import { createTestApp, TestApp } from '../../helpers/test-app';

const CONFIG = Buffer.from('{}');
const MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(CONFIG), size: CONFIG.length },
    layers: [],
  }),
);
const MANIFEST_DIGEST = digestOf(MANIFEST);

/**
 * An upstream that announces its pull budget as Docker Hub does (`ratelimit-limit: 100;w=21600`,
 * `ratelimit-remaining: N;w=21600`) and answers 429 with Retry-After when told to: what the reference
 * registry cannot do.
 */
function startBudgetedUpstream() {
  const state = { remaining: 50, tooMany: undefined as string | undefined, manifestRequests: 0 };
  const server = http.createServer((request, response) => {
    if (request.url === '/v2/') return response.end('{}');
    if (request.url !== '/v2/team/app/manifests/1') {
      response.statusCode = 404;
      return response.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
    }
    state.manifestRequests++;
    if (state.tooMany !== undefined) {
      response.writeHead(429, { 'Retry-After': state.tooMany, 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' });
      return response.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}');
    }
    response.writeHead(200, {
      'Content-Type': MediaType.OciManifest,
      'Content-Length': MANIFEST.length,
      'Docker-Content-Digest': MANIFEST_DIGEST,
      'ratelimit-limit': '100;w=21600',
      'ratelimit-remaining': `${state.remaining};w=21600`,
      'docker-ratelimit-source': '127.0.0.1',
    });
    response.end(request.method === 'HEAD' ? undefined : MANIFEST);
  });
  return new Promise<{ url: string; state: typeof state; close: () => Promise<void> }>((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        state,
        close: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    );
  });
}

describe("an upstream's rate limit (ratelimit-* headers, 429 with Retry-After)", () => {
  let upstream: Awaited<ReturnType<typeof startBudgetedUpstream>>;
  let app: TestApp;
  let lines: string[];

  beforeEach(async () => {
    upstream = await startBudgetedUpstream();
    lines = [];
  });
  afterEach(async () => {
    await app?.close();
    await upstream?.close();
  });

  // tag_ttl 0: without a budget problem, every pull of the tag asks the upstream.
  const start = (upstreamKeys = '') =>
    createTestApp({
      configuration: `[proxy]\ntag_ttl = "0"\n[[proxy.upstreams]]\nhost = "limited.test"\nurl = "${upstream.url}"\n${upstreamKeys}\n`,
      log: createLogger('info', { destination: (line) => lines.push(line) }),
    });
  const pullTag = async () => {
    const response = await fetch(`${app.url}/v2/proxy/limited.test/team/app/manifests/1`, { headers: { Accept: MediaType.OciManifest } });
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-content-digest')).toBe(MANIFEST_DIGEST);
  };
  const metric = async (name: string, credential = 'anonymous') => {
    const text = await (await fetch(`${app.url}/metrics`)).text();
    const match = new RegExp(`^registry_${name}\\{upstream="limited.test",credential="${credential}"\\} (\\d+)$`, 'm').exec(text);
    return match ? Number(match[1]) : undefined;
  };
  const pauseWarnings = () => lines.filter((line) => /upstream rate limit: serving cached tags without revalidation/.test(line));

  test('remaining below rate_limit_reserve: cached tags are served without revalidation, logged once, shown in metrics', async () => {
    app = await start();
    await pullTag(); // miss: GET
    await pullTag(); // revalidated: HEAD
    expect(upstream.state.manifestRequests).toBe(2);
    expect(await metric('upstream_ratelimit_limit')).toBe(100);
    expect(await metric('upstream_ratelimit_remaining')).toBe(50);
    expect(await metric('upstream_ratelimited')).toBe(0);

    upstream.state.remaining = 5; // below the default reserve of 10
    await pullTag(); // this HEAD reads the low budget
    expect(upstream.state.manifestRequests).toBe(3);
    for (let pull = 0; pull < 3; pull++) await pullTag();
    expect(upstream.state.manifestRequests).toBe(3);

    expect(pauseWarnings()).toHaveLength(1);
    expect(JSON.parse(pauseWarnings()[0])).toMatchObject({ upstream: 'limited.test', credential: 'anonymous', reason: 'reserve', remaining: 5 });
    expect(await metric('upstream_ratelimit_remaining')).toBe(5);
    expect(await metric('upstream_ratelimited')).toBe(1);
    const [state] = app.registry.upstreamRateLimits();
    expect(state).toMatchObject({ upstream: 'limited.test', credential: 'anonymous', limit: 100, remaining: 5, windowSeconds: 21600, reason: 'reserve' });
    // Until the window (w=21600 s) has passed.
    expect(state.limitedUntil! - Date.now()).toBeGreaterThan(21_500_000);
  });

  // The web UI's cache page (server-rendered HTML, the same for a browser without script).
  test('the cache page shows the budget per credential, and when revalidation is paused', async () => {
    app = await start();
    await pullTag();
    const rateLimitRows = async () => {
      const page = await (await fetch(`${app.url}/ui/cache`)).text();
      const table = /<table class="rate-limits">[\s\S]*?<\/table>/.exec(page)?.[0] ?? '';
      return [...table.matchAll(/<tr data-credential="([^"]+)">([\s\S]*?)<\/tr>/g)].map(([, credential, cells]) => [
        credential,
        ...[...cells.matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].slice(1).map(([, cell]) => cell.replace(/<[^>]+>/g, '')),
      ]);
    };
    expect(await rateLimitRows()).toEqual([['anonymous', '50', '100', '6 h', 'revalidated as usual']]);
    upstream.state.remaining = 5;
    await pullTag();
    const [row] = await rateLimitRows();
    expect(row.slice(0, 4)).toEqual(['anonymous', '5', '100', '6 h']);
    expect(row[4]).toMatch(/^served without revalidation until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(below rate_limit_reserve\)$/);
  });

  test('a 429 pauses revalidation until its Retry-After, per credential; then the upstream is asked again', async () => {
    app = await start('username = "hub-user"\npassword = "secret"');
    await pullTag();
    upstream.state.tooMany = '1';
    await pullTag(); // the HEAD gets 429: the cached manifest is served
    const requests = upstream.state.manifestRequests;
    await pullTag();
    expect(upstream.state.manifestRequests).toBe(requests);
    expect(await metric('upstream_ratelimited', 'hub-user')).toBe(1);
    expect(app.registry.upstreamRateLimits()[0]).toMatchObject({ credential: 'hub-user', reason: '429', remaining: 0 });

    upstream.state.tooMany = undefined;
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await pullTag();
    expect(upstream.state.manifestRequests).toBe(requests + 1);
    expect(await metric('upstream_ratelimited', 'hub-user')).toBe(0);
  });

  test('a Retry-After far in the future is bounded', async () => {
    app = await start();
    await pullTag();
    upstream.state.tooMany = '999999999';
    await pullTag();
    const [state] = app.registry.upstreamRateLimits();
    expect(state.limitedUntil! - Date.now()).toBeLessThanOrEqual(MAX_RATE_LIMIT_PAUSE_MS);
    expect(state.limitedUntil! - Date.now()).toBeGreaterThan(MAX_RATE_LIMIT_PAUSE_MS - 60_000);
  });
});

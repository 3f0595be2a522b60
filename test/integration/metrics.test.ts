import { randomBytes } from 'node:crypto';
import { startMetricsListener, MetricsListener } from '../../src/server/metrics-listener';
import { basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { Descriptor } from '../../src/oci/manifest';
import { MediaType } from '../../src/oci/media-types';
import { digestOf, expectErrorCode, expectStatus, json, OCI_CONFIG, OCI_LAYER, PushedImage, RegistryClient } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/** One sample of the exposition text: `name{label="value",…} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition format 0.0.4 (comments skipped). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name] = value.replace(/\\(.)/g, (_all, escaped: string) => (escaped === 'n' ? '\n' : escaped));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample of `name` whose labels are exactly `labels`; undefined if there is none. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  return samples.find((sample) => sample.name === name && JSON.stringify(Object.entries(sample.labels).sort()) === wanted)?.value;
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<Sample[]> {
  const response = await fetch(`${url}/metrics`, { headers });
  await expectStatus(response, 200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

const MANIFEST_ROUTE = '/v2/*name/manifests/:reference';
const BLOB_ROUTE = '/v2/*name/blobs/:digest';
const UPLOADS_ROUTE = '/v2/*name/blobs/uploads/';

/**
 * Pushes a config, two layers and a tagged manifest over them the way docker-registry takes them (POST, then
 * PUT with the whole blob: it does not take a monolithic POST).
 */
async function pushToUpstream(upstream: UpstreamRegistry, name: string, tag: string): Promise<PushedImage> {
  const client = new RegistryClient({ url: upstream.url });
  const push = async (content: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = digestOf(content);
    await client.finishUpload(name, await client.startUpload(name), digest, content);
    return { mediaType, digest, size: content.length };
  };
  const config = await push(json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }), OCI_CONFIG);
  const layers = [await push(randomBytes(3000), OCI_LAYER), await push(randomBytes(5000), OCI_LAYER)];
  const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
  return { ...(await client.putManifest(name, tag, manifest)), config, layers };
}

const sizeOf = (image: PushedImage) => image.config.size + image.layers.reduce((sum, layer) => sum + layer.size, 0) + image.content.length;

describe('GET /metrics after pushes, pulls, a 404, cache misses, hits and a stale serve, and a GC run', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let client: RegistryClient;
  let hosted: PushedImage;
  let cached: PushedImage; // team/app:1 at the upstream, pulled as proxy/upstream.test/team/app:1
  let looseBlob: Buffer; // pushed but never referenced: garbage
  let samples: Sample[];
  let stoppedAt: number; // when the upstream went away: its last success is before, its last error after
  const proxied = 'proxy/upstream.test/team/app';

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'none' });
    cached = await pushToUpstream(upstream, 'team/app', '1');
    app = await createTestApp({
      // tag_ttl 0: every pull by tag asks the upstream, so a stopped upstream shows as a stale serve.
      // grace 0: the loose blob is garbage at once.
      configuration: `[proxy]\ntag_ttl = 0\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n[gc]\ngrace = 0\n`,
    });
    client = new RegistryClient(app);

    hosted = await client.pushImage('hosted/app', { tag: 'v1' });
    looseBlob = randomBytes(1000);
    await client.pushBlob('hosted/loose', looseBlob);
    expect((await client.getManifest('hosted/app', 'v1')).response.status).toBe(200);
    await expectErrorCode((await client.getManifest('hosted/app', 'nope')).response, 404, 'MANIFEST_UNKNOWN');
    await expectErrorCode(await client.fetch('/no/such/route'), 404, 'UNSUPPORTED');

    // Misses: the manifest by tag and each blob come from the upstream.
    expect((await client.getManifest(proxied, '1')).response.status).toBe(200);
    for (const blob of [cached.config, ...cached.layers]) {
      const { response, body } = await client.getBlob(proxied, blob.digest);
      expect(response.status).toBe(200);
      expect(body.length).toBe(blob.size);
    }
    // Hits: the blobs again, the manifest by digest, and by tag after the upstream confirmed its digest (HEAD).
    for (const blob of [cached.config, ...cached.layers]) expect((await client.getBlob(proxied, blob.digest)).response.status).toBe(200);
    expect((await client.getManifest(proxied, cached.digest)).response.status).toBe(200);
    expect((await client.getManifest(proxied, '1')).response.status).toBe(200);
    // Stale: the upstream is gone, the cached manifest is served.
    stoppedAt = Date.now();
    await upstream.stop();
    expect((await client.getManifest(proxied, '1')).response.status).toBe(200);

    await new Promise((resolve) => setTimeout(resolve, 20)); // the loose blob's file is older than the cutoff
    const report = await app.registry.collectGarbage();
    expect(report.blobs).toEqual([{ store: 'hosted', digest: expect.any(String), size: looseBlob.length }]);

    samples = await scrape(app.url);
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
  });

  test('requests by method, route template and status', () => {
    const requests = (labels: Record<string, string>) => valueOf(samples, 'registry_http_requests_total', labels);
    expect(requests({ method: 'PUT', route: MANIFEST_ROUTE, status: '201' })).toBe(1);
    expect(requests({ method: 'POST', route: UPLOADS_ROUTE, status: '201' })).toBe(3); // config, layer, loose blob
    expect(requests({ method: 'GET', route: MANIFEST_ROUTE, status: '200' })).toBe(5); // 1 hosted, 4 cached
    expect(requests({ method: 'GET', route: MANIFEST_ROUTE, status: '404' })).toBe(1);
    expect(requests({ method: 'GET', route: BLOB_ROUTE, status: '200' })).toBe(6);
    expect(requests({ method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(valueOf(samples, 'registry_http_request_duration_seconds_count', { method: 'GET', route: BLOB_ROUTE })).toBe(6);
    // The scrape itself is counted when it is done: in the next one.
    expect(requests({ method: 'GET', route: '/metrics', status: '200' })).toBeUndefined();
  });

  test('body bytes in and out as they were streamed', () => {
    const hostedBlobs = hosted.config.size + hosted.layers[0].size + looseBlob.length;
    expect(valueOf(samples, 'registry_http_request_body_bytes_total', { method: 'POST', route: UPLOADS_ROUTE })).toBe(hostedBlobs);
    expect(valueOf(samples, 'registry_http_request_body_bytes_total', { method: 'PUT', route: MANIFEST_ROUTE })).toBe(hosted.content.length);
    const cachedBlobs = cached.config.size + cached.layers.reduce((sum, layer) => sum + layer.size, 0);
    expect(valueOf(samples, 'registry_http_response_body_bytes_total', { method: 'GET', route: BLOB_ROUTE })).toBe(2 * cachedBlobs);
    expect(valueOf(samples, 'registry_http_request_body_bytes_total', { method: 'GET', route: BLOB_ROUTE })).toBe(0);
  });

  test('cache hits, misses and stale serves by upstream and kind', () => {
    const cache = (kind: string, result: string) => valueOf(samples, 'registry_proxy_cache_requests_total', { upstream: 'upstream.test', kind, result });
    expect(cache('manifest', 'miss')).toBe(1);
    expect(cache('manifest', 'hit')).toBe(2);
    expect(cache('manifest', 'stale')).toBe(1);
    expect(cache('blob', 'miss')).toBe(3);
    expect(cache('blob', 'hit')).toBe(3);
  });

  test('upstream requests by status, and the requests that found it gone', () => {
    const upstreamRequests = (method: string, status: string) =>
      valueOf(samples, 'registry_upstream_requests_total', { upstream: 'upstream.test', method, status });
    expect(upstreamRequests('GET', '200')).toBe(4); // the manifest and three blobs
    // A cold blob GET learns its size from its own GET (no HEAD first); the hit by tag was revalidated with a HEAD.
    expect(upstreamRequests('HEAD', '200')).toBe(1);
    expect(valueOf(samples, 'registry_upstream_errors_total', { upstream: 'upstream.test', reason: 'unreachable' })).toBe(1);
  });

  test("GET /api/cache: the same hits, misses and stale serves per upstream, with the upstream's last success and last error", async () => {
    const response = await client.fetch('/api/cache');
    await expectStatus(response, 200);
    const { upstreams } = (await response.json()) as {
      upstreams: Array<{ upstream: string; bytes: number; activity: { served: unknown; lastSuccess: number; lastError: { at: number; reason: string } } }>;
    };
    expect(upstreams.map((u) => u.upstream)).toEqual(['upstream.test']);
    const [{ bytes, activity }] = upstreams;
    expect(bytes).toBe(sizeOf(cached));
    expect(activity.served).toEqual({
      manifest: { hit: 2, miss: 1, stale: 1, not_found: 0 },
      blob: { hit: 3, miss: 3, stale: 0, not_found: 0 },
      referrers: { hit: 0, miss: 0, stale: 0, not_found: 0 },
    });
    expect(activity.lastSuccess).toBeLessThanOrEqual(stoppedAt);
    expect(activity.lastError).toEqual({ at: expect.any(Number), reason: 'unreachable' });
    expect(activity.lastError.at).toBeGreaterThanOrEqual(stoppedAt);
  });

  test('garbage collection runs and bytes freed; storage size from the index', () => {
    expect(valueOf(samples, 'registry_gc_runs_total', { result: 'success' })).toBe(1);
    expect(valueOf(samples, 'registry_gc_runs_total', { result: 'failure' })).toBe(0);
    expect(valueOf(samples, 'registry_gc_freed_bytes_total', { store: 'hosted' })).toBe(looseBlob.length);
    expect(valueOf(samples, 'registry_gc_deleted_blobs_total', { store: 'hosted' })).toBe(1);
    expect(valueOf(samples, 'registry_storage_bytes', { store: 'hosted' })).toBe(sizeOf(hosted));
    expect(valueOf(samples, 'registry_storage_blobs', { store: 'hosted' })).toBe(3);
    expect(valueOf(samples, 'registry_storage_bytes', { store: 'proxy' })).toBe(sizeOf(cached));
    expect(valueOf(samples, 'registry_storage_blobs', { store: 'proxy' })).toBe(4);
  });

  test("the process's own metrics are there too", () => {
    expect(valueOf(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(valueOf(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });

  test('no label carries a repository name or a digest', () => {
    const values = samples.flatMap((sample) => Object.values(sample.labels));
    expect(values.filter((value) => /sha256|hosted\/|team\/|nope|no\/such/.test(value))).toEqual([]);
    const routes = new Set(samples.filter((sample) => sample.name === 'registry_http_requests_total').map((sample) => sample.labels.route));
    expect([...routes].sort()).toEqual([MANIFEST_ROUTE, UPLOADS_ROUTE, BLOB_ROUTE, 'unmatched'].sort());
  });

  test('the next scrape counts the last one', async () => {
    const next = await scrape(app.url);
    expect(valueOf(next, 'registry_http_requests_total', { method: 'GET', route: '/metrics', status: '200' })).toBe(1);
    expect(valueOf(next, 'registry_http_response_body_bytes_total', { method: 'GET', route: '/metrics' })).toBeGreaterThan(1000);
  });
});

describe('[metrics] listen: /metrics on a listener of its own', () => {
  let app: TestApp;
  let listener: MetricsListener | null;

  beforeAll(async () => {
    app = await createTestApp({ overrides: { 'metrics.listen': '127.0.0.1:0' } });
    listener = await startMetricsListener(app.config, app.registry.metrics);
  });
  afterAll(async () => {
    await listener?.close();
    await app?.close();
  });

  test('GET /metrics there counts the main listener\'s requests; the main listener has no /metrics', async () => {
    await expectErrorCode(await fetch(`${app.url}/metrics`), 404, 'UNSUPPORTED');
    expect((await fetch(`${app.url}/v2/`)).status).toBe(200);
    const samples = await scrape(`http://127.0.0.1:${listener!.port}`);
    expect(valueOf(samples, 'registry_http_requests_total', { method: 'GET', route: '/v2/', status: '200' })).toBe(1);
    // The main listener's 404 for /metrics is an unknown route there.
    expect(valueOf(samples, 'registry_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
  });

  test('other paths are 404 and other methods 405, in the registry error shape', async () => {
    const base = `http://127.0.0.1:${listener!.port}`;
    await expectErrorCode(await fetch(`${base}/v2/`), 404, 'UNSUPPORTED');
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(post.headers.get('allow')).toBe('HEAD, GET');
    await expectErrorCode(post, 405, 'UNSUPPORTED');
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });
});

describe('[metrics] enabled = false', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await createTestApp({ overrides: { 'metrics.enabled': 'false', 'metrics.listen': '127.0.0.1:0' } });
  });
  afterAll(() => app?.close());

  test('/metrics is an unknown route, and no listener of its own starts', async () => {
    await expectErrorCode(await fetch(`${app.url}/metrics`), 404, 'UNSUPPORTED');
    expect(await startMetricsListener(app.config, app.registry.metrics)).toBeNull();
  });
});

describe('/metrics with [auth]', () => {
  const USERS = { alice: 'alice-password' };

  test('anonymous = "none": a login is needed', async () => {
    const app = await createAuthApp(USERS, `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\n`);
    try {
      const anonymous = await fetch(`${app.url}/metrics`);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /);
      await expectErrorCode(anonymous, 401, 'UNAUTHORIZED');
      await expectErrorCode(await fetch(`${app.url}/metrics`, { headers: basic('alice:wrong') }), 401, 'UNAUTHORIZED');
      const samples = await scrape(app.url, basic('alice:alice-password'));
      // Refused before routing, still counted under the route's template.
      expect(valueOf(samples, 'registry_http_requests_total', { method: 'GET', route: '/metrics', status: '401' })).toBe(2);
    } finally {
      await app.close();
    }
  });

  test('anonymous = "pull": open like the other paths outside /v2/', async () => {
    const app = await createAuthApp(USERS, `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\nanonymous = "pull"\n`);
    try {
      await scrape(app.url);
    } finally {
      await app.close();
    }
  });
});

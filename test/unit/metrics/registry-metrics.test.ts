import { MAX_UPSTREAM_LABELS, RegistryMetrics } from '../../../src/metrics/registry-metrics';

/** The lines of the exposition text for one metric name (its samples, without HELP and TYPE). */
async function samplesOf(metrics: RegistryMetrics, name: string): Promise<string[]> {
  const text = await metrics.metrics();
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('RegistryMetrics', () => {
  it("keeps per upstream what the cache page shows: hits, misses, stale serves, the upstream's last success and error", () => {
    const metrics = new RegistryMetrics();
    const upstream = metrics.upstream('docker.io');
    metrics.cacheServed('docker.io', 'manifest', 'miss');
    metrics.cacheServed('docker.io', 'blob', 'hit');
    metrics.cacheServed('docker.io', 'manifest', 'stale');
    upstream.answered('GET', 401); // the token dance: a working upstream
    upstream.answered('HEAD', 404);
    const afterAnswers = metrics.upstreamActivity.snapshot()['docker.io'];
    expect(afterAnswers.lastSuccess).toEqual(expect.any(Number));
    expect(afterAnswers.lastError).toBeNull();
    upstream.answered('GET', 429);
    expect(metrics.upstreamActivity.snapshot()['docker.io'].lastError).toEqual({ at: expect.any(Number), reason: 'HTTP 429' });
    upstream.answered('GET', 503);
    upstream.failed('timeout');
    const activity = metrics.upstreamActivity.snapshot()['docker.io'];
    expect(activity.served).toEqual({
      manifest: { hit: 0, miss: 1, stale: 1, not_found: 0 },
      blob: { hit: 1, miss: 0, stale: 0, not_found: 0 },
      referrers: { hit: 0, miss: 0, stale: 0, not_found: 0 },
    });
    expect(activity.lastError).toEqual({ at: expect.any(Number), reason: 'timeout' });
    expect(activity.lastSuccess).toBe(afterAnswers.lastSuccess);
    // A snapshot is a copy: what the UI holds does not move under it.
    activity.served.blob.hit = 99;
    expect(metrics.upstreamActivity.snapshot()['docker.io'].served.blob.hit).toBe(1);
  });

  it('keeps its series apart from any other instance (one per server, never the global registry)', async () => {
    const first = new RegistryMetrics();
    const second = new RegistryMetrics();
    first.cacheServed('docker.io', 'blob', 'hit');
    expect(await samplesOf(first, 'registry_proxy_cache_requests_total')).toEqual([
      'registry_proxy_cache_requests_total{upstream="docker.io",kind="blob",result="hit"} 1',
    ]);
    expect(await samplesOf(second, 'registry_proxy_cache_requests_total')).toEqual([]);
  });

  it('names at most MAX_UPSTREAM_LABELS upstreams; hosts a client names beyond them count as "other"', async () => {
    const metrics = new RegistryMetrics();
    for (let index = 0; index < MAX_UPSTREAM_LABELS + 10; index++) metrics.cacheServed(`registry${index}.example`, 'blob', 'miss');
    metrics.upstream('late.example').failed('unreachable');
    metrics.cacheServed('registry0.example', 'blob', 'hit'); // one seen early keeps its name
    const samples = await samplesOf(metrics, 'registry_proxy_cache_requests_total');
    expect(samples).toHaveLength(MAX_UPSTREAM_LABELS + 2);
    expect(samples).toContain('registry_proxy_cache_requests_total{upstream="other",kind="blob",result="miss"} 10');
    expect(samples).toContain('registry_proxy_cache_requests_total{upstream="registry0.example",kind="blob",result="hit"} 1');
    expect(await samplesOf(metrics, 'registry_upstream_errors_total')).toEqual([
      'registry_upstream_errors_total{upstream="other",reason="unreachable"} 1',
    ]);
  });

  it('reads storage sizes at each scrape', async () => {
    const metrics = new RegistryMetrics();
    let bytes = 10;
    metrics.observeStorage(async () => ({ hosted: { bytes, blobs: 1 }, proxy: { bytes: 0, blobs: 0 } }));
    expect(await samplesOf(metrics, 'registry_storage_bytes')).toContain('registry_storage_bytes{store="hosted"} 10');
    bytes = 25;
    expect(await samplesOf(metrics, 'registry_storage_bytes')).toContain('registry_storage_bytes{store="hosted"} 25');
  });

  it('counts GC runs, freed bytes by store and deleted manifests by reason; failures as runs too', async () => {
    const metrics = new RegistryMetrics();
    metrics.gcFinished({
      blobs: [
        { store: 'hosted', size: 100 },
        { store: 'proxy', size: 7 },
        { store: 'proxy', size: 3 },
      ],
      manifests: [{ reason: 'max_age' }],
    });
    metrics.gcFailed();
    expect(await samplesOf(metrics, 'registry_gc_runs_total')).toEqual([
      'registry_gc_runs_total{result="success"} 1',
      'registry_gc_runs_total{result="failure"} 1',
    ]);
    expect(await samplesOf(metrics, 'registry_gc_freed_bytes_total')).toEqual([
      'registry_gc_freed_bytes_total{store="hosted"} 100',
      'registry_gc_freed_bytes_total{store="proxy"} 10',
    ]);
    expect(await samplesOf(metrics, 'registry_gc_deleted_manifests_total')).toEqual(['registry_gc_deleted_manifests_total{reason="max_age"} 1']);
  });

  it('binds upstream observers to their upstream', async () => {
    const metrics = new RegistryMetrics();
    const hub = metrics.upstream('docker.io');
    hub.answered('GET', 200);
    hub.answered('GET', 200);
    hub.failed('timeout');
    expect(await samplesOf(metrics, 'registry_upstream_requests_total')).toEqual([
      'registry_upstream_requests_total{upstream="docker.io",method="GET",status="200"} 2',
    ]);
    expect(await samplesOf(metrics, 'registry_upstream_errors_total')).toEqual(['registry_upstream_errors_total{upstream="docker.io",reason="timeout"} 1']);
  });

  it('adds the process metrics after its own', async () => {
    const text = await new RegistryMetrics().metrics();
    expect(text.indexOf('registry_http_requests_total')).toBeLessThan(text.indexOf('process_cpu_user_seconds_total'));
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });
});

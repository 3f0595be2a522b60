/**
 * `hit`: from the cache; `miss`: fetched from the upstream; `stale`: from the cache because the upstream failed;
 * `not_found`: a 404 the upstream gave within `not_found_ttl`, answered again without asking it.
 */
export type CacheResult = 'hit' | 'miss' | 'stale' | 'not_found';

/** What the pull-through cache serves: manifests, blobs, and the referrers lists of manifests. */
export type CachedKind = 'manifest' | 'blob' | 'referrers';

/** What the cache and one upstream's client did since the server started, for people (the web UI's cache page). */
export interface UpstreamActivitySnapshot {
  /** Manifests and blobs the cache served for this upstream: from the cache, fetched, or from the cache because the upstream failed. */
  served: Record<CachedKind, Record<CacheResult, number>>;
  /** When the upstream last answered a request usefully (any status below 500 but 429). */
  lastSuccess: number | null;
  /** When it last failed, and how: no answer (timeout, unreachable), 429 or a 5xx status. */
  lastError: { at: number; reason: string } | null;
}

/**
 * Per upstream: cache hits, misses and stale serves, and the upstream's health (last success, last error).
 * The Prometheus counters say the same as rates; this keeps the times and the figures the UI shows without
 * reading the exposition back. In memory: figures start again at a restart, as the counters do. Keyed by
 * the bounded upstream labels of RegistryMetrics, so it holds at most MAX_UPSTREAM_LABELS + 1 entries.
 */
export class UpstreamActivity {
  private readonly upstreams = new Map<string, UpstreamActivitySnapshot>();

  served(upstream: string, kind: CachedKind, result: CacheResult): void {
    this.entry(upstream).served[kind][result]++;
  }

  /** An answer from the upstream's registry API. 401 (a token dance) and 404 are answers of a working upstream. */
  answered(upstream: string, status: number, now = Date.now()): void {
    const entry = this.entry(upstream);
    if (status >= 500 || status === 429) entry.lastError = { at: now, reason: `HTTP ${status}` };
    else entry.lastSuccess = now;
  }

  failed(upstream: string, reason: 'timeout' | 'unreachable', now = Date.now()): void {
    this.entry(upstream).lastError = { at: now, reason };
  }

  /** A copy per upstream. */
  snapshot(): Record<string, UpstreamActivitySnapshot> {
    return Object.fromEntries([...this.upstreams].map(([name, entry]) => [name, structuredClone(entry)]));
  }

  private entry(upstream: string): UpstreamActivitySnapshot {
    let entry = this.upstreams.get(upstream);
    if (!entry) {
      const none = () => ({ hit: 0, miss: 0, stale: 0, not_found: 0 });
      entry = { served: { manifest: none(), blob: none(), referrers: none() }, lastSuccess: null, lastError: null };
      this.upstreams.set(upstream, entry);
    }
    return entry;
  }
}

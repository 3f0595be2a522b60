import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry as PrometheusRegistry } from 'prom-client';
import { CachedKind, CacheResult, UpstreamActivity } from './upstream-activity';

/** Our series are `registry_…`; prom-client's process series keep their own names (`process_…`, `nodejs_…`). */
const PREFIX = 'registry_';

/** The route label of a request no route matched: never the raw path, which a client chooses. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Upstreams named in labels at most: with `allowed_upstreams` empty a client may name any host, and each
 * would be a series kept for the life of the process. Hosts beyond the first ones seen count as "other".
 */
export const MAX_UPSTREAM_LABELS = 50;
export const OTHER_UPSTREAMS = 'other';

/** Which store a size or a freed byte belongs to: hosted content, or the pull-through cache. */
export type StoreKind = 'hosted' | 'proxy';

export type { CachedKind, CacheResult } from './upstream-activity';

/** What an upstream client reports, bound to one upstream. */
export interface UpstreamObserver {
  /** A request to the upstream's registry API that got a response. */
  answered(method: string, status: number): void;
  /** A request (registry or token service) that got no response: refused, reset, DNS, TLS, or the timeout. */
  failed(reason: 'timeout' | 'unreachable'): void;
}

/** An upstream's pull budget as metrics read it (proxy/rate-limits.ts). */
export interface RateLimitReading {
  upstream: string;
  credential: string;
  limit: number | null;
  remaining: number | null;
  limitedUntil: number | null;
}

export interface GcRunSummary {
  blobs: Array<{ store: StoreKind; size: number }>;
  manifests: Array<{ reason: string }>;
  /** With `[proxy] max_size`: pinned cache bytes, and whether pins alone kept the cache over the limit. */
  pinned?: { bytes: number; overMaxSize: boolean };
}

/**
 * The server's Prometheus metrics: one per server, shared by all its listeners, over a prom-client
 * registry of its own (tests run many servers in one process; the global default registry would refuse
 * the second). Labels are bounded: route templates, never paths; upstream names, never repositories.
 */
export class RegistryMetrics {
  readonly prometheus = new PrometheusRegistry();
  /** The same cache and upstream events, with their times, for the web UI's cache page. */
  readonly upstreamActivity = new UpstreamActivity();

  private readonly httpRequests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by method, route template and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.prometheus],
  });
  private readonly httpDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'From the request to the last byte of the response, by method and route template.',
    labelNames: ['method', 'route'] as const,
    // Manifests in milliseconds, blobs up to minutes.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.prometheus],
  });
  private readonly httpInFlight = new Gauge({
    name: `${PREFIX}http_requests_in_flight`,
    help: 'HTTP requests being answered now.',
    registers: [this.prometheus],
  });
  private readonly httpReceived = new Counter({
    name: `${PREFIX}http_request_body_bytes_total`,
    help: 'Request body bytes read, as they arrived, by method and route template.',
    labelNames: ['method', 'route'] as const,
    registers: [this.prometheus],
  });
  private readonly httpSent = new Counter({
    name: `${PREFIX}http_response_body_bytes_total`,
    help: 'Response body bytes written, as they were written, by method and route template.',
    labelNames: ['method', 'route'] as const,
    registers: [this.prometheus],
  });
  private readonly cacheRequests = new Counter({
    name: `${PREFIX}proxy_cache_requests_total`,
    help:
      'Manifests, blobs and referrers lists the pull-through cache served, by upstream, kind and result ' +
      '(hit: from the cache, miss: fetched from the upstream, stale: from the cache because the upstream failed, ' +
      'not_found: a recent upstream 404 answered again without asking it).',
    labelNames: ['upstream', 'kind', 'result'] as const,
    registers: [this.prometheus],
  });
  private readonly upstreamRequests = new Counter({
    name: `${PREFIX}upstream_requests_total`,
    help: "Requests to upstream registries' APIs that got a response, by upstream, method and status.",
    labelNames: ['upstream', 'method', 'status'] as const,
    registers: [this.prometheus],
  });
  private readonly upstreamErrors = new Counter({
    name: `${PREFIX}upstream_errors_total`,
    help: 'Requests to upstreams (registry or token service) that got no response, by upstream and reason (timeout, unreachable).',
    labelNames: ['upstream', 'reason'] as const,
    registers: [this.prometheus],
  });
  private readonly storageFull = new Counter({
    name: `${PREFIX}storage_full_total`,
    help: 'Writes refused for lack of space (answered 507), by store (hosted storage, upload storage, proxy cache, index database).',
    labelNames: ['store'] as const,
    registers: [this.prometheus],
  });
  private readonly upstreamFallbacks = new Counter({
    name: `${PREFIX}upstream_fallbacks_total`,
    help:
      "Requests that one of an upstream's URLs failed and the next was asked ([[proxy.upstreams]] urls), by upstream and reason " +
      '(not_found, rate_limited, denied, server_error, other_status, unreachable, unusable).',
    labelNames: ['upstream', 'reason'] as const,
    registers: [this.prometheus],
  });
  private readonly gcRuns = new Counter({
    name: `${PREFIX}gc_runs_total`,
    help: 'Garbage collections run (dry runs not counted), by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.prometheus],
  });
  private readonly gcFreedBytes = new Counter({
    name: `${PREFIX}gc_freed_bytes_total`,
    help: 'Bytes of blob files garbage collection deleted, by store (hosted, proxy).',
    labelNames: ['store'] as const,
    registers: [this.prometheus],
  });
  private readonly gcDeletedBlobs = new Counter({
    name: `${PREFIX}gc_deleted_blobs_total`,
    help: 'Blob files garbage collection deleted, by store (hosted, proxy).',
    labelNames: ['store'] as const,
    registers: [this.prometheus],
  });
  private readonly storageBytes = new Gauge({
    name: `${PREFIX}storage_bytes`,
    help: 'Bytes of blobs and manifests stored, by store (hosted, proxy); a blob several repositories use counts once.',
    labelNames: ['store'] as const,
    registers: [this.prometheus],
  });
  private readonly storageBlobs = new Gauge({
    name: `${PREFIX}storage_blobs`,
    help: 'Blobs and manifests stored, by store (hosted, proxy).',
    labelNames: ['store'] as const,
    registers: [this.prometheus],
  });
  private readonly syncItems = new Counter({
    name: `${PREFIX}proxy_sync_items_total`,
    help:
      'Manifests and blobs [[proxy.sync]] pre-warming handled, by upstream, kind and result ' +
      '(fetched: from the upstream, cached: already there, failed).',
    labelNames: ['upstream', 'kind', 'result'] as const,
    registers: [this.prometheus],
  });
  private readonly syncRuns = new Counter({
    name: `${PREFIX}proxy_sync_runs_total`,
    help: 'Runs of [[proxy.sync]] entries, by upstream and result (success, failure: something could not be fetched).',
    labelNames: ['upstream', 'result'] as const,
    registers: [this.prometheus],
  });
  private readonly syncLastRun = new Gauge({
    name: `${PREFIX}proxy_sync_last_run_timestamp_seconds`,
    help: 'When each [[proxy.sync]] image (a configured name) last finished a run, by image and result.',
    labelNames: ['image', 'result'] as const,
    registers: [this.prometheus],
  });
  private readStorage: (() => Promise<Record<StoreKind, { bytes: number; blobs: number }>>) | undefined;
  private readonly gcDeletedManifests = new Counter({
    name: `${PREFIX}gc_deleted_manifests_total`,
    help: 'Manifests garbage collection deleted, by reason (untagged, max_age, max_size).',
    labelNames: ['reason'] as const,
    registers: [this.prometheus],
  });

  private readonly pinnedBytes = new Gauge({
    name: `${PREFIX}proxy_pinned_bytes`,
    help: 'Bytes of pinned cache content (never evicted), as of the last garbage collection with [proxy] max_size.',
    registers: [this.prometheus],
  });
  private readonly pinnedOverMaxSize = new Gauge({
    name: `${PREFIX}proxy_pinned_over_max_size`,
    help: '1 when the last garbage collection left the cache over [proxy] max_size because pinned content alone exceeds it, else 0.',
    registers: [this.prometheus],
  });

  private readonly pins = new Gauge({
    name: `${PREFIX}proxy_pins`,
    help: 'Pins on cached content, by source (api: set through /api/pins; config: [[proxy.pin]]).',
    labelNames: ['source'] as const,
    registers: [this.prometheus],
  });
  private readPins: (() => Promise<Record<'api' | 'config', number>>) | undefined;
  private readonly rateLimitLimit = new Gauge({
    name: `${PREFIX}upstream_ratelimit_limit`,
    help: 'Pulls an upstream allows per window (its ratelimit-limit header, as Docker Hub sends it), by upstream and credential.',
    labelNames: ['upstream', 'credential'] as const,
    registers: [this.prometheus],
  });
  private readonly rateLimitRemaining = new Gauge({
    name: `${PREFIX}upstream_ratelimit_remaining`,
    help: 'Pulls left in the window (the last ratelimit-remaining header seen), by upstream and credential.',
    labelNames: ['upstream', 'credential'] as const,
    registers: [this.prometheus],
  });
  private readonly rateLimited = new Gauge({
    name: `${PREFIX}upstream_ratelimited`,
    help:
      '1 while cached tags of the upstream are served without revalidation because its pull budget is below ' +
      '[proxy] rate_limit_reserve or it answered 429, else 0; by upstream and credential.',
    labelNames: ['upstream', 'credential'] as const,
    registers: [this.prometheus],
  });
  private readRateLimits: (() => RateLimitReading[]) | undefined;

  constructor() {
    processMetrics(); // from now on, not from the first scrape: prom-client's CPU counters count from their start
    // Every series exists from the start, so a rate or an alert over it has something to read before the first event.
    for (const result of ['success', 'failure']) this.gcRuns.inc({ result }, 0);
    for (const store of ['hosted', 'proxy'] as const) {
      this.gcFreedBytes.inc({ store }, 0);
      this.gcDeletedBlobs.inc({ store }, 0);
    }
  }

  /** The stored bytes and blob counts by store, read from the index at each scrape; set by the Registry they belong to. */
  observeStorage(read: () => Promise<Record<StoreKind, { bytes: number; blobs: number }>>): void {
    this.readStorage = read;
  }

  /** Pins by source, read from the index at each scrape; set by the Registry they belong to. */
  observePins(read: () => Promise<Record<'api' | 'config', number>>): void {
    this.readPins = read;
  }

  /** Upstream pull budgets, read at each scrape; set by the Registry they belong to. */
  observeRateLimits(read: () => RateLimitReading[]): void {
    this.readRateLimits = read;
  }

  // --- HTTP ----------------------------------------------------------------------------------

  requestStarted(): void {
    this.httpInFlight.inc();
  }

  /** One request done: counted by method, route template and status, with its duration and body bytes each way. */
  requestFinished(method: string, route: string, status: number, seconds: number, bytesIn: number, bytesOut: number): void {
    this.httpInFlight.dec();
    const labels = { method, route };
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpDuration.observe(labels, seconds);
    this.httpReceived.inc(labels, bytesIn);
    this.httpSent.inc(labels, bytesOut);
  }

  // --- pull-through cache and upstreams --------------------------------------------------------

  /** A manifest or blob the pull-through cache served for `upstream`, and where from. */
  cacheServed(upstream: string, kind: CachedKind, result: CacheResult): void {
    const label = this.upstreamLabel(upstream);
    this.cacheRequests.inc({ upstream: label, kind, result });
    this.upstreamActivity.served(label, kind, result);
  }

  /** One of an upstream's URLs failed (`reason`), and the next was asked. */
  storeFull(store: string): void {
    this.storageFull.inc({ store });
  }

  upstreamFallback(upstream: string, reason: string): void {
    this.upstreamFallbacks.inc({ upstream: this.upstreamLabel(upstream), reason });
  }

  upstream(name: string): UpstreamObserver {
    const upstream = this.upstreamLabel(name);
    return {
      answered: (method, status) => {
        this.upstreamRequests.inc({ upstream, method, status: String(status) });
        this.upstreamActivity.answered(upstream, status);
      },
      failed: (reason) => {
        this.upstreamErrors.inc({ upstream, reason });
        this.upstreamActivity.failed(upstream, reason);
      },
    };
  }

  /** A manifest or blob pre-warming (`[[proxy.sync]]`) handled. */
  syncItem(upstream: string, kind: 'manifest' | 'blob', result: 'fetched' | 'cached' | 'failed'): void {
    this.syncItems.inc({ upstream: this.upstreamLabel(upstream), kind, result });
  }

  /** One `[[proxy.sync]]` entry's run done; `image` is a configured name, so the label stays bounded. */
  syncRun(upstream: string, image: string, failed: boolean, finishedAt: number): void {
    const result = failed ? 'failure' : 'success';
    this.syncRuns.inc({ upstream: this.upstreamLabel(upstream), result });
    this.syncLastRun.set({ image, result }, finishedAt / 1000);
  }

  private readonly upstreamLabels = new Set<string>();

  private upstreamLabel(name: string): string {
    if (this.upstreamLabels.has(name)) return name;
    if (this.upstreamLabels.size >= MAX_UPSTREAM_LABELS) return OTHER_UPSTREAMS;
    this.upstreamLabels.add(name);
    return name;
  }

  // --- garbage collection --------------------------------------------------------------------

  gcFinished(report: GcRunSummary): void {
    this.gcRuns.inc({ result: 'success' });
    for (const blob of report.blobs) {
      this.gcFreedBytes.inc({ store: blob.store }, blob.size);
      this.gcDeletedBlobs.inc({ store: blob.store });
    }
    for (const manifest of report.manifests) this.gcDeletedManifests.inc({ reason: manifest.reason });
    if (report.pinned) {
      this.pinnedBytes.set(report.pinned.bytes);
      this.pinnedOverMaxSize.set(report.pinned.overMaxSize ? 1 : 0);
    }
  }

  gcFailed(): void {
    this.gcRuns.inc({ result: 'failure' });
  }

  // --- exposition ----------------------------------------------------------------------------

  get contentType(): string {
    return this.prometheus.contentType;
  }

  /** The exposition text: ours, then the process's (CPU, memory, event loop, Node's GC). */
  async metrics(): Promise<string> {
    const stored = await this.readStorage?.();
    for (const store of ['hosted', 'proxy'] as const) {
      this.storageBytes.set({ store }, stored?.[store].bytes ?? 0);
      this.storageBlobs.set({ store }, stored?.[store].blobs ?? 0);
    }
    const pins = await this.readPins?.();
    for (const source of ['api', 'config'] as const) this.pins.set({ source }, pins?.[source] ?? 0);
    this.rateLimitLimit.reset();
    this.rateLimitRemaining.reset();
    this.rateLimited.reset();
    for (const state of this.readRateLimits?.() ?? []) {
      const labels = { upstream: this.upstreamLabel(state.upstream), credential: state.credential };
      if (state.limit !== null) this.rateLimitLimit.set(labels, state.limit);
      if (state.remaining !== null) this.rateLimitRemaining.set(labels, state.remaining);
      this.rateLimited.set(labels, state.limitedUntil !== null ? 1 : 0);
    }
    return `${await this.prometheus.metrics()}\n${await processMetrics().metrics()}`;
  }
}

let processRegistry: PrometheusRegistry | undefined;

/**
 * prom-client's process metrics, in one registry per process, started with the first RegistryMetrics. They
 * describe the process, not a server; and their collectors (a GC observer, an event loop delay timer, both
 * keeping no process alive) cannot be stopped, so one set per server would pile up in a test process.
 */
function processMetrics(): PrometheusRegistry {
  if (!processRegistry) {
    processRegistry = new PrometheusRegistry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

import { Config } from '../config/config';
import { Logger } from '../log';
import { RegistryMetrics } from '../metrics/registry-metrics';
import { AccessLog } from '../storage/access-log';
import { RecentManifests } from '../storage/recent-manifests';
import { BlobStore } from '../storage/blob-store';
import { PinStore } from '../storage/pins';
import type { Leases } from '../storage/leases';
import { RegistryIndex } from '../storage/registry-index';
import { BlobDownloads } from './blob-downloads';
import { CacheRoom } from './cache-room';
import { parseFreeSpace } from '../config/load-config';
import { NotFoundCache } from './not-found-cache';
import { CachedContent, ProxyRepository } from './proxy-repository';
import { RateLimits, RateLimitState } from './rate-limits';
import { Upstreams } from './upstreams';

/** The pull-through cache: repositories under proxy/<upstream>/… backed by proxy_storage and the index. */
export class PullThroughCache {
  private readonly upstreams: Upstreams;
  private readonly content: CachedContent;
  private readonly rateLimits: RateLimits;

  constructor(
    index: RegistryIndex,
    /** This process's leases in the index (one upstream download per blob among processes). */
    leases: Leases,
    store: BlobStore,
    config: Pick<Config, 'proxy' | 'max_manifest_size' | 'proxy_storage'>,
    log: Logger,
    metrics: RegistryMetrics,
    alternativeTagList?: CachedContent['alternativeTagList'],
    /** Evicts least-recently-used cached content until about so many bytes are free (`[proxy] min_free`). */
    makeRoom?: (bytes: number) => Promise<unknown>,
  ) {
    this.upstreams = new Upstreams(config.proxy, log, metrics);
    const pins = new PinStore(index.sql);
    this.rateLimits = new RateLimits(config.proxy.rate_limit_reserve, log);
    this.content = {
      index,
      store,
      manifests: new RecentManifests(),
      accessLog: new AccessLog(index),
      downloads: new BlobDownloads(store, config.proxy.max_concurrent_downloads),
      leases,
      manifestFetches: new Map(),
      tagTtlMs: config.proxy.tag_ttl,
      notFound: new NotFoundCache(config.proxy.not_found_ttl),
      maxManifestSize: config.max_manifest_size,
      serveDeleted: config.proxy.serve_deleted,
      isPinned: (repository, digest) => pins.protects(repository, digest),
      rateLimits: this.rateLimits,
      room: makeRoom && new CacheRoom(config.proxy_storage, parseFreeSpace(config.proxy.min_free)!, makeRoom),
      log,
      metrics,
      now: Date.now,
      alternativeTagList,
    };
  }

  /** `proxy/<upstream>/<name>`, resolved to its upstream; the name must already be valid. */
  repository(name: string): ProxyRepository {
    return new ProxyRepository(this.upstreams.parse(name), this.content);
  }

  /** Each upstream's pull budget as its answers announced it, and whether revalidation is paused for it. */
  rateLimitStates(): RateLimitState[] {
    return this.rateLimits.list();
  }

  flushAccess(): Promise<void> {
    return this.content.accessLog.flush();
  }

  purgeExpiredTokens(): void {
    this.upstreams.purgeExpiredTokens();
  }

  /** Aborts the upstream transfers under way (a shutdown); settles once they are gone. */
  abortDownloads(): Promise<void> {
    return this.content.downloads.abortAll();
  }

  close(): Promise<void> {
    return this.content.accessLog.close();
  }
}

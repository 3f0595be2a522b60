import type { UploadOwnerStore } from './auth/access-control';
import { Config, isPostgresUrl } from './config/config';
import { RegistryError } from './oci/errors';
import { GhcrCatalog, mergeRepositoryPages, withGhcrToken } from './ghcr/ghcr-catalog';
import { Logger } from './log';
import { RegistryMetrics } from './metrics/registry-metrics';
import type { UpstreamActivitySnapshot } from './metrics/upstream-activity';
import { isValidName } from './oci/names';
import { PROXY_PREFIX } from './proxy/upstreams';
import { PullThroughCache } from './proxy/pull-through-cache';
import { CacheSync } from './proxy/cache-sync';
import type { RateLimitState } from './proxy/rate-limits';
import { AccessLog } from './storage/access-log';
import { openBlobStores } from './storage/stores';
import type { BlobStore } from './storage/blob-store';
import { GarbageCollector, GcReport, VerifyReport } from './storage/gc';
import { ContentInventory } from './storage/content-inventory';
import { RecentManifests } from './storage/recent-manifests';
import { StorageHistory } from './storage/storage-history';
import { checkReadiness, Readiness } from './storage/readiness';
import { HostedContent, HostedRepository, Pagination, Repository } from './storage/repository';
import { Page, pageOf, RegistryIndex } from './storage/registry-index';
import { PinStore } from './storage/pins';
import { Leases } from './storage/leases';
import { configuredPins } from './config/pins';
import type { PinRegistry } from './http/routes/context';
import { UploadData, UploadSessions } from './storage/uploads';
import { FileUploadData } from './storage/file-upload-data';
import { BucketUploadData } from './storage/bucket-upload-data';
import { S3BlobStore } from './storage/s3-blob-store';
import { DiskFullReports, INDEX_STORE, SpaceReserve, isDiskFull } from './storage/disk-full';
import path from 'node:path';

/** The registry's content: hands out repositories by name and lists them. */
/** Journal room for a collection on a full disk: about 500 pages of the index. */
const INDEX_RESERVE_BYTES = 2 * 1024 * 1024;

/** The lease a garbage collection holds (renewed while it runs): a dead holder's lapses within a minute. */
const GC_LEASE = 'gc';
const GC_LEASE_TTL_MS = 60_000;

/** How often the index's WAL is checkpointed from the worker: at a few hundred commits a second, a few MiB. */
const WAL_CHECKPOINT_INTERVAL_MS = 1000;

export class Registry {
  private readonly hosted: HostedContent;
  private readonly pullThroughCache: PullThroughCache | null;
  /** ghcr.io's packages from GitHub's REST API (`[github]`), listed beside what is stored here. */
  private readonly ghcr: GhcrCatalog | null;
  private readonly collector: GarbageCollector;
  /** Pre-warming (`[[proxy.sync]]`); null with the cache disabled. */
  readonly cacheSync: CacheSync | null;
  /** Sizes, counts and times for people (the web UI), and eviction from the cache. */
  readonly inventory: ContentInventory;
  private cacheRoomRun: Promise<unknown> | undefined;
  /** Room for the index's journal on a full disk, given up so that a collection can free space (SQLite only). */
  private readonly indexReserve: SpaceReserve | null;
  /** Names a write refused for lack of space (507, which store), counts it and logs it once a minute. */
  readonly diskFull: DiskFullReports;
  /** The last garbage collection this process ran (not a dry run), for the web UI's storage page. */
  lastGarbageCollection: (GcReport & { finishedAt: number }) | undefined;
  /** The collection under way: a scheduled run and one asked for from the web UI share it, never overlap. */
  private garbageCollection: Promise<GcReport> | undefined;
  /** Bytes per store over time and the collections that ran, kept in the index (the web UI's storage page). */
  readonly storageHistory: StorageHistory;
  private storageSampling: NodeJS.Timeout | undefined;
  /** Pins on cached content: `[[proxy.pin]]` and those set through /api/pins. */
  readonly pins: PinRegistry;
  private readonly pinStore: PinStore;
  /** Work at most one process sharing the index does at a time (garbage collection). */
  private readonly leases: Leases;
  /** Where upload sessions' bytes are kept. */
  private readonly uploadData: UploadData;
  /** Where hosted and cached blobs and manifests are kept (`[storage]`). */
  private readonly stores: { hosted: BlobStore; proxy: BlobStore };
  /** The readiness probe under way, which concurrent callers share. */
  private readinessProbe: Promise<Readiness> | undefined;

  /**
   * `metrics`: what the server's listeners expose at /metrics; the cache, the upstream clients and garbage
   * collection count into it. One of its own when not given.
   */
  constructor(
    readonly index: RegistryIndex,
    private readonly config: Config,
    private readonly log: Logger,
    readonly metrics: RegistryMetrics = new RegistryMetrics(),
  ) {
    this.diskFull = new DiskFullReports(
      [
        { name: 'hosted storage', path: config.registry_storage },
        { name: 'upload storage', path: config.temporary_registry_storage },
        { name: 'proxy cache', path: config.proxy_storage },
        ...(isPostgresUrl(config.database) ? [] : [{ name: INDEX_STORE, path: config.database }]),
      ].map((store) => ({ ...store, path: path.resolve(store.path) })),
      (store, first, error) => {
        metrics.storeFull(store);
        if (first) log.error('a store is full: writes to it are refused with 507 until space is freed (logged once a minute)', { store, error: error.message });
      },
    );
    // Room for SQLite's journal on a full disk; PostgreSQL's disk is its own.
    this.indexReserve = isPostgresUrl(config.database) ? null : new SpaceReserve(`${config.database}-reserve`, INDEX_RESERVE_BYTES);
    this.indexReserve?.restore();
    // This process as the holder of leases: garbage collection's and the cache's downloads.
    this.leases = new Leases(index.sql);
    const recordWrite = (digest: string, size: number) => index.recordBlobWrite(digest, size);
    // The cache's store exists even with the cache disabled: what it holds is still collected.
    this.stores = openBlobStores(config, recordWrite);
    const { hosted: hostedStore, proxy: proxyStore } = this.stores;
    // Sessions' bytes in the bucket with the s3 backend (any replica continues a session), else in files.
    this.uploadData =
      hostedStore instanceof S3BlobStore
        ? new BucketUploadData(index, hostedStore)
        : new FileUploadData(index, hostedStore, config.temporary_registry_storage);
    this.inventory = new ContentInventory(index, { hosted: hostedStore, proxy: proxyStore });
    this.hosted = {
      index,
      store: hostedStore,
      uploads: new UploadSessions(index, this.uploadData, config.max_upload_sessions),
      manifests: new RecentManifests(),
      accessLog: new AccessLog(index),
    };
    this.ghcr = GhcrCatalog.fromConfig(config, index.sql, log);
    // [github] token is ghcr.io's upstream credential; its REST API stands in when ghcr.io's tags/list fails.
    const proxyConfig = { ...config, proxy: withGhcrToken(config.proxy, config.github) };
    this.pullThroughCache = config.proxy.enabled
      ? new PullThroughCache(
          index,
          this.leases,
          proxyStore,
          proxyConfig,
          log,
          metrics,
          this.ghcr?.alternativeTagList,
          // min_free is about the cache's file system: a bucket's free space is neither known nor the registry's to keep.
          config.storage.backend === 'filesystem' ? (bytes) => this.makeRoomInCache(bytes) : undefined,
        )
      : null;
    const cache = this.pullThroughCache;
    this.cacheSync = cache ? new CacheSync(proxyConfig.proxy, (name) => cache.repository(name), log, metrics) : null;
    this.collector = new GarbageCollector({
      index,
      stores: { hosted: hostedStore, proxy: proxyStore },
      uploads: this.uploadData,
      gc: config.gc,
      proxy: config.proxy,
      log,
      flushAccess: async () => {
        await this.hosted.accessLog.flush();
        await this.pullThroughCache?.flushAccess();
      },
    });
    metrics.observeStorage(() => index.storedBytes());
    this.storageHistory = new StorageHistory(index.sql);
    metrics.observeRateLimits(() => this.upstreamRateLimits());
    this.pinStore = new PinStore(index.sql);
    const pinStore = this.pinStore;
    metrics.observePins(() => pinStore.counts());
    this.pins = {
      add: async (target, createdBy) => ({
        created: await pinStore.add(target, createdBy),
        cached:
          ((await index.resolveTag(target.repository, target.reference)) ?? (await index.manifest(target.repository, target.reference))) !== null,
      }),
      remove: (target) => pinStore.remove(target),
      list: () => pinStore.list(),
    };
  }

  /** Opens the index (a SQLite file or PostgreSQL, migrated) and everything built on it. */
  static async open(config: Config, log: Logger, metrics?: RegistryMetrics): Promise<Registry> {
    const index = await RegistryIndex.open(config.database);
    try {
      const registry = new Registry(index, config, log, metrics);
      // The configuration is what counts: its pins replace the configured ones of the last start.
      const configured = configuredPins(config.proxy);
      await registry.pinStore.replaceConfigured(configured.images, configured.prefixes);
      return registry;
    } catch (error) {
      await index.close();
      throw error;
    }
  }

  /**
   * The repository called `name`: cached from an upstream under proxy/, hosted otherwise. Routes use
   * either the same way. NAME_INVALID when the name breaks the dist-spec grammar.
   */
  repository(name: string): Repository {
    if (!isValidName(name)) throw new RegistryError('NAME_INVALID', { detail: { name } });
    if (name.startsWith(PROXY_PREFIX)) {
      if (!this.pullThroughCache) throw new RegistryError('NAME_UNKNOWN', { message: 'the pull-through cache is disabled', detail: { name } });
      return this.pullThroughCache.repository(name);
    }
    return new HostedRepository(name, this.hosted);
  }

  /**
   * Repositories by name, hosted and cached, and ghcr.io's packages with `[github]`; with a `prefix` (a
   * mirror's proxy/<upstream>/), only those under it, named without it.
   */
  async listRepositories(page: Pagination, prefix = ''): Promise<Page<string>> {
    const local = await this.listStoredRepositories(page, prefix);
    if (!this.ghcr) return local;
    const packages = (await this.ghcr.repositoryNames()).filter((name) => name.startsWith(prefix));
    return mergeRepositoryPages(local, packages.map((name) => name.slice(prefix.length)), page);
  }

  private async listStoredRepositories(page: Pagination, prefix: string): Promise<Page<string>> {
    if (prefix === '') return this.index.listRepositories(page.n, page.last);
    // The names under a prefix are one run of the sorted list, right after the prefix itself. One more than
    // asked for tells whether that run goes on past this page (the index's own `next` may lie beyond it).
    const listed = await this.index.listRepositories(page.n === undefined ? undefined : page.n + 1, prefix + (page.last ?? ''));
    const names = listed.items.filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length));
    return pageOf(names, page.n);
  }

  /**
   * Each upstream's pull budget (Docker Hub's ratelimit-* headers, 429s) and whether cached tags are served
   * without revalidation because of it (`limitedUntil`), for the web UI and metrics.
   */
  upstreamRateLimits(): RateLimitState[] {
    return this.pullThroughCache?.rateLimitStates() ?? [];
  }

  /** Upload session owners, kept with the sessions in the index (access control). */
  get uploadOwners(): UploadOwnerStore {
    return {
      save: (uploadId, owner) => this.index.setUploadOwner(uploadId, owner),
      load: async (uploadId) => (await this.index.upload(uploadId))?.owner,
    };
  }

  /** Deletes what nothing uses, evicts the cache to its limits, expires uploads and upstream tokens. */
  async collectGarbage(options: { dryRun?: boolean } = {}): Promise<GcReport> {
    if (options.dryRun) return this.collector.collect(options);
    this.garbageCollection ??= this.runGarbageCollection().finally(() => (this.garbageCollection = undefined));
    return this.garbageCollection;
  }

  /**
   * `[proxy] min_free`: evicts least-recently-used cached content until about `bytes` are free. Runs after
   * a collection under way, never beside it, and concurrent fills that are short share one run.
   */
  private makeRoomInCache(bytes: number): Promise<unknown> {
    this.cacheRoomRun ??= (async () => {
      await this.garbageCollection?.catch(() => undefined);
      return this.exclusively(() => this.collector.makeRoomInCache(bytes));
    })().finally(() => (this.cacheRoomRun = undefined));
    return this.cacheRoomRun;
  }

  private async runGarbageCollection(): Promise<GcReport> {
    await this.cacheRoomRun?.catch(() => undefined);
    this.pullThroughCache?.purgeExpiredTokens();
    try {
      // The lease is a write to the index too: on a full disk, it needs the reserve as much as the collection.
      const report = await this.withIndexReserve(() => this.exclusively(() => this.collector.collect()));
      this.metrics.gcFinished(report);
      const finishedAt = Date.now();
      this.lastGarbageCollection = { ...report, finishedAt };
      try {
        await this.storageHistory.recordGcRun(report, finishedAt);
        await this.sampleStorage(finishedAt);
      } catch (error) {
        // The collection itself is done; only its record is lost (a full disk, say).
        this.log.warn('cannot record the garbage collection in the index', { error: (error as Error).message });
      }
      return report;
    } catch (error) {
      this.metrics.gcFailed();
      throw error;
    }
  }

  /**
   * Runs a collection (or a min_free eviction) while no other process sharing the index runs one: the
   * `gc` lease (leases.ts). UNAVAILABLE when another holds it; its sweep covers what this one would.
   */
  private async exclusively<T>(work: () => Promise<T>): Promise<T> {
    const outcome = await this.leases.whileHeld(GC_LEASE, GC_LEASE_TTL_MS, work);
    if (!outcome.held) {
      throw new RegistryError('UNAVAILABLE', {
        message: 'a garbage collection is running in another process sharing this index; try again later',
        headers: { 'Retry-After': '60' },
      });
    }
    return outcome.result;
  }

  /** Per upstream, since the server started: what the cache served and how the upstream answered (the web UI). */
  upstreamActivity(): Record<string, UpstreamActivitySnapshot> {
    return this.metrics.upstreamActivity.snapshot();
  }

  /** Records what each store holds now (storage_samples), for the storage chart. */
  async sampleStorage(now = Date.now()): Promise<void> {
    await this.storageHistory.sample(await this.index.storedBytes(), now);
  }

  /** Samples storage now and every `intervalMs` while the server runs; `close` stops it. */
  sampleStorageEvery(intervalMs: number): void {
    const sample = () =>
      void this.sampleStorage().catch((error: unknown) => {
        this.log.warn('cannot sample storage sizes', { error: (error as Error).message });
      });
    sample();
    this.storageSampling = setInterval(sample, intervalMs);
    this.storageSampling.unref();
  }

  /** Finishes or undoes what a collection interrupted by a crash left half removed (at start). */
  async recoverRemovals(): Promise<void> {
    await this.collector.recoverRemovals();
  }

  /** Re-hashes every stored file; corrupt ones are quarantined and never served again. */
  verify(): Promise<VerifyReport> {
    return this.withIndexReserve(() => this.collector.verify());
  }

  /**
   * Runs `work` (which only removes, but must record it in the index); when it fails for lack of space, gives
   * up the space set aside for the index and runs it again; sets it aside anew once there is room.
   */
  private async withIndexReserve<T>(work: () => Promise<T>): Promise<T> {
    const result = await work().catch((error: unknown) => {
      if (!isDiskFull(error) || !this.indexReserve?.release()) throw error;
      this.log.warn('the disk is full: the space set aside for the index is used to let this run', { reserve: this.indexReserve.path });
      return work();
    });
    this.indexReserve?.restore();
    return result;
  }

  /**
   * Whether storage takes writes and the index answers (`/readyz`). Probes that arrive while one runs
   * share its answer: a flood of unauthenticated probes costs one probe's fsyncs at a time.
   */
  readiness(): Promise<Readiness> {
    this.readinessProbe ??= checkReadiness(this.config, this.index, this.stores).finally(() => (this.readinessProbe = undefined));
    return this.readinessProbe;
  }

  /** Aborts the pull-through cache's upstream transfers (a shutdown, before close): nothing half-downloaded is kept. */
  async abortDownloads(): Promise<void> {
    await this.pullThroughCache?.abortDownloads();
  }

  /** WAL checkpoints on a worker thread rather than in the requests whose commits fill it (the server only). */
  checkpointIndexInBackground(): void {
    this.index.checkpointInBackground(WAL_CHECKPOINT_INTERVAL_MS, (error) =>
      this.log.error('background WAL checkpoints stopped; SQLite checkpoints in the commits again', { error: error.message }),
    );
  }

  async close(): Promise<void> {
    clearInterval(this.storageSampling);
    // The last access times are worth keeping; an index that refuses them (full) must not keep it open.
    await this.pullThroughCache?.close().catch(() => undefined);
    await this.hosted.accessLog.close().catch(() => undefined);
    await this.index.close();
  }
}

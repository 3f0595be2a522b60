import pLimit, { LimitFunction } from 'p-limit';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProxyConfig, SyncEntryConfig } from '../config/config';
import { storedName } from '../config/stored-names';
import { Logger } from '../log';
import { Digest, toDigest, toManifestReference } from '../oci/digest';
import { ManifestParseError, parseManifest } from '../oci/manifest';
import { parsePlatform, platformMatches, PlatformFilter } from '../oci/platform';
import type { StoredManifest } from '../storage/repository';
import type { ProxyRepository } from './proxy-repository';

/**
 * Bounds on one entry's run, whatever the upstream answers: an index of thousands of children or a
 * referrers chain that never ends is cut here (and the run says so), not followed.
 */
const MAX_MANIFESTS_PER_RUN = 2000;
/** Referrers of referrers (the signature of an SBOM) are followed this deep, no deeper. */
const MAX_REFERRER_DEPTH = 2;

/** What one `[[proxy.sync]]` entry's run did. */
export interface SyncReport {
  image: string;
  tags: string[];
  manifests: { fetched: number; cached: number };
  blobs: { fetched: number; cached: number; bytesFetched: number };
  failed: Array<{ what: string; error: string }>;
  /** Limits that cut the run short (tags beyond max_tags, manifests beyond the per-run bound). */
  notes: string[];
  durationMs: number;
}

export interface SyncMetrics {
  syncItem(upstream: string, kind: 'manifest' | 'blob', result: 'fetched' | 'cached' | 'failed'): void;
  syncRun(upstream: string, image: string, failed: boolean, finishedAt: number): void;
}

/** A running schedule; `stop` ends it and settles once the runs under way have stopped. */
export interface SyncSchedule {
  stop(): Promise<void>;
}

/**
 * Pre-warming (`[[proxy.sync]]`): fetches the tags an entry names into the cache ahead of any pull, through
 * the same paths a pull takes (one upstream transfer per blob, shared with clients pulling meanwhile; the
 * digest verified before anything is kept): each tag's manifest, for an index the children of the wanted
 * platforms, the config and layers of each image, and the referrers (signatures, SBOMs) of each manifest.
 * `sync_concurrency` bounds the fetches in flight for all entries together; `sync_bandwidth` paces each
 * upstream (the next blob waits until the bytes already fetched fit the rate).
 */
export class CacheSync {
  private readonly limit: LimitFunction;
  private readonly pacer: BandwidthPacer;
  private readonly stopping = new AbortController();

  constructor(
    private readonly config: ProxyConfig,
    private readonly repository: (name: string) => ProxyRepository,
    private readonly log: Logger,
    private readonly metrics?: SyncMetrics,
  ) {
    this.limit = pLimit(config.sync_concurrency);
    this.pacer = new BandwidthPacer(config.sync_bandwidth);
  }

  get entries(): readonly SyncEntryConfig[] {
    return this.config.sync;
  }

  /** Every entry once, one after the other (the `sync` command). */
  async runAll(): Promise<SyncReport[]> {
    const reports: SyncReport[] = [];
    for (const entry of this.config.sync) reports.push(await this.run(entry));
    return reports;
  }

  /** Runs each entry with an interval now and then every interval; an entry's runs never overlap. */
  schedule(): SyncSchedule {
    const timers: NodeJS.Timeout[] = [];
    const running = new Set<Promise<unknown>>();
    for (const entry of this.config.sync) {
      if (entry.interval <= 0) continue;
      let current: Promise<unknown> | null = null;
      const start = () => {
        if (current || this.stopping.signal.aborted) return;
        current = this.run(entry)
          .catch((error: Error) => this.log.error('cache sync failed', { image: entry.image, error: error.stack ?? error.message }))
          .finally(() => {
            running.delete(current!);
            current = null;
          });
        running.add(current);
      };
      // The first run right after the start: a cache that was just set up (or emptied) fills now.
      const first = setTimeout(start, 0);
      const every = setInterval(start, entry.interval);
      first.unref();
      every.unref();
      timers.push(first, every);
    }
    return {
      stop: async () => {
        for (const timer of timers) clearTimeout(timer);
        this.stopping.abort();
        await Promise.allSettled([...running]);
      },
    };
  }

  /** One entry's run: never throws for what the upstream does; failures are in the report. */
  async run(entry: SyncEntryConfig): Promise<SyncReport> {
    const started = Date.now();
    const name = storedName(this.config, entry.image);
    const upstream = name.split('/')[1];
    const repository = this.repository(name);
    const platforms = entry.platforms.map((text) => parsePlatform(text)).filter((p): p is PlatformFilter => p !== null);
    const report: SyncReport = {
      image: name,
      tags: [],
      manifests: { fetched: 0, cached: 0 },
      blobs: { fetched: 0, cached: 0, bytesFetched: 0 },
      failed: [],
      notes: [],
      durationMs: 0,
    };
    const seenManifests = new Set<string>();
    const seenBlobs = new Set<string>();
    const fail = (what: string, error: unknown, kind: 'manifest' | 'blob') => {
      report.failed.push({ what, error: (error as Error).message });
      this.metrics?.syncItem(upstream, kind, 'failed');
    };

    const syncBlob = async (digest: Digest): Promise<void> => {
      if (seenBlobs.has(digest)) return;
      seenBlobs.add(digest);
      await this.limit(async () => {
        if (this.stopping.signal.aborted) return;
        try {
          await this.pacer.wait(upstream, this.stopping.signal);
          const { result, size } = await repository.prefetchBlob(digest);
          if (result === 'fetched') {
            report.blobs.fetched++;
            report.blobs.bytesFetched += size;
            this.pacer.charge(upstream, size);
          } else {
            report.blobs.cached++;
          }
          this.metrics?.syncItem(upstream, 'blob', result);
        } catch (error) {
          if (this.stopping.signal.aborted) return;
          fail(`${name}@${digest}`, error, 'blob');
        }
      });
    };

    /** What a manifest needs: an index's children of the wanted platforms, an image's blobs, and its referrers. */
    const syncManifest = async (manifest: StoredManifest, referrerDepth: number): Promise<void> => {
      let parsed;
      try {
        parsed = parseManifest(manifest.content, manifest.mediaType);
      } catch (error) {
        if (error instanceof ManifestParseError) return fail(`${name}@${manifest.digest}`, error, 'manifest');
        throw error;
      }
      const work: Promise<void>[] = [];
      for (const child of parsed.manifests) {
        if (!platformMatches(child.platform, platforms)) continue;
        work.push(fetchByDigest(child.digest, referrerDepth));
      }
      for (const blob of parsed.blobs) work.push(syncBlob(toDigest(blob.digest)));
      if (referrerDepth < MAX_REFERRER_DEPTH) work.push(syncReferrers(toDigest(manifest.digest), referrerDepth + 1));
      await Promise.all(work);
    };

    const fetchByDigest = async (digest: string, referrerDepth: number): Promise<void> => {
      if (seenManifests.has(digest)) return;
      if (seenManifests.size >= MAX_MANIFESTS_PER_RUN) {
        if (!report.notes.some((note) => note.startsWith('stopped at'))) report.notes.push(`stopped at ${MAX_MANIFESTS_PER_RUN} manifests`);
        return;
      }
      seenManifests.add(digest);
      let manifest: StoredManifest | undefined;
      await this.limit(async () => {
        if (this.stopping.signal.aborted) return;
        try {
          const reference = toDigest(digest);
          const wasCached = await repository.holdsManifest(reference);
          manifest = await repository.getManifest(reference);
          this.countManifest(report, upstream, wasCached);
        } catch (error) {
          if (!this.stopping.signal.aborted) fail(`${name}@${digest}`, error, 'manifest');
        }
      });
      if (manifest) await syncManifest(manifest, referrerDepth);
    };

    const syncReferrers = async (subject: Digest, depth: number): Promise<void> => {
      let referrers;
      try {
        referrers = await this.limit(() => repository.listReferrers(subject));
      } catch (error) {
        return fail(`referrers of ${name}@${subject}`, error, 'manifest');
      }
      await Promise.all(referrers.map((referrer) => fetchByDigest(referrer.digest, depth)));
    };

    const syncTag = async (tag: string): Promise<void> => {
      let manifest: StoredManifest | undefined;
      await this.limit(async () => {
        if (this.stopping.signal.aborted) return;
        try {
          const before = await repository.cachedTagDigest(tag);
          const heldBefore = before !== undefined && (await repository.holdsManifest(toDigest(before)));
          manifest = await repository.getManifest(toManifestReference(tag));
          this.countManifest(report, upstream, heldBefore && before === manifest.digest);
        } catch (error) {
          if (!this.stopping.signal.aborted) fail(`${name}:${tag}`, error, 'manifest');
        }
      });
      if (!manifest || seenManifests.has(manifest.digest)) return;
      seenManifests.add(manifest.digest);
      await syncManifest(manifest, 0);
    };

    try {
      report.tags = await this.tagsOf(entry, repository, report);
      await Promise.all(report.tags.map(syncTag));
    } catch (error) {
      fail(name, error, 'manifest');
    }
    report.durationMs = Date.now() - started;
    this.metrics?.syncRun(upstream, name, report.failed.length > 0, Date.now());
    const summary = {
      image: name,
      tags: report.tags,
      manifests: report.manifests,
      blobs: report.blobs,
      failed: report.failed.length,
      notes: report.notes,
      durationMs: report.durationMs,
    };
    if (report.failed.length > 0) this.log.warn('cache sync finished with failures', { ...summary, failures: report.failed.slice(0, 20) });
    else this.log.info('cache sync finished', summary);
    return report;
  }

  /** The tags an entry names: its list, or the upstream's tags matching its pattern (the last `max_tags` in sort order). */
  private async tagsOf(entry: SyncEntryConfig, repository: ProxyRepository, report: SyncReport): Promise<string[]> {
    if (entry.tags.length > 0) return [...entry.tags];
    const pattern = new RegExp(entry.tag_pattern);
    const listed = await this.limit(() => repository.listTags({}));
    const matching = listed.items.filter((tag) => pattern.test(tag));
    if (matching.length > entry.max_tags) {
      report.notes.push(`${matching.length} tags match; the last ${entry.max_tags} in sort order were fetched (max_tags)`);
      return matching.slice(-entry.max_tags);
    }
    return matching;
  }

  private countManifest(report: SyncReport, upstream: string, wasCached: boolean): void {
    if (wasCached) report.manifests.cached++;
    else report.manifests.fetched++;
    this.metrics?.syncItem(upstream, 'manifest', wasCached ? 'cached' : 'fetched');
  }
}

/**
 * `sync_bandwidth`, per upstream: each blob fetched books its bytes at the rate, and the next one starts
 * once the time booked so far has passed. An average over blobs, not a cap on each transfer: a transfer
 * is shared with clients pulling the same blob, and throttling it would slow them too.
 */
export class BandwidthPacer {
  private readonly readyAt = new Map<string, number>();

  constructor(
    /** Bytes per second; 0: no limit. */
    private readonly bytesPerSecond: number,
    private readonly now: () => number = Date.now,
    private readonly delay: (ms: number, signal: AbortSignal) => Promise<unknown> = (ms, signal) =>
      sleep(ms, undefined, { signal }).catch(() => undefined),
  ) {}

  /** Settles when the upstream's next blob may start (at once without a limit, or once `signal` aborts). */
  async wait(upstream: string, signal: AbortSignal): Promise<void> {
    if (this.bytesPerSecond <= 0) return;
    const wait = (this.readyAt.get(upstream) ?? 0) - this.now();
    if (wait > 0) await this.delay(wait, signal);
  }

  /** Books `bytes` fetched from the upstream. */
  charge(upstream: string, bytes: number): void {
    if (this.bytesPerSecond <= 0) return;
    const from = Math.max(this.readyAt.get(upstream) ?? 0, this.now());
    this.readyAt.set(upstream, from + (bytes / this.bytesPerSecond) * 1000);
  }
}

/** The `sync` command's report, a line per entry and per failure. */
export function describeSync(reports: SyncReport[]): string {
  const lines: string[] = [];
  for (const report of reports) {
    lines.push(
      `${report.image}: ${report.tags.length} tag(s) [${report.tags.join(', ')}]; manifests ${report.manifests.fetched} fetched, ` +
        `${report.manifests.cached} already cached; blobs ${report.blobs.fetched} fetched (${report.blobs.bytesFetched} bytes), ` +
        `${report.blobs.cached} already cached; ${report.failed.length} failed; ${report.durationMs} ms`,
    );
    for (const note of report.notes) lines.push(`  note: ${note}`);
    for (const failure of report.failed) lines.push(`  failed: ${failure.what}: ${failure.error}`);
  }
  if (reports.length === 0) lines.push('no [[proxy.sync]] entries configured');
  return `${lines.join('\n')}\n`;
}

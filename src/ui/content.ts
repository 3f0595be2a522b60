import type { RegistryContent } from '../http/routes/context';
import type { UpstreamActivitySnapshot } from '../metrics/upstream-activity';
import type { RateLimitState } from '../proxy/rate-limits';
import type { ContentInventory } from '../storage/content-inventory';
import type { GcReport } from '../storage/gc';
import type { StorageHistory } from '../storage/storage-history';

/**
 * The registry as the web UI sees it: what routes see, plus the index's sizes, counts and times, and a
 * garbage collection it can ask for. `src/registry.ts` provides it; the UI knows only this much of it.
 */
export interface UiContent extends RegistryContent {
  readonly inventory: Pick<
    ContentInventory,
    'repositories' | 'tags' | 'referrers' | 'storedBytes' | 'readManifest' | 'readBlob' | 'evict'
  >;
  /** Runs (or joins the run under way) or, with dryRun, plans a garbage collection. */
  collectGarbage(options: { dryRun?: boolean }): Promise<GcReport>;
  /** The last collection this process ran, scheduled or asked for; undefined before the first. */
  readonly lastGarbageCollection: (GcReport & { finishedAt: number }) | undefined;
  /** Bytes per store over time and the collections that ran (kept in the index). */
  readonly storageHistory: Pick<StorageHistory, 'samples' | 'gcRuns'>;
  /** Per upstream, since the server started: cache hits, misses and stale serves; last success and error. */
  upstreamActivity(): Record<string, UpstreamActivitySnapshot>;
  /** Each upstream's pull budget as its answers announced it (Docker Hub's ratelimit-* headers, 429s). */
  upstreamRateLimits(): RateLimitState[];
}

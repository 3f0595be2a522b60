import Database from 'better-sqlite3';
import type { GcReport, StoreKind } from './gc';

/** Samples older than this are dropped: a quarter of hourly samples is ~2,200 rows per store. */
export const SAMPLE_RETENTION_MS = 90 * 24 * 3_600_000;
/** Samples kept per store whatever their age (samples after each collection could come often). */
export const MAX_SAMPLES = 5_000;
/** Collections remembered, newest first. */
export const MAX_GC_RUNS = 100;

/** Bytes and files of each store at one time. */
export interface StorageSample {
  at: number;
  stores: Record<StoreKind, { bytes: number; blobs: number }>;
}

/** A garbage collection that ran: when it ended and what it freed. */
export interface GcRunRecord {
  finishedAt: number;
  durationMs: number;
  bytesFreed: number;
  /** Blob files deleted. */
  blobs: number;
  /** Manifests deleted (untagged) or evicted from the cache (max_age, max_size). */
  manifests: number;
  uploadsExpired: number;
}

/**
 * What storage looked like over time, and the collections that ran, in the index: they survive a restart
 * and include the `gc` command's runs. Both tables are bounded (age and count), so they never grow with uptime.
 */
export class StorageHistory {
  private readonly statements;

  constructor(private readonly db: Database.Database) {
    this.statements = {
      insertSample: db.prepare(
        'INSERT INTO storage_samples (sampled_at, store, bytes, blobs) VALUES (@at, @store, @bytes, @blobs) ON CONFLICT DO UPDATE SET bytes = excluded.bytes, blobs = excluded.blobs',
      ),
      dropOldSamples: db.prepare('DELETE FROM storage_samples WHERE sampled_at < ?'),
      dropExtraSamples: db.prepare(
        'DELETE FROM storage_samples WHERE store = @store AND sampled_at <= (SELECT sampled_at FROM storage_samples WHERE store = @store ORDER BY sampled_at DESC LIMIT 1 OFFSET @keep)',
      ),
      samples: db.prepare('SELECT sampled_at AS at, store, bytes, blobs FROM storage_samples WHERE sampled_at >= ? ORDER BY sampled_at, store'),
      insertGcRun: db.prepare(
        'INSERT INTO gc_runs (finished_at, duration_ms, bytes_freed, blobs, manifests, uploads_expired) VALUES (@finishedAt, @durationMs, @bytesFreed, @blobs, @manifests, @uploadsExpired)',
      ),
      dropOldGcRuns: db.prepare('DELETE FROM gc_runs WHERE id <= (SELECT id FROM gc_runs ORDER BY id DESC LIMIT 1 OFFSET ?)'),
      gcRuns: db.prepare(
        `SELECT finished_at AS finishedAt, duration_ms AS durationMs, bytes_freed AS bytesFreed, blobs, manifests,
                uploads_expired AS uploadsExpired FROM gc_runs ORDER BY id DESC LIMIT ?`,
      ),
    };
  }

  /** Records what each store holds now; drops samples past the retention. */
  sample(stores: Record<StoreKind, { bytes: number; blobs: number }>, now = Date.now()): void {
    this.db.transaction(() => {
      for (const store of ['hosted', 'proxy'] as const) {
        this.statements.insertSample.run({ at: now, store, ...stores[store] });
        this.statements.dropExtraSamples.run({ store, keep: MAX_SAMPLES });
      }
      this.statements.dropOldSamples.run(now - SAMPLE_RETENTION_MS);
    })();
  }

  /** Samples from `since` on, oldest first. */
  samples(since = 0): StorageSample[] {
    const rows = this.statements.samples.all(since) as Array<{ at: number; store: StoreKind; bytes: number; blobs: number }>;
    const byTime = new Map<number, StorageSample>();
    for (const row of rows) {
      let sample = byTime.get(row.at);
      if (!sample) {
        sample = { at: row.at, stores: { hosted: { bytes: 0, blobs: 0 }, proxy: { bytes: 0, blobs: 0 } } };
        byTime.set(row.at, sample);
      }
      sample.stores[row.store] = { bytes: row.bytes, blobs: row.blobs };
    }
    return [...byTime.values()];
  }

  recordGcRun(report: GcReport, finishedAt = Date.now()): void {
    this.db.transaction(() => {
      this.statements.insertGcRun.run({
        finishedAt,
        durationMs: report.durationMs,
        bytesFreed: report.bytesFreed,
        blobs: report.blobs.length,
        manifests: report.manifests.length,
        uploadsExpired: report.uploadsExpired,
      });
      this.statements.dropOldGcRuns.run(MAX_GC_RUNS);
    })();
  }

  /** The last collections, newest first. */
  gcRuns(limit = MAX_GC_RUNS): GcRunRecord[] {
    return this.statements.gcRuns.all(limit) as GcRunRecord[];
  }
}

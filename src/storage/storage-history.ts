import type { SqlQueries } from './database/sql-database';
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
  constructor(private readonly sql: SqlQueries) {}

  /** Records what each store holds now; drops samples past the retention. */
  sample(stores: Record<StoreKind, { bytes: number; blobs: number }>, now = Date.now()): Promise<void> {
    return this.sql.transaction(async (q) => {
      for (const store of ['hosted', 'proxy'] as const) {
        await q.run(SQL.insertSample, { at: now, store, ...stores[store] });
        await q.run(SQL.dropExtraSamples, { store, keep: MAX_SAMPLES });
      }
      await q.run(SQL.dropOldSamples, { before: now - SAMPLE_RETENTION_MS });
    });
  }

  /** Samples from `since` on, oldest first. */
  async samples(since = 0): Promise<StorageSample[]> {
    const rows = await this.sql.all<{ at: number; store: StoreKind; bytes: number; blobs: number }>(SQL.samples, { since });
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

  recordGcRun(report: GcReport, finishedAt = Date.now()): Promise<void> {
    return this.sql.transaction(async (q) => {
      await q.run(SQL.insertGcRun, {
        finishedAt,
        durationMs: report.durationMs,
        bytesFreed: report.bytesFreed,
        blobs: report.blobs.length,
        manifests: report.manifests.length,
        uploadsExpired: report.uploadsExpired,
      });
      await q.run(SQL.dropOldGcRuns, { keep: MAX_GC_RUNS });
    });
  }

  /** The last collections, newest first. */
  gcRuns(limit = MAX_GC_RUNS): Promise<GcRunRecord[]> {
    return this.sql.all<GcRunRecord>(SQL.gcRuns, { limit });
  }
}

const SQL = {
  insertSample: `INSERT INTO storage_samples (sampled_at, store, bytes, blobs) VALUES (@at, @store, @bytes, @blobs)
     ON CONFLICT (sampled_at, store) DO UPDATE SET bytes = excluded.bytes, blobs = excluded.blobs`,
  dropOldSamples: 'DELETE FROM storage_samples WHERE sampled_at < @before',
  dropExtraSamples: `DELETE FROM storage_samples WHERE store = @store AND sampled_at <= (
     SELECT sampled_at FROM storage_samples WHERE store = @store ORDER BY sampled_at DESC LIMIT 1 OFFSET @keep)`,
  samples: 'SELECT sampled_at AS at, store, bytes, blobs FROM storage_samples WHERE sampled_at >= @since ORDER BY sampled_at, store',
  insertGcRun: `INSERT INTO gc_runs (finished_at, duration_ms, bytes_freed, blobs, manifests, uploads_expired)
     VALUES (@finishedAt, @durationMs, @bytesFreed, @blobs, @manifests, @uploadsExpired)`,
  dropOldGcRuns: 'DELETE FROM gc_runs WHERE id <= (SELECT id FROM gc_runs ORDER BY id DESC LIMIT 1 OFFSET @keep)',
  gcRuns: `SELECT finished_at AS "finishedAt", duration_ms AS "durationMs", bytes_freed AS "bytesFreed", blobs, manifests,
     uploads_expired AS "uploadsExpired" FROM gc_runs ORDER BY id DESC LIMIT @limit`,
};

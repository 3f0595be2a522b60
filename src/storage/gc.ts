import { pipeline } from 'node:stream/promises';
import { GcConfig, ProxyConfig } from '../config/config';
import { Logger } from '../log';
import { createDigester, parseDigest } from '../oci/digest';
import { BlobStore, StoredFile } from './blob-store';
import { MANIFEST_EDGES } from './manifest-edges';
import { pinnedBytes, refreshPinnedManifests, unpinnedManifest } from './pins';
import { column, SqlQueries } from './database/sql-database';
import { RegistryIndex, STALE_REMOVAL_MS } from './registry-index';
import { directoryBytes } from './staging';

/** Which store a sweep works on: hosted content, or the pull-through cache. */
export type StoreKind = 'hosted' | 'proxy';

export interface GcReport {
  dryRun: boolean;
  /** Untagged hosted manifests deleted and cached manifests evicted. */
  manifests: Array<{ repository: string; digest: string; reason: 'untagged' | 'max_age' | 'max_size' | 'min_free' }>;
  blobs: Array<{ store: StoreKind; digest: string; size: number }>;
  bytesFreed: number;
  uploadsExpired: number;
  durationMs: number;
  /**
   * Pinned cache content (never evicted) with `max_size` set: its bytes, and whether the cache stayed over
   * max_size because pins alone (with transfers under way) exceed it.
   */
  pinned?: { bytes: number; overMaxSize: boolean };
}

export interface VerifyReport {
  /** Indexed content whose file is gone. */
  missing: Array<{ store: StoreKind; digest: string }>;
  /** Files whose bytes do not match their digest or indexed size; moved to <store>/quarantine/. */
  corrupt: Array<{ store: StoreKind; digest: string; reason: string }>;
  /** Files no repository references (garbage collection removes them after the grace period). */
  unindexed: Array<{ store: StoreKind; digest: string }>;
}

export interface GarbageCollectorOptions {
  index: RegistryIndex;
  stores: Record<StoreKind, BlobStore>;
  /** Upload sessions, which expire after upload_ttl (uploads.ts UploadData.expire). */
  uploads: { expire(before: number, dryRun: boolean): Promise<number> };
  gc: GcConfig;
  proxy: Pick<ProxyConfig, 'max_age' | 'max_size'>;
  log: Logger;
  /** Writes batched access times to the index first, so eviction sees the latest pulls. */
  flushAccess?: () => Promise<void>;
  now?: () => number;
}

const GITHUB_ANSWER_MAX_AGE_MS = 7 * 24 * 3_600_000;

// Repositories under proxy/ are the cache; the rest are hosted. (A range, so SQLite can use the name index.)
const IS_PROXY = `(r.name >= 'proxy/' AND r.name < 'proxy0')`;
const OF_KIND: Record<StoreKind, string> = { hosted: `NOT ${IS_PROXY}`, proxy: IS_PROXY };

/**
 * Online mark and sweep, driven by the index.
 *
 * Safe while pushes go on:
 *  1. Every write into a store records `blobs.written_at = now` in the index *before* renaming the file
 *     into place (BlobStore's beforeCommit hook).
 *  2. A sweep selects, in one transaction, files whose digest no repository of the store's kind uses
 *     and whose last write is older than `grace`, and deletes their index rows.
 *  3. It moves each selected file to a trash name, then re-checks each digest in a second transaction:
 *     if a repository uses it again or it was written since the cutoff, the file is moved back.
 *     A writer's index update precedes its rename, which precedes our move of that file, which precedes
 *     the re-check: a blob that became referenced or re-pushed while the sweep ran is never deleted,
 *     whether the writer is this process or another one.
 *  4. Only the files still selected are deleted.
 * Blobs pushed but not yet referenced (a push uploads layers before its manifest) are protected by
 * the same grace period, through their link time.
 */
export class GarbageCollector {
  private readonly now: () => number;

  constructor(private readonly options: GarbageCollectorOptions) {
    this.now = options.now ?? Date.now;
  }

  async collect({ dryRun = false } = {}): Promise<GcReport> {
    const started = this.now();
    const cutoff = started - this.options.gc.grace;
    await this.options.flushAccess?.();
    if (!dryRun) await this.recoverRemovals();

    // Blobs present now; what appears later is newer than the cutoff anyway.
    const files = { hosted: await listAll(this.options.stores.hosted), proxy: await listAll(this.options.stores.proxy) };
    // Transfers from upstreams under way take room too: max_size counts them (an upstream's blob is not
    // in the index until it is complete).
    const incomingBytes = await directoryBytes(this.options.stores.proxy.stagingDirectory);
    const { manifests, selected, pinned } = await this.plan(files, started, cutoff, dryRun, incomingBytes);
    const blobs: GcReport['blobs'] = [];
    for (const kind of ['hosted', 'proxy'] as const) {
      blobs.push(...(dryRun ? selected[kind].map((file) => ({ store: kind, ...file })) : await this.sweep(kind, selected[kind], cutoff)));
    }
    if (!dryRun) await this.removeEmptyRows(started, cutoff);
    const uploadsExpired = await this.options.uploads.expire(started - this.options.gc.upload_ttl, dryRun);
    if (!dryRun) {
      for (const store of Object.values(this.options.stores)) await store.removeLeftovers(cutoff);
    }

    const report: GcReport = {
      dryRun,
      manifests,
      blobs,
      bytesFreed: blobs.reduce((sum, blob) => sum + blob.size, 0),
      uploadsExpired,
      durationMs: this.now() - started,
      ...(pinned && { pinned }),
    };
    if (pinned?.overMaxSize) {
      this.options.log.warn('pinned cache content alone exceeds proxy.max_size; only unpinned content was evicted', {
        pinnedBytes: pinned.bytes,
        maxSize: this.options.proxy.max_size,
      });
    }
    this.options.log.info(dryRun ? 'garbage collection (dry run)' : 'garbage collection', {
      manifests: manifests.length,
      blobs: blobs.length,
      bytesFreed: report.bytesFreed,
      uploadsExpired,
      durationMs: report.durationMs,
    });
    return report;
  }

  /**
   * The index work, in one transaction (steps 1–2 of the class comment): untagged hosted manifests,
   * cache eviction, stale links, then the files no repository uses any more. A dry run does the same
   * and rolls it back, so what it reports is what a real run would do.
   */
  private async plan(
    files: Record<StoreKind, StoredFile[]>,
    now: number,
    cutoff: number,
    dryRun: boolean,
    incomingBytes: number,
  ): Promise<{ manifests: GcReport['manifests']; selected: Record<StoreKind, StoredFile[]>; pinned?: GcReport['pinned'] }> {
    let outcome!: Awaited<ReturnType<GarbageCollector['plan']>>;
    const rollback = new Error('dry run');
    // The work may run more than once (PostgreSQL retries a transaction that lost a conflict): it starts afresh.
    const run = this.options.index.sql.transaction(async (q) => {
      const manifests: GcReport['manifests'] = [];
      let pinned: GcReport['pinned'];
      const selected: Record<StoreKind, StoredFile[]> = { hosted: [], proxy: [] };
      if (this.options.gc.delete_untagged) {
        for (const row of await q.all<ManifestKey>(UNKEPT_HOSTED_MANIFESTS, { cutoff })) {
          await deleteManifest(q, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'untagged' });
        }
      }
      const { max_age: maxAge, max_size: maxSize } = this.options.proxy;
      // Pinned content is never evicted (src/storage/pins.ts); the queries below skip it.
      if (maxAge > 0 || maxSize > 0) await refreshPinnedManifests(q);
      if (maxAge > 0) {
        for (const row of await q.all<ManifestKey>(CACHED_MANIFESTS_PULLED_BEFORE, { before: now - maxAge })) {
          await evict(q, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'max_age' });
        }
      }
      if (maxSize > 0) {
        // The cache's size counts blobs pulled by digest that no cached manifest references, too: they go in
        // the same least-recently-used order, or the loop would evict every image and still be over the limit.
        while ((await cacheSize(q)) + incomingBytes > maxSize) {
          const row = await q.get<ManifestKey & { kind: 'manifest' | 'blob' }>(LEAST_RECENTLY_USED_CACHED_CONTENT);
          // Nothing unpinned left: pins alone (with transfers under way) are over the limit.
          if (!row) break;
          if (row.kind === 'blob') {
            await q.run(UNLINK_BLOB, row);
            continue;
          }
          await evict(q, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'max_size' });
        }
        const bytes = await pinnedBytes(q);
        // Still over with nothing unpinned left: pins (with the transfers under way) take the room.
        pinned = { bytes, overMaxSize: bytes > 0 && (await cacheSize(q)) + incomingBytes > maxSize };
      }
      // Links nothing uses any more: blobs pushed (or cached) more than `grace` ago that no manifest of
      // their repository references.
      await q.run(DELETE_STALE_LINKS, { cutoff });
      for (const kind of ['hosted', 'proxy'] as const) {
        const garbage = await this.garbage(q, kind, cutoff, files[kind].filter((file) => file.mtimeMs < cutoff));
        selected[kind] = garbage;
        for (const { digest } of garbage) await q.run(DELETE_UNUSED_BLOB_ROW, { digest });
      }
      outcome = { manifests, selected, pinned };
      if (dryRun) throw rollback;
    });
    await run.catch((error: unknown) => {
      if (error !== rollback) throw error;
    });
    return outcome;
  }

  /**
   * Makes at least `bytes` of room in the cache's store now (`[proxy] min_free`, before a fill): evicts
   * unpinned cached content, least recently used first, until that much is no longer used, then sweeps
   * the cache's files nothing uses as a collection does, with a short grace (FILL_GRACE_MS) in place of
   * `[gc] grace`: cached files are not pushes that wait for their manifest, and the grace still covers a
   * transfer between its rename and its link. Returns what was freed; the caller runs it exclusively
   * with `collect`.
   */
  async makeRoomInCache(bytes: number): Promise<{ manifests: GcReport['manifests']; bytesFreed: number }> {
    const started = this.now();
    const cutoff = started - FILL_GRACE_MS;
    await this.options.flushAccess?.();
    const sql = this.options.index.sql;
    const manifests = await sql.transaction(async (q) => {
      const evicted: GcReport['manifests'] = [];
      await refreshPinnedManifests(q);
      const before = await cacheSize(q);
      while (before - (await cacheSize(q)) < bytes) {
        const row = await q.get<ManifestKey & { kind: 'manifest' | 'blob' }>(LEAST_RECENTLY_USED_CACHED_CONTENT);
        if (!row) break; // nothing unpinned left
        if (row.kind === 'blob') {
          await q.run(UNLINK_BLOB, row);
          continue;
        }
        await evict(q, row);
        evicted.push({ repository: row.repository, digest: row.digest, reason: 'min_free' });
      }
      return evicted;
    });
    const files = await listAll(this.options.stores.proxy);
    const selected = await sql.transaction(async (q) => {
      const garbage = await this.garbage(q, 'proxy', cutoff, files.filter((file) => file.mtimeMs < cutoff));
      for (const { digest } of garbage) await q.run(DELETE_UNUSED_BLOB_ROW, { digest });
      return garbage;
    });
    const blobs = await this.sweep('proxy', selected, cutoff);
    const bytesFreed = blobs.reduce((sum, blob) => sum + blob.size, 0);
    this.options.log.info('cache eviction for min_free', { wanted: bytes, manifests: manifests.length, blobs: blobs.length, bytesFreed });
    return { manifests, bytesFreed };
  }

  /** Whether no repository of the store's kind uses the digest, and it was not written since the cutoff. */
  private async isGarbage(q: SqlQueries, kind: StoreKind, cutoff: number, digest: string): Promise<boolean> {
    if ((await q.get(USED_BY_KIND[kind], { digest })) !== undefined) return false;
    const row = await q.get<{ writtenAt: number }>('SELECT written_at AS "writtenAt" FROM blobs WHERE digest = @digest', { digest });
    return (row?.writtenAt ?? 0) < cutoff;
  }

  /** Those of `files` that are garbage (isGarbage). */
  private async garbage<T extends { digest: string }>(q: SqlQueries, kind: StoreKind, cutoff: number, files: T[]): Promise<T[]> {
    const garbage: T[] = [];
    for (const file of files) if (await this.isGarbage(q, kind, cutoff, file.digest)) garbage.push(file);
    return garbage;
  }

  /**
   * Steps 3–4: the store removes the selected blobs around a re-check (FilesystemBlobStore moves them aside
   * first, S3BlobStore deletes after). The re-check records each digest it dooms in `blob_removals`, in
   * its transaction: a writer of that digest records its write in a transaction too, so either the
   * re-check sees the write and keeps the blob, or the writer sees the removal and (where a removal could
   * overtake its write) waits for it to end. The rows go once the blobs are gone.
   */
  private async sweep(kind: StoreKind, selected: StoredFile[], cutoff: number): Promise<GcReport['blobs']> {
    const store = this.options.stores[kind];
    const sql = this.options.index.sql;
    const recheck = (digests: string[]) =>
      sql.transaction(async (q) => {
        const doomed = new Set(await this.garbage(q, kind, cutoff, digests.map((digest) => ({ digest }))).then((rows) => rows.map((row) => row.digest)));
        for (const digest of doomed) await q.run(RECORD_REMOVAL, { digest, now: this.now() });
        return doomed;
      });
    let removed: StoredFile[] = [];
    try {
      removed = await store.removeGarbage(selected, recheck, async (digest) => {
        await sql.run(REMOVAL_FINISHED, { digest });
      });
    } finally {
      // Also after a failure: every doomed digest is either removed or left (and judged again next time).
      await sql.transaction(async (q) => {
        for (const { digest } of selected) await q.run(REMOVAL_FINISHED, { digest });
      });
    }
    const kept = selected.length - removed.length;
    if (kept > 0) this.options.log.info('garbage collection kept blobs written or used again during the sweep', { count: kept });
    return removed.map(({ digest, size }) => ({ store: kind, digest, size }));
  }

  /**
   * What a collection interrupted by a crash left half done: removals recorded in `blob_removals` longer
   * ago than STALE_REMOVAL_MS (a live sweep's rows go within seconds, and may belong to another process's
   * collection running now) are finished for what is still garbage and dropped for the rest, and each store
   * puts back or deletes what it had moved aside (the filesystem's .trash). Runs at start and before every
   * collection.
   */
  async recoverRemovals(): Promise<{ restored: number; deleted: number }> {
    const cutoff = this.now() - this.options.gc.grace;
    const sql = this.options.index.sql;
    let restored = 0;
    let deleted = 0;
    const interrupted = column<string>(
      await sql.all('SELECT digest FROM blob_removals WHERE started_at < @before', { before: this.now() - STALE_REMOVAL_MS }),
    );
    for (const kind of ['hosted', 'proxy'] as const) {
      const store = this.options.stores[kind];
      const isGarbage = (digest: string) => this.isGarbage(sql, kind, cutoff, digest);
      for (const digest of interrupted) if (await isGarbage(digest)) await store.delete(digest);
      const recovered = await store.recoverRemovals(isGarbage);
      restored += recovered.restored;
      deleted += recovered.deleted;
    }
    await sql.transaction(async (q) => {
      for (const digest of interrupted) await q.run(REMOVAL_FINISHED, { digest });
    });
    if (restored + deleted > 0) this.options.log.warn('blobs left half removed by an interrupted collection', { restored, deleted });
    return { restored, deleted };
  }

  /**
   * Rows nothing points at any more: upstream tag lists of names nothing is cached of (older than the
   * grace period), repositories left empty, blobs neither used nor recently written,
   * GitHub REST answers no catalog has refreshed for a week (owners no longer configured; live ones
   * refresh every `[github] cache_ttl` and stay, as the fallback while GitHub is down), and leases of
   * holders long dead.
   */
  private removeEmptyRows(now: number, cutoff: number): Promise<void> {
    return this.options.index.sql.transaction(async (q) => {
      // Before the repositories: a name whose tags were listed but of which nothing is cached goes with them.
      await q.run(DELETE_UNUSED_UPSTREAM_TAG_LISTS, { cutoff });
      await q.run(DELETE_EMPTY_REPOSITORIES);
      await q.run(DELETE_UNUSED_BLOB_ROWS, { cutoff });
      await q.run('DELETE FROM github_rest_cache WHERE fetched_at < @before', { before: now - GITHUB_ANSWER_MAX_AGE_MS });
      // Leases whose holder died (a live one is renewed every few seconds).
      await q.run('DELETE FROM leases WHERE expires_at < @before', { before: now - 3_600_000 });
    });
  }

  /**
   * Re-hashes every file of both stores against the index. Corrupt files are quarantined, and what is
   * quarantined or missing is unlinked from the repositories of that store: the blob is then absent
   * everywhere (HEAD, mount, manifest pushes), so a client pushes it again and that repairs the image.
   */
  async verify(): Promise<VerifyReport> {
    const report: VerifyReport = { missing: [], corrupt: [], unindexed: [] };
    const sql = this.options.index.sql;
    for (const kind of ['hosted', 'proxy'] as const) {
      const store = this.options.stores[kind];
      const used = new Set(column<string>(await sql.all(USED_DIGESTS[kind])));
      // A hosted image's layers must all be there; a cached image's are fetched when first pulled.
      if (kind === 'hosted') for (const digest of column<string>(await sql.all(REFERENCED_HOSTED_BLOBS))) used.add(digest);
      const unlink = (digest: string) => sql.run(unlinkByKind(kind), { digest });
      const onDisk = new Set<string>();
      for (const file of await listAll(store)) {
        if (!used.has(file.digest)) report.unindexed.push({ store: kind, digest: file.digest });
        const expectedSize = (await sql.get<{ size: number }>('SELECT size FROM blobs WHERE digest = @digest', { digest: file.digest }))?.size;
        const actual = await hashBlob(store, file.digest);
        const reason =
          actual !== file.digest
            ? `content hashes to ${actual}`
            : expectedSize !== undefined && expectedSize !== file.size
              ? `size ${file.size}, indexed as ${expectedSize}`
              : null;
        if (reason) {
          report.corrupt.push({ store: kind, digest: file.digest, reason });
          await store.quarantine(file.digest);
          await unlink(file.digest);
        } else {
          onDisk.add(file.digest);
        }
      }
      for (const digest of used) {
        if (onDisk.has(digest) || report.corrupt.some((entry) => entry.store === kind && entry.digest === digest)) continue;
        report.missing.push({ store: kind, digest });
        await unlink(digest);
      }
    }
    this.options.log.info('verify', {
      missing: report.missing.length,
      corrupt: report.corrupt.length,
      unindexed: report.unindexed.length,
    });
    return report;
  }
}

interface ManifestKey {
  repository: string;
  repositoryId: number;
  digest: string;
}

async function deleteManifest(q: SqlQueries, row: Pick<ManifestKey, 'repositoryId' | 'digest'>): Promise<void> {
  await q.run('DELETE FROM manifests WHERE repository_id = @repositoryId AND digest = @digest', row);
}

/** Evicts a cached manifest and unlinks the blobs no other manifest of its repository needs (also the web UI's evict). */
export async function evict(q: SqlQueries, row: Pick<ManifestKey, 'repositoryId' | 'digest'>): Promise<void> {
  await deleteManifest(q, row);
  await q.run(
    `DELETE FROM repository_blobs WHERE repository_id = @repositoryId AND digest NOT IN (
       SELECT child_digest FROM manifest_references WHERE repository_id = @repositoryId)`,
    { repositoryId: row.repositoryId },
  );
  // A repository with nothing cached left forgets its upstream tag list too.
  await q.run(
    `DELETE FROM upstream_tag_lists WHERE repository_id = @repositoryId
       AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = @repositoryId)`,
    { repositoryId: row.repositoryId },
  );
}

const UNLINK_BLOB = 'DELETE FROM repository_blobs WHERE repository_id = @repositoryId AND digest = @digest';
const RECORD_REMOVAL = 'INSERT INTO blob_removals (digest, started_at) VALUES (@digest, @now) ON CONFLICT DO NOTHING';
const REMOVAL_FINISHED = 'DELETE FROM blob_removals WHERE digest = @digest';

/** Digests a repository of `kind` stores a file for: its manifests and the blobs it may read. */
const USED_DIGESTS: Record<StoreKind, string> = {
  hosted: usedDigests('hosted'),
  proxy: usedDigests('proxy'),
};

function usedDigests(kind: StoreKind): string {
  return `SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE ${OF_KIND[kind]}
          UNION SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id WHERE ${OF_KIND[kind]}`;
}

/** Unlinks a digest from every repository of `kind` (its manifests stay: a re-push of the blob repairs them). */
function unlinkByKind(kind: StoreKind): string {
  return `DELETE FROM repository_blobs WHERE digest = @digest
            AND repository_id IN (SELECT r.id FROM repositories r WHERE ${OF_KIND[kind]})`;
}

// Blobs hosted manifests reference: their files must be there for the image to be pulled.
const REFERENCED_HOSTED_BLOBS = `
  SELECT DISTINCT mr.child_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
  WHERE mr.child_kind = 'blob' AND NOT ${IS_PROXY}`;

/** One digest at a time, through the digest indexes. */
const USED_BY_KIND: Record<StoreKind, string> = { hosted: usedByKind('hosted'), proxy: usedByKind('proxy') };

function usedByKind(kind: StoreKind): string {
  return `SELECT 1 AS used WHERE
    EXISTS (SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE m.digest = @digest AND ${OF_KIND[kind]})
    OR EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
               WHERE rb.digest = @digest AND ${OF_KIND[kind]})`;
}

// Live hosted manifests: tagged ones, the children of live indexes and the referrers of live manifests.
const UNKEPT_HOSTED_MANIFESTS = `
  WITH RECURSIVE live(repository_id, digest) AS (
    SELECT repository_id, manifest_digest FROM tags
    UNION
    SELECT edge.repository_id, edge.child FROM live
      JOIN ${MANIFEST_EDGES} edge
        ON edge.repository_id = live.repository_id AND edge.parent = live.digest
  )
  SELECT r.name AS repository, m.repository_id AS "repositoryId", m.digest FROM manifests m
  JOIN repositories r ON r.id = m.repository_id
  WHERE NOT ${IS_PROXY} AND m.created_at < @cutoff
    AND NOT EXISTS (SELECT 1 FROM live WHERE live.repository_id = m.repository_id AND live.digest = m.digest)`;

const LAST_PULLED = 'coalesce(m.last_pulled_at, m.created_at)';

const CACHED_MANIFESTS_PULLED_BEFORE = `
  SELECT r.name AS repository, m.repository_id AS "repositoryId", m.digest FROM manifests m
  JOIN repositories r ON r.id = m.repository_id
  WHERE ${IS_PROXY} AND ${LAST_PULLED} < @before AND ${unpinnedManifest('m')}`;

// Cached manifests by when last pulled, and cached blobs no manifest of their repository references
// (pulled by digest alone) by when last read.
/**
 * The grace of a min_free sweep: a cache file this recent may be a transfer between its rename and its
 * link (microseconds apart, in this process or a `registry sync` beside it). Were one swept anyway, the
 * next pull finds the file missing and fetches it again.
 */
const FILL_GRACE_MS = 1000;

const LEAST_RECENTLY_USED_CACHED_CONTENT = `
  SELECT 'manifest' AS kind, r.name AS repository, m.repository_id AS "repositoryId", m.digest, ${LAST_PULLED} AS "usedAt"
  FROM manifests m JOIN repositories r ON r.id = m.repository_id
  WHERE ${IS_PROXY} AND ${unpinnedManifest('m')}
  UNION ALL
  SELECT 'blob', r.name, rb.repository_id, rb.digest,
         CASE WHEN b.last_accessed_at > rb.linked_at THEN b.last_accessed_at ELSE rb.linked_at END
  FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest
  WHERE ${IS_PROXY} AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                                    WHERE mr.repository_id = rb.repository_id AND mr.child_digest = rb.digest)
  ORDER BY "usedAt", digest LIMIT 1`;

// A blob shared by several cached images counts once.
const CACHE_SIZE = `SELECT coalesce(sum(size), 0) AS bytes FROM blobs WHERE digest IN (${usedDigests('proxy')})`;

async function cacheSize(q: SqlQueries): Promise<number> {
  return (await q.get<{ bytes: number }>(CACHE_SIZE))!.bytes;
}

const DELETE_STALE_LINKS = `
  DELETE FROM repository_blobs WHERE linked_at < @cutoff
    AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                    WHERE mr.repository_id = repository_blobs.repository_id AND mr.child_digest = repository_blobs.digest)`;

const DELETE_UNUSED_BLOB_ROW = `
  DELETE FROM blobs WHERE digest = @digest
    AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = @digest)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = @digest)`;

const DELETE_UNUSED_BLOB_ROWS = `
  DELETE FROM blobs WHERE written_at < @cutoff
    AND NOT EXISTS (SELECT 1 FROM manifests WHERE manifests.digest = blobs.digest)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_blobs.digest = blobs.digest)`;

// Stored for every name whose tags/list was asked; kept only while something of that name is cached.
const DELETE_UNUSED_UPSTREAM_TAG_LISTS = `
  DELETE FROM upstream_tag_lists WHERE fetched_at < @cutoff
    AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = upstream_tag_lists.repository_id)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = upstream_tag_lists.repository_id)`;

const DELETE_EMPTY_REPOSITORIES = `
  DELETE FROM repositories WHERE
    NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = repositories.id)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = repositories.id)
    AND NOT EXISTS (SELECT 1 FROM upstream_tag_lists WHERE repository_id = repositories.id)`;

async function listAll(store: BlobStore): Promise<StoredFile[]> {
  const files: StoredFile[] = [];
  for await (const file of store.list()) files.push(file);
  return files;
}

/** What the stored bytes hash to, with the algorithm the digest names. */
async function hashBlob(store: BlobStore, digest: string): Promise<string> {
  const { algorithm } = parseDigest(digest)!;
  const hash = createDigester(algorithm);
  await pipeline(await store.open(digest), hash);
  return `${algorithm}:${hash.digest('hex')}`;
}

import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { GcConfig, ProxyConfig } from '../config/config';
import { Logger } from '../log';
import { createDigester, parseDigest } from '../oci/digest';
import { BlobStore, StoredFile } from './blob-store';
import { pinnedBytes, refreshPinnedManifests, unpinnedManifest } from './pins';
import { RegistryIndex, STALE_REMOVAL_MS } from './registry-index';
import { directoryBytes, readDirectory } from './staging';

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
  temporaryRoot: string;
  gc: GcConfig;
  proxy: Pick<ProxyConfig, 'max_age' | 'max_size'>;
  log: Logger;
  /** An upload session was dropped (upload_ttl): what memory holds for it goes too. */
  uploadExpired?: (uploadId: string) => void;
  /** Writes batched access times to the index first, so eviction sees the latest pulls. */
  flushAccess?: () => void;
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
    this.options.flushAccess?.();
    if (!dryRun) await this.recoverRemovals();

    // Blobs present now; what appears later is newer than the cutoff anyway.
    const files = { hosted: await listAll(this.options.stores.hosted), proxy: await listAll(this.options.stores.proxy) };
    // Transfers from upstreams under way take room too: max_size counts them (an upstream's blob is not
    // in the index until it is complete).
    const incomingBytes = await directoryBytes(this.options.stores.proxy.stagingDirectory);
    const { manifests, selected, pinned } = this.plan(files, started, cutoff, dryRun, incomingBytes);
    const blobs: GcReport['blobs'] = [];
    for (const kind of ['hosted', 'proxy'] as const) {
      blobs.push(...(dryRun ? selected[kind].map((file) => ({ store: kind, ...file })) : await this.sweep(kind, selected[kind], cutoff)));
    }
    if (!dryRun) this.removeEmptyRows(started, cutoff);
    const uploadsExpired = await this.expireUploads(started, dryRun);
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
  private plan(
    files: Record<StoreKind, StoredFile[]>,
    now: number,
    cutoff: number,
    dryRun: boolean,
    incomingBytes: number,
  ): { manifests: GcReport['manifests']; selected: Record<StoreKind, StoredFile[]>; pinned?: GcReport['pinned'] } {
    const db = this.options.index.db;
    const manifests: GcReport['manifests'] = [];
    let pinned: GcReport['pinned'];
    const selected: Record<StoreKind, StoredFile[]> = { hosted: [], proxy: [] };
    const rollback = new Error('dry run');
    const run = db.transaction(() => {
      if (this.options.gc.delete_untagged) {
        for (const row of db.prepare(UNKEPT_HOSTED_MANIFESTS).all({ cutoff }) as ManifestKey[]) {
          deleteManifest(db, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'untagged' });
        }
      }
      const { max_age: maxAge, max_size: maxSize } = this.options.proxy;
      // Pinned content is never evicted (src/storage/pins.ts); the queries below skip it.
      if (maxAge > 0 || maxSize > 0) refreshPinnedManifests(db);
      if (maxAge > 0) {
        for (const row of db.prepare(CACHED_MANIFESTS_PULLED_BEFORE).all({ before: now - maxAge }) as ManifestKey[]) {
          evict(db, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'max_age' });
        }
      }
      if (maxSize > 0) {
        const cacheSize = db.prepare(CACHE_SIZE).pluck();
        const leastRecentlyUsed = db.prepare(LEAST_RECENTLY_USED_CACHED_CONTENT);
        const unlink = db.prepare('DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?');
        // The cache's size counts blobs pulled by digest that no cached manifest references, too: they go in
        // the same least-recently-used order, or the loop would evict every image and still be over the limit.
        while ((cacheSize.get() as number) + incomingBytes > maxSize) {
          const row = leastRecentlyUsed.get() as (ManifestKey & { kind: 'manifest' | 'blob' }) | undefined;
          // Nothing unpinned left: pins alone (with transfers under way) are over the limit.
          if (!row) break;
          if (row.kind === 'blob') {
            unlink.run(row.repositoryId, row.digest);
            continue;
          }
          evict(db, row);
          manifests.push({ repository: row.repository, digest: row.digest, reason: 'max_size' });
        }
        const bytes = pinnedBytes(db);
        // Still over with nothing unpinned left: pins (with the transfers under way) take the room.
        pinned = { bytes, overMaxSize: bytes > 0 && (cacheSize.get() as number) + incomingBytes > maxSize };
      }
      // Links nothing uses any more: blobs pushed (or cached) more than `grace` ago that no manifest of
      // their repository references.
      db.prepare(DELETE_STALE_LINKS).run({ cutoff });
      for (const kind of ['hosted', 'proxy'] as const) {
        const isGarbage = this.isGarbage(kind, cutoff);
        selected[kind] = files[kind].filter((file) => file.mtimeMs < cutoff && isGarbage(file.digest));
        for (const { digest } of selected[kind]) db.prepare(DELETE_UNUSED_BLOB_ROW).run({ digest });
      }
      if (dryRun) throw rollback;
    });
    try {
      run();
    } catch (error) {
      if (error !== rollback) throw error;
    }
    return { manifests, selected, pinned };
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
    this.options.flushAccess?.();
    const db = this.options.index.db;
    const manifests: GcReport['manifests'] = [];
    db.transaction(() => {
      refreshPinnedManifests(db);
      const cacheSize = db.prepare(CACHE_SIZE).pluck();
      const leastRecentlyUsed = db.prepare(LEAST_RECENTLY_USED_CACHED_CONTENT);
      const unlink = db.prepare('DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?');
      const before = cacheSize.get() as number;
      while (before - (cacheSize.get() as number) < bytes) {
        const row = leastRecentlyUsed.get() as (ManifestKey & { kind: 'manifest' | 'blob' }) | undefined;
        if (!row) break; // nothing unpinned left
        if (row.kind === 'blob') {
          unlink.run(row.repositoryId, row.digest);
          continue;
        }
        evict(db, row);
        manifests.push({ repository: row.repository, digest: row.digest, reason: 'min_free' });
      }
    })();
    const isGarbage = this.isGarbage('proxy', cutoff);
    const files = await listAll(this.options.stores.proxy);
    const selected = db.transaction(() => {
      const garbage = files.filter((file) => file.mtimeMs < cutoff && isGarbage(file.digest));
      for (const { digest } of garbage) db.prepare(DELETE_UNUSED_BLOB_ROW).run({ digest });
      return garbage;
    })();
    const blobs = await this.sweep('proxy', selected, cutoff);
    const bytesFreed = blobs.reduce((sum, blob) => sum + blob.size, 0);
    this.options.log.info('cache eviction for min_free', { wanted: bytes, manifests: manifests.length, blobs: blobs.length, bytesFreed });
    return { manifests, bytesFreed };
  }

  /** No repository of the store's kind uses the digest, and it was not written since the cutoff. */
  private isGarbage(kind: StoreKind, cutoff: number): (digest: string) => boolean {
    const db = this.options.index.db;
    const used = db.prepare(usedByKind(kind)).pluck();
    const writtenAt = db.prepare('SELECT written_at FROM blobs WHERE digest = ?').pluck();
    return (digest) => used.get({ digest }) === undefined && ((writtenAt.get(digest) as number | undefined) ?? 0) < cutoff;
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
    const db = this.options.index.db;
    const isGarbage = this.isGarbage(kind, cutoff);
    const record = db.prepare('INSERT INTO blob_removals (digest, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING');
    const recheck = (digests: string[]) =>
      db.transaction(() => {
        const doomed = new Set(digests.filter(isGarbage));
        for (const digest of doomed) record.run(digest, this.now());
        return doomed;
      })();
    const finished = db.prepare('DELETE FROM blob_removals WHERE digest = ?');
    let removed: StoredFile[] = [];
    try {
      removed = await store.removeGarbage(selected, recheck, (digest) => finished.run(digest));
    } finally {
      // Also after a failure: every doomed digest is either removed or left (and judged again next time).
      db.transaction(() => {
        for (const { digest } of selected) finished.run(digest);
      })();
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
    const db = this.options.index.db;
    let restored = 0;
    let deleted = 0;
    const interrupted = db.prepare('SELECT digest FROM blob_removals WHERE started_at < ?').pluck().all(this.now() - STALE_REMOVAL_MS) as string[];
    for (const kind of ['hosted', 'proxy'] as const) {
      const store = this.options.stores[kind];
      const isGarbage = this.isGarbage(kind, cutoff);
      for (const digest of interrupted) if (isGarbage(digest)) await store.delete(digest);
      const recovered = await store.recoverRemovals(isGarbage);
      restored += recovered.restored;
      deleted += recovered.deleted;
    }
    const finished = db.prepare('DELETE FROM blob_removals WHERE digest = ?');
    db.transaction(() => {
      for (const digest of interrupted) finished.run(digest);
    })();
    if (restored + deleted > 0) this.options.log.warn('blobs left half removed by an interrupted collection', { restored, deleted });
    return { restored, deleted };
  }

  /**
   * Rows nothing points at any more: upstream tag lists of names nothing is cached of (older than the
   * grace period), repositories left empty, blobs neither used nor recently written,
   * and GitHub REST answers no catalog has refreshed for a week (owners no longer configured; live ones
   * refresh every `[github] cache_ttl` and stay, as the fallback while GitHub is down).
   */
  private removeEmptyRows(now: number, cutoff: number): void {
    const db = this.options.index.db;
    db.transaction(() => {
      // Before the repositories: a name whose tags were listed but of which nothing is cached goes with them.
      db.prepare(DELETE_UNUSED_UPSTREAM_TAG_LISTS).run({ cutoff });
      db.prepare(DELETE_EMPTY_REPOSITORIES).run();
      db.prepare(DELETE_UNUSED_BLOB_ROWS).run({ cutoff });
      db.prepare('DELETE FROM github_rest_cache WHERE fetched_at < ?').run(now - GITHUB_ANSWER_MAX_AGE_MS);
    })();
  }

  /** Upload sessions untouched for upload_ttl, and upload files no session owns. */
  private async expireUploads(now: number, dryRun: boolean): Promise<number> {
    const db = this.options.index.db;
    const before = now - this.options.gc.upload_ttl;
    const directory = path.join(this.options.temporaryRoot, 'uploads');
    const sessions = new Set((db.prepare('SELECT id FROM uploads').pluck().all() as string[]));
    let expired = 0;
    for (const entry of await readDirectory(directory)) {
      const file = path.join(directory, entry);
      const stat = await fsp.stat(file).catch(() => null);
      const session = db.prepare('SELECT updated_at FROM uploads WHERE id = ?').pluck().get(entry) as number | undefined;
      const lastTouched = Math.max(stat?.mtimeMs ?? 0, session ?? 0);
      if (lastTouched >= before) continue;
      expired++;
      sessions.delete(entry);
      if (dryRun) continue;
      db.prepare('DELETE FROM uploads WHERE id = ?').run(entry);
      this.options.uploadExpired?.(entry);
      await fsp.rm(file, { force: true });
    }
    // Sessions whose file is gone cannot be resumed.
    for (const id of sessions) {
      const updatedAt = db.prepare('SELECT updated_at FROM uploads WHERE id = ?').pluck().get(id) as number;
      if (updatedAt >= before) continue;
      expired++;
      if (dryRun) continue;
      db.prepare('DELETE FROM uploads WHERE id = ?').run(id);
      this.options.uploadExpired?.(id);
    }
    return expired;
  }

  /**
   * Re-hashes every file of both stores against the index. Corrupt files are quarantined, and what is
   * quarantined or missing is unlinked from the repositories of that store: the blob is then absent
   * everywhere (HEAD, mount, manifest pushes), so a client pushes it again and that repairs the image.
   */
  async verify(): Promise<VerifyReport> {
    const report: VerifyReport = { missing: [], corrupt: [], unindexed: [] };
    const db = this.options.index.db;
    for (const kind of ['hosted', 'proxy'] as const) {
      const store = this.options.stores[kind];
      const used = new Set(db.prepare(USED_DIGESTS[kind]).pluck().all() as string[]);
      // A hosted image's layers must all be there; a cached image's are fetched when first pulled.
      if (kind === 'hosted') for (const digest of db.prepare(REFERENCED_HOSTED_BLOBS).pluck().all() as string[]) used.add(digest);
      const indexedSize = db.prepare('SELECT size FROM blobs WHERE digest = ?').pluck();
      const unlink = db.prepare(unlinkByKind(kind));
      const onDisk = new Set<string>();
      for (const file of await listAll(store)) {
        if (!used.has(file.digest)) report.unindexed.push({ store: kind, digest: file.digest });
        const expectedSize = indexedSize.get(file.digest) as number | undefined;
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
          unlink.run({ digest: file.digest });
        } else {
          onDisk.add(file.digest);
        }
      }
      for (const digest of used) {
        if (onDisk.has(digest) || report.corrupt.some((entry) => entry.store === kind && entry.digest === digest)) continue;
        report.missing.push({ store: kind, digest });
        unlink.run({ digest });
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

function deleteManifest(db: RegistryIndex['db'], row: Pick<ManifestKey, 'repositoryId' | 'digest'>): void {
  db.prepare('DELETE FROM manifests WHERE repository_id = ? AND digest = ?').run(row.repositoryId, row.digest);
}

/** Evicts a cached manifest and unlinks the blobs no other manifest of its repository needs (also the web UI's evict). */
export function evict(db: RegistryIndex['db'], row: Pick<ManifestKey, 'repositoryId' | 'digest'>): void {
  deleteManifest(db, row);
  db.prepare(
    `DELETE FROM repository_blobs WHERE repository_id = @repositoryId AND digest NOT IN (
       SELECT child_digest FROM manifest_references WHERE repository_id = @repositoryId)`,
  ).run({ repositoryId: row.repositoryId });
  // A repository with nothing cached left forgets its upstream tag list too.
  db.prepare(
    `DELETE FROM upstream_tag_lists WHERE repository_id = @repositoryId
       AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = @repositoryId)`,
  ).run({ repositoryId: row.repositoryId });
}

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
function usedByKind(kind: StoreKind): string {
  return `SELECT 1 WHERE
    EXISTS (SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE m.digest = @digest AND ${OF_KIND[kind]})
    OR EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
               WHERE rb.digest = @digest AND ${OF_KIND[kind]})`;
}

// Live hosted manifests: tagged ones, the children of live indexes and the referrers of live manifests.
const UNKEPT_HOSTED_MANIFESTS = `
  WITH RECURSIVE live(repository_id, digest) AS (
    SELECT repository_id, manifest_digest FROM tags
    UNION
    SELECT mr.repository_id, mr.child_digest FROM manifest_references mr
      JOIN live ON live.repository_id = mr.repository_id AND live.digest = mr.manifest_digest
      WHERE mr.child_kind = 'manifest'
    UNION
    SELECT m.repository_id, m.digest FROM manifests m
      JOIN live ON live.repository_id = m.repository_id AND live.digest = m.subject_digest
  )
  SELECT r.name AS repository, m.repository_id AS repositoryId, m.digest FROM manifests m
  JOIN repositories r ON r.id = m.repository_id
  WHERE NOT ${IS_PROXY} AND m.created_at < @cutoff
    AND NOT EXISTS (SELECT 1 FROM live WHERE live.repository_id = m.repository_id AND live.digest = m.digest)`;

const LAST_PULLED = 'coalesce(m.last_pulled_at, m.created_at)';

const CACHED_MANIFESTS_PULLED_BEFORE = `
  SELECT r.name AS repository, m.repository_id AS repositoryId, m.digest FROM manifests m
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
  SELECT 'manifest' AS kind, r.name AS repository, m.repository_id AS repositoryId, m.digest, ${LAST_PULLED} AS usedAt
  FROM manifests m JOIN repositories r ON r.id = m.repository_id
  WHERE ${IS_PROXY} AND ${unpinnedManifest('m')}
  UNION ALL
  SELECT 'blob', r.name, rb.repository_id, rb.digest, max(b.last_accessed_at, rb.linked_at)
  FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest
  WHERE ${IS_PROXY} AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                                    WHERE mr.repository_id = rb.repository_id AND mr.child_digest = rb.digest)
  ORDER BY usedAt, digest LIMIT 1`;

// A blob shared by several cached images counts once.
const CACHE_SIZE = `SELECT coalesce(sum(size), 0) FROM blobs WHERE digest IN (${usedDigests('proxy')})`;

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

import { isPostgresUrl } from '../config/config';
import { RegistryError } from '../oci/errors';
import { column, SqlDatabase, SqlQueries } from './database/sql-database';
import { SqliteDatabase } from './database/sqlite-database';
import { MIGRATIONS } from './migrations';
import { WalCheckpoints } from './wal-checkpoints';

/** SQLite's own default for wal_autocheckpoint, restored when the background checkpoints stop. */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;

export interface ManifestRecord {
  digest: string;
  mediaType: string;
  size: number;
  subjectDigest: string | null;
  artifactType: string | null;
  annotations: Record<string, string> | null;
}

export interface NewManifest extends ManifestRecord {
  repository: string;
  /** Config and layer digests. */
  blobDigests: string[];
  /** Child manifest digests of an index. */
  manifestDigests: string[];
  tag?: string;
}

export interface UploadRecord {
  id: string;
  repository: string;
  /** Who opened it, when access control is on; null otherwise. */
  owner: string | null;
  size: number;
  createdAt: number;
  updatedAt: number;
}

export interface Page<T> {
  items: T[];
  /** The last item returned when more follow it; absent on the last page. */
  next?: string;
}

/**
 * A removal recorded longer ago than this is one a crashed collection left (a sweep deletes each blob's row
 * as soon as the blob is gone, within seconds): writers stop waiting for it, and the next collection
 * finishes it (gc.ts recoverRemovals).
 */
export const STALE_REMOVAL_MS = 10 * 60_000;

/**
 * The index: repositories, tags, manifests and what they reference, which blobs each repository may read,
 * and upload sessions, in SQLite (a file, the default) or PostgreSQL (shared by replicas). Every
 * multi-row change is one transaction.
 */
export class RegistryIndex {
  private checkpoints: WalCheckpoints | undefined;

  private constructor(
    readonly database: SqlDatabase,
    /** The database, or the transaction this view of the index works in (`transaction`). */
    readonly sql: SqlQueries,
  ) {}

  /** Opens (and migrates) the index at `database`: a postgres:// URL, or a SQLite file. */
  static async open(database: string | SqlDatabase): Promise<RegistryIndex> {
    const opened = typeof database !== 'string' ? database : isPostgresUrl(database) ? await openPostgres(database) : new SqliteDatabase(database);
    try {
      await opened.migrate(MIGRATIONS);
    } catch (error) {
      await opened.close();
      throw error;
    }
    return new RegistryIndex(opened, opened);
  }

  /** Runs `work` on a view of the index inside one transaction (joining the one this view is in, if any). */
  transaction<T>(work: (index: RegistryIndex) => Promise<T>): Promise<T> {
    return this.sql.transaction((queries) => work(queries === this.sql ? this : new RegistryIndex(this.database, queries)));
  }

  /**
   * Checkpoints SQLite's WAL from a worker thread every `intervalMs` instead of inside the commit that fills
   * it (see WalCheckpoints). For the long-running server; commands and tests keep SQLite's default.
   */
  checkpointInBackground(intervalMs: number, onFailure: (error: Error) => void): void {
    const database = this.database;
    if (!(database instanceof SqliteDatabase)) return;
    this.checkpoints ??= new WalCheckpoints(
      database.file,
      intervalMs,
      (enabled) => {
        if (database.connection.open) database.connection.pragma(`wal_autocheckpoint = ${enabled ? DEFAULT_AUTOCHECKPOINT_PAGES : 0}`);
      },
      onFailure,
    );
  }

  async close(): Promise<void> {
    this.checkpoints?.stop();
    await this.database.close();
  }

  async repositoryExists(name: string): Promise<boolean> {
    return (await this.sql.get(SQL.repositoryByName, { name })) !== undefined;
  }

  // --- blobs -------------------------------------------------------------------------------

  /** Records a blob file and makes it readable in `repository`. */
  linkBlob(repository: string, digest: string, size: number, now = Date.now()): Promise<void> {
    return this.sql.transaction(async (q) => {
      await q.run(SQL.upsertBlob, { digest, size, now });
      const repositoryId = await ensureRepository(q, repository, now);
      await q.run(SQL.linkBlob, { repositoryId, digest, now });
    });
  }

  /**
   * Records that a blob is being written into a store now (before it becomes visible at its digest).
   * Returns whether a garbage collection is removing that digest meanwhile (see CommitHook).
   */
  recordBlobWrite(digest: string, size: number, now = Date.now()): Promise<boolean> {
    return this.sql.transaction(async (q) => {
      await q.run(SQL.recordBlobWrite, { digest, size, now });
      return (await q.get(SQL.removalUnderWay, { digest, since: now - STALE_REMOVAL_MS })) !== undefined;
    });
  }

  /** The size of `digest` if `repository` may read it, else null. */
  async linkedBlobSize(repository: string, digest: string): Promise<number | null> {
    const row = await this.sql.get<{ size: number }>(SQL.linkedBlob, { repository, digest });
    return row?.size ?? null;
  }

  /** A few manifests of `repository` that name `digest` as a blob (config or layer). */
  async manifestsReferencingBlob(repository: string, digest: string): Promise<string[]> {
    return column(await this.sql.all(SQL.manifestsReferencingBlob, { repository, digest }));
  }

  async unlinkBlob(repository: string, digest: string): Promise<boolean> {
    return (await this.sql.run(SQL.unlinkBlob, { repository, digest })).changes > 0;
  }

  // --- manifests and tags ------------------------------------------------------------------

  /**
   * Stores a manifest, what it references, and optionally points a tag at it, atomically. With
   * `requireChildren`, its blobs and child manifests must be in the repository, checked in the same
   * transaction: a check made earlier, before an await, could be undone by a garbage collection.
   */
  putManifest(manifest: NewManifest, now = Date.now(), options: { requireChildren?: boolean } = {}): Promise<void> {
    return this.transaction(async (index) => {
      if (options.requireChildren) await index.requireChildren(manifest);
      const q = index.sql;
      const repositoryId = await ensureRepository(q, manifest.repository, now);
      await q.run(SQL.upsertBlob, { digest: manifest.digest, size: manifest.size, now });
      await q.run(SQL.upsertManifest, {
        repositoryId,
        digest: manifest.digest,
        mediaType: manifest.mediaType,
        size: manifest.size,
        subjectDigest: manifest.subjectDigest,
        artifactType: manifest.artifactType,
        annotations: manifest.annotations ? JSON.stringify(manifest.annotations) : null,
        now,
      });
      await q.run(SQL.deleteReferences, { repositoryId, digest: manifest.digest });
      for (const child of new Set(manifest.blobDigests)) {
        await q.run(SQL.insertReference, { repositoryId, digest: manifest.digest, child, kind: 'blob' });
      }
      for (const child of new Set(manifest.manifestDigests)) {
        await q.run(SQL.insertReference, { repositoryId, digest: manifest.digest, child, kind: 'manifest' });
      }
      if (manifest.tag !== undefined) {
        await q.run(SQL.upsertTag, { repositoryId, tag: manifest.tag, digest: manifest.digest, now });
      }
    });
  }

  async manifest(repository: string, digest: string): Promise<ManifestRecord | null> {
    const row = await this.sql.get<ManifestRow>(SQL.manifestByDigest, { repository, digest });
    return row ? toManifestRecord(row) : null;
  }

  /** The digest a tag points at, or null. */
  async resolveTag(repository: string, tag: string): Promise<string | null> {
    const row = await this.sql.get<{ digest: string }>(SQL.tag, { repository, tag });
    return row?.digest ?? null;
  }

  /** A tag with when it was set or last confirmed upstream (pull-through cache), or null. */
  async checkedTag(repository: string, tag: string): Promise<{ digest: string; checkedAt: number } | null> {
    return (await this.sql.get<{ digest: string; checkedAt: number }>(SQL.checkedTag, { repository, tag })) ?? null;
  }

  async markTagChecked(repository: string, tag: string, now = Date.now()): Promise<void> {
    await this.sql.run(SQL.markTagChecked, { repository, tag, now });
  }

  /** The upstream's tag list as last fetched, or null. */
  async upstreamTagList(repository: string): Promise<{ tags: string[]; fetchedAt: number } | null> {
    const row = await this.sql.get<{ tags: string; fetchedAt: number }>(SQL.upstreamTagList, { repository });
    return row ? { tags: JSON.parse(row.tags) as string[], fetchedAt: row.fetchedAt } : null;
  }

  storeUpstreamTagList(repository: string, tags: string[], now = Date.now()): Promise<void> {
    return this.sql.transaction(async (q) => {
      const repositoryId = await ensureRepository(q, repository, now);
      await q.run(SQL.storeUpstreamTagList, { repositoryId, tags: JSON.stringify(tags), now });
    });
  }

  /** The upstream's referrers of a cached manifest as last fetched (pull-through cache), or null. */
  async upstreamReferrers(repository: string, subject: string): Promise<{ descriptors: unknown[]; fetchedAt: number } | null> {
    const row = await this.sql.get<{ descriptors: string; fetchedAt: number }>(SQL.upstreamReferrers, { repository, subject });
    return row ? { descriptors: JSON.parse(row.descriptors) as unknown[], fetchedAt: row.fetchedAt } : null;
  }

  /** Stores them only while the subject is cached here (false otherwise): they go when it is evicted. */
  async storeUpstreamReferrers(repository: string, subject: string, descriptors: unknown[], now = Date.now()): Promise<boolean> {
    const stored = await this.sql.run(SQL.storeUpstreamReferrers, { repository, subject, descriptors: JSON.stringify(descriptors), now });
    return stored.changes > 0;
  }

  /** MANIFEST_BLOB_UNKNOWN unless the repository holds every blob and child manifest the manifest names. */
  async requireChildren(manifest: Pick<NewManifest, 'repository' | 'blobDigests' | 'manifestDigests'>): Promise<void> {
    const missing: string[] = [];
    for (const digest of manifest.blobDigests) {
      if ((await this.linkedBlobSize(manifest.repository, digest)) === null) missing.push(digest);
    }
    for (const digest of manifest.manifestDigests) {
      if ((await this.sql.get(SQL.manifestByDigest, { repository: manifest.repository, digest })) === undefined) missing.push(digest);
    }
    if (missing.length > 0) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { detail: { digests: missing } });
  }

  /** Deletes a manifest and the tags pointing at it. */
  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    return (await this.sql.run(SQL.deleteManifest, { repository, digest })).changes > 0;
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return (await this.sql.run(SQL.deleteTag, { repository, tag })).changes > 0;
  }

  async listTags(repository: string, limit: number | undefined, last: string | undefined): Promise<Page<string>> {
    const names = column<string>(await this.sql.all(SQL.tags, { repository, last: last ?? '', limit: pageLimit(limit) }));
    return pageOf(names, limit);
  }

  /** Repositories that hold at least one manifest or blob, sorted by name. */
  async listRepositories(limit: number | undefined, last: string | undefined): Promise<Page<string>> {
    const names = column<string>(await this.sql.all(SQL.repositories, { last: last ?? '', limit: pageLimit(limit) }));
    return pageOf(names, limit);
  }

  /** Manifests in `repository` whose subject is `digest`, oldest first. */
  async referrers(repository: string, digest: string): Promise<ManifestRecord[]> {
    return (await this.sql.all<ManifestRow>(SQL.referrers, { repository, digest })).map(toManifestRecord);
  }

  /** Batched from the read path: when manifests were last pulled and blobs last read, for GC. */
  recordAccess(manifestPulls: Iterable<[string, string, number]>, blobReads: Iterable<[string, number]>): Promise<void> {
    const pulls = [...manifestPulls];
    const reads = [...blobReads];
    return this.sql.transaction(async (q) => {
      for (const [repository, digest, at] of pulls) await q.run(SQL.touchManifest, { repository, digest, at });
      for (const [digest, at] of reads) await q.run(SQL.touchBlob, { digest, at });
    });
  }

  /**
   * What each store holds: the bytes and number of files that repositories of its kind use (manifests and
   * linked blobs; one shared by several repositories counts once). Read at every metrics scrape.
   */
  async storedBytes(): Promise<Record<'hosted' | 'proxy', { bytes: number; blobs: number }>> {
    const read = async (sql: string) => (await this.sql.get<{ bytes: number; blobs: number }>(sql))!;
    return { hosted: await read(SQL.storedHosted), proxy: await read(SQL.storedProxy) };
  }

  // --- uploads -----------------------------------------------------------------------------

  /** Records a new session; TOOMANYREQUESTS when `maxSessions` (0: no limit) are open already. */
  createUpload(id: string, repository: string, maxSessions = 0, now = Date.now()): Promise<void> {
    return this.sql.transaction(async (q) => {
      if (maxSessions > 0 && (await q.get<{ count: number }>(SQL.countUploads))!.count >= maxSessions) {
        throw new RegistryError('TOOMANYREQUESTS', {
          message: `${maxSessions} upload sessions are open, the most this registry allows; try again later`,
          headers: { 'Retry-After': '60' },
        });
      }
      await q.run(SQL.insertUpload, { id, repository, now });
    });
  }

  async upload(id: string): Promise<UploadRecord | null> {
    return (await this.sql.get<UploadRecord>(SQL.upload, { id })) ?? null;
  }

  async setUploadSize(id: string, size: number, now = Date.now()): Promise<void> {
    await this.sql.run(SQL.setUploadSize, { id, size, now });
  }

  async setUploadOwner(id: string, owner: string): Promise<void> {
    await this.sql.run(SQL.setUploadOwner, { id, owner });
  }

  /** Every upload session, with where a bucket session's bytes are (null for a session in files): garbage collection's list. */
  uploadSessions(): Promise<UploadSessionRow[]> {
    return this.sql.all<UploadSessionRow>(SQL.uploadSessions);
  }

  async deleteUpload(id: string): Promise<void> {
    await this.sql.run(SQL.deleteUpload, { id });
  }

  /** Where a session's bytes are in the bucket (bucket-upload-data.ts); null when there is no such session. */
  async bucketUpload(id: string): Promise<BucketUploadState | null> {
    const row = await this.sql.get<Omit<BucketUploadState, 'parts'>>(SQL.bucketUpload, { id });
    if (!row) return null;
    return { ...row, parts: await this.sql.all<UploadPart>(SQL.uploadParts, { id }) };
  }

  /**
   * `count` part numbers for a session's multipart upload that no one has had before: the first of them, or
   * null when the session is gone.
   */
  async reserveUploadParts(id: string, count: number): Promise<number | null> {
    const row = await this.sql.get<{ lastPart: number }>(SQL.reserveUploadParts, { id, count });
    return row ? row.lastPart - count + 1 : null;
  }

  /**
   * Records what a chunk added to a bucket session, if the session is still where the chunk began
   * (`from`: its size and tail then): false when another request changed it meanwhile (a replica that
   * took a client's retry), and nothing is recorded.
   */
  commitBucketUpload(id: string, from: { size: number; tailKey: string | null }, to: BucketUploadChange, now = Date.now()): Promise<boolean> {
    return this.sql.transaction(async (q) => {
      const { changes } = await q.run(SQL.commitBucketUpload, {
        id,
        fromSize: from.size,
        fromTail: from.tailKey ?? '',
        size: to.size,
        multipartId: to.multipartId,
        tailKey: to.tailKey,
        hashState: to.hashState,
        now,
      });
      if (changes === 0) return false;
      if (to.replaceParts) await q.run(SQL.deleteUploadParts, { id });
      for (const part of to.newParts) await q.run(SQL.insertUploadPart, { id, ...part });
      return true;
    });
  }
}

export interface UploadSessionRow {
  id: string;
  updatedAt: number;
  multipartId: string | null;
  tailKey: string | null;
}

export interface UploadPart {
  partNumber: number;
  etag: string;
  size: number;
}

export interface BucketUploadState {
  size: number;
  /** The S3 multipart upload holding the session's parts; null before its first part. */
  multipartId: string | null;
  /** The object with the bytes past the last part; null when there are none. */
  tailKey: string | null;
  /** The running hash after the session's last byte (hash-wasm's saved state, base64); null when empty. */
  hashState: string | null;
  /** In order. */
  parts: UploadPart[];
}

export interface BucketUploadChange {
  size: number;
  multipartId: string | null;
  tailKey: string | null;
  hashState: string | null;
  newParts: UploadPart[];
  /** The session's parts are `newParts` alone (its multipart upload was completed): the recorded ones go. */
  replaceParts?: boolean;
}

/**
 * node-postgres is loaded only when the index is in PostgreSQL: requiring it costs every start (and every
 * command) of a registry on SQLite some 60 ms.
 */
async function openPostgres(url: string): Promise<SqlDatabase> {
  const { PostgresDatabase } = await import('./database/postgres-database');
  return new PostgresDatabase(url);
}

/** A repository's id, inserted if new (inside the caller's transaction). */
async function ensureRepository(q: SqlQueries, name: string, now: number): Promise<number> {
  const existing = await q.get<{ id: number }>(SQL.repositoryByName, { name });
  if (existing) return existing.id;
  return (await q.get<{ id: number }>(SQL.insertRepository, { name, now }))!.id;
}

/** One more than a page asks for (whether more follow); every row when no page size is given. */
function pageLimit(limit: number | undefined): number {
  return limit === undefined ? Number.MAX_SAFE_INTEGER : limit + 1;
}

interface ManifestRow {
  digest: string;
  media_type: string;
  size: number;
  subject_digest: string | null;
  artifact_type: string | null;
  annotations: string | null;
}

function toManifestRecord(row: ManifestRow): ManifestRecord {
  return {
    digest: row.digest,
    mediaType: row.media_type,
    size: row.size,
    subjectDigest: row.subject_digest,
    artifactType: row.artifact_type,
    annotations: row.annotations ? (JSON.parse(row.annotations) as Record<string, string>) : null,
  };
}

/**
 * The first `n` of `names` (sorted, already after the page's `last`) as a page; `next` names its last item
 * when more follow, here or (`moreBeyond`) past what `names` holds. Every listing pages through this.
 */
export function pageOf(names: string[], n: number | undefined, moreBeyond = false): Page<string> {
  if (n === undefined) return { items: names };
  const items = names.slice(0, n);
  const more = names.length > n || moreBeyond;
  return more && items.length > 0 ? { items, next: items[items.length - 1] } : { items };
}

const REPOSITORY_ID = '(SELECT id FROM repositories WHERE name = @repository)';

// Repositories under proxy/ are the cache (a range, so SQLite can use the name index).
const IS_PROXY = `(r.name >= 'proxy/' AND r.name < 'proxy0')`;

/** Bytes and files that repositories matching `kind` use, each digest once. */
function storedBytes(kind: string): string {
  return `SELECT coalesce(sum(size), 0) AS bytes, count(*) AS blobs FROM blobs WHERE digest IN (
            SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE ${kind}
            UNION SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id WHERE ${kind})`;
}

/** Every statement of the index, in the dialect SQLite and PostgreSQL share. */
const SQL = {
  repositoryByName: 'SELECT id FROM repositories WHERE name = @name',
  storedHosted: storedBytes(`NOT ${IS_PROXY}`),
  storedProxy: storedBytes(IS_PROXY),
  insertRepository: 'INSERT INTO repositories (name, created_at) VALUES (@name, @now) RETURNING id',
  upsertBlob: `INSERT INTO blobs (digest, size, created_at, last_accessed_at, written_at) VALUES (@digest, @size, @now, @now, @now)
     ON CONFLICT (digest) DO NOTHING`,
  removalUnderWay: 'SELECT 1 FROM blob_removals WHERE digest = @digest AND started_at > @since',
  recordBlobWrite: `INSERT INTO blobs (digest, size, created_at, last_accessed_at, written_at) VALUES (@digest, @size, @now, @now, @now)
     ON CONFLICT (digest) DO UPDATE SET written_at = excluded.written_at`,
  linkBlob: `INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (@repositoryId, @digest, @now)
     ON CONFLICT DO NOTHING`,
  linkedBlob: `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
     WHERE rb.repository_id = ${REPOSITORY_ID} AND rb.digest = @digest`,
  manifestsReferencingBlob: `SELECT manifest_digest FROM manifest_references
     WHERE repository_id = ${REPOSITORY_ID} AND child_digest = @digest AND child_kind = 'blob' LIMIT 4`,
  unlinkBlob: `DELETE FROM repository_blobs WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
  upsertManifest: `INSERT INTO manifests (repository_id, digest, media_type, size, subject_digest, artifact_type, annotations, created_at)
     VALUES (@repositoryId, @digest, @mediaType, @size, @subjectDigest, @artifactType, @annotations, @now)
     ON CONFLICT (repository_id, digest) DO NOTHING`,
  deleteReferences: 'DELETE FROM manifest_references WHERE repository_id = @repositoryId AND manifest_digest = @digest',
  insertReference: `INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind)
     VALUES (@repositoryId, @digest, @child, @kind)`,
  upsertTag: `INSERT INTO tags (repository_id, name, manifest_digest, updated_at, checked_at)
     VALUES (@repositoryId, @tag, @digest, @now, @now)
     ON CONFLICT (repository_id, name) DO UPDATE
     SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at, checked_at = excluded.checked_at`,
  checkedTag: `SELECT manifest_digest AS digest, coalesce(checked_at, updated_at) AS "checkedAt" FROM tags
     WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
  markTagChecked: `UPDATE tags SET checked_at = @now WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
  upstreamTagList: `SELECT tags, fetched_at AS "fetchedAt" FROM upstream_tag_lists WHERE repository_id = ${REPOSITORY_ID}`,
  storeUpstreamTagList: `INSERT INTO upstream_tag_lists (repository_id, tags, fetched_at) VALUES (@repositoryId, @tags, @now)
     ON CONFLICT (repository_id) DO UPDATE SET tags = excluded.tags, fetched_at = excluded.fetched_at`,
  upstreamReferrers: `SELECT descriptors, fetched_at AS "fetchedAt" FROM upstream_referrers
     WHERE repository_id = ${REPOSITORY_ID} AND subject_digest = @subject`,
  // CASTs: PostgreSQL cannot tell a SELECT list parameter's type from the INSERT around it.
  storeUpstreamReferrers: `INSERT INTO upstream_referrers (repository_id, subject_digest, descriptors, fetched_at)
     SELECT repository_id, digest, CAST(@descriptors AS TEXT), CAST(@now AS BIGINT) FROM manifests
     WHERE repository_id = ${REPOSITORY_ID} AND digest = @subject
     ON CONFLICT (repository_id, subject_digest) DO UPDATE SET descriptors = excluded.descriptors, fetched_at = excluded.fetched_at`,
  manifestByDigest: `SELECT digest, media_type, size, subject_digest, artifact_type, annotations FROM manifests
     WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
  tag: `SELECT manifest_digest AS digest FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
  deleteManifest: `DELETE FROM manifests WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
  deleteTag: `DELETE FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
  tags: `SELECT name FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name > @last ORDER BY name LIMIT @limit`,
  repositories: `SELECT name FROM repositories r
     WHERE name > @last
       AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
            OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id))
     ORDER BY name LIMIT @limit`,
  referrers: `SELECT digest, media_type, size, subject_digest, artifact_type, annotations FROM manifests
     WHERE repository_id = ${REPOSITORY_ID} AND subject_digest = @digest ORDER BY created_at, digest`,
  touchManifest: `UPDATE manifests SET last_pulled_at = @at WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
  touchBlob: 'UPDATE blobs SET last_accessed_at = @at WHERE digest = @digest AND last_accessed_at < @at',
  insertUpload: 'INSERT INTO uploads (id, repository_name, size, created_at, updated_at) VALUES (@id, @repository, 0, @now, @now)',
  upload: `SELECT id, repository_name AS repository, owner, size, created_at AS "createdAt", updated_at AS "updatedAt"
     FROM uploads WHERE id = @id`,
  countUploads: 'SELECT count(*) AS count FROM uploads',
  setUploadOwner: 'UPDATE uploads SET owner = @owner WHERE id = @id',
  setUploadSize: 'UPDATE uploads SET size = @size, updated_at = @now WHERE id = @id',
  deleteUpload: 'DELETE FROM uploads WHERE id = @id',
  uploadSessions: 'SELECT id, updated_at AS "updatedAt", multipart_id AS "multipartId", tail_key AS "tailKey" FROM uploads',
  bucketUpload: `SELECT size, multipart_id AS "multipartId", tail_key AS "tailKey", hash_state AS "hashState"
     FROM uploads WHERE id = @id`,
  uploadParts: `SELECT part_number AS "partNumber", etag, size FROM upload_parts WHERE upload_id = @id ORDER BY part_number`,
  reserveUploadParts: 'UPDATE uploads SET last_part = last_part + @count WHERE id = @id RETURNING last_part AS "lastPart"',
  commitBucketUpload: `UPDATE uploads SET size = @size, multipart_id = @multipartId, tail_key = @tailKey, hash_state = @hashState,
       updated_at = @now
     WHERE id = @id AND size = @fromSize AND coalesce(tail_key, '') = @fromTail`,
  deleteUploadParts: 'DELETE FROM upload_parts WHERE upload_id = @id',
  insertUploadPart: 'INSERT INTO upload_parts (upload_id, part_number, etag, size) VALUES (@id, @partNumber, @etag, @size)',
};

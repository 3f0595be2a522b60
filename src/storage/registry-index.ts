import Database from 'better-sqlite3';
import { RegistryError } from '../oci/errors';
import { MIGRATIONS } from './migrations';
import { WalCheckpoints } from './wal-checkpoints';
import { preparePinQueries } from './pins';

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
 * The SQLite index: repositories, tags, manifests and what they reference, which blobs each
 * repository may read, and upload sessions. Every multi-row change is one transaction.
 */
/**
 * A removal recorded longer ago than this is one a crashed collection left (a sweep deletes each blob's row
 * as soon as the blob is gone, within seconds): writers stop waiting for it, and the next collection
 * finishes it (gc.ts recoverRemovals).
 */
export const STALE_REMOVAL_MS = 10 * 60_000;

export class RegistryIndex {
  readonly db: Database.Database;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private checkpoints: WalCheckpoints | undefined;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // WAL with NORMAL is durable across application crashes; blob files are fsynced on their own.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db);
    preparePinQueries(this.db);
    this.statements = prepareStatements(this.db);
  }

  /**
   * Checkpoints the WAL from a worker thread every `intervalMs` instead of inside the commit that fills
   * it (see WalCheckpoints). For the long-running server; commands and tests keep SQLite's default.
   */
  checkpointInBackground(intervalMs: number, onFailure: (error: Error) => void): void {
    this.checkpoints ??= new WalCheckpoints(
      this.db.name,
      intervalMs,
      (enabled) => {
        if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${enabled ? DEFAULT_AUTOCHECKPOINT_PAGES : 0}`);
      },
      onFailure,
    );
  }

  close(): void {
    this.checkpoints?.stop();
    if (this.db.open) this.db.close();
  }

  repositoryExists(name: string): boolean {
    return this.statements.repositoryByName.get(name) !== undefined;
  }

  // --- blobs -------------------------------------------------------------------------------

  /** Records a blob file and makes it readable in `repository`. */
  linkBlob(repository: string, digest: string, size: number, now = Date.now()): void {
    this.db.transaction(() => {
      this.statements.upsertBlob.run({ digest, size, now });
      const repositoryId = this.ensureRepository(repository, now);
      this.statements.linkBlob.run({ repositoryId, digest, now });
    })();
  }

  /**
   * Records that a blob is being written into a store now (before it becomes visible at its digest).
   * Returns whether a garbage collection is removing that digest meanwhile (see CommitHook).
   */
  recordBlobWrite(digest: string, size: number, now = Date.now()): boolean {
    return this.db.transaction(() => {
      this.statements.recordBlobWrite.run({ digest, size, now });
      return this.statements.removalUnderWay.get(digest, now - STALE_REMOVAL_MS) !== undefined;
    })();
  }

  /** The size of `digest` if `repository` may read it, else null. */
  linkedBlobSize(repository: string, digest: string): number | null {
    const row = this.statements.linkedBlob.get({ repository, digest }) as { size: number } | undefined;
    return row?.size ?? null;
  }

  /** A few manifests of `repository` that name `digest` as a blob (config or layer). */
  manifestsReferencingBlob(repository: string, digest: string): string[] {
    return this.statements.manifestsReferencingBlob.all({ repository, digest }) as string[];
  }

  unlinkBlob(repository: string, digest: string): boolean {
    return this.statements.unlinkBlob.run({ repository, digest }).changes > 0;
  }

  // --- manifests and tags ------------------------------------------------------------------

  /**
   * Stores a manifest, what it references, and optionally points a tag at it, atomically. With
   * `requireChildren`, its blobs and child manifests must be in the repository, checked in the same
   * transaction: a check made earlier, before an await, could be undone by a garbage collection.
   */
  putManifest(manifest: NewManifest, now = Date.now(), options: { requireChildren?: boolean } = {}): void {
    this.db.transaction(() => {
      if (options.requireChildren) this.requireChildren(manifest);
      const repositoryId = this.ensureRepository(manifest.repository, now);
      this.statements.upsertBlob.run({ digest: manifest.digest, size: manifest.size, now });
      this.statements.upsertManifest.run({
        repositoryId,
        digest: manifest.digest,
        mediaType: manifest.mediaType,
        size: manifest.size,
        subjectDigest: manifest.subjectDigest,
        artifactType: manifest.artifactType,
        annotations: manifest.annotations ? JSON.stringify(manifest.annotations) : null,
        now,
      });
      this.statements.deleteReferences.run({ repositoryId, digest: manifest.digest });
      for (const child of new Set(manifest.blobDigests)) {
        this.statements.insertReference.run({ repositoryId, digest: manifest.digest, child, kind: 'blob' });
      }
      for (const child of new Set(manifest.manifestDigests)) {
        this.statements.insertReference.run({ repositoryId, digest: manifest.digest, child, kind: 'manifest' });
      }
      if (manifest.tag !== undefined) {
        this.statements.upsertTag.run({ repositoryId, tag: manifest.tag, digest: manifest.digest, now });
      }
    })();
  }

  manifest(repository: string, digest: string): ManifestRecord | null {
    const row = this.statements.manifestByDigest.get({ repository, digest }) as ManifestRow | undefined;
    return row ? toManifestRecord(row) : null;
  }

  /** The digest a tag points at, or null. */
  resolveTag(repository: string, tag: string): string | null {
    const row = this.statements.tag.get({ repository, tag }) as { digest: string } | undefined;
    return row?.digest ?? null;
  }

  /** A tag with when it was set or last confirmed upstream (pull-through cache), or null. */
  checkedTag(repository: string, tag: string): { digest: string; checkedAt: number } | null {
    return (this.statements.checkedTag.get({ repository, tag }) as { digest: string; checkedAt: number } | undefined) ?? null;
  }

  markTagChecked(repository: string, tag: string, now = Date.now()): void {
    this.statements.markTagChecked.run({ repository, tag, now });
  }

  /** The upstream's tag list as last fetched, or null. */
  upstreamTagList(repository: string): { tags: string[]; fetchedAt: number } | null {
    const row = this.statements.upstreamTagList.get({ repository }) as { tags: string; fetchedAt: number } | undefined;
    return row ? { tags: JSON.parse(row.tags) as string[], fetchedAt: row.fetchedAt } : null;
  }

  storeUpstreamTagList(repository: string, tags: string[], now = Date.now()): void {
    this.db.transaction(() => {
      const repositoryId = this.ensureRepository(repository, now);
      this.statements.storeUpstreamTagList.run({ repositoryId, tags: JSON.stringify(tags), now });
    })();
  }

  /** The upstream's referrers of a cached manifest as last fetched (pull-through cache), or null. */
  upstreamReferrers(repository: string, subject: string): { descriptors: unknown[]; fetchedAt: number } | null {
    const row = this.statements.upstreamReferrers.get({ repository, subject }) as { descriptors: string; fetchedAt: number } | undefined;
    return row ? { descriptors: JSON.parse(row.descriptors) as unknown[], fetchedAt: row.fetchedAt } : null;
  }

  /** Stores them only while the subject is cached here (false otherwise): they go when it is evicted. */
  storeUpstreamReferrers(repository: string, subject: string, descriptors: unknown[], now = Date.now()): boolean {
    const stored = this.statements.storeUpstreamReferrers.run({ repository, subject, descriptors: JSON.stringify(descriptors), now });
    return stored.changes > 0;
  }

  /** MANIFEST_BLOB_UNKNOWN unless the repository holds every blob and child manifest the manifest names. */
  requireChildren(manifest: Pick<NewManifest, 'repository' | 'blobDigests' | 'manifestDigests'>): void {
    const missing = [
      ...manifest.blobDigests.filter((digest) => this.linkedBlobSize(manifest.repository, digest) === null),
      ...manifest.manifestDigests.filter(
        (digest) => this.statements.manifestByDigest.get({ repository: manifest.repository, digest }) === undefined,
      ),
    ];
    if (missing.length > 0) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { detail: { digests: missing } });
  }

  /** Deletes a manifest and the tags pointing at it. */
  deleteManifest(repository: string, digest: string): boolean {
    return this.statements.deleteManifest.run({ repository, digest }).changes > 0;
  }

  deleteTag(repository: string, tag: string): boolean {
    return this.statements.deleteTag.run({ repository, tag }).changes > 0;
  }

  listTags(repository: string, limit: number | undefined, last: string | undefined): Page<string> {
    const rows = this.statements.tags.all({
      repository,
      last: last ?? '',
      limit: limit === undefined ? -1 : limit + 1,
    }) as Array<{ name: string }>;
    return pageOf(rows.map((row) => row.name), limit);
  }

  /** Repositories that hold at least one manifest or blob, sorted by name. */
  listRepositories(limit: number | undefined, last: string | undefined): Page<string> {
    const rows = this.statements.repositories.all({
      last: last ?? '',
      limit: limit === undefined ? -1 : limit + 1,
    }) as Array<{ name: string }>;
    return pageOf(rows.map((row) => row.name), limit);
  }

  /** Manifests in `repository` whose subject is `digest`, oldest first. */
  referrers(repository: string, digest: string): ManifestRecord[] {
    return (this.statements.referrers.all({ repository, digest }) as ManifestRow[]).map(toManifestRecord);
  }

  /** Batched from the read path: when manifests were last pulled and blobs last read, for GC. */
  recordAccess(manifestPulls: Iterable<[string, string, number]>, blobReads: Iterable<[string, number]>): void {
    this.db.transaction(() => {
      for (const [repository, digest, at] of manifestPulls) this.statements.touchManifest.run({ repository, digest, at });
      for (const [digest, at] of blobReads) this.statements.touchBlob.run({ digest, at });
    })();
  }

  /**
   * What each store holds: the bytes and number of files that repositories of its kind use (manifests and
   * linked blobs; one shared by several repositories counts once). Read at every metrics scrape.
   */
  storedBytes(): Record<'hosted' | 'proxy', { bytes: number; blobs: number }> {
    const read = (statement: Database.Statement) => statement.get() as { bytes: number; blobs: number };
    return { hosted: read(this.statements.storedHosted), proxy: read(this.statements.storedProxy) };
  }

  // --- uploads -----------------------------------------------------------------------------

  /** Records a new session; TOOMANYREQUESTS when `maxSessions` (0: no limit) are open already. */
  createUpload(id: string, repository: string, maxSessions = 0, now = Date.now()): void {
    this.db.transaction(() => {
      if (maxSessions > 0 && (this.statements.countUploads.get() as number) >= maxSessions) {
        throw new RegistryError('TOOMANYREQUESTS', {
          message: `${maxSessions} upload sessions are open, the most this registry allows; try again later`,
          headers: { 'Retry-After': '60' },
        });
      }
      this.statements.insertUpload.run({ id, repository, now });
    })();
  }

  upload(id: string): UploadRecord | null {
    return (this.statements.upload.get({ id }) as UploadRecord | undefined) ?? null;
  }

  setUploadSize(id: string, size: number, now = Date.now()): void {
    this.statements.setUploadSize.run({ id, size, now });
  }

  setUploadOwner(id: string, owner: string): void {
    this.statements.setUploadOwner.run({ id, owner });
  }

  deleteUpload(id: string): void {
    this.statements.deleteUpload.run({ id });
  }

  private ensureRepository(name: string, now: number): number {
    const existing = this.statements.repositoryByName.get(name) as { id: number } | undefined;
    if (existing) return existing.id;
    return Number(this.statements.insertRepository.run({ name, now }).lastInsertRowid);
  }
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

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(`the index database is at schema version ${version}, newer than this server (${MIGRATIONS.length})`);
  }
  for (let next = version; next < MIGRATIONS.length; next++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[next]);
      db.pragma(`user_version = ${next + 1}`);
    })();
  }
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

function prepareStatements(db: Database.Database) {
  return {
    repositoryByName: db.prepare('SELECT id FROM repositories WHERE name = ?'),
    storedHosted: db.prepare(storedBytes(`NOT ${IS_PROXY}`)),
    storedProxy: db.prepare(storedBytes(IS_PROXY)),
    insertRepository: db.prepare('INSERT INTO repositories (name, created_at) VALUES (@name, @now)'),
    upsertBlob: db.prepare(
      `INSERT INTO blobs (digest, size, created_at, last_accessed_at, written_at) VALUES (@digest, @size, @now, @now, @now)
       ON CONFLICT (digest) DO NOTHING`,
    ),
    removalUnderWay: db.prepare('SELECT 1 FROM blob_removals WHERE digest = ? AND started_at > ?'),
    recordBlobWrite: db.prepare(
      `INSERT INTO blobs (digest, size, created_at, last_accessed_at, written_at) VALUES (@digest, @size, @now, @now, @now)
       ON CONFLICT (digest) DO UPDATE SET written_at = excluded.written_at`,
    ),
    linkBlob: db.prepare(
      `INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (@repositoryId, @digest, @now)
       ON CONFLICT DO NOTHING`,
    ),
    linkedBlob: db.prepare(
      `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
       WHERE rb.repository_id = ${REPOSITORY_ID} AND rb.digest = @digest`,
    ),
    manifestsReferencingBlob: db
      .prepare(
        `SELECT manifest_digest FROM manifest_references
         WHERE repository_id = ${REPOSITORY_ID} AND child_digest = @digest AND child_kind = 'blob' LIMIT 4`,
      )
      .pluck(),
    unlinkBlob: db.prepare(`DELETE FROM repository_blobs WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`),
    upsertManifest: db.prepare(
      `INSERT INTO manifests (repository_id, digest, media_type, size, subject_digest, artifact_type, annotations, created_at)
       VALUES (@repositoryId, @digest, @mediaType, @size, @subjectDigest, @artifactType, @annotations, @now)
       ON CONFLICT (repository_id, digest) DO NOTHING`,
    ),
    deleteReferences: db.prepare(
      'DELETE FROM manifest_references WHERE repository_id = @repositoryId AND manifest_digest = @digest',
    ),
    insertReference: db.prepare(
      `INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind)
       VALUES (@repositoryId, @digest, @child, @kind)`,
    ),
    upsertTag: db.prepare(
      `INSERT INTO tags (repository_id, name, manifest_digest, updated_at, checked_at)
       VALUES (@repositoryId, @tag, @digest, @now, @now)
       ON CONFLICT (repository_id, name) DO UPDATE
       SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at, checked_at = excluded.checked_at`,
    ),
    checkedTag: db.prepare(
      `SELECT manifest_digest AS digest, coalesce(checked_at, updated_at) AS checkedAt FROM tags
       WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
    ),
    markTagChecked: db.prepare(
      `UPDATE tags SET checked_at = @now WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
    ),
    upstreamTagList: db.prepare(
      `SELECT tags, fetched_at AS fetchedAt FROM upstream_tag_lists WHERE repository_id = ${REPOSITORY_ID}`,
    ),
    storeUpstreamTagList: db.prepare(
      `INSERT INTO upstream_tag_lists (repository_id, tags, fetched_at) VALUES (@repositoryId, @tags, @now)
       ON CONFLICT (repository_id) DO UPDATE SET tags = excluded.tags, fetched_at = excluded.fetched_at`,
    ),
    upstreamReferrers: db.prepare(
      `SELECT descriptors, fetched_at AS fetchedAt FROM upstream_referrers
       WHERE repository_id = ${REPOSITORY_ID} AND subject_digest = @subject`,
    ),
    storeUpstreamReferrers: db.prepare(
      `INSERT INTO upstream_referrers (repository_id, subject_digest, descriptors, fetched_at)
       SELECT repository_id, digest, @descriptors, @now FROM manifests
       WHERE repository_id = ${REPOSITORY_ID} AND digest = @subject
       ON CONFLICT (repository_id, subject_digest) DO UPDATE SET descriptors = excluded.descriptors, fetched_at = excluded.fetched_at`,
    ),
    manifestByDigest: db.prepare(
      `SELECT digest, media_type, size, subject_digest, artifact_type, annotations FROM manifests
       WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
    ),
    tag: db.prepare(
      `SELECT manifest_digest AS digest FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`,
    ),
    deleteManifest: db.prepare(`DELETE FROM manifests WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`),
    deleteTag: db.prepare(`DELETE FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name = @tag`),
    tags: db.prepare(
      `SELECT name FROM tags WHERE repository_id = ${REPOSITORY_ID} AND name > @last ORDER BY name LIMIT @limit`,
    ),
    repositories: db.prepare(
      `SELECT name FROM repositories r
       WHERE name > @last
         AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
              OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id))
       ORDER BY name LIMIT @limit`,
    ),
    referrers: db.prepare(
      `SELECT digest, media_type, size, subject_digest, artifact_type, annotations FROM manifests
       WHERE repository_id = ${REPOSITORY_ID} AND subject_digest = @digest ORDER BY created_at, digest`,
    ),
    touchManifest: db.prepare(
      `UPDATE manifests SET last_pulled_at = @at WHERE repository_id = ${REPOSITORY_ID} AND digest = @digest`,
    ),
    touchBlob: db.prepare('UPDATE blobs SET last_accessed_at = @at WHERE digest = @digest AND last_accessed_at < @at'),
    insertUpload: db.prepare(
      `INSERT INTO uploads (id, repository_name, size, created_at, updated_at) VALUES (@id, @repository, 0, @now, @now)`,
    ),
    upload: db.prepare(
      `SELECT id, repository_name AS repository, owner, size, created_at AS createdAt, updated_at AS updatedAt
       FROM uploads WHERE id = @id`,
    ),
    countUploads: db.prepare('SELECT count(*) FROM uploads').pluck(),
    setUploadOwner: db.prepare('UPDATE uploads SET owner = @owner WHERE id = @id'),
    setUploadSize: db.prepare('UPDATE uploads SET size = @size, updated_at = @now WHERE id = @id'),
    deleteUpload: db.prepare('DELETE FROM uploads WHERE id = @id'),
  };
}

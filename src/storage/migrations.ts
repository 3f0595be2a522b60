/**
 * Versioned schema of the index, in SQLite's dialect (PostgreSQL runs the same, its types substituted:
 * postgres-database.ts forPostgres). Each entry runs once, in order, inside a transaction; SQLite's
 * `PRAGMA user_version` (PostgreSQL's schema_version table) records how far a database has come.
 * Append, never edit a shipped entry. Times are milliseconds since the epoch.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );

  -- Every file in the blob store: layers, configs and manifests alike.
  CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_accessed_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- Which blobs a repository may read: pushed or mounted there.
  CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
  ) WITHOUT ROWID;
  CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

  CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    subject_digest TEXT,
    artifact_type TEXT,
    annotations TEXT,
    created_at INTEGER NOT NULL,
    last_pulled_at INTEGER,
    PRIMARY KEY (repository_id, digest)
  ) WITHOUT ROWID;
  CREATE INDEX manifests_by_subject ON manifests(repository_id, subject_digest) WHERE subject_digest IS NOT NULL;
  CREATE INDEX manifests_by_digest ON manifests(digest);

  -- What each manifest needs: config and layers ('blob'), or an index's children ('manifest').
  CREATE TABLE manifest_references (
    repository_id INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest TEXT NOT NULL,
    child_kind TEXT NOT NULL CHECK (child_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX manifest_references_by_child ON manifest_references(child_digest);

  CREATE TABLE tags (
    repository_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
  ) WITHOUT ROWID;

  -- Open upload sessions; their bytes are in temporary_registry_storage/uploads/<id>.
  CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repository_name TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  `,
  `
  -- Pull-through cache. Cached repositories are named proxy/<upstream>/<name> and use the tables above.
  -- When the upstream last confirmed what a cached tag points at (revalidation after tag_ttl).
  ALTER TABLE tags ADD COLUMN checked_at INTEGER;

  -- An upstream repository's whole tag list, served while the upstream is unreachable.
  CREATE TABLE upstream_tag_lists (
    repository_id INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    tags TEXT NOT NULL,
    fetched_at INTEGER NOT NULL
  );
  `,
  `
  -- Garbage collection: when a blob file was last written into a store. Set before the file is renamed
  -- into place, so a sweep can tell a blob that reappeared while it ran from one that is garbage.
  ALTER TABLE blobs ADD COLUMN written_at INTEGER NOT NULL DEFAULT 0;
  UPDATE blobs SET written_at = created_at;
  `,
  `
  -- GitHub's Packages REST API answers (src/ghcr/), reused for [github] cache_ttl and whenever GitHub fails.
  -- key: 'packages:<source>' or 'tags:<owner>/<package>'; value: a JSON array of names.
  CREATE TABLE github_rest_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    fetched_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- The user who opened an upload session ([auth]): only they may continue it, also after a restart.
  ALTER TABLE uploads ADD COLUMN owner TEXT;
  `,
  `
  -- Pull-through cache: an upstream's referrers of a cached manifest (its referrers API, else the
  -- sha256-<hex> tag), as a JSON array of descriptors, served for tag_ttl and whenever the upstream fails.
  -- Kept only for a subject that is cached: it goes when the subject is evicted.
  CREATE TABLE upstream_referrers (
    repository_id INTEGER NOT NULL,
    subject_digest TEXT NOT NULL,
    descriptors TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, subject_digest),
    FOREIGN KEY (repository_id, subject_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
  ) WITHOUT ROWID;
  `,
  `
  -- Bytes and files per store (hosted, proxy) over time, for the web UI's storage chart (storage-history.ts):
  -- sampled hourly by the server and after each garbage collection; kept for a bounded time.
  CREATE TABLE storage_samples (
    sampled_at INTEGER NOT NULL,
    store TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    blobs INTEGER NOT NULL,
    PRIMARY KEY (sampled_at, store)
  ) WITHOUT ROWID;

  -- Garbage collections that ran (not dry runs), by the server or the gc command: what each freed. The last ones only.
  CREATE TABLE gc_runs (
    id INTEGER PRIMARY KEY,
    finished_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    bytes_freed INTEGER NOT NULL,
    blobs INTEGER NOT NULL,
    manifests INTEGER NOT NULL,
    uploads_expired INTEGER NOT NULL
  );
  `,
  `
  -- Pins: cached content that eviction (max_age, max_size) never removes (src/storage/pins.ts).
  -- source 'api': set through /api/pins, kept until deleted there; 'config': [[proxy.pin]], replaced at every start.
  -- repository: a stored name (proxy/<upstream>/<name>), or with is_prefix a name prefix, whole components.
  -- reference: a tag or a digest; NULL for a prefix pin, which pins the tags matching tag_pattern (NULL: every tag).
  CREATE TABLE pins (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('api', 'config')),
    repository TEXT NOT NULL,
    is_prefix INTEGER NOT NULL DEFAULT 0,
    reference TEXT,
    tag_pattern TEXT,
    created_by TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX api_pins ON pins(repository, reference) WHERE source = 'api';
  `,
  `
  -- Digests a garbage collection is removing from a store right now (gc.ts): recorded in the transaction
  -- of its re-check, deleted once the removal is done. A writer of the same digest into a store that cannot
  -- undo a removal (an object DELETE racing a PUT) waits until its row is gone. A crash leaves rows behind:
  -- the next collection finishes what they name.
  CREATE TABLE blob_removals (
    digest TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- Named leases (leases.ts): work at most one process sharing this index does at a time (garbage
  -- collection), held by a random id per process until expires_at unless renewed.
  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- Upload sessions whose bytes are in the bucket (the s3 backend, bucket-upload-data.ts), so that any
  -- replica can continue one: the S3 multipart upload under way, the bytes past its last part (an object
  -- of their own: a part is 5 MiB at least), the running hash's state after the last acknowledged byte, and
  -- the part numbers handed out (each PATCH takes fresh ones, so two replicas never write one part).
  ALTER TABLE uploads ADD COLUMN multipart_id TEXT;
  ALTER TABLE uploads ADD COLUMN tail_key TEXT;
  ALTER TABLE uploads ADD COLUMN hash_state TEXT;
  ALTER TABLE uploads ADD COLUMN last_part INTEGER NOT NULL DEFAULT 0;
  -- The parts of a session's multipart upload that its acknowledged bytes are in, in order.
  CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
  ) WITHOUT ROWID;
  `,
];

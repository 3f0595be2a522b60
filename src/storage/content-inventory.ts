import { readAtMost } from '../streams';
import { BlobStore, isNotFound } from './blob-store';
import { evict, StoreKind } from './gc';
import { ManifestRecord, RegistryIndex } from './registry-index';

/** What the index knows about one repository, for people looking at it (the web UI). Times in ms since the epoch. */
export interface RepositorySummary {
  name: string;
  /** `cached`: under proxy/<upstream>/, filled by the pull-through cache. */
  kind: 'hosted' | 'cached';
  /** The upstream a cached repository comes from (proxy/<upstream>/…). */
  upstream?: string;
  tags: number;
  manifests: number;
  /** Bytes of the manifests and blobs it uses, each digest once (shared with other repositories or not). */
  size: number;
  /** When a manifest was last stored or a tag last set here (a push, or a fetch into the cache); null: never. */
  lastPush: number | null;
  /** When one of its manifests was last pulled; null: never since it was stored. */
  lastPull: number | null;
}

export interface TagRecord {
  tag: string;
  digest: string;
  mediaType: string;
  /** The manifest's own size in bytes. */
  manifestSize: number;
  /** When the tag was last set. */
  updatedAt: number;
  lastPull: number | null;
}

const PROXY_PREFIX = 'proxy/';

/**
 * Read-only views of the index for people (sizes, counts, times), bounded reads of stored manifests and
 * config blobs that leave no trace (no pull is recorded, no upstream is asked), and evicting from the cache.
 */
export class ContentInventory {
  constructor(
    private readonly index: RegistryIndex,
    private readonly stores: Record<StoreKind, BlobStore>,
  ) {}

  /** Every repository holding a manifest or blob, sorted by name. One query: thousands of rows stay fast. */
  async repositories(): Promise<RepositorySummary[]> {
    return (await this.index.sql.all<RepositoryRow>(SQL.repositories)).map((row) => {
      const cached = row.name.startsWith(PROXY_PREFIX);
      const summary: RepositorySummary = {
        name: row.name,
        kind: cached ? 'cached' : 'hosted',
        tags: row.tags,
        manifests: row.manifests,
        size: row.size,
        lastPush: row.lastPush || null,
        lastPull: row.lastPull,
      };
      if (cached) summary.upstream = row.name.split('/')[1];
      return summary;
    });
  }

  /** A repository's tags with what they point at, sorted by tag; empty when there is no such repository. */
  tags(name: string): Promise<TagRecord[]> {
    return this.index.sql.all<TagRecord>(SQL.tags, { repository: name });
  }

  /** Manifests in `repository` whose subject is `digest` (signatures, SBOMs), oldest first. */
  referrers(repository: string, digest: string): Promise<ManifestRecord[]> {
    return this.index.referrers(repository, digest);
  }

  /** What each store holds (bytes and files used by repositories of its kind). */
  storedBytes(): Promise<Record<StoreKind, { bytes: number; blobs: number }>> {
    return this.index.storedBytes();
  }

  /**
   * A stored manifest's bytes when `repository` holds it, read without counting as a pull; undefined when
   * it does not, its file is gone, or it is larger than `maxBytes`.
   */
  async readManifest(repository: string, digest: string, maxBytes: number): Promise<Buffer | undefined> {
    if (!(await this.index.manifest(repository, digest))) return undefined;
    return this.read(repository, digest, maxBytes);
  }

  /** A blob `repository` may read (a config), bounded by `maxBytes`, as readManifest. */
  async readBlob(repository: string, digest: string, maxBytes: number): Promise<Buffer | undefined> {
    if ((await this.index.linkedBlobSize(repository, digest)) === null) return undefined;
    return this.read(repository, digest, maxBytes);
  }

  /**
   * Evicts cached manifests of a repository under proxy/ (all of them, or one digest and the tags on it) as
   * the cache's own eviction does; garbage collection frees their files. The number evicted; 0 for a hosted name.
   */
  async evict(repository: string, digest?: string): Promise<number> {
    if (!repository.startsWith(PROXY_PREFIX)) return 0;
    return this.index.sql.transaction(async (q) => {
      const rows = await q.all<{ repositoryId: number; digest: string }>(SQL.cachedManifests, { repository });
      const chosen = rows.filter((row) => digest === undefined || row.digest === digest);
      for (const row of chosen) await evict(q, row);
      return chosen.length;
    });
  }

  private async read(repository: string, digest: string, maxBytes: number): Promise<Buffer | undefined> {
    const store = this.stores[repository.startsWith(PROXY_PREFIX) ? 'proxy' : 'hosted'];
    try {
      return await readAtMost(await store.open(digest), maxBytes);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }
}

interface RepositoryRow {
  name: string;
  tags: number;
  manifests: number;
  size: number;
  lastPush: number;
  lastPull: number | null;
}

const LATEST = (a: string, b: string) => `CASE WHEN ${a} > ${b} THEN ${a} ELSE ${b} END`;

const SQL = {
  repositories: `SELECT r.name,
       (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags,
       (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id) AS manifests,
       (SELECT coalesce(sum(b.size), 0) FROM blobs b WHERE b.digest IN (
          SELECT digest FROM manifests WHERE repository_id = r.id
          UNION SELECT digest FROM repository_blobs WHERE repository_id = r.id)) AS size,
       ${LATEST(
         'coalesce((SELECT max(updated_at) FROM tags t WHERE t.repository_id = r.id), 0)',
         'coalesce((SELECT max(created_at) FROM manifests m WHERE m.repository_id = r.id), 0)',
       )} AS "lastPush",
       (SELECT max(last_pulled_at) FROM manifests m WHERE m.repository_id = r.id) AS "lastPull"
     FROM repositories r
     WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
        OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id)
     ORDER BY r.name`,
  tags: `SELECT t.name AS tag, t.manifest_digest AS digest, m.media_type AS "mediaType", m.size AS "manifestSize",
            t.updated_at AS "updatedAt", m.last_pulled_at AS "lastPull"
     FROM tags t JOIN repositories r ON r.id = t.repository_id
     JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
     WHERE r.name = @repository ORDER BY t.name`,
  cachedManifests: `SELECT m.repository_id AS "repositoryId", m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id
     WHERE r.name = @repository`,
};

import type Database from 'better-sqlite3';
import { wholeTagPattern } from '../config/pins';

/**
 * Pins: cached content that eviction never removes. A pin names
 *  - one image: a stored name (proxy/<upstream>/<name>) with a tag or a digest (`/api/pins`, `[[proxy.pin]] image`), or
 *  - every tag matching a pattern under a name prefix (`[[proxy.pin]] prefix` and `tags`).
 * A pinned tag protects what it points at now (it follows the upstream when revalidated), with the platform
 * manifests of an index and the referrers (signatures, SBOMs) of what is pinned, and so all their blobs.
 * Pins of content not cached yet protect it once it is.
 *
 * Eviction asks `refreshPinnedManifests` once per transaction, then filters its candidates with
 * `unpinnedManifest(alias)`: one SQL fragment, so every eviction (max_age, max_size, min_free) agrees.
 */

export interface Pin {
  source: 'api' | 'config';
  /** The stored name, or for a prefix pin the name prefix (whole components, no trailing slash). */
  repository: string;
  isPrefix: boolean;
  /** A tag or a digest; null for a prefix pin. */
  reference: string | null;
  /** A prefix pin's tag pattern (a whole-tag regular expression); null: every tag. */
  tagPattern: string | null;
  createdBy: string | null;
  createdAt: number;
}

/** One image to pin through the API or `[[proxy.pin]] image`. */
export interface PinTarget {
  repository: string;
  reference: string;
}

/** A prefix pin from `[[proxy.pin]]`. */
export interface PrefixPin {
  prefix: string;
  tagPattern: string | null;
}

const PINNED_TABLE = 'temp.pinned_manifests';

/**
 * Every cached manifest a pin protects, by (repository_id, digest): what pins name by digest or tag, the
 * children of pinned indexes and the referrers of pinned manifests, recursively.
 */
const PINNED_MANIFESTS = `
  WITH RECURSIVE pinned(repository_id, digest) AS (
    SELECT m.repository_id, m.digest FROM pins p
      JOIN repositories r ON r.name = p.repository
      JOIN manifests m ON m.repository_id = r.id AND m.digest = p.reference
      WHERE p.is_prefix = 0
    UNION
    SELECT t.repository_id, t.manifest_digest FROM pins p
      JOIN repositories r ON r.name = p.repository
      JOIN tags t ON t.repository_id = r.id AND t.name = p.reference
      WHERE p.is_prefix = 0
    UNION
    SELECT t.repository_id, t.manifest_digest FROM pins p
      JOIN repositories r ON r.name = p.repository OR substr(r.name, 1, length(p.repository) + 1) = p.repository || '/'
      JOIN tags t ON t.repository_id = r.id
      WHERE p.is_prefix = 1 AND (p.tag_pattern IS NULL OR pin_tag_matches(p.tag_pattern, t.name))
    UNION
    SELECT mr.repository_id, mr.child_digest FROM manifest_references mr
      JOIN pinned ON pinned.repository_id = mr.repository_id AND pinned.digest = mr.manifest_digest
      WHERE mr.child_kind = 'manifest'
    UNION
    SELECT m.repository_id, m.digest FROM manifests m
      JOIN pinned ON pinned.repository_id = m.repository_id AND pinned.digest = m.subject_digest
  )`;

/**
 * SQL: true when the manifest row `alias` (with repository_id and digest columns) is not pinned. Valid after
 * `refreshPinnedManifests` in the same transaction.
 */
export function unpinnedManifest(alias: string): string {
  return `NOT EXISTS (SELECT 1 FROM ${PINNED_TABLE} pm WHERE pm.repository_id = ${alias}.repository_id AND pm.digest = ${alias}.digest)`;
}

/**
 * Registers what the pin queries need on a connection: the tag pattern function, and the per-connection
 * table of pinned manifests. Called once per connection (RegistryIndex).
 */
export function preparePinQueries(db: Database.Database): void {
  const patterns = new Map<string, RegExp>();
  db.function('pin_tag_matches', { deterministic: true }, (pattern: unknown, tag: unknown) => {
    if (typeof pattern !== 'string' || typeof tag !== 'string') return 0;
    let regex = patterns.get(pattern);
    if (!regex) {
      regex = wholeTagPattern(pattern);
      patterns.set(pattern, regex);
    }
    return regex.test(tag) ? 1 : 0;
  });
  db.exec(`CREATE TEMP TABLE IF NOT EXISTS pinned_manifests (
             repository_id INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (repository_id, digest)) WITHOUT ROWID`);
}

/** Recomputes which manifests are pinned, for `unpinnedManifest` in the statements that follow (same transaction). */
export function refreshPinnedManifests(db: Database.Database): void {
  db.prepare(`DELETE FROM ${PINNED_TABLE}`).run();
  db.prepare(`${PINNED_MANIFESTS} INSERT INTO ${PINNED_TABLE} SELECT DISTINCT repository_id, digest FROM pinned`).run();
}

/** Bytes of the pinned manifests and the blobs they reference, each digest once (after `refreshPinnedManifests`). */
export function pinnedBytes(db: Database.Database): number {
  return db
    .prepare(
      `SELECT coalesce(sum(size), 0) FROM blobs WHERE digest IN (
         SELECT digest FROM ${PINNED_TABLE}
         UNION SELECT mr.child_digest FROM manifest_references mr
           JOIN ${PINNED_TABLE} pm ON pm.repository_id = mr.repository_id AND pm.digest = mr.manifest_digest)`,
    )
    .pluck()
    .get() as number;
}

/** Pins in the index: those set through the API (kept until deleted) and the configured ones (replaced at start). */
export class PinStore {
  constructor(private readonly db: Database.Database) {}

  /** Replaces the configured pins with `images` and `prefixes` (at start: the configuration is what counts). */
  replaceConfigured(images: PinTarget[], prefixes: PrefixPin[], now = Date.now()): void {
    const insert = this.db.prepare(
      `INSERT INTO pins (source, repository, is_prefix, reference, tag_pattern, created_at)
       VALUES ('config', @repository, @isPrefix, @reference, @tagPattern, @now)`,
    );
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM pins WHERE source = 'config'`).run();
      for (const { repository, reference } of images) insert.run({ repository, isPrefix: 0, reference, tagPattern: null, now });
      for (const { prefix, tagPattern } of prefixes) insert.run({ repository: prefix, isPrefix: 1, reference: null, tagPattern, now });
    })();
  }

  /** Pins one image (API); true if it was not pinned through the API before. */
  add(target: PinTarget, createdBy: string | null, now = Date.now()): boolean {
    const result = this.db
      .prepare(
        `INSERT INTO pins (source, repository, is_prefix, reference, created_by, created_at)
         VALUES ('api', @repository, 0, @reference, @createdBy, @now)
         ON CONFLICT (repository, reference) WHERE source = 'api' DO NOTHING`,
      )
      .run({ ...target, createdBy, now });
    return result.changes > 0;
  }

  /** Removes an API pin; false when there was none (a configured pin is removed from the configuration). */
  remove(target: PinTarget): boolean {
    return this.db.prepare(`DELETE FROM pins WHERE source = 'api' AND repository = @repository AND reference = @reference`).run(target).changes > 0;
  }

  /** How many pins each source holds. */
  counts(): Record<'api' | 'config', number> {
    const counts = { api: 0, config: 0 };
    const rows = this.db.prepare('SELECT source, count(*) AS count FROM pins GROUP BY source').all() as Array<{ source: 'api' | 'config'; count: number }>;
    for (const row of rows) counts[row.source] = row.count;
    return counts;
  }

  list(): Pin[] {
    const rows = this.db
      .prepare(
        `SELECT source, repository, is_prefix AS isPrefix, reference, tag_pattern AS tagPattern, created_by AS createdBy,
                created_at AS createdAt FROM pins ORDER BY repository, reference, source`,
      )
      .all() as Array<Omit<Pin, 'isPrefix'> & { isPrefix: number }>;
    return rows.map((row) => ({ ...row, isPrefix: row.isPrefix === 1 }));
  }

  /**
   * Whether a pin protects the cached manifest `digest` of `repository`, reached as `tag` (or by digest):
   * the pins that name it, an index that contains it or a manifest it refers to.
   */
  protects(repository: string, digest: string): boolean {
    return (
      this.db
        .prepare(
          `${PINNED_MANIFESTS} SELECT 1 FROM pinned JOIN repositories r ON r.id = pinned.repository_id
           WHERE r.name = @repository AND pinned.digest = @digest LIMIT 1`,
        )
        .get({ repository, digest }) !== undefined
    );
  }
}

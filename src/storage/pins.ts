import { wholeTagPattern } from '../config/pins';
import type { SqlQueries } from './database/sql-database';
import { MANIFEST_EDGES } from './manifest-edges';

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
 * `protects` (the web UI and API) computes the same table.
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

/** Per connection (a temporary table), filled by `refreshPinnedManifests` inside the transaction that reads it. */
const PINNED_TABLE = 'pinned_manifests';

/**
 * Every cached manifest a pin protects, by (repository_id, digest), from the roots in PINNED_TABLE (what
 * pins name by digest or tag): the children of pinned indexes and the referrers of pinned manifests,
 * recursively.
 */
const PINNED_CLOSURE = `
  WITH RECURSIVE pinned(repository_id, digest) AS (
    SELECT repository_id, digest FROM ${PINNED_TABLE}
    UNION
    SELECT edge.repository_id, edge.child FROM pinned
      JOIN ${MANIFEST_EDGES} edge
        ON edge.repository_id = pinned.repository_id AND edge.parent = pinned.digest
  )`;

/** What image pins name: a manifest by digest, or what a tag points at. */
const IMAGE_PIN_ROOTS = `
  SELECT m.repository_id, m.digest FROM pins p
    JOIN repositories r ON r.name = p.repository
    JOIN manifests m ON m.repository_id = r.id AND m.digest = p.reference
    WHERE p.is_prefix = 0
  UNION
  SELECT t.repository_id, t.manifest_digest FROM pins p
    JOIN repositories r ON r.name = p.repository
    JOIN tags t ON t.repository_id = r.id AND t.name = p.reference
    WHERE p.is_prefix = 0`;

/** Tags under a prefix pin's name prefix (whole components), for its pattern to pick from in JavaScript. */
const PREFIX_PIN_CANDIDATES = `
  SELECT p.tag_pattern AS pattern, t.repository_id AS "repositoryId", t.manifest_digest AS digest, t.name AS tag FROM pins p
    JOIN repositories r ON r.name = p.repository OR substr(r.name, 1, length(p.repository) + 1) = p.repository || '/'
    JOIN tags t ON t.repository_id = r.id
    WHERE p.is_prefix = 1`;

/**
 * SQL: true when the manifest row `alias` (with repository_id and digest columns) is not pinned. Valid after
 * `refreshPinnedManifests` in the same transaction.
 */
export function unpinnedManifest(alias: string): string {
  return `NOT EXISTS (SELECT 1 FROM ${PINNED_TABLE} pm WHERE pm.repository_id = ${alias}.repository_id AND pm.digest = ${alias}.digest)`;
}

const patterns = new Map<string, RegExp>();

/** A prefix pin's tag pattern, compiled once (a whole-tag JavaScript regular expression, as configured). */
function tagMatches(pattern: string, tag: string): boolean {
  let regex = patterns.get(pattern);
  if (!regex) {
    regex = wholeTagPattern(pattern);
    patterns.set(pattern, regex);
  }
  return regex.test(tag);
}

/**
 * Recomputes which manifests are pinned, for `unpinnedManifest` in the statements that follow (`q` is a
 * transaction). Tag patterns are matched here rather than in SQL: they are JavaScript regular expressions,
 * which neither database speaks.
 */
export async function refreshPinnedManifests(q: SqlQueries): Promise<void> {
  // Text compared with the index's columns takes their collation (PostgreSQL: "C", see forPostgres).
  const text = q.dialect === 'postgres' ? 'TEXT COLLATE "C"' : 'TEXT';
  await q.run(
    `CREATE TEMPORARY TABLE IF NOT EXISTS ${PINNED_TABLE} (
       repository_id BIGINT NOT NULL, digest ${text} NOT NULL, PRIMARY KEY (repository_id, digest))`,
  );
  await q.run(`DELETE FROM ${PINNED_TABLE}`);
  await q.run(`INSERT INTO ${PINNED_TABLE} (repository_id, digest) ${IMAGE_PIN_ROOTS}`);
  const insertRoot = `INSERT INTO ${PINNED_TABLE} (repository_id, digest) VALUES (@repositoryId, @digest) ON CONFLICT DO NOTHING`;
  for (const row of await q.all<{ pattern: string | null; repositoryId: number; digest: string; tag: string }>(PREFIX_PIN_CANDIDATES)) {
    if (row.pattern === null || tagMatches(row.pattern, row.tag)) await q.run(insertRoot, row);
  }
  const closure = `${PINNED_CLOSURE} SELECT DISTINCT pinned.repository_id AS "repositoryId", pinned.digest FROM pinned
     WHERE NOT EXISTS (SELECT 1 FROM ${PINNED_TABLE} pm WHERE pm.repository_id = pinned.repository_id AND pm.digest = pinned.digest)`;
  for (const row of await q.all<{ repositoryId: number; digest: string }>(closure)) await q.run(insertRoot, row);
}

/** Bytes of the pinned manifests and the blobs they reference, each digest once (after `refreshPinnedManifests`). */
export async function pinnedBytes(q: SqlQueries): Promise<number> {
  const row = await q.get<{ bytes: number }>(
    `SELECT coalesce(sum(size), 0) AS bytes FROM blobs WHERE digest IN (
       SELECT digest FROM ${PINNED_TABLE}
       UNION SELECT mr.child_digest FROM manifest_references mr
         JOIN ${PINNED_TABLE} pm ON pm.repository_id = mr.repository_id AND pm.digest = mr.manifest_digest)`,
  );
  return row!.bytes;
}

/** Pins in the index: those set through the API (kept until deleted) and the configured ones (replaced at start). */
export class PinStore {
  constructor(private readonly sql: SqlQueries) {}

  /** Replaces the configured pins with `images` and `prefixes` (at start: the configuration is what counts). */
  replaceConfigured(images: PinTarget[], prefixes: PrefixPin[], now = Date.now()): Promise<void> {
    const insert = `INSERT INTO pins (source, repository, is_prefix, reference, tag_pattern, created_at)
       VALUES ('config', @repository, @isPrefix, @reference, @tagPattern, @now)`;
    return this.sql.transaction(async (q) => {
      await q.run(`DELETE FROM pins WHERE source = 'config'`);
      for (const { repository, reference } of images) await q.run(insert, { repository, isPrefix: 0, reference, tagPattern: null, now });
      for (const { prefix, tagPattern } of prefixes) await q.run(insert, { repository: prefix, isPrefix: 1, reference: null, tagPattern, now });
    });
  }

  /** Pins one image (API); true if it was not pinned through the API before. */
  async add(target: PinTarget, createdBy: string | null, now = Date.now()): Promise<boolean> {
    const result = await this.sql.run(
      `INSERT INTO pins (source, repository, is_prefix, reference, created_by, created_at)
       VALUES ('api', @repository, 0, @reference, @createdBy, @now)
       ON CONFLICT (repository, reference) WHERE source = 'api' DO NOTHING`,
      { repository: target.repository, reference: target.reference, createdBy, now },
    );
    return result.changes > 0;
  }

  /** Removes an API pin; false when there was none (a configured pin is removed from the configuration). */
  async remove(target: PinTarget): Promise<boolean> {
    const result = await this.sql.run(`DELETE FROM pins WHERE source = 'api' AND repository = @repository AND reference = @reference`, {
      repository: target.repository,
      reference: target.reference,
    });
    return result.changes > 0;
  }

  /** How many pins each source holds. */
  async counts(): Promise<Record<'api' | 'config', number>> {
    const counts = { api: 0, config: 0 };
    const rows = await this.sql.all<{ source: 'api' | 'config'; count: number }>('SELECT source, count(*) AS count FROM pins GROUP BY source');
    for (const row of rows) counts[row.source] = row.count;
    return counts;
  }

  async list(): Promise<Pin[]> {
    const rows = await this.sql.all<Omit<Pin, 'isPrefix'> & { isPrefix: number }>(
      `SELECT source, repository, is_prefix AS "isPrefix", reference, tag_pattern AS "tagPattern", created_by AS "createdBy",
              created_at AS "createdAt" FROM pins ORDER BY repository, reference, source`,
    );
    return rows.map((row) => ({ ...row, isPrefix: row.isPrefix === 1 }));
  }

  /**
   * Whether a pin protects the cached manifest `digest` of `repository`, reached as `tag` (or by digest):
   * the pins that name it, an index that contains it or a manifest it refers to.
   */
  protects(repository: string, digest: string): Promise<boolean> {
    return this.sql.transaction(async (q) => {
      await refreshPinnedManifests(q);
      const row = await q.get(
        `SELECT 1 AS pinned FROM ${PINNED_TABLE} pm JOIN repositories r ON r.id = pm.repository_id
         WHERE r.name = @repository AND pm.digest = @digest`,
        { repository, digest },
      );
      return row !== undefined;
    });
  }
}

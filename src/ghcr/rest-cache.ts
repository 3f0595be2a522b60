import type Database from 'better-sqlite3';

export interface CachedAnswer {
  value: string[];
  fetchedAt: number;
}

/**
 * GitHub REST answers kept in the index's `github_rest_cache` table: reused for `[github] cache_ttl`,
 * and whenever GitHub fails or rate-limits, so a restart does not cost a round of API calls.
 */
export class GithubRestCache {
  private readonly select: Database.Statement;
  private readonly upsert: Database.Statement;

  constructor(db: Database.Database) {
    this.select = db.prepare('SELECT value, fetched_at FROM github_rest_cache WHERE key = ?');
    this.upsert = db.prepare(
      `INSERT INTO github_rest_cache (key, value, fetched_at) VALUES (@key, @value, @fetchedAt)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at`,
    );
  }

  get(key: string): CachedAnswer | null {
    const row = this.select.get(key) as { value: string; fetched_at: number } | undefined;
    return row ? { value: JSON.parse(row.value) as string[], fetchedAt: row.fetched_at } : null;
  }

  put(key: string, value: string[], fetchedAt: number): void {
    this.upsert.run({ key, value: JSON.stringify(value), fetchedAt });
  }

}

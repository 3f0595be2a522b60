import type { SqlQueries } from '../storage/database/sql-database';

export interface CachedAnswer {
  value: string[];
  fetchedAt: number;
}

/**
 * GitHub REST answers kept in the index's `github_rest_cache` table: reused for `[github] cache_ttl`,
 * and whenever GitHub fails or rate-limits, so a restart does not cost a round of API calls.
 */
export class GithubRestCache {
  constructor(private readonly sql: SqlQueries) {}

  async get(key: string): Promise<CachedAnswer | null> {
    const row = await this.sql.get<{ value: string; fetchedAt: number }>(
      'SELECT value, fetched_at AS "fetchedAt" FROM github_rest_cache WHERE key = @key',
      { key },
    );
    return row ? { value: JSON.parse(row.value) as string[], fetchedAt: row.fetchedAt } : null;
  }

  async put(key: string, value: string[], fetchedAt: number): Promise<void> {
    await this.sql.run(
      `INSERT INTO github_rest_cache (key, value, fetched_at) VALUES (@key, @value, @fetchedAt)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at`,
      { key, value: JSON.stringify(value), fetchedAt },
    );
  }
}

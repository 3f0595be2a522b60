import { randomUUID } from 'node:crypto';
import type { SqlQueries } from './database/sql-database';

/**
 * Named leases in the index: work that at most one process sharing the index may do at a time (a garbage
 * collection, an upstream download of one blob), whether the processes are a server and a `gc` command beside it on SQLite or replicas on
 * PostgreSQL. A lease expires unless its holder renews it, so a holder that died (SIGKILL, a lost machine)
 * holds nothing for longer than `ttlMs`.
 */
export class Leases {
  /** This process, as a holder. */
  readonly holder = randomUUID();

  constructor(
    private readonly sql: SqlQueries,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes `name` for `ttlMs` if nobody else holds it (or their lease has expired); whether it did. */
  async acquire(name: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const taken = await this.sql.run(
      `INSERT INTO leases (name, holder, expires_at) VALUES (@name, @holder, @expiresAt)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.expires_at < @now OR leases.holder = @holder`,
      { name, holder: this.holder, expiresAt: now + ttlMs, now },
    );
    return taken.changes > 0;
  }

  async release(name: string): Promise<void> {
    await this.sql.run('DELETE FROM leases WHERE name = @name AND holder = @holder', { name, holder: this.holder });
  }

  /**
   * Takes `name` and keeps it, renewed every third of `ttlMs`, until the function returned is called; null
   * when another process holds it.
   */
  async hold(name: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    if (!(await this.acquire(name, ttlMs))) return null;
    // A renewal that fails (the database briefly away) is tried again at the next tick; the work goes on.
    const renewal = setInterval(() => void this.acquire(name, ttlMs).catch(() => undefined), ttlMs / 3);
    renewal.unref();
    let released: Promise<void> | undefined;
    return () => {
      clearInterval(renewal);
      released ??= this.release(name).catch(() => undefined);
      return released;
    };
  }

  /** Runs `work` holding `name` (see hold); `{ held: false }` without running it when another process holds it. */
  async whileHeld<T>(name: string, ttlMs: number, work: () => Promise<T>): Promise<{ held: true; result: T } | { held: false }> {
    const release = await this.hold(name, ttlMs);
    if (!release) return { held: false };
    try {
      return { held: true, result: await work() };
    } finally {
      await release();
    }
  }
}

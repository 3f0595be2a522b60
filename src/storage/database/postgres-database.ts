import pg from 'pg';
import { describeDatabase } from '../../config/config';
import { refuseNewer, SqlDatabase, SqlParams, SqlQueries } from './sql-database';

/** int8 (counts, sums, millisecond times) and numeric (sum of int8) come back as numbers, as from SQLite. */
const INT8_OID = 20;
const NUMERIC_OID = 1700;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID || oid === NUMERIC_OID ? Number : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** serialization_failure and deadlock_detected: the transaction lost a conflict and may simply run again. */
const RETRYABLE = new Set(['40001', '40P01']);
/**
 * Conflicts queue up on a hot row (every replica recording a write of the same manifest): each round one
 * transaction wins, so the others try again after a random wait that grows, up to MAX_RETRY_DELAY_MS.
 */
const MAX_ATTEMPTS = 50;
const MAX_RETRY_DELAY_MS = 100;

/** A connection that waits longer than this for the pool is a saturated database: fail, do not queue forever. */
const CONNECTION_TIMEOUT_MS = 10_000;
/**
 * PostgreSQL cancels a statement that runs longer (a request would otherwise hang on a wedged database);
 * far above what the largest garbage collection's queries take.
 */
const STATEMENT_TIMEOUT_MS = 300_000;

export interface PostgresOptions {
  /** Connections per process. */
  maxConnections?: number;
}

/**
 * PostgreSQL through node-postgres, shared by every replica. Transactions are SERIALIZABLE, which gives
 * the index the guarantees SQLite's single writer gave it (the garbage collector's re-check against a
 * concurrent blob write, a repository created once), and run again when PostgreSQL aborts one for a
 * conflict.
 */
export class PostgresDatabase implements SqlDatabase {
  readonly dialect = 'postgres' as const;
  readonly description: string;
  private readonly pool: pg.Pool;
  private closed = false;

  constructor(url: string, options: PostgresOptions = {}) {
    this.description = describeDatabase(url);
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 20,
      connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      types,
      application_name: 'registry',
    });
    // An idle connection the server closed (a restart, a failover) is replaced by the pool; without a
    // listener, its error would end the process.
    this.pool.on('error', () => {});
  }

  async all<Row>(sql: string, params?: SqlParams): Promise<Row[]> {
    return (await query(this.pool, sql, params)).rows as Row[];
  }

  async get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined> {
    return (await this.all<Row>(sql, params))[0];
  }

  async run(sql: string, params?: SqlParams): Promise<{ changes: number }> {
    return { changes: (await query(this.pool, sql, params)).rowCount ?? 0 };
  }

  async transaction<T>(work: (queries: SqlQueries) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
          const result = await work(queriesOn(client));
          await client.query('COMMIT');
          return result;
        } catch (error) {
          await client.query('ROLLBACK').catch((rollbackFailed: Error) => (broken = rollbackFailed));
          if (broken || !RETRYABLE.has((error as { code?: string }).code ?? '') || attempt >= MAX_ATTEMPTS) throw error;
          // Conflicting transactions retried in lock step would conflict again.
          await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(MAX_RETRY_DELAY_MS, 2 ** attempt)));
        }
      }
    } finally {
      client.release(broken);
    }
  }

  /**
   * Under an advisory lock, so that replicas starting together migrate once; the version is a row of
   * `schema_version` (SQLite's user_version).
   */
  async migrate(migrations: readonly string[]): Promise<void> {
    await this.withLock(MIGRATION_LOCK, async (queries) => {
      await queries.run('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const row = await queries.get<{ version: number }>('SELECT version FROM schema_version');
      const version = row?.version ?? 0;
      refuseNewer(version, migrations.length);
      for (let next = version; next < migrations.length; next++) {
        await queries.run('BEGIN');
        try {
          // The simple query protocol (no parameters) runs a migration's several statements at once.
          await queries.run(forPostgres(migrations[next]));
          await queries.run('DELETE FROM schema_version');
          await queries.run('INSERT INTO schema_version (version) VALUES (@version)', { version: next + 1 });
          await queries.run('COMMIT');
        } catch (error) {
          await queries.run('ROLLBACK');
          throw error;
        }
      }
    });
  }

  /**
   * Runs `work` on one connection holding PostgreSQL's advisory lock `key` for the session: every other
   * process asking for the same key waits (schema migrations when several replicas start together).
   */
  async withLock<T>(key: number, work: (queries: SqlQueries) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [key]);
      try {
        return await work(queriesOn(client));
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [key]);
      }
    } finally {
      client.release();
    }
  }

  async probe(): Promise<string | null> {
    if (this.closed) return 'closed';
    try {
      await this.pool.query({ text: 'SELECT 1', query_timeout: 5_000 } as pg.QueryConfig);
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** Queries on one client (inside the transaction it has open, if any: a nested transaction joins it). */
function queriesOn(client: pg.PoolClient): SqlQueries {
  const queries: SqlQueries = {
    dialect: 'postgres',
    all: async <Row>(sql: string, params?: SqlParams) => (await query(client, sql, params)).rows as Row[],
    get: async <Row>(sql: string, params?: SqlParams) => (await query(client, sql, params)).rows[0] as Row | undefined,
    run: async (sql: string, params?: SqlParams) => ({ changes: (await query(client, sql, params)).rowCount ?? 0 }),
    transaction: (work) => work(queries),
  };
  return queries;
}

interface Positional {
  text: string;
  names: string[];
}

const translations = new Map<string, Positional>();

/** `@name` parameters to PostgreSQL's `$1…`, translated once per statement text. */
function positional(sql: string): Positional {
  let translated = translations.get(sql);
  if (!translated) {
    const names: string[] = [];
    const text = sql.replace(/@([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => {
      let index = names.indexOf(name);
      if (index < 0) index = names.push(name) - 1;
      return `$${index + 1}`;
    });
    translated = { text, names };
    translations.set(sql, translated);
  }
  return translated;
}

function query(target: pg.Pool | pg.PoolClient, sql: string, params: SqlParams = {}): Promise<pg.QueryResult> {
  const { text, names } = positional(sql);
  const values = names.map((name) => {
    if (!(name in params)) throw new Error(`missing SQL parameter @${name}`);
    return (params as Record<string, unknown>)[name];
  });
  return target.query(text, values);
}

/** An arbitrary advisory lock number for schema migrations. */
const MIGRATION_LOCK = 0x7265_6769;

/**
 * A migration written for SQLite, in PostgreSQL's types: 64-bit integers (millisecond times, sizes),
 * identity keys, and text compared byte by byte as SQLite does (listings sort names as the spec asks, and
 * the `proxy/` range tests hold whatever the database's locale).
 */
export function forPostgres(sql: string): string {
  return sql
    .replace(/\bINTEGER PRIMARY KEY\b/g, 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bTEXT\b/g, 'TEXT COLLATE "C"')
    .replace(/\)\s*WITHOUT ROWID/g, ')');
}


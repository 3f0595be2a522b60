/**
 * The one query layer under the index: SQL text with named parameters (`@name`), run on SQLite
 * (better-sqlite3, the embedded default) or PostgreSQL (a database shared by replicas). Statements are
 * written in the subset both speak: `ON CONFLICT`, `RETURNING`, `CAST`, CTEs with one recursive term,
 * double-quoted camelCase aliases (PostgreSQL folds unquoted names to lower case), no two-argument `max`.
 */
/** Values by name; other properties are ignored. */
export type SqlParams = object;

export type SqlDialect = 'sqlite' | 'postgres';

export interface SqlQueries {
  readonly dialect: SqlDialect;
  all<Row>(sql: string, params?: SqlParams): Promise<Row[]>;
  get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined>;
  /** A statement without rows; `changes` is how many rows it inserted, updated or deleted. */
  run(sql: string, params?: SqlParams): Promise<{ changes: number }>;
  /**
   * Runs `work` in one serializable transaction and commits, or rolls back what it did when it throws.
   * Inside a transaction this joins it. `work` does database work only (it may run again on PostgreSQL
   * when the transaction loses a serialization conflict), and uses the queries it is given, not others.
   */
  transaction<T>(work: (queries: SqlQueries) => Promise<T>): Promise<T>;
}

export interface SqlDatabase extends SqlQueries {
  /** Where it is, for logs and the start banner (no password). */
  readonly description: string;
  /**
   * Brings the schema to `migrations.length`: each entry (SQLite's dialect) runs once, in order, in a
   * transaction; a database newer than this server is refused. Several processes starting together
   * migrate once.
   */
  migrate(migrations: readonly string[]): Promise<void>;
  /** Null when it answers a trivial query, else why not (`/readyz`). */
  probe(): Promise<string | null>;
  close(): Promise<void>;
}

/** The first column of each row. */
export function column<T>(rows: Array<Record<string, unknown>>): T[] {
  return rows.map((row) => Object.values(row)[0] as T);
}

export function refuseNewer(version: number, known: number): void {
  if (version > known) throw new Error(`the index database is at schema version ${version}, newer than this server (${known})`);
}

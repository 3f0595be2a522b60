import Database from 'better-sqlite3';
import { refuseNewer, SqlDatabase, SqlParams, SqlQueries } from './sql-database';

/**
 * SQLite through better-sqlite3: every statement runs synchronously on the one connection (prepared once
 * and cached), so a read costs what it did before this layer existed plus a resolved promise.
 *
 * A transaction's work is asynchronous (the same code runs on PostgreSQL), so between its statements other
 * requests could run theirs on this connection, inside the open transaction. While one is open, every
 * other statement and transaction therefore waits for it to end: transactions only do database work, so
 * the wait is a few microtasks.
 */
export class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  readonly connection: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  /** Settles when the open transaction ends; undefined when none is open. */
  private transactionDone: Promise<void> | undefined;
  private readonly inTransaction: SqlQueries;

  constructor(readonly file: string) {
    this.connection = new Database(file);
    this.connection.pragma('journal_mode = WAL');
    // WAL with NORMAL is durable across application crashes; blob files are fsynced on their own.
    this.connection.pragma('synchronous = NORMAL');
    this.connection.pragma('foreign_keys = ON');
    this.connection.pragma('busy_timeout = 5000');
    const direct: SqlQueries = {
      dialect: this.dialect,
      all: async <Row>(sql: string, params?: SqlParams) => this.allNow<Row>(sql, params),
      get: async <Row>(sql: string, params?: SqlParams) => this.getNow<Row>(sql, params),
      run: async (sql: string, params?: SqlParams) => this.runNow(sql, params),
      transaction: (work) => work(direct),
    };
    this.inTransaction = direct;
  }

  get description(): string {
    return this.file;
  }

  async all<Row>(sql: string, params?: SqlParams): Promise<Row[]> {
    while (this.transactionDone) await this.transactionDone;
    return this.allNow<Row>(sql, params);
  }

  async get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined> {
    while (this.transactionDone) await this.transactionDone;
    return this.getNow<Row>(sql, params);
  }

  async run(sql: string, params?: SqlParams): Promise<{ changes: number }> {
    while (this.transactionDone) await this.transactionDone;
    return this.runNow(sql, params);
  }

  async transaction<T>(work: (queries: SqlQueries) => Promise<T>): Promise<T> {
    while (this.transactionDone) await this.transactionDone;
    let done!: () => void;
    this.transactionDone = new Promise((resolve) => (done = resolve));
    try {
      // IMMEDIATE: take the write lock now, so a `gc` command's transaction beside the server waits for
      // this one (busy_timeout) instead of failing halfway.
      this.connection.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this.inTransaction);
        this.connection.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.connection.inTransaction) this.connection.exec('ROLLBACK');
        throw error;
      }
    } finally {
      this.transactionDone = undefined;
      done();
    }
  }

  async migrate(migrations: readonly string[]): Promise<void> {
    const db = this.connection;
    const version = db.pragma('user_version', { simple: true }) as number;
    refuseNewer(version, migrations.length);
    for (let next = version; next < migrations.length; next++) {
      db.transaction(() => {
        db.exec(migrations[next]);
        db.pragma(`user_version = ${next + 1}`);
      }).immediate();
    }
  }

  async probe(): Promise<string | null> {
    if (!this.connection.open) return 'closed';
    if (this.connection.readonly) return 'open read-only';
    try {
      this.connection.prepare('SELECT 1').get();
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  }

  async close(): Promise<void> {
    if (this.connection.open) this.connection.close();
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.connection.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private allNow<Row>(sql: string, params: SqlParams = {}): Row[] {
    return this.statement(sql).all(params) as Row[];
  }

  private getNow<Row>(sql: string, params: SqlParams = {}): Row | undefined {
    return this.statement(sql).get(params) as Row | undefined;
  }

  private runNow(sql: string, params: SqlParams = {}): { changes: number } {
    return { changes: this.statement(sql).run(params).changes };
  }
}

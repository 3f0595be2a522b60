/**
 * PostgreSQL as a throwaway database server for a test suite (scripts/postgres.cjs starts it, the bench
 * uses the same): a fresh database per test keeps tests apart.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

// Plain CommonJS, shared with the bench (bench/run.mjs cannot load TypeScript).
const { startPostgres: startServer } = require('../../scripts/postgres.cjs') as {
  startPostgres(options?: { durable?: boolean }): Promise<{ url: string; port: number; logFile: string; stop(): Promise<void> }>;
};

export interface Postgres {
  /** `postgres://registry@127.0.0.1:<port>/postgres`, the server's own database. */
  url: string;
  /** Creates an empty database; its URL. */
  createDatabase(): Promise<string>;
  close(): Promise<void>;
}

export async function startPostgres(): Promise<Postgres> {
  const server = await startServer();
  return {
    url: server.url,
    createDatabase: () => createDatabase(server.url),
    close: () => server.stop(),
  };
}

/**
 * A new empty database on the server at `serverUrl`; its URL. Its default collation is ICU's en-US, as a
 * production database's locale often is (linguistic order: "a_b" < "a-b" < "B"), so that a query relying
 * on the database's collation for the spec's byte order fails here too.
 */
export async function createDatabase(serverUrl: string): Promise<string> {
  // Random: a jest worker runs several test files, each with its own copy of this module.
  const name = `registry_${randomBytes(8).toString('hex')}`;
  const client = new pg.Client(serverUrl);
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`);
  } finally {
    await client.end();
  }
  return serverUrl.replace(/\/[^/]*$/, `/${name}`);
}

/**
 * PostgreSQL as a throwaway database server for a test suite (scripts/postgres.cjs starts it, the bench
 * uses the same): a fresh database per test keeps tests apart.
 */
import { randomBytes } from 'node:crypto';

// Plain CommonJS, shared with the bench (bench/run.mjs cannot load TypeScript).
const { startPostgres: startServer, createDatabase: createServerDatabase } = require('../../scripts/postgres.cjs') as {
  startPostgres(options?: { durable?: boolean }): Promise<{ url: string; port: number; logFile: string; stop(): Promise<void> }>;
  createDatabase(serverUrl: string, name: string): Promise<string>;
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

/** A new empty database on the server at `serverUrl` (scripts/postgres.cjs createDatabase: ICU en-US); its URL. */
export function createDatabase(serverUrl: string): Promise<string> {
  // Random: a jest worker runs several test files, each with its own copy of this module.
  return createServerDatabase(serverUrl, `registry_${randomBytes(8).toString('hex')}`);
}

/**
 * PostgreSQL as a throwaway database server for a test suite (scripts/postgres.cjs starts it, the bench
 * uses the same): a fresh database per test keeps tests apart.
 */
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

let databases = 0;

export async function startPostgres(): Promise<Postgres> {
  const server = await startServer();
  return {
    url: server.url,
    createDatabase: async () => {
      const name = `registry_test_${process.pid}_${++databases}`;
      const client = new pg.Client(server.url);
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return server.url.replace(/\/postgres$/, `/${name}`);
    },
    close: () => server.stop(),
  };
}

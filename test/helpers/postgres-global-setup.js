// Global setup of the `postgres` jest project (jest.config.js): one PostgreSQL server for the run, its URL
// in TEST_POSTGRES_URL for the workers (test/helpers/test-app.ts gives each app a database of its own).
const { startPostgres } = require('../../scripts/postgres.cjs');

module.exports = async () => {
  const server = await startPostgres();
  process.env.TEST_POSTGRES_URL = server.url;
  globalThis.__POSTGRES_SERVER__ = server;
};

const base = require('./jest.base.config');

/**
 * `npm test`: every test on the embedded default (SQLite), and the in-process integration tests once more
 * with the index in PostgreSQL (one server for the run, a database per test app: test/helpers/test-app.ts),
 * so that both databases answer every route alike.
 *
 * @type {import('jest').Config}
 */
module.exports = {
  // A test's time limit is a global option: jest ignores it inside `projects`, and every test without
  // a limit of its own had 5 s (a browser test on a busy CI machine ran out of them).
  testTimeout: base.testTimeout,
  projects: [
    { ...base, displayName: 'sqlite' },
    {
      ...base,
      displayName: 'postgres',
      roots: ['<rootDir>/test/integration'],
      // Tests of other parts that open a SQLite index of their own, or need radosgw: nothing more to learn twice.
      testPathIgnorePatterns: ['/node_modules/', '/migrate-index\\.test\\.ts$', '/index-databases\\.test\\.ts$', '/s3-blob-store\\.test\\.ts$', '/ghcr-catalog\\.test\\.ts$', '/import-bad-input\\.test\\.ts$'],
      globals: { TEST_INDEX: 'postgres' },
      globalSetup: '<rootDir>/test/helpers/postgres-global-setup.js',
      globalTeardown: '<rootDir>/test/helpers/postgres-global-teardown.js',
    },
  ],
};

/**
 * `npm run test:unit`: unit tests and the in-process integration tests, the ones that need no tool
 * outside node_modules, so a change can be checked in well under a minute on a fresh clone.
 * A test file is left to the full suite (`npm test`) when it uses a helper that drives an external
 * tool or the built command line; the list below is those helpers, so a new test is sorted by what
 * it imports, not by a list of test files someone must remember to update.
 */
const fs = require('node:fs');
const path = require('node:path');
const base = require('./jest.base.config');

const TOOL_HELPERS = ['upstream-registry', 'skopeo', 'podman', 'containerd', 'nginx', 'server-process', 'dockerd', 'docker-base-image', 'radosgw', 'postgres'];
const usesTool = new RegExp(`from '(?:\\.\\./)+helpers/(?:${TOOL_HELPERS.join('|')})'`);

function testFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(file);
    return entry.name.endsWith('.test.ts') ? [file] : [];
  });
}

const needsTools = ['unit', 'integration']
  .flatMap((folder) => testFiles(path.join(__dirname, 'test', folder)))
  .filter((file) => usesTool.test(fs.readFileSync(file, 'utf8')));

module.exports = {
  ...base,
  roots: ['<rootDir>/test/unit', '<rootDir>/test/integration'],
  testPathIgnorePatterns: ['/node_modules/', ...needsTools.map((file) => `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)],
};

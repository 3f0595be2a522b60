// A TCP port free on 127.0.0.1 now, for a daemon the tests or the bench start (radosgw, PostgreSQL,
// distribution, nginx). Plain CommonJS: the TypeScript tests, the .mjs bench and the .cjs fixtures share it.
'use strict';
const net = require('node:net');

/** @returns {Promise<number>} */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

module.exports = { freePort };

// PostgreSQL from Debian as a throwaway database server, for the tests (test/helpers/postgres.ts) and the
// bench: initdb and pg_ctl in a temp dir (as user postgres when run as root: PostgreSQL refuses root), on
// a free loopback port, trust authentication for 127.0.0.1 only. Ready in about a second.
//
// Run alone, `node scripts/postgres.cjs` starts one, prints the setting that puts the registry's index on
// it, and stops it on Ctrl-C.
'use strict';
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./free-port.cjs');
const { runCommand: run } = require('./run-command.cjs');

const USER = 'registry';

/**
 * `durable`: fsync as a production server does (the bench); the tests run without, which is faster and
 * loses nothing a test needs (the server never crashes under them, the registry may).
 *
 * @param {{ durable?: boolean }} [options]
 * @returns {Promise<{ url: string, port: number, logFile: string, stop(): Promise<void> }>}
 */
async function startPostgres(options = {}) {
  const bin = binaries();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'postgres-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await postgresUser() : undefined;
  if (owner) await fsp.chown(dir, owner.uid, owner.gid);
  const as = (command, args) => (owner ? run('runuser', ['-u', 'postgres', '--', command, ...args]) : run(command, args));
  const port = await freePort();
  let started = false;
  try {
    await as(path.join(bin, 'initdb'), ['-D', data, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
    const settings = [
      `-p ${port}`,
      `-k ${dir}`,
      "-c listen_addresses='127.0.0.1'",
      '-c max_connections=200',
      ...(options.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
    ];
    await as(path.join(bin, 'pg_ctl'), ['-D', data, '-l', logFile, '-o', settings.join(' '), '-w', '-t', '30', 'start']);
    started = true;
    return {
      url: `postgres://${USER}@127.0.0.1:${port}/postgres`,
      port,
      logFile,
      stop: async () => {
        await as(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (started) await as(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined);
    const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
    await fsp.rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${error.message}\n${log.split('\n').slice(-20).join('\n')}`);
  }
}

/**
 * Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (the newest), which
 * its packages do not put on PATH.
 */
function binaries() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const dir = path.join(root, version, 'bin');
    if (fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error('PostgreSQL is not installed (no initdb): apt-get install --no-install-recommends postgresql');
}

async function postgresUser() {
  const uid = Number((await run('id', ['-u', 'postgres'])).trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).trim());
  return { uid, gid };
}


/**
 * Creates the empty database `name` on the server at `serverUrl`; its URL. Its default collation is ICU's
 * en-US, as a production database's locale often is (linguistic order: "a_b" < "a-b" < "B"), so that a
 * query relying on the database's collation for the spec's byte order fails here too.
 *
 * @returns {Promise<string>}
 */
async function createDatabase(serverUrl, name) {
  const pg = require('pg');
  const client = new pg.Client(serverUrl);
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`);
  } finally {
    await client.end();
  }
  return serverUrl.replace(/\/[^/]*$/, `/${name}`);
}

module.exports = { startPostgres, createDatabase, postgresBinaries: binaries };

if (require.main === module) {
  (async () => {
    const server = await startPostgres({ durable: true });
    process.stdout.write(`REGISTRY_DATABASE=${server.url}\n# PostgreSQL runs until Ctrl-C\n`);
    // Nothing else keeps the process (and so the way to stop the server) alive.
    const alive = setInterval(() => undefined, 1 << 30);
    const stop = () => void server.stop().then(() => (clearInterval(alive), process.exit(0)));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  })().catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}

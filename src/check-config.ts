import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'smol-toml';
import { parseHtpasswd } from './auth/htpasswd';
import { Config, describeDatabase, isPostgresUrl } from './config/config';

export interface ConfigCheck {
  /** The configuration in force (file, environment and flags merged), as TOML, secrets censored. */
  effective: string;
  /** What would stop the server or lock users out. */
  problems: string[];
  /** Worth knowing, not wrong. */
  notes: string[];
}

const SECRET_KEYS = new Set(['password', 'token', 'secret_access_key']);

/**
 * `config check`: what `serve` would run with, and what in it will not work, without starting anything
 * or creating a directory. The configuration itself was validated when it loaded.
 */
export function checkConfig(config: Config): ConfigCheck {
  const problems: string[] = [];
  const notes: string[] = [];

  for (const key of ['registry_storage', 'temporary_registry_storage', 'proxy_storage'] as const) {
    const problem = writableDirectoryProblem(config[key]);
    if (problem) problems.push(`${key}: ${problem}`);
  }
  if (isPostgresUrl(config.database)) {
    notes.push(
      `database: PostgreSQL at ${describeDatabase(config.database)} (not reached by this check); replicas share it, ` +
        'and the first to start creates or migrates the schema',
    );
  } else {
    const databaseProblem = fs.existsSync(config.database)
      ? accessProblem(config.database, fs.constants.R_OK | fs.constants.W_OK)
      : writableDirectoryProblem(path.dirname(config.database));
    if (databaseProblem) problems.push(`database: ${databaseProblem}`);
  }

  if (config.auth.htpasswd === '') {
    notes.push('no [auth] htpasswd: anyone who can reach the registry may pull, push and delete');
  } else {
    try {
      const skipped: string[] = [];
      const users = parseHtpasswd(fs.readFileSync(config.auth.htpasswd, 'utf8'), (line, reason) => skipped.push(`line ${line}: ${reason}`));
      notes.push(`auth.htpasswd: ${users.size} user(s) from ${config.auth.htpasswd}`);
      for (const line of skipped) problems.push(`auth.htpasswd: ${line} (that user cannot log in)`);
      if (users.size === 0) problems.push('auth.htpasswd: no usable user: nobody can log in');
    } catch (error) {
      problems.push(`auth.htpasswd: cannot read "${config.auth.htpasswd}": ${(error as Error).message}`);
    }
  }
  if (config.host !== '127.0.0.1' && config.host !== 'localhost' && config.host !== '::1' && !config.trust_proxy && config.public_url === '') {
    notes.push(`listening on ${config.host}: reachable from other machines, over plain http (put a TLS reverse proxy in front for anything but a LAN)`);
  }
  if (config.accel_redirect !== '') {
    notes.push(
      `accel_redirect = "${config.accel_redirect}": blob GETs name files for nginx (X-Accel-Redirect) and send no bytes; ` +
        'only nginx with deploy/nginx-accel.conf should reach this port, and it must be able to read registry_storage and proxy_storage',
    );
  }
  if (config.storage.backend === 's3') notes.push(...objectStoreNotes(config));
  return { effective: stringify(censor({ ...config, database: describeDatabase(config.database) })), problems, notes };
}

/** What an operator putting the registry on a bucket should know; `serve`'s /readyz checks the bucket itself. */
function objectStoreNotes(config: Config): string[] {
  const { s3 } = config.storage;
  const where = s3.endpoint || `AWS S3 (${s3.region})`;
  const notes = [
    `storage: s3://${s3.bucket}/${s3.prefix} at ${where}; registry_storage and proxy_storage only stage content on its way in ` +
      '(config check does not connect: /readyz checks the bucket)',
    'storage: one registry per bucket prefix and index: another registry on the same prefix with an index of its own would collect these blobs as garbage',
  ];
  if (s3.redirect) {
    notes.push(`storage.s3.redirect: blob GETs answer 307 to presigned URLs of ${where}: every client must be able to reach it`);
  }
  if (config.proxy.enabled && config.proxy.min_free.trim() !== '0') {
    notes.push(`proxy.min_free = "${config.proxy.min_free}" does not apply with storage.backend = "s3" (a bucket's free space is not known): use proxy.max_size`);
  }
  return notes;
}

function writableDirectoryProblem(directory: string): string | undefined {
  // A missing directory is created at start, if its nearest existing parent lets us.
  let existing = directory;
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  if (!fs.statSync(existing).isDirectory()) return `${existing} is not a directory`;
  return accessProblem(existing, fs.constants.W_OK | fs.constants.X_OK);
}

function accessProblem(file: string, mode: number): string | undefined {
  try {
    fs.accessSync(file, mode);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** A copy with every password, token and secret key replaced, however deep (upstream credentials, [github] token, [storage.s3]). */
function censor(value: unknown): Record<string, unknown> {
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== 'object') return node;
    return Object.fromEntries(
      Object.entries(node).map(([key, inner]) => [key, SECRET_KEYS.has(key) && typeof inner === 'string' && inner !== '' ? '[redacted]' : walk(inner)]),
    );
  };
  return walk(value) as Record<string, unknown>;
}

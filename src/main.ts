import fs from 'node:fs';
import path from 'node:path';
import { checkConfig } from './check-config';
import { Config, describeDatabase, isPostgresUrl } from './config/config';
import { ConfigError, ensureStorageDirectories, loadConfig } from './config/load-config';
import { probeReadiness } from './server/health-probe';
import { createLogger } from './log';
import { Listener, startListeners } from './server/listeners';
import { MetricsListener, startMetricsListener } from './server/metrics-listener';
import { exitOnSignals } from './server/shutdown';
import { describeGc, describeVerify, scheduleGarbageCollection } from './storage/gc-runs';
import { Registry } from './registry';
import { describeSync } from './proxy/cache-sync';
import { TransferError } from './transfer/errors';
import { exportDockerArchive } from './transfer/docker-archive';
import { Selection } from './transfer/image-set';
import { describeImport, importImages } from './transfer/import';
import { describeExport, exportOciLayout } from './transfer/oci-layout';
import { describeStaticExport, exportStatic } from './transfer/static-export';
import { StoredContent } from './transfer/stored-content';
import { RegistryIndex } from './storage/registry-index';
import { FilesystemBlobStore } from './storage/filesystem-blob-store';
import { openBlobStores } from './storage/stores';
import { migrateStorage } from './storage/migrate-storage';
import { IndexMigrationError, migrateIndex } from './storage/migrate-index';
import { formatBytes } from './format-bytes';

const USAGE = `usage: registry [command] [--config <file>] [--<key> <value> …]

commands:
  serve              start the registry (the default)
  gc [--dry-run]     collect garbage and evict the cache now; --dry-run only reports
  sync --once        fetch the [[proxy.sync]] images into the cache now (pre-warming)
  verify             re-hash every stored blob; quarantine corrupt ones
  config check       show the configuration in force (secrets censored) and what in it will not work
  healthcheck        exit 0 if the registry configured here answers /readyz with 200 (Docker's HEALTHCHECK)
  export --static DIR [--repo NAME]… [--tag PATTERN]…
                     write DIR as a static read-only registry, with DIR.nginx.conf and DIR.s3-upload.sh beside it
  export --oci FILE.tar|DIR [--repo NAME]… [--tag PATTERN]…
                     write the images as one OCI image layout (a tar, or a directory)
  export --docker-archive FILE.tar [--repo NAME]… [--tag PATTERN]… [--platform OS/ARCH[/VARIANT]]
                     write single-platform images as a \`docker load\` archive
  migrate-storage    copy the blobs under registry_storage and proxy_storage into [storage.s3]'s bucket
                     (with storage.backend = "s3"; run again after an interruption; see docs/scale-out.md)
  migrate-index --from FILE
                     copy a SQLite index (FILE) into the PostgreSQL database of \`database\`, which must be new
                     (one transaction; see docs/scale-out.md)
  import FILE.tar|DIR [--to NAME[:TAG]]
                     store the images of an OCI layout or a \`docker save\` archive as hosted repositories
                     (export and import work with the server running or stopped; see docs/export-import.md)

options:
  --config <file>    configuration file (default: ./configuration.toml, if there is one)
  --<key> <value>    any key of configuration.toml (e.g. --port 5001, --host 0.0.0.0, --gc.grace 10m)
  --help, -h         this text
  --version, -v      the version

Environment variables REGISTRY_<KEY> set keys too (REGISTRY_PORT, REGISTRY_GC_GRACE); flags win.`;

const COMMANDS = ['serve', 'gc', 'verify', 'sync', 'config', 'healthcheck', 'export', 'import', 'migrate-storage', 'migrate-index'];

/** A command line that cannot be run; printed as it is, without a stack. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  if (args.includes('--version') || args.includes('-v')) {
    process.stdout.write(`oci-cache-registry ${version()}\n`);
    return;
  }
  const command = args[0] && !args[0].startsWith('-') ? args.shift()! : 'serve';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (!COMMANDS.includes(command)) throw new UsageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
  if (command === 'config' && args.shift() !== 'check') throw new UsageError(`usage: registry config check [--config <file>] [--<key> <value> …]`);
  const dryRun = removeFlag(args, '--dry-run');
  if (dryRun && command !== 'gc') throw new UsageError('--dry-run goes with the gc command');
  const once = removeFlag(args, '--once');
  if (once !== (command === 'sync')) throw new UsageError('usage: registry sync --once [--config <file>] [--<key> <value> …]');
  const transfer = command === 'export' || command === 'import' ? takeTransferArguments(command, args) : undefined;
  const indexSource = command === 'migrate-index' ? takeIndexSource(args) : undefined;

  const { configPath, overrides } = parseFlags(args);
  const config = loadConfig({ cwd: process.cwd(), env: process.env, configPath, overrides });
  if (command === 'config') {
    const { effective, problems, notes } = checkConfig(config);
    process.stdout.write(`# configuration in force (embedded defaults, file, REGISTRY_* environment, flags)\n${effective}\n`);
    for (const note of notes) process.stdout.write(`note: ${note}\n`);
    for (const problem of problems) process.stdout.write(`problem: ${problem}\n`);
    process.stdout.write(problems.length === 0 ? 'configuration OK\n' : `${problems.length} problem(s)\n`);
    if (problems.length > 0) process.exitCode = 1;
    return;
  }
  if (command === 'healthcheck') {
    const problem = await probeReadiness(config);
    if (problem !== '') {
      process.stderr.write(`not ready: ${problem}\n`);
      process.exitCode = 1;
    }
    return;
  }
  ensureStorageDirectories(config);
  if (transfer) return runTransfer(transfer, config);
  if (command === 'migrate-storage') return runMigration(config);
  if (indexSource !== undefined) return runIndexMigration(indexSource, config);
  const log = createLogger(config.log_level, { format: config.log_format });
  const registry = await Registry.open(config, log);
  if (command === 'gc') {
    process.stdout.write(describeGc(await registry.collectGarbage({ dryRun })));
    return registry.close();
  }
  if (command === 'sync') {
    // Beside a running server or alone: the same index (SQLite in WAL mode, or PostgreSQL) and store; a blob
    // a pull is fetching in the server meanwhile is fetched once, by whichever takes its download lease first.
    if (!registry.cacheSync) throw new UsageError('sync fills the pull-through cache, which [proxy] enabled = false turns off');
    const reports = await registry.cacheSync.runAll();
    process.stdout.write(describeSync(reports));
    await registry.close();
    if (reports.some((report) => report.failed.length > 0)) process.exitCode = 1;
    return;
  }
  if (command === 'verify') {
    const report = await registry.verify();
    process.stdout.write(describeVerify(report));
    await registry.close();
    if (report.corrupt.length > 0 || report.missing.length > 0) process.exitCode = 2;
    return;
  }

  await registry.recoverRemovals();
  const listeners = await startListeners({ config, registry, log });
  // `[metrics] listen`: its own plain listener; it stays up through a drain (in-flight figures) until the exit.
  const metricsListener = await startMetricsListener(config, registry.metrics, log);
  process.stdout.write(describeStart(config, listeners, metricsListener));
  const collection = scheduleGarbageCollection(registry, config.gc.interval, log);
  const sync = registry.cacheSync?.schedule();
  // Background work a shutdown stops and waits for before the index closes.
  const background = { stop: async () => void (await Promise.all([collection.stop(), sync?.stop()])) };
  registry.sampleStorageEvery(STORAGE_SAMPLE_INTERVAL_MS);
  registry.checkpointIndexInBackground();
  // SIGTERM/SIGINT: drain for up to shutdown_timeout, close the index, exit (src/shutdown.ts).
  exitOnSignals({ listeners, registry, gc: background, lifecycle: listeners[0].lifecycle, timeoutMs: config.shutdown_timeout, log });
}

/** How often the server records the stores' sizes for the web UI's storage chart (storage-history.ts bounds what is kept). */
const STORAGE_SAMPLE_INTERVAL_MS = 3_600_000;

/**
 * What a first start should tell: where it listens, where data goes, which upstreams it caches, and
 * whether it is open to everyone. The `listening on` line is what tests and scripts wait for.
 */
function describeStart(config: Config, listeners: Listener[], metricsListener: MetricsListener | null): string {
  const [main, ...mirrors] = listeners;
  const hostMirrors = config.mirror.filter((mirror) => mirror.host);
  const upstreams = config.proxy.upstreams.map((upstream) => `${upstream.host} (${upstream.urls.join(', then ')}${upstream.username ? `, as ${upstream.username}` : ''})`);
  const lines = [
    `oci-cache-registry ${version()} listening on http://${main.host}:${main.port}`,
    ...mirrors.map(({ host, port, endpoint }) => `  mirror of ${endpoint.kind === 'mirror' ? endpoint.upstream : '?'} on http://${host}:${port}`),
    ...hostMirrors.map((mirror) => `  mirror of ${mirror.upstream} for Host: ${mirror.host}`),
    ...(config.storage.backend === 's3'
      ? [
          `  storage: s3://${config.storage.s3.bucket}/${config.storage.s3.prefix} at ${config.storage.s3.endpoint || `AWS S3 (${config.storage.s3.region})`}` +
            `${config.storage.s3.redirect ? '; blob GETs redirected to presigned URLs' : ''} (staging in ${config.registry_storage}, ${config.proxy_storage})`,
        ]
      : [`  registry_storage: ${config.registry_storage}`, `  proxy_storage: ${config.proxy_storage}`]),
    `  database: ${describeDatabase(config.database)}`,
    config.proxy.enabled
      ? `  pull-through cache: /v2/proxy/<upstream>/…; configured upstreams: ${upstreams.length > 0 ? upstreams.join(', ') : 'none'}` +
        `; other hosts: ${config.proxy.allowed_upstreams.length > 0 ? config.proxy.allowed_upstreams.join(', ') : 'any'} (public addresses only, over https)`
      : '  pull-through cache: disabled',
    `  health: /healthz, /readyz${config.metrics.enabled ? `; metrics: ${metricsListener ? `http://${metricsListener.host}:${metricsListener.port}/metrics` : '/metrics'}` : ''}`,
  ];
  if (config.auth.htpasswd === '') {
    lines.push(
      'WARNING: no [auth] htpasswd configured: anyone who can reach this registry may pull, push and delete (see docs/access-control.md)',
    );
  } else {
    const { htpasswd, anonymous, token, rules } = config.auth;
    lines.push(`  auth: users from ${htpasswd}, ${rules.length} rule(s), anonymous ${anonymous}${token ? ', token service at /token' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** package.json's version: next to dist/ in the image and in a checkout. */
function version(): string {
  return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

type TransferArguments =
  | { command: 'export'; format: 'static' | 'oci' | 'docker-archive'; target: string; selection: Selection; platform?: string }
  | { command: 'import'; source: string; to?: string };

/** Takes export's and import's own arguments out of `args`; what is left are configuration flags. */
function takeTransferArguments(command: 'export' | 'import', args: string[]): TransferArguments {
  const take = (flag: string): string[] => {
    const values: string[] = [];
    for (let at = args.indexOf(flag); at >= 0; at = args.indexOf(flag)) {
      const value = args[at + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      values.push(value);
      args.splice(at, 2);
    }
    return values;
  };
  const single = (flag: string): string | undefined => {
    const values = take(flag);
    if (values.length > 1) throw new UsageError(`${flag} is given more than once`);
    return values[0];
  };
  if (command === 'import') {
    const to = single('--to');
    const source = args[0] && !args[0].startsWith('--') ? args.shift()! : undefined;
    if (!source) throw new UsageError('usage: registry import FILE.tar|DIR [--to NAME[:TAG]]');
    return { command, source, to };
  }
  const formats = (['static', 'oci', 'docker-archive'] as const).flatMap((format) => take(`--${format}`).map((target) => ({ format, target })));
  if (formats.length !== 1) throw new UsageError('export takes one of --static DIR, --oci FILE.tar|DIR, --docker-archive FILE.tar');
  const selection = { repositories: take('--repo'), tagPatterns: take('--tag') };
  const platform = single('--platform');
  if (platform !== undefined && formats[0].format !== 'docker-archive') throw new UsageError('--platform goes with --docker-archive');
  return { command, ...formats[0], selection, platform };
}

/** Filesystem stores → the configured object store, recorded in the same index (gc.ts sees the writes). */
async function runMigration(config: Config): Promise<void> {
  if (config.storage.backend !== 's3') {
    throw new UsageError('migrate-storage copies into [storage.s3]: set storage.backend = "s3" (and the bucket) first');
  }
  const index = await RegistryIndex.open(config.database);
  try {
    const recordWrite = (digest: string, size: number) => index.recordBlobWrite(digest, size);
    const from = { hosted: new FilesystemBlobStore(config.registry_storage), proxy: new FilesystemBlobStore(config.proxy_storage) };
    const report = await migrateStorage(from, openBlobStores(config, recordWrite), (line) => process.stdout.write(`${line}\n`));
    process.stdout.write(
      `migrate-storage: ${report.copied} blobs copied (${formatBytes(report.bytes)}), ${report.present} already there\n` +
        `The files under ${config.registry_storage}/blobs and ${config.proxy_storage}/blobs can go once the registry serves from the bucket.\n`,
    );
  } finally {
    await index.close();
  }
}

/** `migrate-index --from FILE`: the SQLite file to copy, taken out of the arguments. */
function takeIndexSource(args: string[]): string {
  const at = args.indexOf('--from');
  const file = at >= 0 ? args[at + 1] : undefined;
  if (file === undefined || file.startsWith('--')) throw new UsageError('usage: registry migrate-index --from FILE [--config <file>] [--<key> <value> …]');
  args.splice(at, 2);
  return path.resolve(file);
}

/** A SQLite index → the configured PostgreSQL database (new), both migrated to this version first. */
async function runIndexMigration(file: string, config: Config): Promise<void> {
  if (!isPostgresUrl(config.database)) {
    throw new UsageError('migrate-index copies into PostgreSQL: set database = "postgres://…" (or REGISTRY_DATABASE) first');
  }
  if (!fs.existsSync(file)) throw new UsageError(`migrate-index: no SQLite index at ${file}`);
  const from = await RegistryIndex.open(file);
  try {
    const to = await RegistryIndex.open(config.database);
    try {
      const report = await migrateIndex(from.sql, to.sql, (line) => process.stdout.write(`${line}\n`));
      const rows = Object.entries(report).map(([table, count]) => `${table} ${count}`);
      process.stdout.write(`migrate-index: copied ${rows.join(', ')} into ${describeDatabase(config.database)}\n`);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

async function runTransfer(transfer: TransferArguments, config: Config): Promise<void> {
  // Export links and reads files, import writes them: the filesystem backend's stores only, for now.
  if (config.storage.backend !== 'filesystem') {
    throw new UsageError(`${transfer.command} works with storage.backend = "filesystem" only; this registry stores in ${config.storage.backend}`);
  }
  // The same index (SQLite in WAL mode: a second process beside a running server, as `gc` does) and stores.
  const content = await StoredContent.open(config);
  try {
    if (transfer.command === 'import') {
      process.stdout.write(describeImport(await importImages(content, { source: transfer.source, to: transfer.to })));
    } else if (transfer.format === 'static') {
      process.stdout.write(describeStaticExport(await exportStatic(content, { dir: transfer.target, ...transfer.selection })));
    } else if (transfer.format === 'oci') {
      process.stdout.write(describeExport(await exportOciLayout(content, { target: transfer.target, ...transfer.selection })));
    } else {
      const options = { file: transfer.target, platform: transfer.platform, ...transfer.selection };
      process.stdout.write(describeExport(await exportDockerArchive(content, options)));
    }
  } finally {
    await content.close();
  }
}

function removeFlag(args: string[], flag: string): boolean {
  const at = args.indexOf(flag);
  if (at >= 0) args.splice(at, 1);
  return at >= 0;
}

function parseFlags(args: string[]): { configPath?: string; overrides: Record<string, string> } {
  const overrides: Record<string, string> = {};
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const inline = flag.indexOf('=');
    const key = (inline > 0 ? flag.slice(0, inline) : flag).replace(/^--/, '');
    if (!flag.startsWith('--') || key === '') throw new UsageError(`unexpected argument ${JSON.stringify(flag)}\n${USAGE}`);
    const value = inline > 0 ? flag.slice(inline + 1) : args[++i];
    if (value === undefined) throw new UsageError(`--${key} needs a value`);
    if (key === 'config') configPath = value;
    else overrides[key.replace(/-/g, '_')] = value;
  }
  return { configPath, overrides };
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof ConfigError || error instanceof UsageError || error instanceof TransferError || error instanceof IndexMigrationError ? error.message : String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});

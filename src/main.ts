import { ConfigError, ensureStorageDirectories, loadConfig } from './config/load-config';
import { createLogger } from './log';
import { startListeners, stopListeners } from './listeners';
import { describeGc, describeVerify, scheduleGarbageCollection } from './storage/gc-runs';
import { Registry } from './storage/registry';

const USAGE = `usage: registry [command] [--config <file>] [--<key> <value> …]

commands:
  serve              start the registry (the default)
  gc [--dry-run]     collect garbage and evict the cache now; --dry-run only reports
  verify             re-hash every stored blob; quarantine corrupt ones

Keys are those of configuration.toml (e.g. --port 5001, --host 0.0.0.0, --gc.grace 10m).`;

async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const command = args[0] && !args[0].startsWith('-') ? args.shift()! : 'serve';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (!['serve', 'gc', 'verify'].includes(command)) throw new ConfigError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
  const dryRun = removeFlag(args, '--dry-run');
  if (dryRun && command !== 'gc') throw new ConfigError('--dry-run goes with the gc command');

  const { configPath, overrides } = parseFlags(args);
  const config = loadConfig({ cwd: process.cwd(), env: process.env, configPath, overrides });
  ensureStorageDirectories(config);
  const log = createLogger(config.log_level);
  const registry = Registry.open(config, log);
  if (command === 'gc') {
    process.stdout.write(describeGc(await registry.collectGarbage({ dryRun })));
    return registry.close();
  }
  if (command === 'verify') {
    const report = await registry.verify();
    process.stdout.write(describeVerify(report));
    registry.close();
    if (report.corrupt.length > 0 || report.missing.length > 0) process.exitCode = 2;
    return;
  }

  const listeners = await startListeners({ config, registry, log });
  const [mainListener, ...mirrors] = listeners;
  const listenMirrors = config.mirror.filter((mirror) => mirror.listen);
  const hostMirrors = config.mirror.filter((mirror) => mirror.host);
  process.stdout.write(
    `registry listening on http://${mainListener.host}:${mainListener.port}\n` +
      mirrors.map(({ host, port }, index) => `  mirror of ${listenMirrors[index].upstream} on http://${host}:${port}\n`).join('') +
      hostMirrors.map((mirror) => `  mirror of ${mirror.upstream} for Host: ${mirror.host}\n`).join('') +
      `  registry_storage: ${config.registry_storage}\n  database: ${config.database}\n`,
  );
  if (config.auth.htpasswd === '') {
    process.stdout.write(
      'WARNING: no [auth] htpasswd configured: anyone who can reach this registry may pull, push and delete (see "Access control" in README.md)\n',
    );
  } else {
    const { htpasswd, anonymous, token, rules } = config.auth;
    process.stdout.write(
      `  auth: users from ${htpasswd}, ${rules.length} rule(s), anonymous ${anonymous}${token ? ', token service at /token' : ''}\n`,
    );
  }

  const collection = scheduleGarbageCollection(registry, config.gc.interval, log);
  const stop = () => {
    collection.stop();
    void stopListeners(listeners, { force: false }).then(() => {
      registry.close();
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
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
    if (!flag.startsWith('--') || key === '') throw new ConfigError(`unexpected argument ${JSON.stringify(flag)}\n${USAGE}`);
    const value = inline > 0 ? flag.slice(inline + 1) : args[++i];
    if (value === undefined) throw new ConfigError(`--${key} needs a value`);
    if (key === 'config') configPath = value;
    else overrides[key.replace(/-/g, '_')] = value;
  }
  return { configPath, overrides };
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});

import { createApp } from './app';
import { ConfigError, ensureStorageDirectories, loadConfig } from './config/load-config';
import { createLogger } from './log';
import { Registry } from './storage/registry';

const USAGE = `usage: registry [serve] [--config <file>] [--<key> <value> …]

Starts the registry. Keys are those of configuration.toml (e.g. --port 5001, --host 0.0.0.0).`;

async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const command = args[0] && !args[0].startsWith('-') ? args.shift()! : 'serve';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command !== 'serve') throw new ConfigError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);

  const { configPath, overrides } = parseFlags(args);
  const config = loadConfig({ cwd: process.cwd(), env: process.env, configPath, overrides });
  ensureStorageDirectories(config);
  const log = createLogger(config.log_level);
  const registry = Registry.open(config, log);
  const app = createApp({ config, registry, log });
  const server = app.listen(config.port, config.host);
  server.requestTimeout = 0; // large blob uploads take as long as they take
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  process.stdout.write(
    `registry listening on http://${config.host}:${port}\n` +
      `  registry_storage: ${config.registry_storage}\n  database: ${config.database}\n`,
  );

  const stop = () => {
    server.close(() => {
      registry.close();
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
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

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Config } from '../../src/config/config';
import { ensureStorageDirectories, loadConfig } from '../../src/config/load-config';
import { Listener, ListenAddress, listenAddresses, startListeners, stopListeners } from '../../src/server/listeners';
import { createLogger, Logger } from '../../src/log';
import { Registry } from '../../src/registry';
import { createDatabase } from './postgres';

export interface TestApp {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, for image references. */
  host: string;
  /** `http://<listen>` of the index-th `[[mirror]]` with `listen` (write `listen = "127.0.0.1:0"` in the configuration). */
  mirrorUrl(index?: number): string;
  /** `<host>:<port>` of that mirror, for image references and client configuration. */
  mirrorHost(index?: number): string;
  storageDir: string;
  config: Config;
  registry: Registry;
  /** Stops the server (data stays) and starts a new one on the same storage and port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Reuse a storage directory; a fresh temp dir by default, removed on close. */
  storageDir?: string;
  /** configuration keys as on the command line (`max_manifest_size: '1KiB'`). */
  overrides?: Record<string, string>;
  /** Text of a configuration.toml, for what only the file can say (`[[proxy.upstreams]]`). */
  configuration?: string;
  /** Where the server logs; silent (or TEST_LOG_LEVEL on stderr) by default. */
  log?: Logger;
}

/**
 * The PostgreSQL server the suite's index goes to, when jest runs it as the `postgres` project
 * (jest.config.js): its global setup starts one (test/helpers/postgres-global-setup.js).
 */
const indexServer = (globalThis as { TEST_INDEX?: string }).TEST_INDEX === 'postgres' ? process.env.TEST_POSTGRES_URL : undefined;
/** One database per storage directory: an app started again on the same storage finds its index. */
const databases = new Map<string, Promise<string>>();

/**
 * A real server on a free loopback port, with real files in a temp dir and the index in SQLite there
 * (or, in the `postgres` project, in a fresh PostgreSQL database).
 */
export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const ownsStorage = options.storageDir === undefined;
  const storageDir = options.storageDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'registry-test-'));
  if (indexServer && !databases.has(storageDir)) databases.set(storageDir, createDatabase(indexServer));
  const database: Record<string, string> = indexServer ? { database: await databases.get(storageDir)! } : {};
  // cwd is the temp dir: relative default paths land there, and so does configuration.toml.
  if (options.configuration !== undefined) {
    fs.writeFileSync(path.join(storageDir, 'configuration.toml'), options.configuration);
  }
  const config = loadConfig({
    cwd: storageDir,
    env: {},
    overrides: { port: '0', log_level: process.env.TEST_LOG_LEVEL ?? 'silent', ...database, ...options.overrides },
  });
  ensureStorageDirectories(config);

  let registry: Registry;
  let listeners: Listener[];
  // As the server starts them (main, then each [[mirror]] listen), on loopback; a restart reuses the ports.
  let addresses: ListenAddress[] = listenAddresses(config).map((address, index) =>
    index === 0 ? { ...address, host: '127.0.0.1', port: 0 } : address,
  );
  const start = async () => {
    const log = options.log ?? createLogger(config.log_level);
    registry = await Registry.open(config, log);
    listeners = await startListeners({ config, registry, log }, addresses);
    addresses = listeners.map(({ host, port, endpoint }) => ({ host, port, endpoint }));
  };
  const stop = async () => {
    await stopListeners(listeners, { force: true });
    await registry.close();
  };
  const mirror = (index = 0) => {
    const listener = listeners[index + 1];
    if (!listener) throw new Error(`no [[mirror]] listen number ${index} in the configuration`);
    return `${listener.host}:${listener.port}`;
  };
  await start();

  const testApp: TestApp = {
    get url() {
      return `http://127.0.0.1:${listeners[0].port}`;
    },
    get host() {
      return `127.0.0.1:${listeners[0].port}`;
    },
    mirrorUrl: (index) => `http://${mirror(index)}`,
    mirrorHost: mirror,
    storageDir,
    config,
    get registry() {
      return registry;
    },
    restart: async () => {
      await stop();
      // fetch keeps connections alive in a pool in this same process. It notices the server's close a
      // few loop turns later; a request sent before that goes out on a dead socket ("other side closed").
      await new Promise((resolve) => setTimeout(resolve, 25));
      await start();
    },
    close: async () => {
      await stop();
      if (ownsStorage) fs.rmSync(storageDir, { recursive: true, force: true });
    },
  };
  return testApp;
}


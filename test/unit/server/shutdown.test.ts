import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Config } from '../../../src/config/config';
import { ensureStorageDirectories, loadConfig } from '../../../src/config/load-config';
import { Listener, startListeners, stopListeners } from '../../../src/server/listeners';
import { createLogger } from '../../../src/log';
import { ShutdownOptions, gracefulShutdown } from '../../../src/server/shutdown';
import { RegistryIndex } from '../../../src/storage/registry-index';
import { Registry } from '../../../src/registry';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** gracefulShutdown over real listeners and a real index, in this process (the e2e test sends real signals). */
describe('gracefulShutdown', () => {
  let work: string;
  let config: Config;
  let registry: Registry;
  let listeners: Listener[];
  let url: string;
  /** What happened, in order: 'gc stopped', 'downloads aborted', 'index closed'. */
  let events: string[];
  let lines: Array<Record<string, unknown>>;

  beforeEach(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'shutdown-'));
    config = loadConfig({ cwd: work, env: {}, overrides: { port: '0', host: '127.0.0.1', log_level: 'silent' } });
    ensureStorageDirectories(config);
    registry = await Registry.open(config, createLogger('silent'));
    listeners = await startListeners({ config, registry, log: createLogger('silent') });
    url = `http://127.0.0.1:${listeners[0].port}`;
    events = [];
    lines = [];
  });
  afterEach(async () => {
    await stopListeners(listeners, { force: true });
    await registry.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const shutdown = (overrides: Partial<ShutdownOptions> = {}) =>
    gracefulShutdown({
      listeners,
      registry: {
        abortDownloads: async () => {
          await registry.abortDownloads();
          events.push('downloads aborted');
        },
        close: async () => {
          await registry.close();
          events.push('index closed');
        },
      },
      gc: { stop: async () => void events.push('gc stopped') },
      lifecycle: listeners[0].lifecycle,
      timeoutMs: 2000,
      log: {
        debug: () => undefined,
        info: (msg, fields) => lines.push({ level: 'info', msg, ...fields }),
        warn: (msg, fields) => lines.push({ level: 'warn', msg, ...fields }),
        error: (msg, fields) => lines.push({ level: 'error', msg, ...fields }),
        isLevelEnabled: () => true,
      },
      settleMs: 1000,
      ...overrides,
    });

  async function startUpload(): Promise<string> {
    const response = await fetch(`${url}/v2/unit/shutdown/blobs/uploads/`, { method: 'POST', headers: { Connection: 'close' } });
    expect(response.status).toBe(202);
    return response.headers.get('location')!;
  }

  /** A PATCH announcing `total` bytes that sends `sent` of them and waits. */
  function stalledPatch(location: string, total: number, sent: number) {
    const request = http.request(`${url}${location}`, { method: 'PATCH', agent: false, headers: { 'Content-Length': total } });
    const outcome = new Promise<number | Error>((resolve) => {
      request.on('response', (response) => resolve(response.statusCode!));
      request.on('error', resolve);
    });
    request.write(Buffer.alloc(sent, 1));
    return { request, outcome };
  }

  test('marks the lifecycle draining, logs what is in flight, closes the index last', async () => {
    expect(listeners[0].lifecycle.draining).toBe(false);
    const report = await shutdown();
    expect(listeners[0].lifecycle.draining).toBe(true);
    expect(report.cut).toBe(0);
    expect(events).toEqual(['gc stopped', 'downloads aborted', 'index closed']);
    expect(lines[0]).toMatchObject({ msg: 'draining, 0 requests in flight, up to 2s', inFlight: 0, timeoutMs: 2000 });
    expect(lines.at(-1)).toMatchObject({ msg: 'stopped', cut: 0 });
  });

  test('an upload chunk finishing within the timeout is answered, with Connection: close', async () => {
    const location = await startUpload();
    const patch = stalledPatch(location, 2000, 1000);
    await sleep(100);
    const stopped = shutdown();
    await sleep(100);
    patch.request.end(Buffer.alloc(1000, 2));
    const response = await new Promise<http.IncomingMessage>((resolve) => patch.request.on('response', resolve));
    expect(response.statusCode).toBe(202);
    expect(response.headers.connection).toBe('close');
    expect(response.headers.range).toBe('0-1999');
    expect((await stopped).cut).toBe(0);
    expect(lines[0]).toMatchObject({ inFlight: 1 });
  });

  test('a chunk still arriving at the timeout is cut; the bytes received are recorded before the index closes', async () => {
    const location = await startUpload();
    const patch = stalledPatch(location, 5000, 3000);
    await sleep(100);
    const started = Date.now();
    const report = await shutdown({ timeoutMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(report.cut).toBe(1);
    expect(String(await patch.outcome)).toMatch(/ECONNRESET|socket hang up/);
    expect(lines.find((line) => line.level === 'warn')).toMatchObject({ msg: 'shutdown_timeout reached: cutting 1 requests still in flight' });

    const index = await RegistryIndex.open(config.database);
    try {
      expect((await index.upload(location.split('/').pop()!))?.size).toBe(3000);
    } finally {
      await index.close();
    }
  });

  test('stops accepting connections at once, and ends idle keep-alive ones', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const socketClosed = new Promise<void>((resolve, reject) => {
      http
        .get(`${url}/v2/`, { agent }, (response) => {
          response.resume();
          response.socket.once('close', () => resolve());
        })
        .on('error', reject);
    });
    await sleep(50);
    const stopped = shutdown();
    await socketClosed;
    await expect(fetch(`${url}/v2/`)).rejects.toThrow();
    await stopped;
    agent.destroy();
  });

  test("the listener's lifecycle is the one its routes read: /readyz answers 503 while draining", async () => {
    expect((await fetch(`${url}/readyz`, { headers: { Connection: 'close' } })).status).toBe(200);
    listeners[0].lifecycle.draining = true;
    expect((await fetch(`${url}/readyz`, { headers: { Connection: 'close' } })).status).toBe(503);
  });

  test('waits for a running garbage collection before closing the index', async () => {
    await shutdown({ gc: { stop: () => sleep(200).then(() => void events.push('gc stopped')) } });
    expect(events).toEqual(['downloads aborted', 'gc stopped', 'index closed']);
  });
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RegistryClient, UploadSession, digestOf, expectStatus } from '../helpers/registry-client';
import { ServerProcess, startServerProcess } from '../helpers/server-process';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Issue #8: SIGTERM stops accepting, lets in-flight pulls and uploads finish for up to shutdown_timeout,
 * cuts what is left, closes the index and exits 0; an upload cut by the shutdown resumes after the restart.
 * The real built server (dist/main.js) in its own process, restarted on the same storage.
 */
describe('graceful shutdown (SIGTERM)', () => {
  let work: string;
  let server: ServerProcess | undefined;

  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-shutdown-'));
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    fs.rmSync(work, { recursive: true, force: true });
  });

  const start = async (...args: string[]) => {
    server = await startServerProcess(work, ['--gc.interval', '0', '--log_level', 'info', ...args]);
    return { server, client: new RegistryClient({ url: server.url }) };
  };
  const port = (url: string) => Number(new URL(url).port);

  test('a PATCH streaming at SIGTERM finishes (202), the server exits 0, and the upload completes after a restart', async () => {
    const { server: first, client } = await start();
    const name = 'shutdown/streamed';
    const content = randomBytes(4 * MiB);
    const session = await client.startUpload(name);

    // 3 MiB in 12 pieces, 40 ms apart: about half a second, well within the default 30 s.
    const patch = slowRequest(first.url, 'PATCH', session.location, content.subarray(0, 3 * MiB), { pieces: 12, delayMs: 40 });
    await patch.sentAtLeast(MiB);
    await sleep(50);
    first.signal('SIGTERM');

    // While draining: no new connections.
    await sleep(100);
    await expect(connect(port(first.url))).rejects.toThrow(/ECONNREFUSED/);

    const response = await patch.response;
    expect(response.statusCode).toBe(202);
    expect(response.headers.range).toBe(`0-${3 * MiB - 1}`);
    expect(response.headers.connection).toBe('close');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(first.output()).toMatch(/draining, 1 requests in flight, up to 30s/);
    expect(logLine(first, 'stopped')).toMatchObject({ cut: 0 });
    await expect(connect(port(first.url))).rejects.toThrow(/ECONNREFUSED/);
    expect(walLeftBehind(work)).toBe(false);

    const { client: again } = await start();
    await resumeAndFinish(again, name, session, content, 3 * MiB);
  });

  test('a PATCH stalled at SIGTERM is cut at shutdown_timeout; after a restart it resumes from the bytes received', async () => {
    const { server: first, client } = await start('--shutdown_timeout', '1s');
    const name = 'shutdown/stalled';
    const content = randomBytes(3 * MiB);
    const session = await client.startUpload(name);

    // Announces 3 MiB, sends 1 MiB, then waits.
    const patch = slowRequest(first.url, 'PATCH', session.location, content, { pieces: 12, delayMs: 5, stallAfter: MiB });
    await patch.sentAtLeast(MiB);
    await sleep(300);
    const signalled = Date.now();
    first.signal('SIGTERM');

    await expect(patch.response).rejects.toThrow(/socket hang up|ECONNRESET/);
    const cutAfter = Date.now() - signalled;
    expect(cutAfter).toBeGreaterThanOrEqual(900);
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(4000);
    expect(first.output()).toMatch(/shutdown_timeout reached: cutting 1 requests still in flight/);
    expect(walLeftBehind(work)).toBe(false);

    const { client: again } = await start();
    await resumeAndFinish(again, name, session, content, MiB);
  });

  test('a PUT closing an upload, cut mid-body, leaves no blob; the session resumes from what arrived', async () => {
    const { server: first, client } = await start('--shutdown_timeout', '500ms');
    const name = 'shutdown/put';
    const content = randomBytes(2 * MiB);
    const session = await client.startUpload(name);
    const digest = digestOf(content);

    const put = slowRequest(first.url, 'PUT', `${session.location}?digest=${digest}`, content, { pieces: 8, delayMs: 5, stallAfter: MiB / 2 });
    await put.sentAtLeast(MiB / 2);
    await sleep(200);
    first.signal('SIGTERM');
    await expect(put.response).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect((await first.exited).code).toBe(0);

    const { client: again } = await start();
    expect((await again.headBlob(name, digest)).status).toBe(404);
    await resumeAndFinish(again, name, session, content, MiB / 2);
  });

  test('a pull read slowly at SIGTERM is answered in full before the server exits', async () => {
    const { server: first, client } = await start('--shutdown_timeout', '20s');
    const name = 'shutdown/pull';
    const content = randomBytes(8 * MiB);
    const { digest } = await client.pushBlob(name, content);

    // 64 KiB every 15 ms: about two seconds for 8 MiB, more than the socket buffers hold.
    const pull = slowDownload(first.url, `/v2/${name}/blobs/${digest}`, 64 * 1024, 15);
    await pull.receivedAtLeast(MiB);
    first.signal('SIGTERM');

    const body = await pull.body;
    expect(body.length).toBe(content.length);
    expect(digestOf(body)).toBe(digest);
    expect(await first.exited).toEqual({ code: 0, signal: null });
    // The server waited for the pull (it exits once the last bytes are with the kernel, before the
    // client has read them all).
    expect(first.output()).toMatch(/draining, 1 requests in flight/);
    expect(logLine(first, 'stopped')).toMatchObject({ cut: 0 });
  });

  test('an upstream transfer under way at the timeout is dropped: nothing cached, and after a restart the pull completes', async () => {
    const blob = randomBytes(2 * MiB);
    const digest = digestOf(blob);
    const upstream = await startUpstream(blob);
    try {
      fs.writeFileSync(path.join(work, 'configuration.toml'), `[[proxy.upstreams]]\nhost = "slow.test"\nurl = "${upstream.url}"\n`);
      const { server: first } = await start('--shutdown_timeout', '500ms');
      const location = `/v2/proxy/slow.test/team/app/blobs/${digest}`;

      // The upstream sends half the blob, then goes quiet.
      upstream.state.stall = true;
      const pull = slowDownload(first.url, location, 64 * 1024, 5);
      pull.body.catch(() => undefined);
      await pull.receivedAtLeast(MiB / 2);
      first.signal('SIGTERM');
      await expect(pull.body).rejects.toThrow(/aborted|ECONNRESET/);
      expect(await first.exited).toEqual({ code: 0, signal: null });
      expect(logLine(first, 'upstream blob transfer failed; nothing cached')).toMatchObject({ digest, error: 'the server is shutting down' });
      expect(first.output()).not.toMatch(/did not stop in time/);

      const proxyStorage = path.join(work, 'storage', 'proxy');
      expect(fs.readdirSync(path.join(proxyStorage, '.incoming'))).toEqual([]);
      expect(fs.existsSync(path.join(proxyStorage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7)))).toBe(false);

      upstream.state.stall = false;
      const { client } = await start();
      const { response, body } = await client.getBlob('proxy/slow.test/team/app', digest);
      await expectStatus(response, 200);
      expect(body.equals(blob)).toBe(true);
      expect(upstream.state.blobGets).toBe(2);
    } finally {
      await upstream.close();
    }
  });

  test('SIGINT too; an idle keep-alive connection does not hold the shutdown up', async () => {
    const { server: first } = await start();
    const agent = new http.Agent({ keepAlive: true });
    try {
      const response = await request(first.url, '/v2/', agent);
      expect(response.status).toBe(200);
      const signalled = Date.now();
      first.signal('SIGINT');
      expect(await first.exited).toEqual({ code: 0, signal: null });
      expect(Date.now() - signalled).toBeLessThan(2000);
      expect(logLine(first, 'draining, 0 requests in flight, up to 30s')).toMatchObject({ reason: 'SIGINT' });
    } finally {
      agent.destroy();
    }
  });

  test('a second SIGTERM during the drain exits at once with 1', async () => {
    const { server: first, client } = await start();
    const session = await client.startUpload('shutdown/impatient');
    const patch = slowRequest(first.url, 'PATCH', session.location, randomBytes(MiB), { pieces: 4, delayMs: 5, stallAfter: MiB / 4 });
    patch.response.catch(() => undefined);
    await patch.sentAtLeast(MiB / 4);
    await sleep(100);

    first.signal('SIGTERM');
    await sleep(300);
    expect(first.child.exitCode).toBeNull(); // draining: the stalled PATCH has up to 30 s
    const again = Date.now();
    first.signal('SIGTERM');
    expect(await first.exited).toEqual({ code: 1, signal: null });
    expect(Date.now() - again).toBeLessThan(1000);
    expect(first.output()).toMatch(/SIGTERM during the shutdown: exiting now/);

    // Exiting without closing the index is a crash for SQLite's WAL: the next start opens it as usual.
    const { client: restarted } = await start();
    const status = await restarted.fetch(session.location);
    expect(status.status).toBe(204);
  });
});

/** An upstream registry serving one blob under team/app; with `stall`, it sends half and goes quiet. */
function startUpstream(blob: Buffer) {
  const digest = digestOf(blob);
  const state = { stall: false, blobGets: 0 };
  const server = http.createServer((request, response) => {
    if (request.url === '/v2/') return response.end('{}');
    if (request.url !== `/v2/team/app/blobs/${digest}`) {
      response.statusCode = 404;
      return response.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
    }
    response.setHeader('Content-Length', blob.length);
    response.setHeader('Docker-Content-Digest', digest);
    if (request.method === 'HEAD') return response.end();
    state.blobGets++;
    if (!state.stall) return response.end(blob);
    response.write(blob.subarray(0, blob.length / 2));
  });
  return new Promise<{ url: string; state: typeof state; close: () => Promise<void> }>((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
        state,
        close: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    );
  });
}

/** GET the upload's status, PATCH the rest from the offset it reports, PUT the digest, GET the blob. */
async function resumeAndFinish(client: RegistryClient, name: string, session: UploadSession, content: Buffer, expectedOffset: number) {
  const status = await client.fetch(session.location);
  expect(status.status).toBe(204);
  // dist-spec: Range: 0-<offset-1>
  expect(status.headers.get('Range')).toBe(`0-${expectedOffset - 1}`);
  const resumed = await client.pushChunk({ ...session, location: status.headers.get('Location')!, offset: expectedOffset }, content.subarray(expectedOffset));
  const digest = digestOf(content);
  await client.finishUpload(name, resumed, digest);
  const { response, body } = await client.getBlob(name, digest);
  await expectStatus(response, 200);
  expect(body.equals(content)).toBe(true);
}

/**
 * A request whose body goes out in `pieces`, `delayMs` apart, announcing the whole `body` in
 * Content-Length; with `stallAfter` it stops sending after that many bytes and never finishes.
 */
function slowRequest(
  base: string,
  method: string,
  location: string,
  body: Buffer,
  { pieces, delayMs, stallAfter = Infinity }: { pieces: number; delayMs: number; stallAfter?: number },
) {
  let sent = 0;
  const progress = new Set<() => void>();
  const url = new URL(location, base);
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(url, {
      method,
      agent: false,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    void (async () => {
      const size = Math.ceil(body.length / pieces);
      for (let at = 0; at < body.length && at < stallAfter; at += size) {
        const piece = body.subarray(at, Math.min(at + size, body.length, stallAfter));
        await new Promise<void>((done) => req.write(piece, () => done()));
        sent += piece.length;
        for (const notify of progress) notify();
        await sleep(delayMs);
      }
      if (sent === body.length) req.end();
    })().catch(reject);
  });
  response.catch(() => undefined);
  return {
    response,
    sentAtLeast: (bytes: number) =>
      new Promise<void>((resolve) => {
        const check = () => sent >= bytes && (progress.delete(check), resolve());
        progress.add(check);
        check();
      }),
  };
}

/** A GET read `size` bytes at a time, `delayMs` apart. */
function slowDownload(base: string, location: string, size: number, delayMs: number) {
  let received = 0;
  const progress = new Set<() => void>();
  const body = new Promise<Buffer>((resolve, reject) => {
    http
      .get(new URL(location, base), { agent: false }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`GET ${location}: ${res.statusCode}`));
        const parts: Buffer[] = [];
        res.pause();
        const timer = setInterval(() => {
          const part = res.read(size) ?? res.read();
          if (part) {
            parts.push(part);
            received += part.length;
            for (const notify of progress) notify();
          }
        }, delayMs);
        res.on('end', () => (clearInterval(timer), resolve(Buffer.concat(parts))));
        res.on('error', (error) => (clearInterval(timer), reject(error)));
      })
      .on('error', reject);
  });
  return {
    body,
    receivedAtLeast: (bytes: number) =>
      new Promise<void>((resolve) => {
        const check = () => received >= bytes && (progress.delete(check), resolve());
        progress.add(check);
        check();
      }),
  };
}

function request(base: string, location: string, agent: http.Agent): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(new URL(location, base), { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode! }));
      })
      .on('error', reject);
  });
}

function connect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => (socket.destroy(), resolve()));
    socket.on('error', reject);
  });
}

/** The server's JSON log line whose message is `msg`. */
function logLine(server: ServerProcess, msg: string): Record<string, unknown> | undefined {
  return server
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((line) => line.msg === msg);
}

/** A WAL file with content left next to the index: it was not closed (close checkpoints and removes it). */
function walLeftBehind(work: string): boolean {
  const wal = path.join(work, 'storage', 'index.db-wal');
  return fs.existsSync(wal) && fs.statSync(wal).size > 0;
}

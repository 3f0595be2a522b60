import http from 'node:http';
import { AddressInfo, createServer, Server, Socket } from 'node:net';
import { createTestApp, TestApp } from '../../helpers/test-app';

/**
 * The pull-through cache is not an open proxy: an upstream nobody configured (proxy/<host>/…, `?ns=`, a
 * redirect, a token realm) is dialled only at public addresses. Listeners on 127.0.0.1:443 and
 * 127.0.0.2:443, where `https://<host>` of such an upstream would go, must never see a connection.
 */

interface CountingListener {
  connections: number;
  port: number;
  close(): Promise<void>;
}

/** Counts TCP connections and answers none of them. */
async function countConnections(host: string, port: number): Promise<CountingListener> {
  const sockets = new Set<Socket>();
  const listener: CountingListener = { connections: 0, port, close: async () => undefined };
  const server: Server = createServer((socket) => {
    listener.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${host}:${port} (${error.code}): this test needs that port free and the right to bind it`)),
    );
    server.listen(port, host, resolve);
  });
  listener.port = (server.address() as AddressInfo).port;
  listener.close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return listener;
}

async function errorBody(response: Response): Promise<{ code: string; message: string }> {
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { errors: Array<{ code: string; message: string }> };
  expect(body.errors).toHaveLength(1);
  return body.errors[0];
}

describe('GET /v2/proxy/<host>/… with a host nobody configured', () => {
  let app: TestApp;
  const listeners: CountingListener[] = [];
  const connections = () => listeners.reduce((sum, listener) => sum + listener.connections, 0);

  beforeAll(async () => {
    listeners.push(await countConnections('127.0.0.1', 443), await countConnections('127.0.0.2', 443));
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
    for (const listener of listeners) await listener.close();
  });

  const loopbackNames = [
    'proxy/127.0.0.1/library/alpine',
    'proxy/127.0.0.2/library/alpine',
    'proxy/localhost/library/alpine',
    'proxy/2130706433/library/alpine',
    'proxy/0x7f.1/library/alpine',
    'proxy/0177.0.0.1/library/alpine',
    'proxy/127.1/library/alpine',
    'proxy/[::1]/library/alpine',
    'proxy/[::ffff:127.0.0.1]/library/alpine',
    'proxy/169.254.169.254/latest/meta-data',
    'proxy/10.0.0.5/app',
  ];

  test.each(loopbackNames)('%s: manifests, blobs and tags/list are refused with 4xx JSON and no connection', async (name) => {
    const before = connections();
    const digest = `sha256:${'a'.repeat(64)}`;
    for (const path of [`/v2/${name}/manifests/latest`, `/v2/${name}/blobs/${digest}`, `/v2/${name}/tags/list`]) {
      for (const method of ['GET', 'HEAD']) {
        const response = await fetch(`${app.url}${path}`, { method });
        expect(response.status).toBeGreaterThanOrEqual(400);
        expect(response.status).toBeLessThan(500);
        if (method === 'GET') expect(['DENIED', 'NAME_UNKNOWN', 'NAME_INVALID']).toContain((await errorBody(response)).code);
      }
    }
    expect(connections()).toBe(before);
  });

  test('containerd ?ns=<loopback> is refused the same way, without a connection', async () => {
    const before = connections();
    for (const ns of ['127.0.0.1', '127.0.0.2', 'localhost', '0x7f.1']) {
      const response = await fetch(`${app.url}/v2/library/alpine/manifests/latest?ns=${ns}`);
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      expect(['DENIED', 'NAME_UNKNOWN']).toContain((await errorBody(response)).code);
    }
    expect(connections()).toBe(before);
  });

  test('DENIED says the upstream is not allowed, in the same words whether anything listens there or not', async () => {
    const listening = await errorBody(await fetch(`${app.url}/v2/proxy/127.0.0.1/a/b/manifests/latest`));
    const silent = await errorBody(await fetch(`${app.url}/v2/proxy/127.0.0.3/a/b/manifests/latest`));
    expect(listening).toMatchObject({ code: 'DENIED', message: 'upstream 127.0.0.1 is not allowed: it is not a public address' });
    expect(silent).toMatchObject({ code: 'DENIED', message: 'upstream 127.0.0.3 is not allowed: it is not a public address' });
    const named = await errorBody(await fetch(`${app.url}/v2/proxy/localhost/a/b/manifests/latest`));
    expect(named).toMatchObject({ code: 'DENIED', message: 'upstream localhost is not allowed: it is not a public address' });
  });
});

describe('a configured upstream on loopback that sends the cache elsewhere', () => {
  let app: TestApp;
  let upstream: http.Server;
  let elsewhere: CountingListener;
  let tokenRequests = 0;
  let loopRequests = 0;

  beforeAll(async () => {
    // What the configured upstream points at: loopback, but another name than the one configured.
    elsewhere = await countConnections('127.0.0.1', 0);
    upstream = http.createServer((request, response) => {
      const url = request.url ?? '';
      if (url.includes('/blobs/')) {
        response.writeHead(307, { location: `http://localhost:${elsewhere.port}/blob` });
        return response.end();
      }
      if (url.includes('/loop/')) {
        // Redirects to itself, forever.
        loopRequests++;
        response.writeHead(302, { location: url });
        return response.end();
      }
      if (url.startsWith('/token')) {
        tokenRequests++;
        response.writeHead(200, { 'content-type': 'application/json' });
        return response.end('{"token":"t"}');
      }
      if (url.includes('/realm-elsewhere/')) {
        response.writeHead(401, { 'www-authenticate': `Bearer realm="http://localhost:${elsewhere.port}/token",service="x"` });
        return response.end();
      }
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const port = (upstream.address() as AddressInfo).port;
    app = await createTestApp({ configuration: `[[proxy.upstreams]]\nhost = "redirector.test"\nurl = "http://127.0.0.1:${port}"\n` });
  });
  afterAll(async () => {
    await app?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
    await elsewhere?.close();
  });

  test('a blob GET redirected to an unconfigured loopback host is 403 DENIED, and that host sees no connection', async () => {
    const response = await fetch(`${app.url}/v2/proxy/redirector.test/team/app/blobs/sha256:${'b'.repeat(64)}`);
    expect(response.status).toBe(403);
    expect(await errorBody(response)).toMatchObject({ code: 'DENIED', message: 'upstream localhost is not allowed: it is not a public address' });
    expect(elsewhere.connections).toBe(0);
  });

  test('a token realm on an unconfigured loopback host is refused, and that host sees no connection', async () => {
    const response = await fetch(`${app.url}/v2/proxy/redirector.test/realm-elsewhere/app/manifests/latest`);
    expect(response.status).toBe(403);
    expect((await errorBody(response)).code).toBe('DENIED');
    expect(elsewhere.connections).toBe(0);
    expect(tokenRequests).toBe(0);
  });

  test('redirects are followed at most 5 times, not forever: 503 UNAVAILABLE', async () => {
    const response = await fetch(`${app.url}/v2/proxy/redirector.test/loop/app/manifests/latest`);
    expect(response.status).toBe(503);
    expect((await errorBody(response)).code).toBe('UNAVAILABLE');
    expect(loopRequests).toBe(1 + 5);
  });
});

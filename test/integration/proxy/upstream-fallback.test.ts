import http from 'node:http';
import { AddressInfo, createServer, Socket } from 'node:net';
import { createTestApp, TestApp } from '../../helpers/test-app';

/** A local upstream that answers 404 (503 under /flaky/) to every manifest request and counts them by method and path. */
async function countingUpstream(): Promise<{ url: string; port: number; count(method: string, path: string): number; close(): Promise<void> }> {
  const seen = new Map<string, number>();
  const server = http.createServer((request, response) => {
    const key = `${request.method} ${request.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const status = request.url?.startsWith('/v2/flaky/') ? 503 : 404;
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ errors: [{ code: status === 404 ? 'MANIFEST_UNKNOWN' : 'UNAVAILABLE', message: 'no' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    count: (method, path) => seen.get(`${method} ${path}`) ?? 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function errorCode(response: Response): Promise<string> {
  return ((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code;
}

describe('[proxy] not_found_ttl: an upstream 404 for a manifest is remembered', () => {
  let upstream: Awaited<ReturnType<typeof countingUpstream>>;
  let remembering: TestApp;
  let forgetting: TestApp;
  const configuration = (ttl: string) =>
    `[proxy]\nnot_found_ttl = "${ttl}"\n\n[[proxy.upstreams]]\nhost = "count.test"\nurl = "${upstream.url}"\n`;

  beforeAll(async () => {
    upstream = await countingUpstream();
    remembering = await createTestApp({ configuration: configuration('1h') });
    forgetting = await createTestApp({ configuration: configuration('0') });
  });
  afterAll(async () => {
    await remembering?.close();
    await forgetting?.close();
    await upstream?.close();
  });

  test('a typo pulled in a loop asks the upstream once: GET and HEAD by tag, and by digest', async () => {
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`${remembering.url}/v2/proxy/count.test/team/app/manifests/typo`, { method: i % 2 ? 'HEAD' : 'GET' });
      expect(response.status).toBe(404);
      if (i % 2 === 0) expect(await errorCode(response)).toBe('MANIFEST_UNKNOWN');
    }
    expect(upstream.count('GET', '/v2/team/app/manifests/typo')).toBe(1);

    const digest = `sha256:${'0'.repeat(64)}`;
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${remembering.url}/v2/proxy/count.test/team/app/manifests/${digest}`);
      expect(response.status).toBe(404);
      expect(await errorCode(response)).toBe('MANIFEST_UNKNOWN');
    }
    expect(upstream.count('GET', `/v2/team/app/manifests/${digest}`)).toBe(1);

    // Each name and reference is its own entry.
    await fetch(`${remembering.url}/v2/proxy/count.test/team/other/manifests/typo`);
    expect(upstream.count('GET', '/v2/team/other/manifests/typo')).toBe(1);

    const metrics = await (await fetch(`${remembering.url}/metrics`)).text();
    expect(metrics).toMatch(/registry_proxy_cache_requests_total\{upstream="count.test",kind="manifest",result="not_found"\} 6\b/);
  });

  test('an upstream failure (503) is not remembered', async () => {
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${remembering.url}/v2/proxy/count.test/flaky/app/manifests/1`);
      expect(response.status).toBe(503);
    }
    expect(upstream.count('GET', '/v2/flaky/app/manifests/1')).toBe(3);
  });

  test('not_found_ttl = 0 remembers nothing', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${forgetting.url}/v2/proxy/count.test/team/forgotten/manifests/typo`)).status).toBe(404);
    }
    expect(upstream.count('GET', '/v2/team/forgotten/manifests/typo')).toBe(3);
  });
});

describe('[[proxy.upstreams]] urls: each URL is trusted for its own host only', () => {
  let app: TestApp;
  let redirector: http.Server;
  let second: Awaited<ReturnType<typeof countingUpstream>>;
  let target: { connections: number; port: number; close(): Promise<void> };
  let redirects = 0;

  beforeAll(async () => {
    second = await countingUpstream();
    // Where the first URL redirects: localhost, the second URL's host, at a port of its own. Counts TCP connections.
    const sockets = new Set<Socket>();
    const listener = createServer((socket) => {
      target.connections++;
      sockets.add(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    target = {
      connections: 0,
      port: (listener.address() as AddressInfo).port,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => listener.close(() => resolve()));
      },
    };
    redirector = http.createServer((request, response) => {
      redirects++;
      response.writeHead(307, { location: `http://localhost:${target.port}${request.url}` });
      response.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const first = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
    app = await createTestApp({
      configuration: `[[proxy.upstreams]]\nhost = "two.test"\nurls = ["${first}", "http://localhost:${second.port}"]\n`,
    });
  });
  afterAll(async () => {
    await app?.close();
    redirector?.closeAllConnections();
    await new Promise<void>((resolve) => (redirector ? redirector.close(() => resolve()) : resolve()));
    await second?.close();
    await target?.close();
  });

  test("the first URL's redirect to the second URL's host (another port) is refused; the second URL is asked as configured", async () => {
    const response = await fetch(`${app.url}/v2/proxy/two.test/team/app/manifests/1`);
    expect(response.status).toBe(404);
    expect(await errorCode(response)).toBe('MANIFEST_UNKNOWN');
    expect(redirects).toBe(1);
    expect(target.connections).toBe(0);
    expect(second.count('GET', '/v2/team/app/manifests/1')).toBe(1);
  });
});

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { AddressInfo, createServer, Server as NetServer, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createLogger, Logger } from '../../../src/log';
import { MediaType } from '../../../src/oci/media-types';
import { UpstreamClient, UpstreamClientOptions, UpstreamUnavailableError } from '../../../src/proxy/upstream-client';
import { buildImageLayout, BuiltImage } from '../../helpers/oci-image';
import { skopeoCopy } from '../../helpers/skopeo';
import { freePort, startUpstreamRegistry, UpstreamRegistry } from '../../helpers/upstream-registry';

const REPOSITORY = 'test/app';
const TAG = 'v1';
const ACCEPT = [MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, MediaType.DockerManifestList].join(', ');

let layoutDir: string;
let image: BuiltImage;

beforeAll(async () => {
  layoutDir = await mkdtemp(path.join(os.tmpdir(), 'upstream-client-image-'));
  image = await buildImageLayout(layoutDir, { tag: TAG, layers: 2, layerSize: 4096 });
});
afterAll(() => rm(layoutDir, { recursive: true, force: true }));

/** Log lines, kept to check that no credential or token is ever written. */
function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('debug', { destination: (line) => lines.push(line) }), lines };
}

/** A client of a local peer, configured as `[[proxy.upstreams]]` would configure it: trusted at its own host. */
function clientFor(upstream: { url: string }, options: Partial<UpstreamClientOptions> = {}): UpstreamClient {
  return new UpstreamClient({ url: upstream.url, timeoutMs: 5000, concurrency: 4, log: createLogger('silent'), trusted: true, ...options });
}

async function pushImage(upstream: UpstreamRegistry): Promise<void> {
  const creds = upstream.credentials ? ['--dest-creds', `${upstream.credentials.username}:${upstream.credentials.password}`] : [];
  await skopeoCopy(image.reference, `docker://${upstream.host}/${REPOSITORY}:${TAG}`, creds);
}

/** `<method> /v2/test/app/manifests/<reference>` with the Accept list a pulling client sends. */
function manifest(client: UpstreamClient, method: 'GET' | 'HEAD', reference = TAG): Promise<Response> {
  return client.request(method, `${REPOSITORY}/manifests/${reference}`, { repository: REPOSITORY, headers: { accept: ACCEPT } });
}

/** `GET /v2/test/app/blobs/<digest>` */
function blob(client: UpstreamClient, digest: string): Promise<Response> {
  return client.request('GET', `${REPOSITORY}/blobs/${digest}`, { repository: REPOSITORY });
}

function sha256(bytes: ArrayBuffer): string {
  return `sha256:${createHash('sha256').update(Buffer.from(bytes)).digest('hex')}`;
}

/** The pull a proxy does: manifest by tag (HEAD and GET), a blob, and an unknown tag passing through as 404. */
function describePull(getClient: () => UpstreamClient) {
  test('GET /v2/<name>/manifests/<tag> with an Accept list answers the pushed manifest', async () => {
    const response = await manifest(getClient(), 'GET');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(MediaType.OciManifest);
    expect(response.headers.get('docker-content-digest')).toBe(image.manifestDigest);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(image.manifest);
  });

  test('HEAD /v2/<name>/manifests/<tag> answers the digest without a body', async () => {
    const response = await manifest(getClient(), 'HEAD');
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-content-digest')).toBe(image.manifestDigest);
    expect(Number(response.headers.get('content-length'))).toBe(image.manifestSize);
    expect((await response.arrayBuffer()).byteLength).toBe(0);
  });

  test('GET /v2/<name>/blobs/<digest> streams the layer', async () => {
    const digest = image.layerDigests[0];
    const response = await blob(getClient(), digest);
    expect(response.status).toBe(200);
    expect(sha256(await response.arrayBuffer())).toBe(digest);
  });

  test('an unknown tag passes through as 404 MANIFEST_UNKNOWN', async () => {
    const response = await manifest(getClient(), 'GET', 'no-such-tag');
    expect(response.status).toBe(404);
    expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
}

describe('UpstreamClient against distribution 2.8.2 without auth', () => {
  let upstream: UpstreamRegistry;
  let client: UpstreamClient;

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    await pushImage(upstream);
    client = clientFor(upstream);
  });
  afterAll(() => upstream?.close());

  describePull(() => client);

  test('one blob GET is one GET in the upstream access log', async () => {
    const digest = image.layerDigests[1];
    const blobGets = async () =>
      (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri === `/v2/${REPOSITORY}/blobs/${digest}`);
    const before = (await blobGets()).length;
    const response = await blob(client, digest);
    await response.arrayBuffer();
    const after = await blobGets();
    expect(after.length).toBe(before + 1);
    expect(after.at(-1)!.status).toBe(200);
  });

  test('a stopped upstream throws UpstreamUnavailableError naming the upstream and the cause', async () => {
    await upstream.stop();
    try {
      const failure = manifest(client, 'GET');
      await expect(failure).rejects.toBeInstanceOf(UpstreamUnavailableError);
      await expect(failure).rejects.toThrow(upstream.url);
      // Refused, or, when the request went out on a connection kept alive from the test before (closed by the
      // stop under it), hung up: either way the cause is named.
      await expect(failure).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);
    } finally {
      await upstream.start();
    }
    const response = await manifest(client, 'HEAD');
    expect(response.status).toBe(200);
  });
});

describe('UpstreamClient against distribution 2.8.2 with htpasswd (Basic) auth', () => {
  let upstream: UpstreamRegistry;
  let client: UpstreamClient;
  let logged: string[];

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'htpasswd' });
    await pushImage(upstream);
    const { log, lines } = capturingLogger();
    logged = lines;
    client = clientFor(upstream, { credentials: upstream.credentials, log });
  });
  afterAll(() => upstream?.close());

  describePull(() => client);

  test('after the first Basic challenge, credentials go up front (no more 401s)', async () => {
    const countUnauthorized = async () => (await upstream.accessLog()).filter((entry) => entry.status === 401).length;
    const before = await countUnauthorized();
    for (let i = 0; i < 3; i++) {
      const response = await manifest(client, 'HEAD');
      expect(response.status).toBe(200);
    }
    expect(await countUnauthorized()).toBe(before);
  });

  test('an anonymous client gets the 401 back', async () => {
    const response = await manifest(clientFor(upstream), 'GET');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic /);
  });

  test('wrong credentials get the 401 back after one retry', async () => {
    const wrong = clientFor(upstream, { credentials: { username: upstream.credentials!.username, password: 'wrong' } });
    const response = await manifest(wrong, 'GET');
    expect(response.status).toBe(401);
  });

  test('the password is never logged', () => {
    expect(logged.join('\n')).not.toContain(upstream.credentials!.password);
  });
});

describe('UpstreamClient against distribution 2.8.2 with token auth', () => {
  let upstream: UpstreamRegistry;
  let logged: string[];
  let client: UpstreamClient;

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'token' });
    await pushImage(upstream);
    const { log, lines } = capturingLogger();
    logged = lines;
    client = clientFor(upstream, { credentials: upstream.credentials, log });
  });
  afterAll(() => upstream?.close());

  describePull(() => client);

  test('one token serves many requests, and a new one is fetched once it expires', async () => {
    // A fresh client with its own clock: the pull tests above already hold a token in `client`.
    let now = Date.now();
    const fresh = clientFor(upstream, { credentials: upstream.credentials, now: () => now });
    const issued = upstream.tokenServer!.issued;
    const before = issued();
    const head = () => manifest(fresh, 'HEAD');

    expect((await head()).status).toBe(200);
    expect(issued()).toBe(before + 1);
    for (let i = 0; i < 3; i++) expect((await head()).status).toBe(200);
    const config = await blob(fresh, image.configDigest);
    expect(sha256(await config.arrayBuffer())).toBe(image.configDigest);
    expect(issued()).toBe(before + 1);

    now += 301_000; // past the helper's default expires_in of 300 s
    expect((await head()).status).toBe(200);
    expect(issued()).toBe(before + 2);
  });

  test('a cached token the registry refuses is dropped, replaced and the request retried', async () => {
    const tokenServer = upstream.tokenServer!;
    const fresh = clientFor(upstream, { credentials: upstream.credentials });
    const head = () => manifest(fresh, 'HEAD');
    const before = tokenServer.issued();
    try {
      // Tokens that expired two minutes ago: past distribution's leeway, so it refuses them, while the
      // client (expires_in < 60 counts as 60) caches this one as good.
      tokenServer.setExpiresIn(-120);
      expect((await head()).status).toBe(401);
      expect(tokenServer.issued()).toBe(before + 1);
    } finally {
      tokenServer.setExpiresIn(300);
    }
    expect((await head()).status).toBe(200);
    expect(tokenServer.issued()).toBe(before + 2);
    expect((await head()).status).toBe(200);
    expect(tokenServer.issued()).toBe(before + 2);
  });

  test('concurrent requests for one repository share one token request', async () => {
    const fresh = clientFor(upstream, { credentials: upstream.credentials });
    const before = upstream.tokenServer!.issued();
    const responses = await Promise.all(Array.from({ length: 5 }, () => manifest(fresh, 'HEAD')));
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(upstream.tokenServer!.issued()).toBe(before + 1);
  });

  test('an anonymous client pulls with an anonymous token', async () => {
    const response = await manifest(clientFor(upstream), 'GET');
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-content-digest')).toBe(image.manifestDigest);
  });

  test('when the token service refuses the credentials, the registry 401 comes back', async () => {
    const wrong = clientFor(upstream, { credentials: { username: upstream.credentials!.username, password: 'wrong' } });
    const response = await manifest(wrong, 'GET');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
  });

  test('neither the password nor a token is ever logged', () => {
    const text = logged.join('\n');
    expect(logged.length).toBeGreaterThan(0); // debug lines about tokens were written…
    expect(text).not.toContain(upstream.credentials!.password); // …without secrets
    expect(text).not.toMatch(/eyJ[\w-]+\.eyJ/); // a JWT
    expect(text).not.toMatch(/Bearer |Basic /);
  });
});

describe('UpstreamClient against local peers', () => {
  const peers: Array<{ close(): Promise<void> }> = [];
  afterAll(async () => {
    for (const peer of peers) await peer.close();
  });

  test('Authorization is not forwarded when a redirect leaves the origin', async () => {
    const credentials = { username: 'user', password: 'secret' };
    const cdnRequests: http.IncomingHttpHeaders[] = [];
    const cdn = await startHttpServer((request, response) => {
      cdnRequests.push(request.headers);
      response.end('blob bytes');
    });
    peers.push(cdn);
    const registryAuthorizations: Array<string | undefined> = [];
    const registry = await startHttpServer((request, response) => {
      registryAuthorizations.push(request.headers.authorization);
      if (request.headers.authorization === undefined) {
        response.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' });
        return response.end();
      }
      // Another port on 127.0.0.1 is another origin, as a CDN host would be.
      response.writeHead(307, { location: `${cdn.url}/signed/blob?sig=abc` });
      response.end();
    });
    peers.push(registry);

    const client = clientFor(registry, { credentials });
    const response = await client.request('GET', 'app/blobs/sha256:abc', { repository: 'app' });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('blob bytes');
    expect(registryAuthorizations).toEqual([undefined, `Basic ${Buffer.from('user:secret').toString('base64')}`]);
    expect(cdnRequests).toHaveLength(1);
    expect(cdnRequests[0].authorization).toBeUndefined();
  });

  test('no response headers within the timeout throws UpstreamUnavailableError', async () => {
    const silent = await startSilentServer();
    peers.push(silent);
    const started = Date.now();
    const failure = clientFor(silent, { timeoutMs: 300 }).request('GET', 'app/manifests/latest', { repository: 'app' });
    await expect(failure).rejects.toBeInstanceOf(UpstreamUnavailableError);
    await expect(failure).rejects.toThrow(/no response within 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('the timeout stops at the headers: a body slower than it still arrives whole', async () => {
    const slowBody = await startHttpServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      response.write('first ');
      setTimeout(() => response.end('last'), 600);
    });
    peers.push(slowBody);
    const client = clientFor(slowBody, { timeoutMs: 200 });
    const response = await client.request('GET', 'app/blobs/sha256:abc', { repository: 'app' });
    expect(await response.text()).toBe('first last');
  });

  test("the caller's abort rejects with its reason, not UpstreamUnavailableError", async () => {
    const silent = await startSilentServer();
    peers.push(silent);
    const controller = new AbortController();
    const client = clientFor(silent);
    const failure = client.request('GET', 'app/manifests/latest', { repository: 'app', signal: controller.signal });
    setTimeout(() => controller.abort(new Error('client went away')), 50);
    await expect(failure).rejects.toThrow('client went away');
    await expect(failure).rejects.not.toBeInstanceOf(UpstreamUnavailableError);
  });

  test('no more requests than `concurrency` wait for headers at once', async () => {
    let inFlight = 0;
    let peak = 0;
    const slow = await startHttpServer((_request, response) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      setTimeout(() => {
        inFlight--;
        response.end('ok');
      }, 100);
    });
    peers.push(slow);
    const client = clientFor(slow, { concurrency: 2 });
    const responses = await Promise.all(
      Array.from({ length: 6 }, (_, i) => client.request('GET', `app/manifests/t${i}`, { repository: 'app' })),
    );
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(peak).toBe(2);
  });

  test('an unreachable token service throws UpstreamUnavailableError', async () => {
    // A Bearer challenge whose realm nothing listens on.
    const port = await freePort();
    const registry = await startHttpServer((_request, response) => {
      response.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="x"` });
      response.end();
    });
    peers.push(registry);
    const failure = manifest(clientFor(registry), 'GET');
    await expect(failure).rejects.toBeInstanceOf(UpstreamUnavailableError);
    await expect(failure).rejects.toThrow(/token service/);
  });

  test('429 and 5xx pass through untouched', async () => {
    const busy = await startHttpServer((request, response) => {
      response.writeHead(request.url!.includes('/manifests/') ? 429 : 503, { 'retry-after': '7' });
      response.end('{"errors":[{"code":"TOOMANYREQUESTS"}]}');
    });
    peers.push(busy);
    const client = clientFor(busy);
    const limited = await client.request('GET', 'app/manifests/latest', { repository: 'app' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    await limited.arrayBuffer();
    const unavailable = await client.request('GET', 'app/blobs/sha256:abc', { repository: 'app' });
    expect(unavailable.status).toBe(503);
    await unavailable.arrayBuffer();
  });
});

interface LocalServer {
  url: string;
  close(): Promise<void>;
}

async function startHttpServer(handler: http.RequestListener): Promise<LocalServer> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Accepts connections and never answers. */
async function startSilentServer(): Promise<LocalServer> {
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout, BuiltImage, readBlob } from '../helpers/oci-image';
import { startServerProcess, ServerProcess } from '../helpers/server-process';
import { skopeoCopy } from '../helpers/skopeo';

/**
 * A hostile upstream, configured as a named upstream: it streams endless tag lists and manifests, issues
 * tokens of hundreds of KiB that never expire with a new scope per repository, redirects to loopback,
 * and challenges with a realm on another host. 150 such requests must leave the server within 100 MiB
 * of where it started, and it must still serve a normal pull from the same upstream afterwards.
 */

const RSS_GROWTH_LIMIT = 100 * 1024 * 1024;
const REQUESTS_PER_KIND = 30;
const CONCURRENCY = 10;
/** "Endless" bodies stop here, so that a server without caps fails the test rather than the machine. */
const ENDLESS_BYTES = 512 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'a');

/** Writes `head`, then CHUNK after CHUNK, as fast as the reader takes them, up to ENDLESS_BYTES. */
function streamEndlessly(response: http.ServerResponse, head: string): void {
  let sent = 0;
  response.write(head);
  const more = () => {
    while (sent < ENDLESS_BYTES && !response.destroyed) {
      sent += CHUNK.length;
      if (!response.write(CHUNK)) return void response.once('drain', more);
    }
    response.end();
  };
  more();
}

function startHostileUpstream(good: BuiltImage) {
  const goodBlobs = new Set([good.configDigest, ...good.layerDigests]);
  const counts = { tokens: 0, elsewhere: 0 };
  // Anything arriving on another name for loopback ("localhost") is a destination the cache must not dial.
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://upstream');
    const host = request.headers.host ?? '';
    if (host.startsWith('localhost')) {
      counts.elsewhere++;
      return void response.destroy();
    }
    const port = (server.address() as AddressInfo).port;
    // /v2/<kind>/<repository>/<resource>/<reference>: the first name component says how to misbehave.
    const [, kind, repository, resource, reference] = /^\/v2\/([^/]+)\/([^/]+)\/(manifests|blobs|tags)\/(.+)$/.exec(url.pathname) ?? [];
    if (url.pathname === '/token') {
      counts.tokens++;
      response.writeHead(200, { 'content-type': 'application/json' });
      return void response.end(JSON.stringify({ token: 'x'.repeat(300 * 1024), expires_in: 1e15 }));
    }
    if (url.pathname === '/v2/') return void response.end('{}');
    switch (kind) {
      case 'endless':
        response.writeHead(200, {
          'content-type': resource === 'tags' ? 'application/json' : 'application/vnd.oci.image.manifest.v1+json',
        });
        return streamEndlessly(response, resource === 'tags' ? `{"name":"endless/${repository}","tags":["` : '{"schemaVersion":2,"x":"');
      case 'tokens':
        if (request.headers.authorization === undefined) {
          // A new scope per repository: a cache keyed on it grows with every repository asked for.
          response.writeHead(401, {
            'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="hostile",scope="repository:${repository}-${Math.random()}:pull"`,
          });
          return void response.end();
        }
        response.writeHead(404);
        return void response.end();
      case 'redirect':
        response.writeHead(307, { location: `http://localhost:${port}/elsewhere/${repository}` });
        return void response.end();
      case 'realm':
        response.writeHead(401, { 'www-authenticate': `Bearer realm="http://localhost:${port}/token",service="hostile"` });
        return void response.end();
      case 'good': {
        if (resource === 'manifests' && (reference === good.tag || reference === good.manifestDigest)) {
          response.writeHead(200, {
            'content-type': good.mediaType,
            'docker-content-digest': good.manifestDigest,
            'content-length': good.manifest.length,
          });
          return void response.end(request.method === 'HEAD' ? undefined : good.manifest);
        }
        if (resource === 'blobs' && goodBlobs.has(reference)) {
          void readBlob(good.dir, reference).then((blob) => {
            response.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': reference });
            response.end(request.method === 'HEAD' ? undefined : blob);
          });
          return;
        }
        break;
      }
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end('{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}');
  });
  return new Promise<{ url: string; counts: typeof counts; close(): Promise<void> }>((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        counts,
        close: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    ),
  );
}

describe('a hostile upstream configured as a named upstream', () => {
  let work: string;
  let good: BuiltImage;
  let upstream: Awaited<ReturnType<typeof startHostileUpstream>>;
  let server: ServerProcess;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-hostile-'));
    good = await buildImageLayout(path.join(work, 'good'), { tag: 'v1', layers: 2, layerSize: 64 * 1024 });
    upstream = await startHostileUpstream(good);
    const serverDir = path.join(work, 'server');
    fs.mkdirSync(serverDir);
    fs.writeFileSync(path.join(serverDir, 'configuration.toml'), `[[proxy.upstreams]]\nhost = "hostile.test"\nurl = "${upstream.url}"\n`);
    server = await startServerProcess(serverDir);
  });
  afterAll(async () => {
    await server?.stop();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('150 requests for endless lists and manifests, huge eternal tokens, loopback redirects and realms: RSS within 100 MiB, then a normal pull', async () => {
    // Warm up the server's code paths once, then take the baseline.
    expect((await fetch(`${server.url}/v2/proxy/hostile.test/nothing/here/manifests/v1`)).status).toBe(404);
    const baseline = server.peakRss();

    const requests: Array<{ path: string; status: number; code: string }> = [];
    for (let i = 0; i < REQUESTS_PER_KIND; i++) {
      requests.push(
        { path: `endless/r${i}/tags/list`, status: 503, code: 'UNAVAILABLE' },
        { path: `endless/r${i}/manifests/latest`, status: 503, code: 'UNAVAILABLE' },
        { path: `tokens/r${i}/manifests/latest`, status: 503, code: 'UNAVAILABLE' },
        { path: `redirect/r${i}/blobs/sha256:${String(i).padStart(64, '0')}`, status: 403, code: 'DENIED' },
        { path: `realm/r${i}/manifests/latest`, status: 403, code: 'DENIED' },
      );
    }
    const answers: Array<{ path: string; status: number; code: string }> = [];
    for (let start = 0; start < requests.length; start += CONCURRENCY) {
      const batch = requests.slice(start, start + CONCURRENCY);
      answers.push(
        ...(await Promise.all(
          batch.map(async ({ path: name }) => {
            const response = await fetch(`${server.url}/v2/proxy/hostile.test/${name}`);
            const body = (await response.json()) as { errors: Array<{ code: string }> };
            return { path: name, status: response.status, code: body.errors[0].code };
          }),
        )),
      );
      const growth = server.peakRss() - baseline;
      if (growth > RSS_GROWTH_LIMIT) throw new Error(`server RSS grew by ${(growth / 1024 / 1024).toFixed(0)} MiB after ${answers.length} requests`);
    }
    expect(answers).toEqual(requests);
    expect(upstream.counts.elsewhere).toBe(0);

    const growth = server.peakRss() - baseline;
    process.stdout.write(`hostile-upstream-memory: server peak RSS grew by ${(growth / 1024 / 1024).toFixed(1)} MiB\n`);
    expect(growth).toBeLessThan(RSS_GROWTH_LIMIT);

    const pulled = path.join(work, 'pulled');
    await skopeoCopy(`docker://${new URL(server.url).host}/proxy/hostile.test/good/app:v1`, `dir:${pulled}`);
    expect(fs.readFileSync(path.join(pulled, 'manifest.json'))).toEqual(good.manifest);
    for (const digest of good.layerDigests) {
      expect(fs.existsSync(path.join(pulled, digest.replace('sha256:', '')))).toBe(true);
    }
  }, 180_000);
});

/**
 * The registry behind Debian's nginx with deploy/nginx.conf and deploy/nginx-accel.conf included in it, and
 * accel_redirect = "/_blobs/": a blob GET that passed authorization, for a blob stored whole on disk, is
 * answered by the registry with X-Accel-Redirect and an empty body, and nginx sends the file (Range too).
 * What must hold: the client gets the same bytes and headers as without it; the internal locations are
 * not reachable from outside; a blob that is not a file on disk (not cached yet, or gone) is served or
 * refused by the registry as without it; a refused request never gets a file.
 */
import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { Nginx, NginxLogEntry, startNginx } from '../helpers/nginx';
import { buildImageLayout, BuiltImage, findTag } from '../helpers/oci-image';
import { digestOf, RegistryClient } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const MiB = 1024 * 1024;
const PREFIX = '/_blobs/';

const portOf = (app: TestApp) => Number(new URL(app.url).port);
const accelOf = (app: TestApp) => ({ registryStorage: app.config.registry_storage, proxyStorage: app.config.proxy_storage });
const hexOf = (digest: string) => digest.slice('sha256:'.length);
/** The internal URI the registry names for a blob in one of its stores. */
const internalUri = (store: 'registry' | 'proxy', digest: string) => `${PREFIX}${store}/blobs/sha256/${hexOf(digest).slice(0, 2)}/${hexOf(digest)}`;

/** nginx's log entries of GETs of one blob, oldest first. */
async function blobGets(nginx: Nginx, digest: string): Promise<NginxLogEntry[]> {
  return (await nginx.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.endsWith(`/blobs/${digest}`));
}

async function errorCodes(body: string): Promise<string[]> {
  return (JSON.parse(body) as { errors: { code: string }[] }).errors.map((error) => error.code);
}

/**
 * A loopback relay in front of the real upstream that passes everything through, except that a blob GET of
 * `held` digests sends its headers and first chunk and then waits for release(): a transfer kept under way.
 */
interface HoldingRelay {
  url: string;
  hold(digest: string): { started: Promise<void>; release(): void };
  close(): Promise<void>;
}

async function startHoldingRelay(upstreamUrl: string): Promise<HoldingRelay> {
  const upstream = new URL(upstreamUrl);
  const holds = new Map<string, { started: () => void; released: Promise<void> }>();
  const server = http.createServer((request, response) => {
    const forwarded = http.request(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: { ...request.headers, host: upstream.host } },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        const held = request.method === 'GET' ? [...holds].find(([digest]) => request.url?.endsWith(`/blobs/${digest}`))?.[1] : undefined;
        if (!held) return void answer.pipe(response);
        answer.once('data', (first: Buffer) => {
          answer.pause();
          response.write(first);
          held.started();
          void held.released.then(() => answer.pipe(response));
        });
      },
    );
    forwarded.on('error', () => response.destroy());
    request.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold(digest) {
      let started!: () => void;
      let release!: () => void;
      const startedPromise = new Promise<void>((resolve) => (started = resolve));
      holds.set(digest, { started, released: new Promise<void>((resolve) => (release = resolve)) });
      return { started: startedPromise, release };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A GET straight to `url`, resolved with the status and headers as soon as they arrive; the body read on demand. */
function getHeadersFirst(url: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: () => Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (response) => {
        const chunks: Buffer[] = [];
        const ended = new Promise<Buffer>((done, failed) => {
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => done(Buffer.concat(chunks)));
          response.on('error', failed);
        });
        resolve({ status: response.statusCode!, headers: response.headers, body: () => ended });
      })
      .on('error', reject);
  });
}

describe('nginx (deploy/nginx.conf + deploy/nginx-accel.conf) in front of the registry with accel_redirect = "/_blobs/"', () => {
  let upstream: UpstreamRegistry;
  let relay: HoldingRelay;
  let app: TestApp;
  let nginx: Nginx;
  let work: string;
  let image: BuiltImage;
  let blob: Buffer;
  let digest: string;
  const docker = (name: string) => `docker://${nginx.host}/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'reverse-proxy-accel-e2e-'));
    upstream = await startUpstreamRegistry();
    relay = await startHoldingRelay(upstream.url);
    app = await createTestApp({
      overrides: { trust_proxy: 'true', accel_redirect: PREFIX },
      configuration:
        `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n\n` +
        `[[proxy.upstreams]]\nhost = "held.test"\nurl = "${relay.url}"\n`,
    });
    nginx = await startNginx({ upstreamPort: portOf(app), accel: accelOf(app) });
    image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 4 * MiB, seed: 'reverse-proxy-accel' });
    blob = randomBytes(3 * MiB + 17);
    digest = (await new RegistryClient(app).pushBlob('team/blob', blob)).digest;
  });
  afterAll(async () => {
    await nginx?.close();
    await app?.close();
    await relay?.close();
    await upstream?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('skopeo pushes an image through nginx and pulls it back unchanged; nginx sent every layer from the file', async () => {
    await skopeoCopy(image.reference, docker('team/app:v1'));
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(docker('team/app:v1'), `oci:${pulled}:v1`);
    expect((await findTag(pulled, 'v1'))?.digest).toBe(image.manifestDigest);

    for (const layer of image.layerDigests) {
      const gets = (await blobGets(nginx, layer)).filter((entry) => entry.status === 200);
      expect(gets.length).toBeGreaterThan(0);
      for (const entry of gets) {
        expect(entry.upstreamAccelRedirect).toBe(internalUri('registry', layer));
        expect(entry.bodyBytesSent).toBe(fs.statSync(path.join(app.config.registry_storage, 'blobs', 'sha256', hexOf(layer).slice(0, 2), hexOf(layer))).size);
      }
    }
  });

  test('GET a blob through nginx: the same bytes and the registry headers; the registry itself answered with X-Accel-Redirect and no body', async () => {
    const response = await nginx.request(`/v2/team/blob/blobs/${digest}`);
    expect(response.status).toBe(200);
    expect(response.bytes.equals(blob)).toBe(true);
    expect(response.headers['docker-content-digest']).toBe(digest);
    expect(response.headers.etag).toBe(`"${digest}"`);
    expect(response.headers['content-type']).toBe('application/octet-stream');
    expect(response.headers['content-length']).toBe(String(blob.length));
    expect(response.headers['accept-ranges']).toBe('bytes');
    expect(response.headers['cache-control']).toBe('max-age=31536000');
    expect(response.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(response.headers['x-accel-redirect']).toBeUndefined();
    expect((await blobGets(nginx, digest)).at(-1)?.upstreamAccelRedirect).toBe(internalUri('registry', digest));

    // Straight to the registry's port, as nginx asks it.
    const direct = await fetch(`${app.url}/v2/team/blob/blobs/${digest}`);
    expect(direct.status).toBe(200);
    expect(direct.headers.get('X-Accel-Redirect')).toBe(internalUri('registry', digest));
    expect(direct.headers.get('Docker-Content-Digest')).toBe(digest);
    expect(direct.headers.get('Content-Type')).toBe('application/octet-stream');
    expect(direct.headers.get('Content-Length')).toBe('0');
    expect((await direct.arrayBuffer()).byteLength).toBe(0);
  });

  test('Range through nginx: 206 with the right bytes; an unsatisfiable range gets the registry RANGE_INVALID', async () => {
    const partial = await nginx.request(`/v2/team/blob/blobs/${digest}`, { headers: { Range: 'bytes=1000-2999' } });
    expect(partial.status).toBe(206);
    expect(partial.headers['content-range']).toBe(`bytes 1000-2999/${blob.length}`);
    expect(partial.bytes.equals(blob.subarray(1000, 3000))).toBe(true);
    expect(partial.headers['docker-content-digest']).toBe(digest);

    const suffix = await nginx.request(`/v2/team/blob/blobs/${digest}`, { headers: { Range: 'bytes=-17' } });
    expect(suffix.status).toBe(206);
    expect(suffix.bytes.equals(blob.subarray(blob.length - 17))).toBe(true);

    // Several ranges are not served, as without nginx: the whole blob.
    const several = await nginx.request(`/v2/team/blob/blobs/${digest}`, { headers: { Range: 'bytes=0-9,20-29' } });
    expect(several.status).toBe(200);
    expect(several.bytes.equals(blob)).toBe(true);

    const outside = await nginx.request(`/v2/team/blob/blobs/${digest}`, { headers: { Range: `bytes=${blob.length}-` } });
    expect(outside.status).toBe(416);
    expect(outside.headers['content-range']).toBe(`bytes */${blob.length}`);
    expect(await errorCodes(outside.body)).toEqual(['RANGE_INVALID']);

    // nginx cut the ranges from the file; the registry only named it.
    const entries = (await blobGets(nginx, digest)).slice(-4);
    expect(entries.map((entry) => [entry.status, entry.upstreamAccelRedirect])).toEqual([
      [206, internalUri('registry', digest)],
      [206, internalUri('registry', digest)],
      [200, internalUri('registry', digest)],
      [416, ''],
    ]);
  });

  test('the internal locations answer 404 to a client asking for them directly', async () => {
    for (const uri of [internalUri('registry', digest), internalUri('proxy', digest), `${PREFIX}registry/blobs/`]) {
      const response = await nginx.request(uri);
      expect(response.status).toBe(404);
      expect(response.bytes.includes(blob.subarray(0, 64))).toBe(false);
    }
  });

  test('a blob that is not a file on disk is refused by the registry as without accel_redirect: BLOB_UNKNOWN, no X-Accel-Redirect', async () => {
    const unknown = digestOf(Buffer.from('never pushed'));
    const response = await nginx.request(`/v2/team/blob/blobs/${unknown}`);
    expect(response.status).toBe(404);
    expect(await errorCodes(response.body)).toEqual(['BLOB_UNKNOWN']);

    // Linked in the index, but its file is gone (removed by hand): the registry does not send nginx to it.
    const lost = randomBytes(4096);
    const lostDigest = (await new RegistryClient(app).pushBlob('team/lost', lost)).digest;
    fs.rmSync(path.join(app.config.registry_storage, 'blobs', 'sha256', hexOf(lostDigest).slice(0, 2), hexOf(lostDigest)));
    const gone = await nginx.request(`/v2/team/lost/blobs/${lostDigest}`);
    expect(gone.status).toBe(404);
    expect(await errorCodes(gone.body)).toEqual(['BLOB_UNKNOWN']);

    const entries = [...(await blobGets(nginx, unknown)), ...(await blobGets(nginx, lostDigest))];
    expect(entries).toHaveLength(2);
    for (const entry of entries) expect(entry.upstreamAccelRedirect).toBe('');
  });

  test('the cache: a blob not cached yet is sent by the registry as it arrives from the upstream; once stored, by nginx from proxy_storage', async () => {
    const cached = randomBytes(2 * MiB + 5);
    const cachedDigest = digestOf(cached);
    const upstreamClient = new RegistryClient(upstream);
    await upstreamClient.finishUpload('team/cached', await upstreamClient.startUpload('team/cached'), cachedDigest, cached);
    const uri = `/v2/proxy/upstream.test/team/cached/blobs/${cachedDigest}`;

    const cold = await nginx.request(uri);
    expect(cold.status).toBe(200);
    expect(cold.bytes.equals(cached)).toBe(true);
    // The last byte goes out once the digest verifies; the move into the store (fsync, rename) follows.
    // Until then a request joins the transfer and the registry sends it: wait for the stored file.
    const stored = path.join(app.config.proxy_storage, 'blobs', 'sha256', cachedDigest.slice(7, 9), cachedDigest.slice(7));
    for (let waited = 0; !fs.existsSync(stored) && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    const warm = await nginx.request(uri);
    expect(warm.status).toBe(200);
    expect(warm.bytes.equals(cached)).toBe(true);
    expect(warm.headers['docker-content-digest']).toBe(cachedDigest);

    const [coldEntry, warmEntry] = await blobGets(nginx, cachedDigest);
    expect(coldEntry.upstreamAccelRedirect).toBe('');
    expect(warmEntry.upstreamAccelRedirect).toBe(internalUri('proxy', cachedDigest));
    // One upstream transfer: the warm pull did not go upstream.
    expect((await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.endsWith(cachedDigest))).toHaveLength(1);
  });

  test('a blob still coming from the upstream: a client joining the transfer is streamed by the registry, no X-Accel-Redirect', async () => {
    const slow = randomBytes(3 * MiB + 11);
    const slowDigest = digestOf(slow);
    const upstreamClient = new RegistryClient(upstream);
    await upstreamClient.finishUpload('team/slow', await upstreamClient.startUpload('team/slow'), slowDigest, slow);
    const uri = `/v2/proxy/held.test/team/slow/blobs/${slowDigest}`;
    const transfer = relay.hold(slowDigest);

    const first = nginx.request(uri);
    await transfer.started;
    // The transfer is under way (its first chunk is in, the rest held): nothing complete on disk to name.
    const joining = await getHeadersFirst(`${app.url}${uri}`);
    expect(joining.status).toBe(200);
    expect(joining.headers['x-accel-redirect']).toBeUndefined();
    expect(joining.headers['content-length']).toBe(String(slow.length));
    expect(joining.headers['docker-content-digest']).toBe(slowDigest);
    transfer.release();

    expect((await joining.body()).equals(slow)).toBe(true);
    const through = await first;
    expect(through.status).toBe(200);
    expect(through.bytes.equals(slow)).toBe(true);
    expect((await blobGets(nginx, slowDigest)).map((entry) => entry.upstreamAccelRedirect)).toEqual(['']);

    // Stored whole now: named for nginx.
    const after = await nginx.request(uri);
    expect(after.bytes.equals(slow)).toBe(true);
    expect((await blobGets(nginx, slowDigest)).map((entry) => entry.upstreamAccelRedirect)).toEqual(['', internalUri('proxy', slowDigest)]);
    expect((await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.endsWith(slowDigest))).toHaveLength(1);
  });
});

describe('accel_redirect with [auth]: only an authorized GET is sent to the file', () => {
  let app: TestApp;
  let nginx: Nginx;
  let blob: Buffer;
  let digest: string;

  beforeAll(async () => {
    app = await createAuthApp(
      { alice: 'alice-pw', carol: 'carol-pw' },
      `trust_proxy = true\naccel_redirect = "${PREFIX}"\n` +
        `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\n\n[[auth.rules]]\nprefix = "private/"\npull = ["alice"]\npush = ["alice"]\n`,
    );
    nginx = await startNginx({ upstreamPort: portOf(app), accel: accelOf(app) });
    blob = randomBytes(MiB);
    digest = (await new RegistryClient(app, basic('alice:alice-pw')).pushBlob('private/app', blob)).digest;
  });
  afterAll(async () => {
    await nginx?.close();
    await app?.close();
  });

  test('anonymous: 401 UNAUTHORIZED; carol: 403 DENIED; neither gets X-Accel-Redirect or the bytes; alice gets the file', async () => {
    const uri = `/v2/private/app/blobs/${digest}`;
    const anonymous = await nginx.request(uri);
    expect(anonymous.status).toBe(401);
    expect(await errorCodes(anonymous.body)).toEqual(['UNAUTHORIZED']);
    const carol = await nginx.request(uri, { headers: basic('carol:carol-pw') });
    expect(carol.status).toBe(403);
    expect(await errorCodes(carol.body)).toEqual(['DENIED']);
    const alice = await nginx.request(uri, { headers: basic('alice:alice-pw') });
    expect(alice.status).toBe(200);
    expect(alice.bytes.equals(blob)).toBe(true);

    const entries = await blobGets(nginx, digest);
    expect(entries.map((entry) => [entry.status, entry.upstreamAccelRedirect])).toEqual([
      [401, ''],
      [403, ''],
      [200, internalUri('registry', digest)],
    ]);
    // Straight to the registry without credentials: refused, no file named.
    const direct = await fetch(`${app.url}${uri}`);
    expect(direct.status).toBe(401);
    expect(direct.headers.get('X-Accel-Redirect')).toBeNull();
  });
});

/**
 * The race accel_redirect opens: the registry found the file and named it, and a collection or an eviction
 * removed it before nginx opened it. A loopback relay between nginx and the registry removes the file right
 * after the registry's answer, which makes that moment happen every time. The client must get what the
 * registry would have said, the spec's BLOB_UNKNOWN in JSON, not nginx's HTML 404 page.
 */
describe('accel_redirect: a file removed between the registry\'s answer and nginx opening it', () => {
  let app: TestApp;
  let nginx: Nginx;
  let relay: http.Server;

  beforeAll(async () => {
    app = await createTestApp({ overrides: { trust_proxy: 'true', accel_redirect: PREFIX } });
    const registry = new URL(app.url);
    relay = http.createServer((request, response) => {
      const forwarded = http.request(
        { host: registry.hostname, port: registry.port, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          const named = answer.headers['x-accel-redirect'];
          if (typeof named === 'string' && named.startsWith(`${PREFIX}registry/blobs/`)) {
            fs.rmSync(path.join(app.config.registry_storage, named.slice(`${PREFIX}registry/`.length)));
          }
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    nginx = await startNginx({ upstreamPort: (relay.address() as AddressInfo).port, accel: accelOf(app) });
  });
  afterAll(async () => {
    await nginx?.close();
    await new Promise((resolve) => relay?.close(resolve));
    await app?.close();
  });

  test('the client gets 404 BLOB_UNKNOWN in the spec\'s JSON shape, naming the digest', async () => {
    const blob = randomBytes(8192);
    const digest = (await new RegistryClient(app).pushBlob('team/raced', blob)).digest;
    const response = await nginx.request(`/v2/team/raced/blobs/${digest}`);
    expect(response.status).toBe(404);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(response.body) as { errors: { code: string; message: string; detail: { digest: string } }[] };
    expect(body.errors.map((error) => error.code)).toEqual(['BLOB_UNKNOWN']);
    expect(body.errors[0].detail.digest).toBe(digest);
    // The registry did name the file: nginx, not the registry, found it gone.
    expect((await blobGets(nginx, digest)).at(-1)?.upstreamAccelRedirect).toBe(internalUri('registry', digest));
  });
});

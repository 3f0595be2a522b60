import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { RegistryClient, expectErrorCode, expectStatus, PushedImage } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * Mirror endpoints ([[mirror]] listen and host) and containerd's ?ns= on the main endpoint, against a
 * docker-registry standing in for Docker Hub (`[[proxy.upstreams]] host = "registry-1.docker.io"`).
 */

/** Upstream GETs of one blob so far. */
async function blobGets(upstream: UpstreamRegistry, digest: string): Promise<number> {
  return (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.endsWith(`/blobs/${digest}`)).length;
}

interface PlainResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request with a Host header of the test's choosing, which fetch does not let a caller set. */
function requestWithHost(url: string, host: string, method = 'GET'): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, headers: { Host: host } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

function errorCodes(body: string): string[] {
  return (JSON.parse(body) as { errors: Array<{ code: string }> }).errors.map((error) => error.code);
}

function dockerHubConfiguration(upstream: UpstreamRegistry, extra = ''): string {
  return `
[[proxy.upstreams]]
host = "registry-1.docker.io"
url = "${upstream.url}"

[[proxy.upstreams]]
host = "other.test"
url = "${upstream.url}"

[[mirror]]
upstream = "docker.io"
listen = "127.0.0.1:0"

[[mirror]]
upstream = "docker.io"
host = "hub.example.com"
${extra}`;
}

describe('mirror endpoints and ?ns= in front of a Docker Hub stand-in', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let main: RegistryClient;
  let mirror: RegistryClient;
  let work: string;
  let app1: BuiltImage; // library/app:1 (and :2) at the upstream
  let hosted: PushedImage; // library/app:1 pushed to this registry: same name, other content

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'mirror-endpoints-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app1 = await buildImageLayout(path.join(work, 'app'), { tag: '1', layers: 2, layerSize: 4096, seed: 'mirror-app' });
    for (const tag of ['1', '2']) await skopeoCopy(app1.reference, `docker://${upstream.host}/library/app:${tag}`);
    const tool = await buildImageLayout(path.join(work, 'tool'), { tag: '1', layers: 1, layerSize: 4096, seed: 'mirror-tool' });
    await skopeoCopy(tool.reference, `docker://${upstream.host}/team/tool:1`);
    // A Docker Hub user may be called "proxy": on a mirror, proxy/tool is that user's, not a cache prefix.
    await skopeoCopy(tool.reference, `docker://${upstream.host}/proxy/tool:1`);

    app = await createTestApp({ configuration: dockerHubConfiguration(upstream) });
    main = new RegistryClient(app);
    mirror = new RegistryClient({ url: app.mirrorUrl(0) });
    hosted = await main.pushImage('library/app', { tag: '1' });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('[[mirror]] listen: /v2/<name> is proxy/docker.io/<name>', () => {
    test('GET /v2/ answers 200 with the API version', async () => {
      const response = await mirror.fetch('/v2/');
      await expectStatus(response, 200);
      expect(response.headers.get('Docker-Distribution-API-Version')).toBe('registry/2.0');
    });

    test('GET and HEAD /v2/<name>/manifests/<tag>: the upstream image, library/ added to one-component names', async () => {
      for (const name of ['library/app', 'app', 'proxy/docker.io/library/app', 'proxy/registry-1.docker.io/app']) {
        const { response, body } = await mirror.getManifest(name, '1');
        await expectStatus(response, 200);
        expect(response.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);
        expect(body.equals(app1.manifest)).toBe(true);
      }
      const head = await mirror.getManifest('library/app', app1.manifestDigest, { method: 'HEAD' });
      await expectStatus(head.response, 200);
      expect(head.response.headers.get('Content-Length')).toBe(String(app1.manifest.length));
    });

    test('a blob pulled through the mirror is a cache hit through proxy/docker.io, and the other way round', async () => {
      const [first, second] = app1.layerDigests;
      const viaMirror = await mirror.getBlob('library/app', first);
      await expectStatus(viaMirror.response, 200);
      expect(await blobGets(upstream, first)).toBe(1);
      const viaPrefix = await main.getBlob('proxy/docker.io/library/app', first);
      await expectStatus(viaPrefix.response, 200);
      expect(viaPrefix.body.equals(viaMirror.body)).toBe(true);
      expect(await blobGets(upstream, first)).toBe(1);

      await expectStatus((await main.getBlob('proxy/docker.io/app', second)).response, 200);
      await expectStatus((await mirror.getBlob('app', second)).response, 200);
      expect(await blobGets(upstream, second)).toBe(1);
    });

    test('GET /v2/<name>/tags/list names the repository without the prefix, in the body and the Link', async () => {
      const response = await mirror.fetch('/v2/app/tags/list?n=1');
      await expectStatus(response, 200);
      expect(await response.json()).toEqual({ name: 'library/app', tags: ['1'] });
      expect(response.headers.get('Link')).toBe('</v2/library/app/tags/list?n=1&last=1>; rel="next"');
      const next = await mirror.fetch('/v2/library/app/tags/list?n=1&last=1');
      expect(await next.json()).toEqual({ name: 'library/app', tags: ['2'] });
    });

    test('a hosted repository is not reachable through the mirror: the name is Docker Hub’s', async () => {
      await main.pushImage('team/only-here', { tag: '1' });
      await expectErrorCode((await mirror.getManifest('team/only-here', '1')).response, 404, 'MANIFEST_UNKNOWN');
    });

    test('GET /v2/_catalog lists only proxy/docker.io/, without the prefix, paginated with n, last and Link', async () => {
      await expectStatus((await mirror.getManifest('team/tool', '1')).response, 200);
      await expectStatus((await main.getManifest('proxy/other.test/team/tool', '1')).response, 200);

      const all = await mirror.fetch('/v2/_catalog');
      expect(await all.json()).toEqual({ repositories: ['library/app', 'team/tool'] });
      const page = await mirror.fetch('/v2/_catalog?n=1');
      expect(await page.json()).toEqual({ repositories: ['library/app'] });
      expect(page.headers.get('Link')).toBe(`</v2/_catalog?n=1&last=${encodeURIComponent('library/app')}>; rel="next"`);
      // The last page ends the Link chain though other repositories (proxy/other.test/…, team/…) follow in the index.
      const last = await mirror.fetch(`/v2/_catalog?n=1&last=${encodeURIComponent('library/app')}`);
      expect(await last.json()).toEqual({ repositories: ['team/tool'] });
      expect(last.headers.get('Link')).toBeNull();

      const everything = (await (await main.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      expect(everything.repositories).toEqual(
        expect.arrayContaining(['library/app', 'proxy/docker.io/library/app', 'proxy/docker.io/team/tool', 'proxy/other.test/team/tool']),
      );
    });

    test.each([
      ['POST', '/v2/library/app/blobs/uploads/'],
      ['PATCH', '/v2/library/app/blobs/uploads/some-upload'],
      ['PUT', '/v2/library/app/manifests/1'],
      ['DELETE', '/v2/library/app/manifests/1'],
      ['DELETE', `/v2/library/app/blobs/sha256:${'0'.repeat(64)}`],
    ])('%s %s: 405 UNSUPPORTED, naming the hosted address to push to', async (method, path) => {
      const response = await mirror.fetch(path, { method, body: method === 'PUT' || method === 'PATCH' ? '{}' : undefined });
      expect(response.headers.get('Allow')).toBe('GET, HEAD');
      const body = await expectErrorCode(response, 405, 'UNSUPPORTED');
      expect(body.errors[0].message).toBe(`${app.mirrorHost(0)} is a read-only mirror of docker.io; push to ${app.host}/library/app`);
      // Still the upstream's image, and the hosted one is untouched.
      expect((await mirror.getManifest('library/app', '1')).response.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);
      expect((await main.getManifest('library/app', '1')).response.headers.get('Docker-Content-Digest')).toBe(hosted.digest);
    });
  });

  describe('[[mirror]] listen: names under proxy/', () => {
    test('proxy/<another registry>/… and proxy/<image> are Docker Hub names there, rewritten like any other', async () => {
      const { response } = await mirror.getManifest('proxy/tool', '1');
      await expectStatus(response, 200);
      expect((await app.registry.index.listRepositories(undefined, undefined)).items).toContain('proxy/docker.io/proxy/tool');
      await expectErrorCode((await mirror.getManifest('proxy/other.test/team/tool', '1')).response, 404, 'MANIFEST_UNKNOWN');
    });
  });

  describe('?ns= on the main endpoint', () => {
    test('without ns, library/app is the hosted repository; with ns=docker.io (or an alias), the cached one', async () => {
      expect((await main.getManifest('library/app', '1')).response.headers.get('Docker-Content-Digest')).toBe(hosted.digest);
      for (const ns of ['docker.io', 'registry-1.docker.io', 'index.docker.io']) {
        const { response, body } = await main.getManifest(`library/app`, `1?ns=${ns}`);
        await expectStatus(response, 200);
        expect(response.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);
        expect(body.equals(app1.manifest)).toBe(true);
      }
      const head = await main.fetch('/v2/library/app/manifests/1?ns=docker.io', { method: 'HEAD' });
      expect(head.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);
    });

    test('blobs and tags/list with ns=docker.io come from the cache', async () => {
      const [layer] = app1.layerDigests;
      await expectErrorCode((await main.getBlob('library/app', layer)).response, 404, 'BLOB_UNKNOWN');
      const blob = await main.fetch(`/v2/library/app/blobs/${layer}?ns=docker.io`);
      await expectStatus(blob, 200);
      expect(blob.headers.get('Docker-Content-Digest')).toBe(layer);

      const tags = await main.fetch('/v2/app/tags/list?ns=docker.io');
      expect(await tags.json()).toEqual({ name: 'proxy/docker.io/library/app', tags: ['1', '2'] });
    });

    test('a name that already starts with proxy/ is served unchanged (containerd with override_path)', async () => {
      const { response } = await main.getManifest('proxy/docker.io/library/app', '1?ns=docker.io');
      expect(response.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);
    });

    test('an ns the cache would not serve changes nothing', async () => {
      const { response } = await main.getManifest('library/app', '1?ns=not-a-registry');
      expect(response.headers.get('Docker-Content-Digest')).toBe(hosted.digest);
    });

    test('writes ignore ns: a push with ?ns= goes to the hosted repository', async () => {
      const pushed = await main.putManifest('library/app', '3?ns=docker.io', hosted.content);
      expect(pushed.digest).toBe(hosted.digest);
      expect((await main.getManifest('library/app', '3')).response.status).toBe(200);
    });
  });

  describe('[[mirror]] host = "hub.example.com" on the main listener', () => {
    test('GET with Host: hub.example.com (any port, any case) is the mirror', async () => {
      for (const host of ['hub.example.com', 'hub.example.com:8443', 'HUB.Example.com']) {
        const response = await requestWithHost(`${app.url}/v2/app/manifests/1`, host);
        expect(response.status).toBe(200);
        expect(response.headers['docker-content-digest']).toBe(app1.manifestDigest);
      }
      const catalog = await requestWithHost(`${app.url}/v2/_catalog`, 'hub.example.com');
      const { repositories } = JSON.parse(catalog.body) as { repositories: string[] };
      expect(repositories).toEqual(expect.arrayContaining(['library/app', 'team/tool']));
      expect(repositories.filter((name) => name.startsWith('proxy/docker.io/') || name.startsWith('proxy/other.test/'))).toEqual([]);
      expect((await requestWithHost(`${app.url}/v2/`, 'hub.example.com')).status).toBe(200);
    });

    test('another Host is the main endpoint', async () => {
      const response = await requestWithHost(`${app.url}/v2/library/app/manifests/1`, 'registry.example.com');
      expect(response.headers['docker-content-digest']).toBe(hosted.digest);
    });

    test('POST is refused; without public_url the hosted address is not known, and the message says so', async () => {
      const response = await requestWithHost(`${app.url}/v2/library/app/blobs/uploads/`, 'hub.example.com', 'POST');
      expect(response.status).toBe(405);
      expect(errorCodes(response.body)).toEqual(['UNSUPPORTED']);
      expect(JSON.parse(response.body).errors[0].message).toBe(
        "hub.example.com is a read-only mirror of docker.io; push to the registry's main address (not hub.example.com)",
      );
    });

    test('X-Forwarded-Host is ignored without trust_proxy', async () => {
      const response = await main.fetch('/v2/library/app/manifests/1', { headers: { 'X-Forwarded-Host': 'hub.example.com' } });
      expect(response.headers.get('Docker-Content-Digest')).toBe(hosted.digest);
    });
  });

  describe('trust_proxy = true behind a reverse proxy with public_url', () => {
    let proxied: TestApp;
    let client: RegistryClient;
    beforeAll(async () => {
      proxied = await createTestApp({
        configuration: `trust_proxy = true\npublic_url = "https://registry.example.com"\n${dockerHubConfiguration(upstream)}`,
      });
      client = new RegistryClient(proxied);
    });
    afterAll(() => proxied?.close());

    test('X-Forwarded-Host: hub.example.com is the mirror; a push is sent to public_url', async () => {
      const forwarded = { 'X-Forwarded-Host': 'hub.example.com' };
      const response = await client.fetch('/v2/app/manifests/1', { headers: forwarded });
      await expectStatus(response, 200);
      expect(response.headers.get('Docker-Content-Digest')).toBe(app1.manifestDigest);

      const refused = await client.fetch('/v2/team/app/blobs/uploads/', { method: 'POST', headers: forwarded });
      const body = await expectErrorCode(refused, 405, 'UNSUPPORTED');
      expect(body.errors[0].message).toBe('hub.example.com is a read-only mirror of docker.io; push to registry.example.com/team/app');
    });

    test('public_url: Locations on the main endpoint are absolute, and responses without one are unharmed', async () => {
      const upload = await client.fetch('/v2/team/app/blobs/uploads/', { method: 'POST' });
      await expectStatus(upload, 202);
      expect(upload.headers.get('Location')).toMatch(/^https:\/\/registry\.example\.com\/v2\/team\/app\/blobs\/uploads\/./);
      await expectStatus(await client.fetch('/v2/'), 200);
    });
  });
});

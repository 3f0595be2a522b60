import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { digestOf } from '../../src/oci/digest';
import { buildImageLayout } from '../helpers/oci-image';
import { skopeoCopy, skopeoInspect, skopeoListTags } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/** Upstream requests for `/v2/<remoteName>/blobs/<digest>` with the given method. */
async function upstreamRequests(upstream: UpstreamRegistry, method: string, pathPart: string): Promise<number> {
  return (await upstream.accessLog()).filter((entry) => entry.method === method && entry.uri.includes(pathPart)).length;
}

function proxyConfiguration(upstream: UpstreamRegistry, extra = ''): string {
  return `
[proxy]
tag_ttl = "2s"
timeout = "5s"

[[proxy.upstreams]]
host = "upstream.test"
url = "${upstream.url}"
${extra}
`;
}

describe('pull-through cache in front of an anonymous upstream (docker-registry)', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let work: string;
  const proxied = (name: string) => `docker://${app.host}/proxy/upstream.test/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-e2e-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createTestApp({ configuration: proxyConfiguration(upstream) });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('a cold pull fetches every blob from the upstream exactly once; a warm pull fetches none', async () => {
    const image = await buildImageLayout(path.join(work, 'app'), { tag: '1', layers: 3, layerSize: 200_000, seed: 'app' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/app:1`);

    const cold = path.join(work, 'cold');
    await skopeoCopy(proxied('team/app:1'), `dir:${cold}`);
    expect(fs.readFileSync(path.join(cold, 'manifest.json')).equals(image.manifest)).toBe(true);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      expect(digestOf(fs.readFileSync(path.join(cold, digest.slice(7))))).toBe(digest);
      expect(await upstreamRequests(upstream, 'GET', `/v2/team/app/blobs/${digest}`)).toBe(1);
    }

    await skopeoCopy(proxied('team/app:1'), `dir:${path.join(work, 'warm')}`);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      expect(await upstreamRequests(upstream, 'GET', `/v2/team/app/blobs/${digest}`)).toBe(1);
    }
  });

  test("a cold blob GET learns the size from the upstream's GET: no HEAD before it", async () => {
    const image = await buildImageLayout(path.join(work, 'sized'), { tag: '1', layers: 1, layerSize: 300_000, seed: 'sized' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/sized:1`);
    const [layer] = image.layerDigests;
    // skopeo's push HEADs the upstream's blobs first; only what comes after counts.
    const headsBefore = await upstreamRequests(upstream, 'HEAD', `/v2/team/sized/blobs/${layer}`);
    const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/sized/blobs/${layer}`);
    expect(response.status).toBe(200);
    expect(digestOf(Buffer.from(await response.arrayBuffer()))).toBe(layer);
    expect(await upstreamRequests(upstream, 'GET', `/v2/team/sized/blobs/${layer}`)).toBe(1);
    expect(await upstreamRequests(upstream, 'HEAD', `/v2/team/sized/blobs/${layer}`)).toBe(headsBefore);
  });

  test('16 concurrent pulls of one cold blob share one upstream download', async () => {
    const image = await buildImageLayout(path.join(work, 'big'), { tag: '1', layers: 1, layerSize: 8 * 1024 * 1024, seed: 'big' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/big:1`);
    const [layer] = image.layerDigests;

    const pulls = Array.from({ length: 16 }, async () => {
      const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/big/blobs/${layer}`);
      expect(response.status).toBe(200);
      const hash = createHash('sha256');
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
      return `sha256:${hash.digest('hex')}`;
    });
    expect(new Set(await Promise.all(pulls))).toEqual(new Set([layer]));
    expect(await upstreamRequests(upstream, 'GET', `/v2/team/big/blobs/${layer}`)).toBe(1);
  });

  test('everything cached is served with the upstream stopped: by tag, by digest, tags list, ranges', async () => {
    const image = await buildImageLayout(path.join(work, 'offline'), { tag: '1', layers: 2, layerSize: 50_000, seed: 'offline' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/offline:1`);
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/offline:2`);
    await skopeoCopy(proxied('team/offline:1'), `dir:${path.join(work, 'offline-1')}`);
    expect(await skopeoListTags(proxied('team/offline'))).toEqual(['1', '2']);

    await upstream.stop();
    try {
      // Past tag_ttl, so the tag would be revalidated: the upstream is down, the cached digest is served.
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const pulled = path.join(work, 'offline-2');
      await skopeoCopy(proxied('team/offline:1'), `dir:${pulled}`);
      expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
      expect((await skopeoInspect(proxied(`team/offline@${image.manifestDigest}`))).Digest).toBe(image.manifestDigest);
      expect(await skopeoListTags(proxied('team/offline'))).toEqual(['1', '2']);

      const ranged = await fetch(`${app.url}/v2/proxy/upstream.test/team/offline/blobs/${image.layerDigests[0]}`, {
        headers: { Range: 'bytes=0-9' },
      });
      expect(ranged.status).toBe(206);
      expect(Buffer.from(await ranged.arrayBuffer()).length).toBe(10);

      // What was never cached cannot be served: a clean 503 in the registry's error shape.
      const missing = await fetch(`${app.url}/v2/proxy/upstream.test/team/never/manifests/1`);
      expect(missing.status).toBe(503);
      expect(((await missing.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('UNAVAILABLE');
    } finally {
      await upstream.start();
    }
  });

  test('a tag moved upstream is seen after tag_ttl, revalidated with a HEAD', async () => {
    const first = await buildImageLayout(path.join(work, 'moving-1'), { tag: 'v', layers: 1, layerSize: 1000, seed: 'moving-1' });
    const second = await buildImageLayout(path.join(work, 'moving-2'), { tag: 'v', layers: 1, layerSize: 1000, seed: 'moving-2' });
    await skopeoCopy(first.reference, `docker://${upstream.host}/team/moving:v`);
    expect((await skopeoInspect(proxied('team/moving:v'))).Digest).toBe(first.manifestDigest);

    await skopeoCopy(second.reference, `docker://${upstream.host}/team/moving:v`);
    // Within tag_ttl the cached digest stands.
    expect((await skopeoInspect(proxied('team/moving:v'))).Digest).toBe(first.manifestDigest);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect((await skopeoInspect(proxied('team/moving:v'))).Digest).toBe(second.manifestDigest);
    expect(await upstreamRequests(upstream, 'HEAD', '/v2/team/moving/manifests/v')).toBeGreaterThanOrEqual(1);
  });

  test('pushes and deletes under proxy/ are refused with UNSUPPORTED; hosted repositories work beside the cache', async () => {
    const upload = await fetch(`${app.url}/v2/proxy/upstream.test/team/app/blobs/uploads/`, { method: 'POST' });
    expect(upload.status).toBe(405);
    const body = (await upload.json()) as { errors: Array<{ code: string; message: string }> };
    expect(body.errors[0].code).toBe('UNSUPPORTED');
    expect(body.errors[0].message).toMatch(/read-only cache/);
    const deleted = await fetch(`${app.url}/v2/proxy/upstream.test/team/app/manifests/1`, { method: 'DELETE' });
    expect(deleted.status).toBe(405);

    const image = await buildImageLayout(path.join(work, 'hosted'), { tag: '1', layers: 1, layerSize: 1000, seed: 'hosted' });
    await skopeoCopy(image.reference, `docker://${app.host}/home/app:1`);
    const catalog = (await (await fetch(`${app.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual(expect.arrayContaining(['home/app', 'proxy/upstream.test/team/app']));
  });

  test('an unknown tag upstream is MANIFEST_UNKNOWN, passed on', async () => {
    const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/app/manifests/no-such-tag`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
});

describe('Docker Hub naming', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-hub-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    // Standing in for Docker Hub: any of its names configures all of them.
    app = await createTestApp({
      configuration: `[[proxy.upstreams]]\nhost = "registry-1.docker.io"\nurl = "${upstream.url}"\n`,
    });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('proxy/docker.io/alpine, proxy/index.docker.io/library/alpine and proxy/registry-1.docker.io/library/alpine are one cached image', async () => {
    const image = await buildImageLayout(path.join(work, 'alpine'), { tag: '3.20', layers: 1, layerSize: 5000, seed: 'alpine' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/library/alpine:3.20`);
    for (const name of ['docker.io/alpine', 'index.docker.io/library/alpine', 'registry-1.docker.io/library/alpine']) {
      expect((await skopeoInspect(`docker://${app.host}/proxy/${name}:3.20`)).Digest).toBe(image.manifestDigest);
    }
    expect(await upstreamRequests(upstream, 'GET', `/v2/library/alpine/blobs/${image.configDigest}`)).toBe(1);
    const catalog = (await (await fetch(`${app.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toContain('proxy/docker.io/library/alpine');
  });
});

describe.each(['htpasswd', 'token'] as const)('pull-through cache in front of an upstream with %s auth', (auth) => {
  let upstream: UpstreamRegistry;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), `proxy-${auth}-`));
    upstream = await startUpstreamRegistry({ auth, anonymousPull: false });
    const image = await buildImageLayout(path.join(work, 'private'), { tag: '1', layers: 2, layerSize: 20_000, seed: auth });
    const { username, password } = upstream.credentials!;
    await skopeoCopy(image.reference, `docker://${upstream.host}/team/private:1`, ['--dest-creds', `${username}:${password}`]);
  });
  afterAll(async () => {
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('with the configured credentials the image pulls; our client never sees them', async () => {
    const { username, password } = upstream.credentials!;
    const app = await createTestApp({
      configuration: proxyConfiguration(upstream, `username = "${username}"\npassword = "${password}"`),
    });
    const tokensBefore = upstream.tokenServer?.issued() ?? 0;
    try {
      const pulled = path.join(work, 'pulled');
      await skopeoCopy(`docker://${app.host}/proxy/upstream.test/team/private:1`, `dir:${pulled}`);
      expect(fs.existsSync(path.join(pulled, 'manifest.json'))).toBe(true);
      const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/private/manifests/1`);
      expect(JSON.stringify([...response.headers])).not.toContain(password);
      if (auth === 'token') {
        // One token for the repository's pull scope, reused for the manifest and every blob.
        expect(upstream.tokenServer!.issued() - tokensBefore).toBe(1);
      }
    } finally {
      await app.close();
    }
  });

  test('without credentials the upstream refuses, and the client gets DENIED', async () => {
    const app = await createTestApp({ configuration: proxyConfiguration(upstream) });
    try {
      const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/private/manifests/1`);
      expect(response.status).toBe(403);
      expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('DENIED');
    } finally {
      await app.close();
    }
  });
});

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { digestOf } from '../../src/oci/digest';
import { Containerd, startContainerd } from '../helpers/containerd';
import { Dockerd, startDockerd } from '../helpers/dockerd';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { Radosgw, startRadosgw } from '../helpers/radosgw';
import { filesUnder, waitFor } from '../helpers/files';
import { readDirTransport, skopeoCopy, skopeoDelete } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { MAIN } from '../helpers/server-process';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * `[storage] backend = "s3"` with real clients, on Ceph's RADOS Gateway (test/helpers/radosgw.ts): pushes
 * and pulls, the pull-through cache, garbage collection, and `redirect = true`, where clients fetch blobs
 * from the bucket through presigned URLs. A docker-registry on loopback is the cache's upstream.
 */
jest.setTimeout(300_000);

let gateway: Radosgw;
let upstream: UpstreamRegistry;
let work: string;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 's3-storage-'));
  [gateway, upstream] = await Promise.all([startRadosgw(), startUpstreamRegistry({ auth: 'none' })]);
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const UPSTREAM_CONFIGURATION = () => `[[proxy.upstreams]]\nhost = "registry-1.docker.io"\nurl = "${upstream.url}"\n`;

async function s3App(bucket: string, overrides: Record<string, string> = {}, storageDir?: string): Promise<TestApp> {
  await gateway.createBucket(bucket);
  return createTestApp({ overrides: { ...gateway.registrySettings(bucket, 'ci/'), ...overrides }, configuration: UPSTREAM_CONFIGURATION(), storageDir });
}

const blobKey = (store: 'registry' | 'proxy', digest: string) => `ci/${store}/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;

describe('the registry storing in an S3 bucket, streaming blobs itself', () => {
  const bucket = 'streamed';
  let app: TestApp;
  let image: BuiltImage;

  beforeAll(async () => {
    app = await s3App(bucket, { 'gc.grace': '0' });
    image = await buildImageLayout(path.join(work, 'pushed'), { tag: 'v1', layers: 3, layerSize: 400_000, seed: 's3-pushed' });
    await skopeoCopy(image.reference, `docker://${app.host}/team/app:v1`);
  });
  afterAll(() => app?.close());

  test('skopeo pushes and pulls back byte-identical; blobs and the manifest are objects, not files', async () => {
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(`docker://${app.host}/team/app:v1`, `dir:${pulled}`);
    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(image.manifest)).toBe(true);
    for (const digest of [image.configDigest, ...image.layerDigests]) expect(digestOf(files[digest.slice(7)])).toBe(digest);

    const keys = await gateway.objectKeys(bucket);
    for (const digest of [image.manifestDigest, image.configDigest, ...image.layerDigests]) expect(keys).toContain(blobKey('registry', digest));
    // The storage directories only staged content on its way into the bucket.
    expect(filesUnder(app.config.registry_storage)).toEqual([]);
    expect(filesUnder(app.config.temporary_registry_storage)).toEqual([]);
  });

  test('a blob GET streams the object, whole or a range of it, with the spec\'s headers', async () => {
    const layer = image.layerDigests[1];
    const whole = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { redirect: 'manual' });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('docker-content-digest')).toBe(layer);
    expect(whole.headers.get('content-length')).toBe(String(image.layerSizes[1]));
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(digestOf(bytes)).toBe(layer);
    const part = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { headers: { Range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${image.layerSizes[1]}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(1000, 2000))).toBe(true);
    const outside = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { headers: { Range: `bytes=${image.layerSizes[1]}-` } });
    expect(outside.status).toBe(416);
    expect(((await outside.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('RANGE_INVALID');
  });

  test('/readyz asks the bucket, and names it when the bucket does not answer', async () => {
    const ready = await fetch(`${app.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks.object_store).toBe('ok');

    const wrongKey = await s3App('wrong-key', { 'storage.s3.secret_access_key': 'not-the-secret' });
    try {
      const answer = await fetch(`${wrongKey.url}/readyz`);
      expect(answer.status).toBe(503);
      const body = (await answer.json()) as { errors: Array<{ code: string; detail: { checks: Record<string, string> } }> };
      expect(body.errors[0].code).toBe('UNAVAILABLE');
      expect(body.errors[0].detail.checks.object_store).toMatch(/^not answering: object store s3:\/\/wrong-key\/ci\/registry\/: SignatureDoesNotMatch \(HTTP 403\)/);
      expect(body.errors[0].detail.checks.database).toBe('ok');
    } finally {
      await wrongKey.close();
    }
  });

  test('podman pulls what skopeo pushed', async () => {
    const podman: Podman = createPodman();
    try {
      await podman.run(['pull', '--tls-verify=false', `${app.host}/team/app:v1`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc', `${app.host}/team/app:v1`])).toBe(image.configDigest);
    } finally {
      await podman.cleanup();
    }
  });

  test('the cache keeps upstream content in the bucket and serves it with the upstream down', async () => {
    const cached = await buildImageLayout(path.join(work, 'upstream'), { tag: '1', layers: 2, layerSize: 300_000, seed: 's3-cached' });
    await skopeoCopy(cached.reference, `docker://${upstream.host}/library/cached:1`);
    const through = `docker://${app.host}/proxy/docker.io/library/cached:1`;
    await skopeoCopy(through, `dir:${path.join(work, 'cold')}`);
    // The last byte reaches the client once verified, before the staging file has gone up and away.
    await waitFor(() => filesUnder(app.config.proxy_storage).length === 0);
    const keys = await gateway.objectKeys(bucket);
    for (const digest of [cached.manifestDigest, cached.configDigest, ...cached.layerDigests]) expect(keys).toContain(blobKey('proxy', digest));

    await upstream.stop();
    try {
      const warm = path.join(work, 'warm');
      await skopeoCopy(through, `dir:${warm}`);
      for (const digest of cached.layerDigests) expect(digestOf(readDirTransport(warm)[digest.slice(7)])).toBe(digest);
    } finally {
      await upstream.start();
    }
  });

  test('garbage collection deletes the objects nothing references and keeps the rest', async () => {
    const doomed = await buildImageLayout(path.join(work, 'doomed'), { tag: 'v1', layers: 2, layerSize: 200_000, seed: 's3-doomed' });
    await skopeoCopy(doomed.reference, `docker://${app.host}/team/doomed:v1`);
    await skopeoDelete(`docker://${app.host}/team/doomed:v1`);
    const report = await app.registry.collectGarbage();
    const removed = report.blobs.map((blob) => blob.digest);
    for (const digest of [doomed.manifestDigest, ...doomed.layerDigests]) expect(removed).toContain(digest);
    const keys = await gateway.objectKeys(bucket);
    for (const digest of doomed.layerDigests) expect(keys).not.toContain(blobKey('registry', digest));
    for (const digest of image.layerDigests) expect(keys).toContain(blobKey('registry', digest));
    // What was kept still pulls.
    await skopeoCopy(`docker://${app.host}/team/app:v1`, `dir:${path.join(work, 'after-gc')}`);
    expect(await app.registry.verify()).toMatchObject({ missing: [], corrupt: [] });
  });
});

describe('the registry storing in an S3 bucket with redirect = true', () => {
  const bucket = 'redirected';
  let app: TestApp;
  let image: BuiltImage;

  beforeAll(async () => {
    app = await s3App(bucket, { 'storage.s3.redirect': 'true' });
    image = await buildImageLayout(path.join(work, 'redirected'), { tag: 'v1', layers: 2, layerSize: 500_000, seed: 's3-redirect' });
    await skopeoCopy(image.reference, `docker://${app.host}/team/app:v1`);
  });
  afterAll(() => app?.close());

  /** The layer GETs the gateway served from `store`'s keys since `since` lines of its log. */
  async function layerGetsAtGateway(since: number, store: 'registry' | 'proxy', layers: string[]): Promise<string[]> {
    const lines = (await gateway.requestLog()).slice(since);
    return layers.filter((digest) => lines.some((line) => line.includes(`"GET /${bucket}/${blobKey(store, digest)}?`) && / 20[06] /.test(line)));
  }

  test('a blob GET is a 307 to a presigned URL that serves it and its ranges; HEAD is answered by the registry', async () => {
    const layer = image.layerDigests[0];
    const answer = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { redirect: 'manual' });
    expect(answer.status).toBe(307);
    expect(answer.headers.get('docker-content-digest')).toBe(layer);
    const location = answer.headers.get('location')!;
    expect(location.startsWith(`${gateway.endpoint}/${bucket}/${blobKey('registry', layer)}?`)).toBe(true);
    expect(digestOf(Buffer.from(await (await fetch(location)).arrayBuffer()))).toBe(layer);
    const followed = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { headers: { Range: 'bytes=100-199' } });
    expect(followed.status).toBe(206);
    expect((await followed.arrayBuffer()).byteLength).toBe(100);

    const head = await fetch(`${app.url}/v2/team/app/blobs/${layer}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(image.layerSizes[0]));
    const missing = await fetch(`${app.url}/v2/team/app/blobs/sha256:${'0'.repeat(64)}`, { redirect: 'manual' });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('BLOB_UNKNOWN');
  });

  test('skopeo and podman follow the redirects: the layers come from the bucket', async () => {
    let since = (await gateway.requestLog()).length;
    await skopeoCopy(`docker://${app.host}/team/app:v1`, `dir:${path.join(work, 'redirect-skopeo')}`);
    expect(await layerGetsAtGateway(since, 'registry', image.layerDigests)).toEqual(image.layerDigests);

    since = (await gateway.requestLog()).length;
    const podman = createPodman();
    try {
      await podman.run(['pull', '--tls-verify=false', `${app.host}/team/app:v1`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc', `${app.host}/team/app:v1`])).toBe(image.configDigest);
    } finally {
      await podman.cleanup();
    }
    expect(await layerGetsAtGateway(since, 'registry', image.layerDigests)).toEqual(image.layerDigests);
  });

  test('containerd follows the redirects', async () => {
    let containerd: Containerd | undefined;
    try {
      containerd = await startContainerd();
      const hostsDir = path.join(work, 'certs.d');
      fs.mkdirSync(path.join(hostsDir, app.host), { recursive: true });
      fs.writeFileSync(
        path.join(hostsDir, app.host, 'hosts.toml'),
        [`server = "http://${app.host}"`, `[host."http://${app.host}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
      );
      const since = (await gateway.requestLog()).length;
      await containerd.pull(`${app.host}/team/app:v1`, hostsDir);
      expect(await layerGetsAtGateway(since, 'registry', image.layerDigests)).toEqual(image.layerDigests);
    } finally {
      await containerd?.stop();
    }
  });

  test('Docker Engine follows the redirects', async () => {
    let dockerd: Dockerd | undefined;
    try {
      dockerd = await startDockerd({ insecureRegistries: [app.host] });
      const since = (await gateway.requestLog()).length;
      await dockerd.docker(['pull', `${app.host}/team/app:v1`]);
      const { stdout } = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', `${app.host}/team/app:v1`]);
      expect(stdout.trim()).toBe(image.configDigest);
      expect(await layerGetsAtGateway(since, 'registry', image.layerDigests)).toEqual(image.layerDigests);
    } finally {
      await dockerd?.stop();
    }
  });

  test('a cached blob is redirected to the bucket too, once it is stored', async () => {
    const cached = await buildImageLayout(path.join(work, 'redirect-upstream'), { tag: '2', layers: 2, layerSize: 300_000, seed: 's3-redirect-cached' });
    await skopeoCopy(cached.reference, `docker://${upstream.host}/library/redirected:2`);
    const through = `docker://${app.host}/proxy/docker.io/library/redirected:2`;
    // Cold: streamed by the registry as it arrives from the upstream.
    await skopeoCopy(through, `dir:${path.join(work, 'redirect-cold')}`);
    const since = (await gateway.requestLog()).length;
    await skopeoCopy(through, `dir:${path.join(work, 'redirect-warm')}`);
    expect(await layerGetsAtGateway(since, 'proxy', cached.layerDigests)).toEqual(cached.layerDigests);
  });
});

describe('npm run migrate-storage: a filesystem registry moved into a bucket', () => {
  test('what was pushed and cached on disk pulls from the bucket after the copy; a second run copies nothing', async () => {
    const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'migrate-storage-'));
    try {
      const onDisk = await createTestApp({ storageDir, configuration: UPSTREAM_CONFIGURATION() });
      const image = await buildImageLayout(path.join(work, 'migrated'), { tag: 'v1', layers: 2, layerSize: 300_000, seed: 's3-migrated' });
      await skopeoCopy(image.reference, `docker://${onDisk.host}/team/migrated:v1`);
      const cached = await buildImageLayout(path.join(work, 'migrated-cached'), { tag: '3', layers: 1, layerSize: 100_000, seed: 's3-migrated-cached' });
      await skopeoCopy(cached.reference, `docker://${upstream.host}/library/migrated:3`);
      await skopeoCopy(`docker://${onDisk.host}/proxy/docker.io/library/migrated:3`, `dir:${path.join(work, 'migrated-cold')}`);
      // The server stopped, its data kept (close would remove a directory it made; this one is the test's).
      await onDisk.close();

      const bucket = 'migrated';
      await gateway.createBucket(bucket);
      const flags = Object.entries(gateway.registrySettings(bucket, 'ci/')).flatMap(([key, value]) => [`--${key}`, value]);
      const migrate = () => spawnSync(process.execPath, [MAIN, 'migrate-storage', ...flags], { cwd: storageDir, encoding: 'utf8', timeout: 120_000 });
      const first = migrate();
      expect(first.stderr.replace(/\(node:\d+\) Warning: NodeVersionSupportWarning[^]*?trace-warnings[^\n]*\n/, '')).toBe('');
      expect(first.status).toBe(0);
      // The image's manifest, config and 2 layers; the cached image's manifest, config and layer.
      expect(first.stdout).toMatch(/^migrate-storage: 7 blobs copied \(.+\), 0 already there$/m);
      expect(migrate().stdout).toMatch(/^migrate-storage: 0 blobs copied \(0 B\), 7 already there$/m);

      // Only the bucket now: the files go, and the upstream is down.
      fs.rmSync(path.join(storageDir, 'storage', 'registry', 'blobs'), { recursive: true });
      fs.rmSync(path.join(storageDir, 'storage', 'proxy', 'blobs'), { recursive: true });
      await upstream.stop();
      const onBucket = await createTestApp({ storageDir, overrides: gateway.registrySettings(bucket, 'ci/'), configuration: UPSTREAM_CONFIGURATION() });
      try {
        const pulled = path.join(work, 'migrated-pulled');
        await skopeoCopy(`docker://${onBucket.host}/team/migrated:v1`, `dir:${pulled}`);
        expect(readDirTransport(pulled)['manifest.json'].equals(image.manifest)).toBe(true);
        await skopeoCopy(`docker://${onBucket.host}/proxy/docker.io/library/migrated:3`, `dir:${path.join(work, 'migrated-warm')}`);
      } finally {
        await onBucket.close();
        await upstream.start();
      }
    } finally {
      fs.rmSync(storageDir, { recursive: true, force: true });
    }
  });
});

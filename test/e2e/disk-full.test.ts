/**
 * Issue 20: what a client sees when the disk fills, on a tmpfs of a few MiB the test mounts for itself
 * (as root, which CI is): the spec's error shape with 507 naming the full store, no partial file left
 * or visible, the index intact, reads served throughout, and pushes working again once space is freed.
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { blobPath, incomingDirectory } from '../../src/storage/paths';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { createTestApp, TestApp } from '../helpers/test-app';
import { RegistryClient, digestOf, expectErrorCode } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { DOCKER_TIMEOUT_MS, startDockerd } from '../helpers/dockerd';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const MiB = 1024 * 1024;

describe('a full disk (tmpfs of 8 MiB)', () => {
  let mountPoint: string;
  let app: TestApp;
  let client: RegistryClient;
  let kept: { name: string; digest: string; content: Buffer };
  const filler = () => path.join(mountPoint, 'filler');

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-disk-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
    app = await createTestApp({ storageDir: mountPoint });
    client = new RegistryClient(app);
    const content = randomBytes(64 * 1024);
    kept = { name: 'team/kept', digest: (await client.pushBlob('team/kept', content)).digest, content };
  });

  afterAll(async () => {
    await app?.close();
    if (mountPoint) {
      execFileSync('umount', [mountPoint]);
      fs.rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  afterEach(() => fs.rmSync(filler(), { force: true }));

  /** Files in the upload store with bytes in them: a failed push must not leave any. */
  const uploadBytes = () =>
    fs
      .readdirSync(app.config.temporary_registry_storage, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .reduce((sum, entry) => sum + fs.statSync(path.join(entry.parentPath ?? entry.path, entry.name)).size, 0);

  const expectIndexIntact = () => {
    const db = new Database(app.config.database, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
  };

  const expectReadsServed = async () => {
    const { response, body } = await client.getBlob(kept.name, kept.digest);
    expect(response.status).toBe(200);
    expect(body.equals(kept.content)).toBe(true);
  };

  /** Fills the file system until a write fails, leaving `room` bytes free. */
  const fill = (room = 0) => {
    const handle = fs.openSync(filler(), 'w');
    try {
      const block = Buffer.alloc(64 * 1024);
      for (;;) fs.writeSync(handle, block);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(handle);
    }
    if (room > 0) fs.truncateSync(filler(), Math.max(0, fs.statSync(filler()).size - room));
  };

  test('a monolithic push that does not fit: 507 naming the upload store, the session and its bytes gone, then a small push works', async () => {
    const big = randomBytes(12 * MiB);
    const session = await client.startUpload('team/big');
    const response = await client.closeUpload(session, digestOf(big), big);
    const body = await expectErrorCode(response, 507, 'INSUFFICIENT_STORAGE');
    expect(body.errors[0].message).toContain('upload storage is full');
    expect(uploadBytes()).toBe(0);
    expect((await client.fetch(session.location)).status).toBe(404);
    expectIndexIntact();
    await expectReadsServed();
    // The space came back: a push that fits goes through.
    await client.pushBlob('team/small', randomBytes(1024));
  });

  test('a chunked push that does not fit: 507, the session keeps the chunks it acknowledged, and resumes once there is room', async () => {
    const first = randomBytes(MiB);
    const rest = randomBytes(12 * MiB);
    let session = await client.pushChunk(await client.startUpload('team/chunked'), first);
    const response = await client.patchChunk(session, rest);
    const body = await expectErrorCode(response, 507, 'INSUFFICIENT_STORAGE');
    expect(body.errors[0].message).toContain('upload storage is full');
    const status = await client.fetch(session.location);
    expect(status.status).toBe(204);
    expect(status.headers.get('Range')).toBe(`0-${MiB - 1}`);
    expect(uploadBytes()).toBe(MiB);
    expectIndexIntact();
    await expectReadsServed();
    // A chunk that fits continues the same session.
    const last = randomBytes(MiB);
    session = await client.pushChunk(session, last);
    await client.finishUpload('team/chunked', session, digestOf(Buffer.concat([first, last])));
  });

  test('a manifest push on a full disk: 507 naming the full store, nothing visible; after freeing space the same push is 201', async () => {
    const config = await client.pushBlob('team/app', Buffer.from('{"architecture":"amd64","os":"linux"}'));
    const layer = await client.pushBlob('team/app', randomBytes(256));
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] };
    fill();
    const response = await client.pushManifest('team/app', 'v1', manifest);
    const body = await expectErrorCode(response, 507, 'INSUFFICIENT_STORAGE');
    expect(body.errors[0].message).toMatch(/(hosted storage|index database) is full/);
    expect((await client.fetch('/v2/team/app/manifests/v1', { headers: { Accept: manifest.mediaType } })).status).toBe(404);
    await expectReadsServed();
    fs.rmSync(filler());
    expectIndexIntact();
    expect((await client.pushManifest('team/app', 'v1', manifest)).status).toBe(201);
    expect((await client.fetch('/v2/team/app/manifests/v1', { headers: { Accept: manifest.mediaType } })).status).toBe(200);
  });

  test('/readyz: every store on the 8 MiB file system is below min_free_space (100 MiB by default) and named', async () => {
    const response = await client.fetch('/readyz');
    const body = (await expectErrorCode(response, 503, 'UNAVAILABLE')) as { errors: Array<{ detail?: { checks?: Record<string, string> } }> };
    const checks = body.errors[0].detail!.checks!;
    for (const store of ['registry_storage', 'temporary_registry_storage', 'proxy_storage', 'database_directory']) {
      expect(checks[store]).toMatch(/^low on space: .* free, below min_free_space \(100\.0 MiB\)$/);
    }
  });

  test('skopeo: a push that does not fit fails at once saying 507 Insufficient Storage; after that a push and a pull that fit work', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-disk-full-skopeo-'));
    try {
      const large = await buildImageLayout(path.join(work, 'large'), { tag: '1', layers: 1, layerSize: 10 * MiB, seed: 'disk-full-large' });
      // containers/image (skopeo, podman) and docker read error bodies of 4xx answers only: for a 5xx they
      // print the status line, which says what is wrong, and stop without retrying.
      await expect(skopeoCopy(large.reference, `docker://${app.host}/team/large:1`)).rejects.toThrow(/507 Insufficient Storage/);
      expect(uploadBytes()).toBe(0);
      const small = await buildImageLayout(path.join(work, 'small'), { tag: '1', layers: 1, layerSize: 100_000, seed: 'disk-full-small' });
      await skopeoCopy(small.reference, `docker://${app.host}/team/small:1`);
      await skopeoCopy(`docker://${app.host}/team/small:1`, `dir:${path.join(work, 'pulled')}`);
      expect(fs.readdirSync(path.join(work, 'pulled'))).toContain(small.layerDigests[0].slice('sha256:'.length));
      expectIndexIntact();
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  test('docker push: a layer that does not fit ends the push (after docker\'s retries) with the 507 status line; nothing is left behind', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-disk-full-docker-'));
    const dockerd = await startDockerd({ insecureRegistries: [app.host] });
    try {
      const large = await buildImageLayout(path.join(work, 'large'), { tag: '1', layers: 1, layerSize: 10 * MiB, seed: 'disk-full-docker' });
      const archive = path.join(work, 'large.tar');
      await skopeoCopy(large.reference, `docker-archive:${archive}:${app.host}/team/docker-large:1`);
      await dockerd.docker(['load', '-i', archive]);
      const push = dockerd.docker(['push', `${app.host}/team/docker-large:1`], { timeoutMs: DOCKER_TIMEOUT_MS });
      await expect(push).rejects.toThrow(/507 Insufficient Storage/);
      expect(uploadBytes()).toBe(0);
      expectIndexIntact();
      await expectReadsServed();
    } finally {
      await dockerd.stop();
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, DOCKER_TIMEOUT_MS);

  test('the metric counts refused writes by store', async () => {
    const metrics = await (await client.fetch('/metrics')).text();
    expect(metrics).toMatch(/registry_storage_full_total\{store="upload storage"\} [1-9]/);
  });
});

describe('[proxy] min_free: a cache on a small file system (tmpfs of 24 MiB) leaves room', () => {
  let mountPoint: string;
  let work: string;
  let upstream: UpstreamRegistry;
  let app: TestApp;
  const images: Record<string, BuiltImage> = {};
  const filler = () => path.join(mountPoint, 'filler');
  const cached = (digest: string) => fs.existsSync(blobPath(app.config.proxy_storage, digest));
  const pull = (name: string) => skopeoCopy(`docker://${app.host}/proxy/upstream.test/team/${name}:1`, `dir:${fs.mkdtempSync(path.join(work, 'pull-'))}`);

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-min-free-'));
    mountPoint = path.join(work, 'mnt');
    fs.mkdirSync(mountPoint);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mountPoint]);
    upstream = await startUpstreamRegistry({ auth: 'none' });
    for (const [name, size] of [['a', 3 * MiB], ['b', 3 * MiB], ['big', 30 * MiB]] as const) {
      images[name] = await buildImageLayout(path.join(work, `image-${name}`), { tag: '1', layers: 1, layerSize: size, seed: `min-free-${name}` });
      await skopeoCopy(images[name].reference, `docker://${upstream.host}/team/${name}:1`);
    }
    app = await createTestApp({
      storageDir: mountPoint,
      configuration: `min_free_space = "0"\n[proxy]\nmin_free = "4MiB"\n[gc]\ninterval = "0"\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`,
    });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    if (mountPoint) execFileSync('umount', [mountPoint]);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('a fill that would leave less than min_free evicts the least recently used image first; one that cannot fit at all is streamed through, not kept', async () => {
    await pull('a');
    expect(cached(images.a.layerDigests[0])).toBe(true);
    // Past the eviction's short grace for files just written.
    await new Promise((resolve) => setTimeout(resolve, 1200));

    // About 6 MiB left: b's 3 MiB layer would leave less than 4 MiB, so a goes first.
    const handle = fs.openSync(filler(), 'w');
    try {
      const block = Buffer.alloc(64 * 1024);
      for (;;) fs.writeSync(handle, block);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(handle);
    }
    fs.truncateSync(filler(), fs.statSync(filler()).size - 6 * MiB);
    await pull('b');
    expect(cached(images.b.layerDigests[0])).toBe(true);
    expect(cached(images.a.layerDigests[0])).toBe(false);

    // 30 MiB cannot be kept on this file system whatever is evicted: skopeo still gets the image, checked
    // against its digests, and nothing of it stays on disk.
    await pull('big');
    expect(cached(images.big.layerDigests[0])).toBe(false);
    expect(fs.readdirSync(incomingDirectory(app.config.proxy_storage))).toEqual([]);
    fs.rmSync(filler());
  }, 120_000);

  test('min_free = "0": a fill bigger than the free space fails the pull, leaves no partial file, and the cache goes on serving', async () => {
    const storageDir = path.join(mountPoint, 'no-min-free');
    fs.mkdirSync(storageDir);
    const plain = await createTestApp({
      storageDir,
      configuration: `min_free_space = "0"\n[proxy]\nmin_free = "0"\n[gc]\ninterval = "0"\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`,
    });
    try {
      const pullFrom = (name: string) => skopeoCopy(`docker://${plain.host}/proxy/upstream.test/team/${name}:1`, `dir:${fs.mkdtempSync(path.join(work, 'pull-'))}`);
      await expect(pullFrom('big')).rejects.toThrow();
      expect(fs.existsSync(blobPath(plain.config.proxy_storage, images.big.layerDigests[0]))).toBe(false);
      expect(fs.readdirSync(incomingDirectory(plain.config.proxy_storage))).toEqual([]);
      await pullFrom('b');
      expect(fs.existsSync(blobPath(plain.config.proxy_storage, images.b.layerDigests[0]))).toBe(true);
    } finally {
      await plain.close();
      fs.rmSync(storageDir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('garbage collection on a full disk (tmpfs of 8 MiB)', () => {
  let mountPoint: string;
  let app: TestApp;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-gc-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
    app = await createTestApp({ storageDir: mountPoint, configuration: 'min_free_space = "0"\n[gc]\ngrace = "0"\ninterval = "0"\n' });
  });

  afterAll(async () => {
    await app?.close();
    if (mountPoint) {
      execFileSync('umount', [mountPoint]);
      fs.rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  // Collecting only removes, but the index must write down what it removed: with no room left for even
  // its journal, it uses the space the registry set aside for this at start.
  test('a collection frees what nothing uses when not a byte is free, and says how much', async () => {
    const client = new RegistryClient(app);
    const loose = await client.pushBlob('team/loose', randomBytes(2 * MiB));
    // The WAL emptied, so that the collection's first write needs new space.
    await app.registry.index.sql.run('PRAGMA wal_checkpoint(TRUNCATE)');
    const filler = path.join(mountPoint, 'filler');
    const handle = fs.openSync(filler, 'w');
    try {
      const block = Buffer.alloc(4096);
      for (;;) fs.writeSync(handle, block);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(handle);
    }
    const report = await app.registry.collectGarbage();
    expect(report.blobs).toEqual([{ store: 'hosted', digest: loose.digest, size: 2 * MiB }]);
    expect(report.bytesFreed).toBe(2 * MiB);
    expect((await client.headBlob('team/loose', loose.digest)).status).toBe(404);
    fs.rmSync(filler);
  });
});

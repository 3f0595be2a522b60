import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Descriptor } from '../../src/oci/manifest';
import { Leases } from '../../src/storage/leases';
import { MediaType } from '../../src/oci/media-types';
import { digestOf, OCI_CONFIG, OCI_LAYER, RegistryClient } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';

function imageManifest(config: Descriptor, layers: Descriptor[]): object {
  return { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
}

/** Pushes a config and the given layers (pushing again what is there already), then the manifest. */
async function pushImage(client: RegistryClient, name: string, tag: string, layers: Buffer[]) {
  const config = await client.pushBlob(name, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag, name })), OCI_CONFIG);
  const layerDescriptors: Descriptor[] = [];
  for (const layer of layers) layerDescriptors.push(await client.pushBlob(name, layer, OCI_LAYER));
  const manifest = await client.putManifest(name, tag, imageManifest(config, layerDescriptors));
  return { config, layers: layerDescriptors, manifest };
}

function storedBlobs(app: TestApp, store: 'registry' | 'proxy' = 'registry'): Set<string> {
  const root = path.join(app.storageDir, 'storage', store, 'blobs', 'sha256');
  const digests = new Set<string>();
  if (!fs.existsSync(root)) return digests;
  for (const prefix of fs.readdirSync(root)) for (const hex of fs.readdirSync(path.join(root, prefix))) digests.add(`sha256:${hex}`);
  return digests;
}

describe('garbage collection of hosted content', () => {
  let app: TestApp;
  let client: RegistryClient;

  beforeEach(async () => {
    app = await createTestApp({ overrides: { 'gc.grace': '0', 'gc.interval': '0' } });
    client = new RegistryClient(app);
  });
  afterEach(() => app.close());

  test('after a delete, exactly the blobs no remaining manifest uses go, and the rest still pulls with skopeo', async () => {
    const shared = randomBytes(2000);
    const a = await pushImage(client, 'gc/app', 'a', [shared, randomBytes(1000)]);
    const b = await pushImage(client, 'gc/app', 'b', [shared, randomBytes(1000)]);
    // The same shared layer in another repository, too.
    const other = await pushImage(client, 'gc/other', 'v1', [shared]);
    const before = storedBlobs(app);

    expect((await client.fetch(`/v2/gc/app/manifests/${a.manifest.digest}`, { method: 'DELETE' })).status).toBe(202);
    const dryRun = await app.registry.collectGarbage({ dryRun: true });
    expect(storedBlobs(app)).toEqual(before);

    const report = await app.registry.collectGarbage();
    const gone = [a.manifest.digest, a.config.digest, a.layers[1].digest];
    expect(report.blobs.map((blob) => blob.digest).sort()).toEqual([...gone].sort());
    expect(dryRun.blobs.map((blob) => blob.digest).sort()).toEqual([...gone].sort());
    expect(report.bytesFreed).toBe(report.blobs.reduce((sum, blob) => sum + blob.size, 0));
    const after = storedBlobs(app);
    for (const digest of gone) expect(after.has(digest)).toBe(false);
    for (const digest of [shared, b.layers[1]].map((x) => (Buffer.isBuffer(x) ? digestOf(x) : x.digest))) {
      expect(after.has(digest)).toBe(true);
    }

    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-pull-'));
    try {
      await skopeoCopy(`docker://${app.host}/gc/app:b`, `dir:${path.join(work, 'b')}`);
      await skopeoCopy(`docker://${app.host}/gc/other:v1`, `dir:${path.join(work, 'other')}`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    expect((await client.headBlob('gc/app', a.layers[1].digest)).status).toBe(404);
    expect(other.manifest.digest).toBeDefined();
  });

  test("deleting a repository's last manifest leaves no rows and no files", async () => {
    const image = await pushImage(client, 'gc/lonely', 'v1', [randomBytes(500)]);
    await client.fetch(`/v2/gc/lonely/manifests/${image.manifest.digest}`, { method: 'DELETE' });
    await app.registry.collectGarbage();

    const count = async (sql: string) => (await app.registry.index.sql.get<{ count: number }>(sql))!.count;
    expect(await count("SELECT count(*) AS count FROM repositories WHERE name = 'gc/lonely'")).toBe(0);
    expect(await count('SELECT count(*) AS count FROM blobs')).toBe(0);
    expect(await count('SELECT count(*) AS count FROM manifest_references')).toBe(0);
    expect(storedBlobs(app).size).toBe(0);
    const catalog = (await (await client.fetch('/v2/_catalog')).json()) as { repositories: string[] };
    expect(catalog.repositories).not.toContain('gc/lonely');
  });

  test('a blob pushed within the grace period survives although nothing references it yet', async () => {
    await app.close();
    app = await createTestApp({ overrides: { 'gc.grace': '1h', 'gc.interval': '0' } });
    client = new RegistryClient(app);
    const layer = await client.pushBlob('gc/pending', randomBytes(100), OCI_LAYER);
    const report = await app.registry.collectGarbage();
    expect(report.blobs).toEqual([]);
    expect((await client.headBlob('gc/pending', layer.digest)).status).toBe(200);
  });

  test('untagged manifests are kept by default and deleted with delete_untagged', async () => {
    await app.close();
    const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-untagged-'));
    app = await createTestApp({ storageDir, overrides: { 'gc.grace': '0', 'gc.interval': '0' } });
    client = new RegistryClient(app);
    const image = await pushImage(client, 'gc/untagged', 'v1', [randomBytes(300)]);
    const replacement = await pushImage(client, 'gc/untagged', 'v1', [randomBytes(300)]);
    await app.registry.collectGarbage();
    expect((await client.fetch(`/v2/gc/untagged/manifests/${image.manifest.digest}`, { method: 'HEAD' })).status).toBe(200);

    await app.close();
    app = await createTestApp({
      storageDir,
      overrides: { 'gc.grace': '0', 'gc.interval': '0', 'gc.delete_untagged': 'true' },
    });
    client = new RegistryClient(app);
    const report = await app.registry.collectGarbage();
    expect(report.manifests).toEqual([{ repository: 'gc/untagged', digest: image.manifest.digest, reason: 'untagged' }]);
    expect((await client.fetch(`/v2/gc/untagged/manifests/${image.manifest.digest}`, { method: 'HEAD' })).status).toBe(404);
    expect((await client.fetch(`/v2/gc/untagged/manifests/v1`, { method: 'HEAD' })).headers.get('docker-content-digest')).toBe(
      replacement.manifest.digest,
    );
    fs.rmSync(storageDir, { recursive: true, force: true });
  });

  test('GitHub REST answers not refreshed for a week are dropped; recent ones stay', async () => {
    const sql = app.registry.index.sql;
    const insert = 'INSERT INTO github_rest_cache (key, value, fetched_at) VALUES (@key, @value, @at)';
    await sql.run(insert, { key: 'packages:user:gone', value: '[]', at: Date.now() - 8 * 24 * 3_600_000 });
    await sql.run(insert, { key: 'packages:user:live', value: '[]', at: Date.now() - 3_600_000 });
    await app.registry.collectGarbage();
    expect(await sql.all('SELECT key FROM github_rest_cache')).toEqual([{ key: 'packages:user:live' }]);
  });

  test('while another process sharing the index collects (its gc lease), a collection is refused with UNAVAILABLE', async () => {
    // Another replica on the same database, or a `gc` command beside the server, in the middle of its run.
    const elsewhere = new Leases(app.registry.index.sql);
    expect(await elsewhere.acquire('gc', 60_000)).toBe(true);
    try {
      await expect(app.registry.collectGarbage()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/another process/) });
    } finally {
      await elsewhere.release('gc');
    }
    expect((await app.registry.collectGarbage()).dryRun).toBe(false);
  });

  test('abandoned upload sessions expire with their data', async () => {
    await app.close();
    app = await createTestApp({ overrides: { 'gc.grace': '0', 'gc.interval': '0', 'gc.upload_ttl': '0' } });
    client = new RegistryClient(app);
    const session = await client.startUpload('gc/uploads');
    await client.pushChunk(session, randomBytes(1000));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const report = await app.registry.collectGarbage();
    expect(report.uploadsExpired).toBe(1);
    expect((await client.fetch(session.location)).status).toBe(404);
    expect(fs.readdirSync(path.join(app.storageDir, 'storage', '_tmp', 'uploads'))).toEqual([]);
  });
});

describe('garbage collection while pushes go on', () => {
  test('a blob pushed again between selection and deletion is kept', async () => {
    const app = await createTestApp({ overrides: { 'gc.grace': '0', 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    const original = fsp.rename;
    const rename = jest.spyOn(fsp, 'rename');
    try {
      const content = randomBytes(5000);
      const blob = await client.pushBlob('race/first', content, OCI_LAYER);
      expect((await client.fetch(`/v2/race/first/blobs/${blob.digest}`, { method: 'DELETE' })).status).toBe(202);
      await new Promise((resolve) => setTimeout(resolve, 5));

      // The moment the sweep moves the selected file aside, another client pushes the same blob.
      let injected = false;
      rename.mockImplementation(async (from, to) => {
        if (!injected && String(to).includes(`${path.sep}.trash${path.sep}`)) {
          injected = true;
          rename.mockImplementation(original);
          expect((await client.pushBlobMonolithic('race/second', content)).status).toBe(201);
        }
        return original(from, to);
      });

      const report = await app.registry.collectGarbage();
      expect(injected).toBe(true);
      expect(report.blobs.map((b) => b.digest)).not.toContain(blob.digest);
      const { response, body } = await client.getBlob('race/second', blob.digest);
      expect(response.status).toBe(200);
      expect(body.equals(content)).toBe(true);
    } finally {
      rename.mockRestore();
      await app.close();
    }
  });

  test('a manifest whose blobs are collected while it is being written is refused, never stored incomplete', async () => {
    const app = await createTestApp({ overrides: { 'gc.grace': '0', 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    const original = fsp.rename;
    const rename = jest.spyOn(fsp, 'rename');
    try {
      const config = await client.pushBlob('race/manifest', Buffer.from('{}'), OCI_CONFIG);
      const layer = await client.pushBlob('race/manifest', randomBytes(1000), OCI_LAYER);
      const manifest = Buffer.from(JSON.stringify(imageManifest(config, [layer])));
      await new Promise((resolve) => setTimeout(resolve, 5));

      // Just as the manifest's own file lands, a collection finds its blobs linked but unreferenced. (A first
      // rename may fail for a missing directory: the writer creates it and renames again.)
      rename.mockImplementation(async (from, to) => {
        await original(from, to);
        if (String(to).endsWith(digestOf(manifest).slice(7))) {
          rename.mockImplementation(original);
          const report = await app.registry.collectGarbage();
          expect(report.blobs.map((b) => b.digest)).toContain(layer.digest);
        }
      });

      const response = await client.pushManifest('race/manifest', 'v1', manifest, MediaType.OciManifest);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
      expect((await client.fetch('/v2/race/manifest/manifests/v1', { method: 'HEAD' })).status).toBe(404);
    } finally {
      rename.mockRestore();
      await app.close();
    }
  });

  test('a few hundred pushes re-using collected layers, with collections running all along, lose nothing', async () => {
    // The grace period must outlast one image push (blobs, then the manifest that references them),
    // also on a loaded 2-core machine; what is older and unreferenced is rightly collected.
    const app = await createTestApp({ overrides: { 'gc.grace': '2s', 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    let pushing = true;
    let collections: Promise<number> = Promise.resolve(0);
    try {
      // Old garbage that shares layers with what will be pushed during the collections.
      const layers = Array.from({ length: 8 }, () => randomBytes(4096));
      const old = await pushImage(client, 'race/old', 'v1', layers);
      await client.fetch(`/v2/race/old/manifests/${old.manifest.digest}`, { method: 'DELETE' });
      await new Promise((resolve) => setTimeout(resolve, 2100));

      collections = (async () => {
        let runs = 0;
        while (pushing || runs === 0) {
          await app.registry.collectGarbage();
          runs++;
        }
        return runs;
      })();
      const pushed: Array<{ tag: string; digests: string[] }> = [];
      const deadline = Date.now() + 20_000;
      for (let i = 0; i < 300 && Date.now() < deadline; i++) {
        const image = await pushImage(client, 'race/new', `t${i}`, [layers[i % layers.length], randomBytes(64)]);
        pushed.push({ tag: `t${i}`, digests: [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)] });
      }
      pushing = false;
      expect(await collections).toBeGreaterThan(1);
      expect(pushed.length).toBeGreaterThanOrEqual(100);

      await app.registry.collectGarbage();
      for (const { tag, digests } of pushed) {
        expect((await client.fetch(`/v2/race/new/manifests/${tag}`, { method: 'HEAD' })).status).toBe(200);
        for (const digest of digests.slice(1)) {
          const { response, body } = await client.getBlob('race/new', digest);
          expect(response.status).toBe(200);
          expect(digestOf(body)).toBe(digest);
        }
      }
    } finally {
      pushing = false;
      await collections.catch(() => undefined);
      await app.close();
    }
  }, 120_000);
});

describe('verify', () => {
  test('finds a blob corrupted on disk, quarantines it, and it is not served again', async () => {
    const app = await createTestApp({ overrides: { 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    try {
      const image = await pushImage(client, 'verify/app', 'v1', [randomBytes(1000), randomBytes(1000)]);
      const victim = image.layers[0].digest;
      const file = path.join(app.storageDir, 'storage', 'registry', 'blobs', 'sha256', victim.slice(7, 9), victim.slice(7));
      const bytes = fs.readFileSync(file);
      bytes[10] ^= 0xff;
      fs.writeFileSync(file, bytes);

      const report = await app.registry.verify();
      expect(report.corrupt).toEqual([{ store: 'hosted', digest: victim, reason: expect.stringMatching(/hashes to sha256:/) }]);
      expect(report.missing).toEqual([]);
      expect(fs.existsSync(file)).toBe(false);
      expect((await client.getBlob('verify/app', victim)).response.status).toBe(404);
      expect((await client.getBlob('verify/app', image.layers[1].digest)).response.status).toBe(200);

      // Once quarantined, the blob is reported missing: the image needs the layer pushed again.
      expect((await app.registry.verify()).missing).toEqual([{ store: 'hosted', digest: victim }]);
    } finally {
      await app.close();
    }
  });
});

describe('files left in .trash by a collection that crashed', () => {
  /** What a sweep leaves when the process dies between its move to .trash and its re-check. */
  function crashLeavesInTrash(app: TestApp, digest: string, name: string): string {
    const file = path.join(app.storageDir, 'storage', 'registry', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
    const trash = path.join(app.storageDir, 'storage', 'registry', '.trash');
    fs.mkdirSync(trash, { recursive: true });
    fs.renameSync(file, path.join(trash, name));
    return file;
  }

  test('at start, a referenced one is put back and pulls again; an unreferenced one is deleted', async () => {
    const app = await createTestApp({ overrides: { 'gc.interval': '0', 'gc.grace': '0' } });
    const client = new RegistryClient(app);
    try {
      const image = await pushImage(client, 'trash/app', 'v1', [randomBytes(1000)]);
      const loose = await client.pushBlob('trash/loose', randomBytes(700), OCI_LAYER);
      expect((await client.fetch(`/v2/trash/loose/blobs/${loose.digest}`, { method: 'DELETE' })).status).toBe(202);
      // Named by a random id, as sweeps name what they move aside.
      const layerFile = crashLeavesInTrash(app, image.layers[0].digest, 'a2b7c0f6-52c2-4ac4-9e5b-54c3a1e7bb01');
      const looseFile = crashLeavesInTrash(app, loose.digest, 'f0e1d2c3-b4a5-4968-8776-655443322110');
      expect((await client.getBlob('trash/app', image.layers[0].digest)).response.status).toBe(404);

      await app.restart();
      await app.registry.recoverRemovals();
      expect(fs.existsSync(layerFile)).toBe(true);
      expect(fs.existsSync(looseFile)).toBe(false);
      expect(fs.readdirSync(path.join(app.storageDir, 'storage', 'registry', '.trash'))).toEqual([]);
      const pulled = await client.getBlob('trash/app', image.layers[0].digest);
      expect(pulled.response.status).toBe(200);
      expect(digestOf(pulled.body)).toBe(image.layers[0].digest);
    } finally {
      await app.close();
    }
  });

  test('a collection reconsiders them first, too', async () => {
    const app = await createTestApp({ overrides: { 'gc.interval': '0', 'gc.grace': '1h' } });
    const client = new RegistryClient(app);
    try {
      const image = await pushImage(client, 'trash/again', 'v1', [randomBytes(1000)]);
      const layerFile = crashLeavesInTrash(app, image.layers[0].digest, `sha256-${image.layers[0].digest.slice(7)}.0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f`);
      await app.registry.collectGarbage();
      expect(fs.existsSync(layerFile)).toBe(true);
      expect((await client.getBlob('trash/again', image.layers[0].digest)).response.status).toBe(200);
    } finally {
      await app.close();
    }
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { incomingDirectory } from '../../src/storage/paths';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const LAYER_SIZE = 100_000;

describe('cache eviction by size and age', () => {
  let upstream: UpstreamRegistry;
  let work: string;
  const images: BuiltImage[] = [];

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-eviction-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    for (const name of ['one', 'two', 'three', 'four']) {
      const image = await buildImageLayout(path.join(work, name), { tag: '1', layers: 1, layerSize: LAYER_SIZE, seed: name });
      await skopeoCopy(image.reference, `docker://${upstream.host}/team/${name}:1`);
      images.push(image);
    }
  });
  afterAll(async () => {
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const pull = (app: TestApp, name: string) => skopeoCopy(`docker://${app.host}/proxy/upstream.test/${name}:1`, `dir:${fs.mkdtempSync(path.join(work, 'pull-'))}`);
  const configuration = (limits: string) =>
    `[proxy]\n${limits}\n[gc]\ngrace = "0"\ninterval = "0"\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`;

  test('max_size: the least recently pulled image goes; the others still pull with the upstream stopped', async () => {
    // Room for three of the four images (each a ~100 kB gzip layer, a config and a manifest), not four.
    const app = await createTestApp({ configuration: configuration(`max_size = ${Math.round(3.5 * LAYER_SIZE)}`) });
    try {
      for (const name of ['one', 'two', 'three', 'four']) {
        await pull(app, `team/${name}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await pull(app, 'team/one'); // now "two" is the least recently pulled

      const report = await app.registry.collectGarbage();
      expect(report.manifests).toEqual([{ repository: 'proxy/upstream.test/team/two', digest: images[1].manifestDigest, reason: 'max_size' }]);
      expect(report.blobs.map((blob) => blob.digest).sort()).toEqual(
        [images[1].manifestDigest, images[1].configDigest, images[1].layerDigests[0]].sort(),
      );

      await upstream.stop();
      try {
        for (const name of ['one', 'three', 'four']) await pull(app, `team/${name}`);
        await expect(pull(app, 'team/two')).rejects.toThrow();
      } finally {
        await upstream.start();
      }
      // An evicted image is simply fetched again.
      expect((await skopeoInspect(`docker://${app.host}/proxy/upstream.test/team/two:1`)).Digest).toBe(images[1].manifestDigest);
    } finally {
      await app.close();
    }
  });

  test('max_size counts transfers under way (.incoming): the least recently pulled image makes room for them', async () => {
    const app = await createTestApp({ configuration: configuration(`max_size = ${Math.round(3.5 * LAYER_SIZE)}`) });
    try {
      for (const name of ['one', 'two', 'three']) {
        await pull(app, `team/${name}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect((await app.registry.collectGarbage({ dryRun: true })).manifests).toEqual([]);

      // A cold blob being downloaded: its bytes are on disk, not yet in the index.
      const incoming = incomingDirectory(app.config.proxy_storage);
      fs.mkdirSync(incoming, { recursive: true });
      fs.writeFileSync(path.join(incoming, 'transfer-under-way'), Buffer.alloc(LAYER_SIZE));
      const report = await app.registry.collectGarbage({ dryRun: true });
      expect(report.manifests).toEqual([{ repository: 'proxy/upstream.test/team/one', digest: images[0].manifestDigest, reason: 'max_size' }]);
    } finally {
      await app.close();
    }
  });

  test('max_age: images not pulled for that long go; a dry run reports without deleting', async () => {
    const app = await createTestApp({ configuration: configuration('max_age = "1s"') });
    try {
      await pull(app, 'team/three');
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await pull(app, 'team/four');

      const dryRun = await app.registry.collectGarbage({ dryRun: true });
      expect(dryRun.manifests.map((m) => m.repository)).toEqual(['proxy/upstream.test/team/three']);
      expect(await app.registry.index.manifest('proxy/upstream.test/team/three', images[2].manifestDigest)).not.toBeNull();

      const report = await app.registry.collectGarbage();
      expect(report.manifests.map((m) => m.repository)).toEqual(['proxy/upstream.test/team/three']);
      expect(report.blobs.map((b) => b.digest).sort()).toEqual(dryRun.blobs.map((b) => b.digest).sort());
      expect(await app.registry.index.manifest('proxy/upstream.test/team/three', images[2].manifestDigest)).toBeNull();
      expect(await app.registry.index.manifest('proxy/upstream.test/team/four', images[3].manifestDigest)).not.toBeNull();
    } finally {
      await app.close();
    }
  });
});

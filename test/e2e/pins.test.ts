import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/log';
import { buildImageLayout, buildMultiArchLayout, BuiltImage } from '../helpers/oci-image';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const LAYER_SIZE = 100_000;
const NAMES = ['one', 'two', 'three', 'four'];

describe('pins: eviction never removes pinned content, and upstream deletions do not break pulls', () => {
  let upstream: UpstreamRegistry;
  let work: string;
  const images: Record<string, BuiltImage> = {};

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'pins-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    for (const name of NAMES) {
      images[name] = await buildImageLayout(path.join(work, name), { tag: '1', layers: 1, layerSize: LAYER_SIZE, seed: `pins-${name}` });
      await skopeoCopy(images[name].reference, `docker://${upstream.host}/team/${name}:1`);
    }
  });
  afterAll(async () => {
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const pull = (app: TestApp, name: string) =>
    skopeoCopy(`docker://${app.host}/proxy/upstream.test/team/${name}:1`, `dir:${fs.mkdtempSync(path.join(work, 'pull-'))}`);
  const configuration = (proxy: string) =>
    `[proxy]\n${proxy}\n[gc]\ngrace = "0"\ninterval = "0"\n` +
    `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n` +
    // A configured pin, written as clients write the name after /v2/proxy/.
    `[[proxy.pin]]\nimage = "upstream.test/team/one:1"\n`;
  const pullAll = async (app: TestApp) => {
    for (const name of NAMES) {
      await pull(app, name);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  const pinThroughApi = async (app: TestApp, name: string) => {
    const response = await fetch(`${app.url}/api/pins/upstream.test/team/${name}:1`, { method: 'PUT' });
    expect(response.status).toBe(201);
  };

  test('max_size evicts the least recently pulled unpinned image; pinned ones (config and API) stay and pull offline', async () => {
    // Room for three of the four images. "one" (configured) and "two" (API) are the least recently pulled, and pinned.
    const app = await createTestApp({ configuration: configuration(`max_size = ${Math.round(3.5 * LAYER_SIZE)}`) });
    try {
      await pinThroughApi(app, 'two');
      await pullAll(app);
      const report = await app.registry.collectGarbage();
      expect(report.manifests).toEqual([{ repository: 'proxy/upstream.test/team/three', digest: images.three.manifestDigest, reason: 'max_size' }]);
      expect(report.pinned?.overMaxSize).toBe(false);

      await upstream.stop();
      try {
        for (const name of ['one', 'two', 'four']) await pull(app, name);
        await expect(pull(app, 'three')).rejects.toThrow();
      } finally {
        await upstream.start();
      }
    } finally {
      await app.close();
    }
  });

  test('pins alone over max_size: only unpinned content goes, and the log and a metric say so', async () => {
    const lines: string[] = [];
    const log = createLogger('info', { destination: (line) => lines.push(line) });
    // Room for one image; two are pinned.
    const app = await createTestApp({ configuration: configuration(`max_size = ${Math.round(1.5 * LAYER_SIZE)}`), log });
    try {
      await pinThroughApi(app, 'two');
      await pullAll(app);
      const report = await app.registry.collectGarbage();
      expect(report.manifests.map((manifest) => manifest.repository).sort()).toEqual([
        'proxy/upstream.test/team/four',
        'proxy/upstream.test/team/three',
      ]);
      expect(report.pinned).toEqual({ bytes: expect.any(Number), overMaxSize: true });
      expect(report.pinned!.bytes).toBeGreaterThan(2 * LAYER_SIZE);
      const warning = lines.map((line) => JSON.parse(line)).find((line) => /pinned cache content alone exceeds/.test(line.msg));
      expect(warning).toMatchObject({ pinnedBytes: report.pinned!.bytes, maxSize: Math.round(1.5 * LAYER_SIZE) });
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/^registry_proxy_pinned_over_max_size 1$/m);
      expect(metrics).toMatch(new RegExp(`^registry_proxy_pinned_bytes ${report.pinned!.bytes}$`, 'm'));
      // Both pinned images are whole: they pull with the upstream stopped.
      await upstream.stop();
      try {
        for (const name of ['one', 'two']) await pull(app, name);
      } finally {
        await upstream.start();
      }
    } finally {
      await app.close();
    }
  });

  test('max_age never evicts pinned images', async () => {
    const app = await createTestApp({ configuration: configuration('max_age = "1ms"') });
    try {
      await pinThroughApi(app, 'two');
      await pullAll(app);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const report = await app.registry.collectGarbage();
      expect(report.manifests.map((manifest) => manifest.repository).sort()).toEqual([
        'proxy/upstream.test/team/four',
        'proxy/upstream.test/team/three',
      ]);
    } finally {
      await app.close();
    }
  });

  test('serve_deleted: after the upstream deletes a tag, a pinned image still pulls ("pinned"), any image with "all", none with "none"', async () => {
    // Images of their own: the upstream loses them in this test.
    for (const name of ['keep', 'drop']) await skopeoCopy(images.one.reference, `docker://${upstream.host}/team/${name}:1`);
    const upstreamSection = `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`;
    // tag_ttl 0: every pull asks the upstream whether the tag still points where it did.
    const start = (serveDeleted: string, log?: ReturnType<typeof createLogger>) =>
      createTestApp({
        configuration:
          `[proxy]\ntag_ttl = "0"\n${serveDeleted}\n${upstreamSection}` + `[[proxy.pin]]\nimage = "upstream.test/team/keep:1"\n`,
        log,
      });
    const lines: string[] = [];
    const byDefault = await start('', createLogger('info', { destination: (line) => lines.push(line) }));
    const all = await start('serve_deleted = "all"');
    const none = await start('serve_deleted = "none"');
    try {
      for (const app of [byDefault, all, none]) for (const name of ['keep', 'drop']) await pull(app, name);

      // distribution deletes a manifest by digest, with the tags that point at it: then HEAD and GET answer 404.
      for (const name of ['keep', 'drop']) {
        const deleted = await fetch(`${upstream.url}/v2/team/${name}/manifests/${images.one.manifestDigest}`, { method: 'DELETE' });
        expect(deleted.status).toBe(202);
        expect((await fetch(`${upstream.url}/v2/team/${name}/manifests/1`, { method: 'HEAD' })).status).toBe(404);
      }

      await pull(byDefault, 'keep');
      await expect(pull(byDefault, 'drop')).rejects.toThrow(/manifest unknown/i);
      const logged = lines.map((line) => JSON.parse(line)).filter((line) => /upstream no longer has this tag/.test(line.msg));
      expect(logged).toEqual([
        expect.objectContaining({ repository: 'proxy/upstream.test/team/keep', reference: '1', digest: images.one.manifestDigest }),
      ]);

      await pull(all, 'keep');
      await pull(all, 'drop');

      await expect(pull(none, 'keep')).rejects.toThrow(/manifest unknown/i);
    } finally {
      await Promise.all([byDefault.close(), all.close(), none.close()]);
    }
  });

  test('a prefix pin on an index tag keeps every platform manifest and layer: the whole index pulls offline after eviction', async () => {
    const multi = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: '1',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: 1,
      layerSize: LAYER_SIZE,
      seed: 'pins-multi',
    });
    await skopeoCopy(multi.reference, `docker://${upstream.host}/team/multi:1`, ['--all']);
    const app = await createTestApp({
      configuration:
        `[proxy]\nmax_size = 1\n[gc]\ngrace = "0"\ninterval = "0"\n` +
        `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n` +
        `[[proxy.pin]]\nprefix = "upstream.test/team"\ntags = "[0-9]+"\n` +
        `[[proxy.pin]]\nimage = "upstream.test/team/one:nope"\n`,
    });
    const pullAllPlatforms = () =>
      skopeoCopy(`docker://${app.host}/proxy/upstream.test/team/multi:1`, `oci:${fs.mkdtempSync(path.join(work, 'multi-pull-'))}:1`, ['--all']);
    try {
      await pullAllPlatforms();
      const report = await app.registry.collectGarbage();
      expect(report.manifests).toEqual([]);
      expect(report.blobs).toEqual([]);
      expect(report.pinned?.overMaxSize).toBe(true);
      await upstream.stop();
      try {
        await pullAllPlatforms();
      } finally {
        await upstream.start();
      }
    } finally {
      await app.close();
    }
  });
});

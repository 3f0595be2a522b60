import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout } from '../helpers/oci-image';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * `[[proxy.upstreams]] urls`: two real upstreams (docker-registry 2.8) for one name, tried in order, as a
 * mirror in front of the registry it mirrors. The first lacks some images; it answers 404, the second serves.
 */
describe('[[proxy.upstreams]] urls = [mirror, origin]: tried in order', () => {
  let mirror: UpstreamRegistry;
  let origin: UpstreamRegistry;
  let app: TestApp;
  let work: string;
  const proxied = (reference: string) => `docker://${app.host}/proxy/upstream.test/${reference}`;
  const requests = async (upstream: UpstreamRegistry, uriPart: string, status?: number) =>
    (await upstream.accessLog()).filter((entry) => entry.uri.includes(uriPart) && (status === undefined || entry.status === status)).length;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'upstream-fallback-'));
    [mirror, origin] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry()]);
    app = await createTestApp({
      configuration: `[proxy]\ntimeout = "5s"\n\n[[proxy.upstreams]]\nhost = "upstream.test"\nurls = ["${mirror.url}", "${origin.url}"]\n`,
    });
  });
  afterAll(async () => {
    await app?.close();
    await mirror?.close();
    await origin?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('an image the first URL lacks (404) is pulled from the second, and the answer says which served', async () => {
    const image = await buildImageLayout(path.join(work, 'only-origin'), { tag: '1', layers: 2, layerSize: 20_000, seed: 'only-origin' });
    await skopeoCopy(image.reference, `docker://${origin.host}/team/app:1`);

    const manifest = await fetch(`${app.url}/v2/proxy/upstream.test/team/app/manifests/1`, { headers: { Accept: image.mediaType } });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('x-registry-upstream')).toBe(origin.url);
    expect(manifest.headers.get('docker-content-digest')).toBe(image.manifestDigest);

    const pulled = path.join(work, 'pulled');
    await skopeoCopy(proxied('team/app:1'), `dir:${pulled}`);
    expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
    expect(await requests(mirror, '/v2/team/app/manifests/1', 404)).toBe(1);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      expect(await requests(mirror, `/v2/team/app/blobs/${digest}`, 404)).toBeGreaterThanOrEqual(1);
      expect(await requests(origin, `/v2/team/app/blobs/${digest}`, 200)).toBe(1);
    }

    // Served from the cache now: no upstream answered, so no header.
    const cached = await fetch(`${app.url}/v2/proxy/upstream.test/team/app/manifests/${image.manifestDigest}`, { headers: { Accept: image.mediaType } });
    expect(cached.status).toBe(200);
    expect(cached.headers.get('x-registry-upstream')).toBeNull();

    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/registry_upstream_fallbacks_total\{upstream="upstream.test",reason="not_found"\} [1-9]/);
  });

  test('what the first URL has is served from it: the second is not asked', async () => {
    const onMirror = await buildImageLayout(path.join(work, 'both-mirror'), { tag: '1', layers: 1, layerSize: 5000, seed: 'both-mirror' });
    const onOrigin = await buildImageLayout(path.join(work, 'both-origin'), { tag: '1', layers: 1, layerSize: 5000, seed: 'both-origin' });
    await skopeoCopy(onMirror.reference, `docker://${mirror.host}/team/both:1`);
    await skopeoCopy(onOrigin.reference, `docker://${origin.host}/team/both:1`);
    const before = await requests(origin, '/v2/team/both/');

    expect((await skopeoInspect(proxied('team/both:1'))).Digest).toBe(onMirror.manifestDigest);
    await skopeoCopy(proxied('team/both:1'), `dir:${path.join(work, 'both')}`);
    expect(await requests(origin, '/v2/team/both/')).toBe(before);
  });

  test('with the first URL down, the second serves; with both down, the cached image is still served', async () => {
    const image = await buildImageLayout(path.join(work, 'down'), { tag: '1', layers: 1, layerSize: 5000, seed: 'down' });
    await skopeoCopy(image.reference, `docker://${origin.host}/team/down:1`);
    await mirror.stop();
    try {
      await skopeoCopy(proxied('team/down:1'), `dir:${path.join(work, 'down-1')}`);
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/registry_upstream_fallbacks_total\{upstream="upstream.test",reason="unreachable"\} [1-9]/);
      await origin.stop();
      const pulled = path.join(work, 'down-2');
      await skopeoCopy(proxied(`team/down@${image.manifestDigest}`), `dir:${pulled}`);
      expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
    } finally {
      await mirror.start();
      await origin.start();
    }
  });

  test('an image neither has: 404 MANIFEST_UNKNOWN, after asking both', async () => {
    const response = await fetch(`${app.url}/v2/proxy/upstream.test/team/nowhere/manifests/1`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect(await requests(mirror, '/v2/team/nowhere/manifests/1', 404)).toBe(1);
    expect(await requests(origin, '/v2/team/nowhere/manifests/1', 404)).toBe(1);
  });
});

import { randomBytes } from 'node:crypto';
import { MediaType } from '../../../src/oci/media-types';
import { Descriptor } from '../../../src/oci/manifest';
import { digestOf, expectStatus, json, OCI_CONFIG, OCI_LAYER, RegistryClient } from '../../helpers/registry-client';
import { createTestApp, TestApp } from '../../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../../helpers/upstream-registry';

const UPSTREAM = 'upstream.test';
const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

/** Pushes a blob to the reference registry (it takes no monolithic POST): POST, then PUT with the body. */
async function pushToUpstream(upstream: RegistryClient, name: string, content: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = digestOf(content);
  await upstream.finishUpload(name, await upstream.startUpload(name), digest, content);
  return { mediaType, digest, size: content.length };
}

async function pushImageToUpstream(upstream: RegistryClient, name: string, layerSize: number) {
  const config = await pushToUpstream(upstream, name, json({ architecture: 'amd64', os: 'linux', name }), OCI_CONFIG);
  const layer = await pushToUpstream(upstream, name, randomBytes(layerSize), OCI_LAYER);
  const manifest = await upstream.putManifest(name, '1', { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] });
  return { config, layer, digest: manifest.digest };
}

describe('pull-through cache accounting in garbage collection', () => {
  let upstream: UpstreamRegistry;
  let pusher: RegistryClient;
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'none' });
    pusher = new RegistryClient(upstream);
  });
  afterAll(() => upstream?.close());
  afterEach(() => app?.close());

  const start = async (limits = '') => {
    app = await createTestApp({
      configuration: `[proxy]\n${limits}\n[gc]\ngrace = "0"\ninterval = "0"\n[[proxy.upstreams]]\nhost = "${UPSTREAM}"\nurl = "${upstream.url}"\n`,
    });
    client = new RegistryClient(app);
  };

  /** GET of a blob through the cache, returning once the cache holds it. */
  const pullBlob = async (name: string, digest: string) => {
    const { response } = await client.getBlob(`proxy/${UPSTREAM}/${name}`, digest);
    await expectStatus(response, 200);
    while ((await app.registry.index.linkedBlobSize(`proxy/${UPSTREAM}/${name}`, digest)) === null) await pause();
    await pause();
  };

  const pullImage = async (name: string, image: { config: Descriptor; layer: Descriptor }) => {
    await expectStatus((await client.getManifest(`proxy/${UPSTREAM}/${name}`, '1', { accept: MediaType.OciManifest })).response, 200);
    await pullBlob(name, image.config.digest);
    await pullBlob(name, image.layer.digest);
  };

  test('max_size: a blob pulled by digest alone is evicted by its own last use, not by emptying the cache of images', async () => {
    const loose = await pushToUpstream(pusher, 'team/loose', randomBytes(5000), OCI_LAYER);
    const one = await pushImageToUpstream(pusher, 'team/one', 1000);
    const two = await pushImageToUpstream(pusher, 'team/two', 1000);
    await start('max_size = 4000');

    // Pulled first, so least recently used; no cached manifest references it.
    await pullBlob('team/loose', loose.digest);
    await pullImage('team/one', one);
    await pullImage('team/two', two);

    const report = await app.registry.collectGarbage();
    expect(report.manifests).toEqual([]);
    expect(report.blobs.map((blob) => blob.digest)).toEqual([loose.digest]);
    expect(await app.registry.index.manifest(`proxy/${UPSTREAM}/team/one`, one.digest)).not.toBeNull();
    expect(await app.registry.index.manifest(`proxy/${UPSTREAM}/team/two`, two.digest)).not.toBeNull();
  });

  test('max_size: a loose blob larger than the limit and used last still goes, after the images older than it', async () => {
    const one = await pushImageToUpstream(pusher, 'team/three', 1000);
    const loose = await pushToUpstream(pusher, 'team/loose2', randomBytes(5000), OCI_LAYER);
    await start('max_size = 4000');
    await pullImage('team/three', one);
    await pullBlob('team/loose2', loose.digest);

    const report = await app.registry.collectGarbage();
    expect(report.manifests.map((manifest) => manifest.digest)).toEqual([one.digest]);
    expect(report.blobs.map((blob) => blob.digest).sort()).toEqual([one.digest, one.config.digest, one.layer.digest, loose.digest].sort());
  });

  test('GET /v2/proxy/<upstream>/<name>/tags/list leaves no tag list behind for a name nothing is cached of', async () => {
    const listed = await pushImageToUpstream(pusher, 'team/listed', 100);
    const kept = await pushImageToUpstream(pusher, 'team/kept', 100);
    await start();
    expect(await client.listTags(`proxy/${UPSTREAM}/team/listed`)).toEqual(['1']);
    expect(await client.listTags(`proxy/${UPSTREAM}/team/kept`)).toEqual(['1']);
    await pullImage('team/kept', kept);
    expect(await app.registry.index.upstreamTagList(`proxy/${UPSTREAM}/team/listed`)).not.toBeNull();

    await app.registry.collectGarbage();
    expect(await app.registry.index.upstreamTagList(`proxy/${UPSTREAM}/team/listed`)).toBeNull();
    expect(await app.registry.index.repositoryExists(`proxy/${UPSTREAM}/team/listed`)).toBe(false);
    // A cached image's tag list stays: it is what tags/list answers while the upstream is down.
    expect(await app.registry.index.upstreamTagList(`proxy/${UPSTREAM}/team/kept`)).not.toBeNull();
    expect(listed.digest).not.toBe(kept.digest);
  });
});

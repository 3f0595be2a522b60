import { randomBytes } from 'node:crypto';
import { MediaType } from '../../src/oci/media-types';
import {
  API_VERSION,
  DOCKER_CONFIG,
  OCI_CONFIG,
  OCI_LAYER,
  PushedManifest,
  RegistryClient,
  descriptorOf,
  digestOf,
  expectErrorCode,
  json,
  uniqueName,
} from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

const UNKNOWN_DIGEST = `sha256:${'0'.repeat(64)}`;

describe('manifests', () => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  /** An index (OCI or Docker list) over two freshly pushed platform images, pushed under `tag`. */
  async function pushIndex(name: string, tag: string, docker: boolean): Promise<PushedManifest> {
    const imageType = docker ? MediaType.DockerManifest : MediaType.OciManifest;
    const platforms = [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ];
    const manifests = [];
    for (const platform of platforms) {
      const image = await client.pushImage(name, { mediaType: imageType });
      manifests.push({ ...image.descriptor, platform });
    }
    const index = {
      schemaVersion: 2,
      mediaType: docker ? MediaType.DockerManifestList : MediaType.OciIndex,
      manifests,
    };
    return client.putManifest(name, tag, index);
  }

  const kinds: Array<[string, string, (name: string, tag: string) => Promise<PushedManifest>]> = [
    ['OCI image manifest', MediaType.OciManifest, (name, tag) => client.pushImage(name, { tag, layers: 2 })],
    ['OCI image index', MediaType.OciIndex, (name, tag) => pushIndex(name, tag, false)],
    ['Docker v2 schema 2 manifest', MediaType.DockerManifest, (name, tag) => client.pushImage(name, { tag, mediaType: MediaType.DockerManifest })],
    ['Docker manifest list', MediaType.DockerManifestList, (name, tag) => pushIndex(name, tag, true)],
  ];

  describe.each(kinds)('%s', (_, mediaType, push) => {
    const name = uniqueName('manifests/kinds');
    let pushed: PushedManifest;

    beforeAll(async () => {
      // PUT /v2/<name>/manifests/<tag> → 201, Location by digest, Docker-Content-Digest (asserted by putManifest).
      pushed = await push(name, 'v1');
    });

    test('PUT by tag is 201 with the manifest media type stored', () => {
      expect(pushed.response.status).toBe(201);
      expect(pushed.response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
      expect(pushed.mediaType).toBe(mediaType);
    });

    test.each(['tag', 'digest'])('GET by %s returns the exact bytes with Content-Type, Docker-Content-Digest and Content-Length', async (by) => {
      const reference = by === 'tag' ? 'v1' : pushed.digest;
      const { response, body } = await client.getManifest(name, reference, { accept: mediaType });
      expect(response.status).toBe(200);
      expect(response.headers.get('Content-Type')).toBe(mediaType);
      expect(response.headers.get('Docker-Content-Digest')).toBe(pushed.digest);
      expect(response.headers.get('Content-Length')).toBe(String(pushed.content.length));
      expect(body.equals(pushed.content)).toBe(true);
    });

    test.each(['tag', 'digest'])('HEAD by %s has the same headers and no body', async (by) => {
      const reference = by === 'tag' ? 'v1' : pushed.digest;
      const { response, body } = await client.getManifest(name, reference, { accept: mediaType, method: 'HEAD' });
      expect(response.status).toBe(200);
      expect(response.headers.get('Content-Type')).toBe(mediaType);
      expect(response.headers.get('Docker-Content-Digest')).toBe(pushed.digest);
      expect(response.headers.get('Content-Length')).toBe(String(pushed.content.length));
      expect(body.length).toBe(0);
    });

    test('PUT by digest is 201 and the manifest is readable by that digest in another repository', async () => {
      // The other repository needs the blobs (or child manifests) too: push the same kind there first.
      const other = uniqueName('manifests/by-digest');
      const again = await push(other, 'seed');
      const response = await client.putManifest(other, again.digest, again.content);
      expect(response.digest).toBe(again.digest);
      const { response: get, body } = await client.getManifest(other, again.digest);
      expect(get.status).toBe(200);
      expect(body.equals(again.content)).toBe(true);
    });
  });

  describe('PUT /v2/<name>/manifests/<reference>', () => {
    test('by digest: 201 with Location and Docker-Content-Digest, and no tag is created', async () => {
      const name = uniqueName('manifests/put-digest');
      const config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      const pushed = await client.putManifest(name, digestOf(manifest), manifest);
      expect(pushed.digest).toBe(digestOf(manifest));
      expect(await client.listTags(name)).toEqual([]);
    });

    test('by a sha512 digest: 201 and served under it', async () => {
      const name = uniqueName('manifests/sha512');
      const config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      const digest = digestOf(manifest, 'sha512');
      await client.putManifest(name, digest, manifest);
      const { response, body } = await client.getManifest(name, digest);
      expect(response.status).toBe(200);
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(body.equals(manifest)).toBe(true);
    });

    test('by digest with content that does not hash to it is 400 DIGEST_INVALID and nothing is stored', async () => {
      const name = uniqueName('manifests/digest-mismatch');
      const config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      const claimed = digestOf(json({ something: 'else' }));
      await expectErrorCode(await client.pushManifest(name, claimed, manifest), 400, 'DIGEST_INVALID');
      expect((await client.getManifest(name, claimed)).response.status).toBe(404);
      expect((await client.getManifest(name, digestOf(manifest))).response.status).toBe(404);
    });

    test('moving a tag: the tag then serves the new manifest', async () => {
      const name = uniqueName('manifests/retag');
      const first = await client.pushImage(name, { tag: 'latest' });
      const second = await client.pushImage(name, { tag: 'latest' });
      expect(second.digest).not.toBe(first.digest);
      const { response, body } = await client.getManifest(name, 'latest');
      expect(response.headers.get('Docker-Content-Digest')).toBe(second.digest);
      expect(body.equals(second.content)).toBe(true);
      // The first manifest is still there by digest.
      expect((await client.getManifest(name, first.digest)).response.status).toBe(200);
    });

    test('pushing the same manifest twice is 201 both times with the same digest', async () => {
      const name = uniqueName('manifests/idempotent');
      const image = await client.pushImage(name, { tag: 'a' });
      const again = await client.putManifest(name, 'a', image.content);
      expect(again.digest).toBe(image.digest);
    });

    test('a manifest referencing a missing layer is 400 MANIFEST_BLOB_UNKNOWN and nothing is stored', async () => {
      const name = uniqueName('manifests/missing-blob');
      const config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const missing = descriptorOf(OCI_LAYER, randomBytes(32));
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [missing] });
      const body = await expectErrorCode(await client.pushManifest(name, 'v1', manifest), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect(JSON.stringify(body.errors[0].detail)).toContain(missing.digest);
      await expectErrorCode((await client.getManifest(name, 'v1')).response, 404, 'MANIFEST_UNKNOWN');
      await expectErrorCode((await client.getManifest(name, digestOf(manifest))).response, 404, 'MANIFEST_UNKNOWN');
      expect(await client.listTags(name)).toEqual([]);
    });

    test('a manifest whose config is missing is 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const name = uniqueName('manifests/missing-config');
      const layer = await client.pushBlob(name, randomBytes(32), OCI_LAYER);
      const config = descriptorOf(OCI_CONFIG, json({ os: 'missing' }));
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] });
      await expectErrorCode(await client.pushManifest(name, 'v1', manifest), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect((await client.getManifest(name, 'v1')).response.status).toBe(404);
    });

    test('a manifest referencing a blob of another repository is 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const elsewhere = uniqueName('manifests/elsewhere');
      const name = uniqueName('manifests/here');
      const config = await client.pushBlob(elsewhere, json({ os: 'elsewhere' }), OCI_CONFIG);
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      await expectErrorCode(await client.pushManifest(name, 'v1', manifest), 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    test('an index referencing a missing child manifest is 400 MANIFEST_BLOB_UNKNOWN and nothing is stored', async () => {
      const name = uniqueName('manifests/missing-child');
      const present = await client.pushImage(name);
      const absent = descriptorOf(MediaType.OciManifest, json({ schemaVersion: 2, absent: true }));
      const index = json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [present.descriptor, absent] });
      const body = await expectErrorCode(await client.pushManifest(name, 'multi', index), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect(JSON.stringify(body.errors[0].detail)).toContain(absent.digest);
      expect((await client.getManifest(name, 'multi')).response.status).toBe(404);
      expect((await client.getManifest(name, digestOf(index))).response.status).toBe(404);
    });

    test('a manifest list whose child is only a blob (not a manifest) is 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const name = uniqueName('manifests/blob-as-child');
      const blob = await client.pushBlob(name, json({ schemaVersion: 2, not: 'a pushed manifest' }), MediaType.DockerManifest);
      const list = json({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [blob] });
      await expectErrorCode(await client.pushManifest(name, 'list', list), 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    describe('invalid manifests are 400 MANIFEST_INVALID', () => {
      const name = 'manifests/invalid';
      let config: ReturnType<typeof descriptorOf>;

      beforeAll(async () => {
        config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      });

      const cases: Array<[string, () => Buffer, string]> = [
        ['not JSON', () => Buffer.from('{"schemaVersion": 2, '), MediaType.OciManifest],
        ['a JSON array', () => json([]), MediaType.OciManifest],
        ['schemaVersion 1 (Docker schema 1)', () => json({ schemaVersion: 1, name, tag: 'v1', fsLayers: [], history: [] }), MediaType.DockerManifestV1Signed],
        ['schemaVersion 1 with an OCI media type', () => json({ schemaVersion: 1, mediaType: MediaType.OciManifest, config, layers: [] }), MediaType.OciManifest],
        ['no schemaVersion', () => json({ mediaType: MediaType.OciManifest, config, layers: [] }), MediaType.OciManifest],
        ['a config descriptor without digest', () => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: { mediaType: OCI_CONFIG, size: 2 }, layers: [] }), MediaType.OciManifest],
        ['a layer with a malformed digest', () => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [{ mediaType: OCI_LAYER, digest: 'sha256:abc', size: 1 }] }), MediaType.OciManifest],
        ['a layer with a negative size', () => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [{ ...config, mediaType: OCI_LAYER, size: -1 }] }), MediaType.OciManifest],
        ['no layers array', () => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config }), MediaType.OciManifest],
        ['an index without manifests', () => json({ schemaVersion: 2, mediaType: MediaType.OciIndex }), MediaType.OciIndex],
        ['a mediaType that contradicts Content-Type', () => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] }), MediaType.DockerManifest],
        ['an unknown mediaType', () => json({ schemaVersion: 2, mediaType: 'application/vnd.example+json', config, layers: [] }), 'application/vnd.example+json'],
      ];

      test.each(cases)('%s', async (_, manifest, contentType) => {
        const content = manifest();
        await expectErrorCode(await client.pushManifest(name, 'bad', content, contentType), 400, 'MANIFEST_INVALID');
        expect((await client.getManifest(name, 'bad')).response.status).toBe(404);
      });
    });

    test.each([
      ['starting with "-"', '-bad'],
      ['starting with "."', '.bad'],
      ['longer than 128 characters', 'a'.repeat(129)],
    ])('a tag %s is 400 TAG_INVALID', async (_, tag) => {
      const name = uniqueName('manifests/bad-tag');
      const config = await client.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      await expectErrorCode(await client.pushManifest(name, tag, manifest), 400, 'TAG_INVALID');
    });

    test('tags of 128 characters with "_", "." and "-" are accepted', async () => {
      const name = uniqueName('manifests/long-tag');
      const tags = ['_underscore', 'v1.2.3-rc.1', 'A'.repeat(128)];
      for (const tag of tags) await client.pushImage(name, { tag });
      expect(await client.listTags(name)).toEqual([...tags].sort());
    });

    test('PUT with a subject answers OCI-Subject with the subject digest', async () => {
      const name = uniqueName('manifests/subject');
      const subject = await client.pushImage(name, { tag: 'v1' });
      const referrer = await client.pushImage(name, { extra: { subject: subject.descriptor } });
      expect(referrer.response.headers.get('OCI-Subject')).toBe(subject.digest);
      // A manifest without subject carries no such header.
      expect(subject.response.headers.get('OCI-Subject')).toBeNull();
    });

    test('a subject that does not exist (yet) is accepted', async () => {
      const name = uniqueName('manifests/dangling-subject');
      const dangling = descriptorOf(MediaType.OciManifest, json({ not: 'pushed' }));
      const referrer = await client.pushImage(name, { extra: { subject: dangling } });
      expect(referrer.response.headers.get('OCI-Subject')).toBe(dangling.digest);
    });

    test('an OCI artifact (artifactType, empty config) is 201 and served as pushed', async () => {
      const name = uniqueName('manifests/artifact');
      const emptyConfig = await client.pushBlob(name, Buffer.from('{}'), MediaType.OciEmpty);
      expect(emptyConfig.digest).toBe('sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
      const sbom = await client.pushBlob(name, json({ spdxVersion: 'SPDX-2.3' }), 'application/spdx+json');
      const manifest = json({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: 'application/vnd.example.sbom.v1',
        config: { ...emptyConfig, data: 'e30=' },
        layers: [{ ...sbom, annotations: { 'org.opencontainers.image.title': 'sbom.spdx.json' } }],
        annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
      });
      const pushed = await client.putManifest(name, 'sbom', manifest);
      const { response, body } = await client.getManifest(name, 'sbom', { accept: MediaType.OciManifest });
      expect(response.status).toBe(200);
      expect(response.headers.get('Docker-Content-Digest')).toBe(pushed.digest);
      expect(body.equals(manifest)).toBe(true);
    });

    test('a manifest with no layers is accepted', async () => {
      const name = uniqueName('manifests/no-layers');
      const pushed = await client.pushImage(name, { tag: 'empty', layers: 0 });
      expect(JSON.parse(pushed.content.toString()).layers).toEqual([]);
    });
  });

  describe('PUT over max_manifest_size', () => {
    let small: TestApp;
    let smallClient: RegistryClient;

    beforeAll(async () => {
      small = await createTestApp({ overrides: { max_manifest_size: '1KiB' } });
      smallClient = new RegistryClient(small);
    });
    afterAll(() => small.close());

    test('a manifest over 1 KiB is 413 and not stored; one under it is 201', async () => {
      const name = 'manifests/size-cap';
      const config = await smallClient.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const big = json({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config,
        layers: [],
        annotations: { padding: 'x'.repeat(1100) },
      });
      expect(big.length).toBeGreaterThan(1024);
      await expectErrorCode(await smallClient.pushManifest(name, 'big', big), 413, 'MANIFEST_INVALID');
      expect((await smallClient.getManifest(name, digestOf(big))).response.status).toBe(404);

      const fits = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] });
      expect(fits.length).toBeLessThan(1024);
      await smallClient.putManifest(name, 'fits', fits);
    });

    test('the cap holds for a streamed body that announces no Content-Length', async () => {
      const name = 'manifests/size-cap-streamed';
      const config = await smallClient.pushBlob(name, json({ os: 'linux' }), OCI_CONFIG);
      const big = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [], annotations: { padding: 'y'.repeat(2000) } });
      const response = await smallClient.fetch(`/v2/${name}/manifests/big`, {
        method: 'PUT',
        headers: { 'Content-Type': MediaType.OciManifest },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(big.subarray(0, 1000));
            controller.enqueue(big.subarray(1000));
            controller.close();
          },
        }),
        duplex: 'half',
      });
      await expectErrorCode(response, 413, 'MANIFEST_INVALID');
    });
  });

  describe('GET and HEAD /v2/<name>/manifests/<reference>', () => {
    const name = 'manifests/read';
    let image: PushedManifest;
    let dockerImage: PushedManifest;

    beforeAll(async () => {
      image = await client.pushImage(name, { tag: 'oci' });
      dockerImage = await client.pushImage(name, { tag: 'docker', mediaType: MediaType.DockerManifest });
    });

    test('an unknown tag is 404 MANIFEST_UNKNOWN (HEAD: 404)', async () => {
      await expectErrorCode((await client.getManifest(name, 'nope')).response, 404, 'MANIFEST_UNKNOWN');
      expect((await client.getManifest(name, 'nope', { method: 'HEAD' })).response.status).toBe(404);
    });

    test('an unknown digest is 404 MANIFEST_UNKNOWN', async () => {
      await expectErrorCode((await client.getManifest(name, UNKNOWN_DIGEST)).response, 404, 'MANIFEST_UNKNOWN');
    });

    test('a manifest of another repository is 404 MANIFEST_UNKNOWN', async () => {
      await expectErrorCode((await client.getManifest('manifests/unrelated', image.digest)).response, 404, 'MANIFEST_UNKNOWN');
      await expectErrorCode((await client.getManifest('manifests/unrelated', 'oci')).response, 404, 'MANIFEST_UNKNOWN');
    });

    test.each([
      ['a short hex', 'sha256:abc'],
      ['an unsupported algorithm', 'md5:d41d8cd98f00b204e9800998ecf8427e'],
      ['a path', 'sha256:../../etc/passwd'],
    ])('a malformed digest reference (%s) is 400 DIGEST_INVALID with a JSON body', async (_, reference) => {
      const { response } = await client.getManifest(name, encodeURIComponent(reference));
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
      expect((await client.getManifest(name, encodeURIComponent(reference), { method: 'HEAD' })).response.status).toBe(400);
    });

    describe('Accept negotiation', () => {
      test.each([
        ['no Accept', undefined],
        ['*/*', '*/*'],
        ['the OCI manifest type', MediaType.OciManifest],
        ['a list with q-values that includes it', `${MediaType.DockerManifest}, ${MediaType.OciManifest};q=0.9, ${MediaType.OciIndex};q=0.5`],
      ])('an OCI manifest is served with %s', async (_, accept) => {
        const { response, body } = await client.getManifest(name, 'oci', { accept });
        expect(response.status).toBe(200);
        expect(response.headers.get('Content-Type')).toBe(MediaType.OciManifest);
        expect(body.equals(image.content)).toBe(true);
      });

      test('an OCI manifest asked for with only the Docker v2 type in Accept is 404 MANIFEST_UNKNOWN', async () => {
        const { response } = await client.getManifest(name, 'oci', { accept: MediaType.DockerManifest });
        await expectErrorCode(response, 404, 'MANIFEST_UNKNOWN');
        const head = await client.getManifest(name, image.digest, { accept: MediaType.DockerManifest, method: 'HEAD' });
        expect(head.response.status).toBe(404);
      });

      test('a Docker v2 manifest is served with its own Content-Type', async () => {
        const { response, body } = await client.getManifest(name, 'docker', { accept: MediaType.DockerManifest });
        expect(response.status).toBe(200);
        expect(response.headers.get('Content-Type')).toBe(MediaType.DockerManifest);
        expect(body.equals(dockerImage.content)).toBe(true);
      });
    });
  });

  describe('DELETE /v2/<name>/manifests/<reference>', () => {
    test('by digest: 202, then GET is 404 and its tags are gone from tags/list', async () => {
      const name = uniqueName('manifests/delete-digest');
      const image = await client.pushImage(name, { tag: 'one' });
      await client.putManifest(name, 'two', image.content);
      const kept = await client.pushImage(name, { tag: 'kept' });
      expect(await client.listTags(name)).toEqual(['kept', 'one', 'two']);

      const response = await client.fetch(`/v2/${name}/manifests/${image.digest}`, { method: 'DELETE' });
      expect(response.status).toBe(202);
      expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);

      await expectErrorCode((await client.getManifest(name, image.digest)).response, 404, 'MANIFEST_UNKNOWN');
      await expectErrorCode((await client.getManifest(name, 'one')).response, 404, 'MANIFEST_UNKNOWN');
      expect(await client.listTags(name)).toEqual(['kept']);
      expect((await client.getManifest(name, kept.digest)).response.status).toBe(200);
    });

    test('by tag: 202, and only the tag disappears', async () => {
      const name = uniqueName('manifests/delete-tag');
      const image = await client.pushImage(name, { tag: 'one' });
      await client.putManifest(name, 'two', image.content);

      const response = await client.fetch(`/v2/${name}/manifests/one`, { method: 'DELETE' });
      expect(response.status).toBe(202);

      await expectErrorCode((await client.getManifest(name, 'one')).response, 404, 'MANIFEST_UNKNOWN');
      expect(await client.listTags(name)).toEqual(['two']);
      const byDigest = await client.getManifest(name, image.digest);
      expect(byDigest.response.status).toBe(200);
      expect(byDigest.body.equals(image.content)).toBe(true);
      expect((await client.getManifest(name, 'two')).response.status).toBe(200);
    });

    test('an unknown tag or digest is 404 MANIFEST_UNKNOWN', async () => {
      const name = uniqueName('manifests/delete-unknown');
      await client.pushImage(name, { tag: 'present' });
      await expectErrorCode(await client.fetch(`/v2/${name}/manifests/absent`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      await expectErrorCode(await client.fetch(`/v2/${name}/manifests/${UNKNOWN_DIGEST}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
    });

    test('a malformed digest is 400 DIGEST_INVALID', async () => {
      const response = await client.fetch(`/v2/manifests/delete-bad/manifests/sha256:abc`, { method: 'DELETE' });
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
    });

    test('a deleted manifest can be pushed again', async () => {
      const name = uniqueName('manifests/repush');
      const image = await client.pushImage(name, { tag: 'v1' });
      expect((await client.fetch(`/v2/${name}/manifests/${image.digest}`, { method: 'DELETE' })).status).toBe(202);
      await client.putManifest(name, 'v1', image.content);
      const { response, body } = await client.getManifest(name, 'v1');
      expect(response.status).toBe(200);
      expect(body.equals(image.content)).toBe(true);
    });
  });

  test('Docker config media type is kept in a Docker manifest', async () => {
    const name = uniqueName('manifests/docker-config');
    const image = await client.pushImage(name, { tag: 'v1', mediaType: MediaType.DockerManifest });
    expect(image.config.mediaType).toBe(DOCKER_CONFIG);
    const { body } = await client.getManifest(name, 'v1');
    expect(JSON.parse(body.toString()).config.mediaType).toBe(DOCKER_CONFIG);
  });
});

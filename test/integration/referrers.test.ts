import { randomBytes } from 'node:crypto';
import { MediaType } from '../../src/oci/media-types';
import { Descriptor } from '../../src/oci/manifest';
import {
  PushedImage,
  PushedManifest,
  RegistryClient,
  descriptorOf,
  digestOf,
  expectErrorCode,
  expectStatus,
  json,
  uniqueName,
} from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

const SIGNATURE = 'application/vnd.example.signature.v1';
const SBOM = 'application/vnd.example.sbom.v1';
const CUSTOM_CONFIG = 'application/vnd.example.config.v1+json';

interface ReferrersIndex {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}

describe('GET /v2/<name>/referrers/<digest>', () => {
  let app: TestApp;
  let client: RegistryClient;

  const name = 'referrers/app';
  let subject: PushedImage;
  let signature: PushedManifest;
  let sbom: PushedManifest;
  let configTyped: PushedImage;
  let indexReferrer: PushedManifest;

  /** Pushes by digest an OCI artifact: empty config, one layer, `artifactType`, a subject. */
  async function pushArtifact(repository: string, artifactType: string, subjectDescriptor: Descriptor, annotations?: Record<string, string>) {
    const config = await client.pushBlob(repository, Buffer.from('{}'), MediaType.OciEmpty);
    const layer = await client.pushBlob(repository, json({ artifactType, nonce: randomBytes(8).toString('hex') }), 'application/json');
    const manifest = json({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType,
      config,
      layers: [layer],
      subject: subjectDescriptor,
      ...(annotations && { annotations }),
    });
    return client.putManifest(repository, digestOf(manifest), manifest);
  }

  async function referrers(repository: string, digest: string, query = ''): Promise<{ response: Response; index: ReferrersIndex }> {
    const response = await client.fetch(`/v2/${repository}/referrers/${digest}${query}`);
    await expectStatus(response, 200);
    return { response, index: (await response.json()) as ReferrersIndex };
  }

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
    subject = await client.pushImage(name, { tag: 'v1' });
    signature = await pushArtifact(name, SIGNATURE, subject.descriptor, { 'org.example.signed-by': 'test' });
    sbom = await pushArtifact(name, SBOM, subject.descriptor);
    // No artifactType: the config's media type stands in for it.
    configTyped = await client.pushImage(name, { configMediaType: CUSTOM_CONFIG, extra: { subject: subject.descriptor } });
    // An index can refer too.
    indexReferrer = await client.putManifest(name, 'index-referrer', {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      artifactType: SBOM,
      manifests: [sbom.descriptor],
      subject: subject.descriptor,
      annotations: { 'org.example.kind': 'index' },
    });
    // Not a referrer of the subject: no subject at all.
    await client.pushImage(name, { tag: 'unrelated' });
  });
  afterAll(() => app.close());

  test('200, an OCI image index of descriptors of every manifest whose subject is <digest>', async () => {
    const { response, index } = await referrers(name, subject.digest);
    expect(response.headers.get('Content-Type')).toBe(MediaType.OciIndex);
    expect(response.headers.get('OCI-Filters-Applied')).toBeNull();
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe(MediaType.OciIndex);
    const byDigest = new Map(index.manifests.map((descriptor) => [descriptor.digest, descriptor]));
    expect([...byDigest.keys()].sort()).toEqual([signature.digest, sbom.digest, configTyped.digest, indexReferrer.digest].sort());

    expect(byDigest.get(signature.digest)).toEqual({
      mediaType: MediaType.OciManifest,
      digest: signature.digest,
      size: signature.content.length,
      artifactType: SIGNATURE,
      annotations: { 'org.example.signed-by': 'test' },
    });
    expect(byDigest.get(sbom.digest)).toEqual({
      mediaType: MediaType.OciManifest,
      digest: sbom.digest,
      size: sbom.content.length,
      artifactType: SBOM,
    });
    expect(byDigest.get(indexReferrer.digest)).toEqual({
      mediaType: MediaType.OciIndex,
      digest: indexReferrer.digest,
      size: indexReferrer.content.length,
      artifactType: SBOM,
      annotations: { 'org.example.kind': 'index' },
    });
  });

  test('artifactType falls back to the config media type', async () => {
    const { index } = await referrers(name, subject.digest);
    const descriptor = index.manifests.find((entry) => entry.digest === configTyped.digest);
    expect(descriptor).toEqual({
      mediaType: MediaType.OciManifest,
      digest: configTyped.digest,
      size: configTyped.content.length,
      artifactType: CUSTOM_CONFIG,
    });
  });

  test('?artifactType= filters and sets OCI-Filters-Applied: artifactType', async () => {
    const { response, index } = await referrers(name, subject.digest, `?artifactType=${encodeURIComponent(SBOM)}`);
    expect(response.headers.get('OCI-Filters-Applied')).toBe('artifactType');
    expect(index.manifests.map((descriptor) => descriptor.digest).sort()).toEqual([sbom.digest, indexReferrer.digest].sort());

    const byConfig = await referrers(name, subject.digest, `?artifactType=${encodeURIComponent(CUSTOM_CONFIG)}`);
    expect(byConfig.index.manifests.map((descriptor) => descriptor.digest)).toEqual([configTyped.digest]);
  });

  test('a filter that matches nothing is an empty index, still with OCI-Filters-Applied', async () => {
    const { response, index } = await referrers(name, subject.digest, '?artifactType=application%2Fvnd.example.none');
    expect(response.headers.get('OCI-Filters-Applied')).toBe('artifactType');
    expect(index).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
  });

  test('a manifest without referrers gets an empty index, not 404', async () => {
    const { response, index } = await referrers(name, signature.digest);
    expect(response.headers.get('Content-Type')).toBe(MediaType.OciIndex);
    expect(index).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
  });

  test('a subject that does not exist gets an empty index, not 404', async () => {
    const absent = descriptorOf(MediaType.OciManifest, json({ absent: true }));
    const { index } = await referrers(name, absent.digest);
    expect(index.manifests).toEqual([]);
  });

  test('a referrer whose subject is not in the repository is listed', async () => {
    const repository = uniqueName('referrers/early');
    const future = await client.pushImage(uniqueName('referrers/elsewhere'), { layers: 0 });
    const early = await pushArtifact(repository, SIGNATURE, future.descriptor);
    const { index } = await referrers(repository, future.digest);
    expect(index.manifests.map((descriptor) => descriptor.digest)).toEqual([early.digest]);
  });

  test('referrers are per repository', async () => {
    const other = uniqueName('referrers/other');
    await client.pushImage(other, { extra: { subject: subject.descriptor } });
    const { index } = await referrers(name, subject.digest);
    expect(index.manifests).toHaveLength(4);
    const { index: otherIndex } = await referrers(other, subject.digest);
    expect(otherIndex.manifests).toHaveLength(1);
  });

  test('a deleted referrer leaves the list', async () => {
    const repository = uniqueName('referrers/delete');
    const target = await client.pushImage(repository, { tag: 'v1' });
    const first = await pushArtifact(repository, SIGNATURE, target.descriptor);
    const second = await pushArtifact(repository, SBOM, target.descriptor);
    expect((await client.fetch(`/v2/${repository}/manifests/${first.digest}`, { method: 'DELETE' })).status).toBe(202);
    const { index } = await referrers(repository, target.digest);
    expect(index.manifests.map((descriptor) => descriptor.digest)).toEqual([second.digest]);
  });

  test.each([
    ['a short hex', 'sha256:abc'],
    ['an unsupported algorithm', 'md5:d41d8cd98f00b204e9800998ecf8427e'],
    ['a tag instead of a digest', 'latest'],
  ])('a malformed digest (%s) is 400 DIGEST_INVALID', async (_, digest) => {
    await expectErrorCode(await client.fetch(`/v2/${name}/referrers/${digest}`), 400, 'DIGEST_INVALID');
  });

  test('an invalid repository name is 400 NAME_INVALID', async () => {
    await expectErrorCode(await client.fetch(`/v2/Bad/Name/referrers/${subject.digest}`), 400, 'NAME_INVALID');
  });
});

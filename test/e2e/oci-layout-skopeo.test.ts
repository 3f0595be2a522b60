// Self-test of the image builder and the skopeo helper: skopeo must accept the layouts the
// builder writes and copy them without changing a byte, or every other e2e test is suspect.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import {
  buildArtifactLayout,
  buildImageLayout,
  buildMultiArchLayout,
  findTag,
  readBlob,
  readLayoutIndex,
} from '../helpers/oci-image';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { MediaType } from '../../src/oci/media-types';

const sha256 = (content: Buffer) => `sha256:${createHash('sha256').update(content).digest('hex')}`;

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'oci-layout-skopeo-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

let counter = 0;
const freshDir = () => path.join(workDir, `layout-${++counter}`);

describe('buildImageLayout', () => {
  test('skopeo inspect reads the layout: digest, layers, config diff_ids', async () => {
    const image = await buildImageLayout(freshDir(), { tag: 'v1', layers: 2, layerSize: 200_000 });

    expect(await skopeoInspect(image.reference, { raw: true })).toBe(image.manifest.toString());
    const summary = await skopeoInspect(image.reference);
    expect(summary.Digest).toBe(image.manifestDigest);
    expect(summary.Layers).toEqual(image.layerDigests);
    expect(summary).toMatchObject({ Os: 'linux', Architecture: 'amd64' });
    const config = await skopeoInspect(image.reference, { config: true });
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: image.diffIds });
    expect(sha256(await readBlob(image.dir, image.configDigest))).toBe(image.configDigest);
  });

  test('skopeo copy oci → oci keeps manifest, config and layers byte-identical', async () => {
    const image = await buildImageLayout(freshDir(), { tag: 'v1', layers: 3, layerSize: 70_000 });
    const copyDir = freshDir();

    await skopeoCopy(image.reference, `oci:${copyDir}:copied`);

    expect((await findTag(copyDir, 'copied'))?.digest).toBe(image.manifestDigest);
    expect(await readBlob(copyDir, image.manifestDigest)).toEqual(image.manifest);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      expect(sha256(await readBlob(copyDir, digest))).toBe(digest);
    }
  });

  test('each layer is a gzip’d ustar archive whose uncompressed sha256 is its diff_id', async () => {
    const image = await buildImageLayout(freshDir(), { tag: 'v1', layers: 2, layerSize: 1000 });

    for (const [i, digest] of image.layerDigests.entries()) {
      const blob = await readBlob(image.dir, digest);
      expect(blob.length).toBe(image.layerSizes[i]);
      expect(sha256(gunzipSync(blob))).toBe(image.diffIds[i]);
      // GNU tar checks every header checksum.
      const { stdout } = await promisify(execFile)('tar', ['-tvzf', path.join(image.dir, 'blobs/sha256', digest.slice(7))]);
      expect(stdout).toMatch(new RegExp(`^-.* 1000 .* layer-${i}/payload\\.bin$`, 'm'));
    }
  });

  test('the same options give the same digests; another seed gives others', async () => {
    const options = { tag: 'v1', layers: 1, layerSize: 5000, seed: 'same' };
    const first = await buildImageLayout(freshDir(), options);
    const second = await buildImageLayout(freshDir(), options);
    const other = await buildImageLayout(freshDir(), { ...options, seed: 'other' });

    expect(second.manifestDigest).toBe(first.manifestDigest);
    expect(other.layerDigests[0]).not.toBe(first.layerDigests[0]);
  });

  test('several tags share one layout; building a tag again moves it', async () => {
    const dir = freshDir();
    const a = await buildImageLayout(dir, { tag: 'a', layers: 1, layerSize: 10 });
    await buildImageLayout(dir, { tag: 'b', layers: 1, layerSize: 10 });
    const b = await buildImageLayout(dir, { tag: 'b', layers: 1, layerSize: 10, seed: 'moved' });

    const index = await readLayoutIndex(dir);
    expect(index.manifests.map((entry) => [entry.annotations?.['org.opencontainers.image.ref.name'], entry.digest])).toEqual([
      ['a', a.manifestDigest],
      ['b', b.manifestDigest],
    ]);
    expect((await skopeoInspect(b.reference)).Digest).toBe(b.manifestDigest);
  });
});

describe('buildMultiArchLayout', () => {
  test('skopeo copy --all keeps the index; inspect picks the platform asked for', async () => {
    const image = await buildMultiArchLayout(freshDir(), {
      tag: 'multi',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      layers: 1,
      layerSize: 1000,
    });
    const [amd64, arm64] = image.images;

    const index = JSON.parse(await skopeoInspect(image.reference, { raw: true }));
    expect(index.mediaType).toBe(MediaType.OciIndex);
    expect(index.manifests.map((entry: { digest: string; platform: unknown }) => [entry.digest, entry.platform])).toEqual([
      [amd64.manifestDigest, { os: 'linux', architecture: 'amd64' }],
      [arm64.manifestDigest, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ]);
    const config = await skopeoInspect(image.reference, { config: true, extraArgs: ['--override-arch', 'arm64'] });
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: arm64.diffIds });

    const copyDir = freshDir();
    await skopeoCopy(image.reference, `oci:${copyDir}:multi`, ['--all']);
    expect(await readBlob(copyDir, image.manifestDigest)).toEqual(image.manifest);
    expect(await readBlob(copyDir, arm64.manifestDigest)).toEqual(arm64.manifest);
    expect(await readBlob(copyDir, amd64.manifestDigest)).toEqual(amd64.manifest);
  });
});

describe('buildArtifactLayout', () => {
  test('an artifact with a subject copies byte-identically', async () => {
    const dir = freshDir();
    const image = await buildImageLayout(dir, { tag: 'v1', layers: 1, layerSize: 10 });
    const artifact = await buildArtifactLayout(dir, {
      tag: 'sig',
      artifactType: 'application/vnd.example.signature',
      files: [{ mediaType: 'application/vnd.example.signature.v1', content: 'signed' }],
      subject: { mediaType: image.mediaType, digest: image.manifestDigest, size: image.manifestSize },
    });

    const copyDir = freshDir();
    await skopeoCopy(artifact.reference, `oci:${copyDir}:sig`);
    expect(await readBlob(copyDir, artifact.manifestDigest)).toEqual(artifact.manifest);
    expect(JSON.parse(artifact.manifest.toString())).toMatchObject({
      artifactType: 'application/vnd.example.signature',
      config: { mediaType: MediaType.OciEmpty, size: 2 },
      subject: { digest: image.manifestDigest },
    });
  });
});

describe('skopeo helper', () => {
  test('a failing skopeo rejects with the command and its stderr', async () => {
    const missing = path.join(workDir, 'no-such-layout');
    await expect(skopeoInspect(`oci:${missing}:v1`)).rejects.toThrow(
      new RegExp(`skopeo inspect oci:${missing}:v1 failed \\(exit 1\\)[^]*--- stderr\\n.*no-such-layout`),
    );
  });
});

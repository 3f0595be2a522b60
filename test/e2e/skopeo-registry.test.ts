import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { digestOf } from '../../src/oci/digest';
import { buildArtifactLayout, buildImageLayout, buildMultiArchLayout } from '../helpers/oci-image';
import { readDirTransport, skopeoCopy, skopeoDelete, skopeoInspect, skopeoListTags } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';


describe('skopeo against the registry', () => {
  let app: TestApp;
  let work: string;

  beforeAll(async () => {
    app = await createTestApp();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'skopeo-e2e-'));
  });
  afterAll(async () => {
    await app.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const docker = (name: string) => `docker://${app.host}/${name}`;

  test('an OCI image pushed and pulled back is byte-identical', async () => {
    const image = await buildImageLayout(path.join(work, 'oci-src'), { tag: 'v1', layers: 3, layerSize: 300_000 });
    await skopeoCopy(image.reference, docker('e2e/oci-image:v1'));
    const pulled = path.join(work, 'oci-pulled');
    await skopeoCopy(docker('e2e/oci-image:v1'), `dir:${pulled}`);

    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(image.manifest)).toBe(true);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      const blob = files[digest.slice('sha256:'.length)];
      expect(digestOf(blob)).toBe(digest);
    }
    const inspected = await skopeoInspect(docker('e2e/oci-image:v1'));
    expect(inspected.Digest).toBe(image.manifestDigest);
  });

  test('a Docker v2 schema 2 image keeps its digest and media type', async () => {
    const image = await buildImageLayout(path.join(work, 'v2s2-src'), { tag: 'v1', layers: 2, layerSize: 100_000, seed: 'v2s2' });
    const digestFile = path.join(work, 'v2s2.digest');
    await skopeoCopy(image.reference, docker('e2e/docker-image:v1'), ['--format', 'v2s2', '--digestfile', digestFile]);
    const pushedDigest = fs.readFileSync(digestFile, 'utf8').trim();

    const raw = await skopeoInspect(docker('e2e/docker-image:v1'), { raw: true });
    expect(JSON.parse(raw).mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(digestOf(raw)).toBe(pushedDigest);

    const pulled = path.join(work, 'v2s2-pulled');
    await skopeoCopy(docker('e2e/docker-image:v1'), `dir:${pulled}`);
    expect(digestOf(readDirTransport(pulled)['manifest.json'])).toBe(pushedDigest);
  });

  test('a multi-arch index and every platform image round-trip with --all', async () => {
    const image = await buildMultiArchLayout(path.join(work, 'multi-src'), {
      tag: 'v1',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: 2,
      layerSize: 50_000,
    });
    await skopeoCopy(image.reference, docker('e2e/multi:v1'), ['--all']);
    const raw = await skopeoInspect(docker('e2e/multi:v1'), { raw: true });
    expect(Buffer.from(raw).equals(image.manifest)).toBe(true);

    const pulled = path.join(work, 'multi-pulled');
    await skopeoCopy(docker('e2e/multi:v1'), `dir:${pulled}`, ['--all']);
    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(image.manifest)).toBe(true);
    for (const child of image.images) {
      const childManifest = Object.entries(files).find(([name]) => name.endsWith('.manifest.json') && name.includes(child.manifestDigest.slice(7)));
      expect(childManifest?.[1].equals(child.manifest)).toBe(true);
    }
  });

  test('an OCI artifact with a subject is stored and listed as a referrer', async () => {
    const subject = await buildImageLayout(path.join(work, 'subject-src'), { tag: 'v1', layers: 1, layerSize: 1000, seed: 'subject' });
    await skopeoCopy(subject.reference, docker('e2e/signed:v1'));
    const artifact = await buildArtifactLayout(path.join(work, 'artifact-src'), {
      tag: 'sig',
      artifactType: 'application/vnd.example.signature',
      files: [{ mediaType: 'application/vnd.example.signature.v1', content: Buffer.from('signed!') }],
      subject: { mediaType: subject.mediaType, digest: subject.manifestDigest, size: subject.manifestSize },
    });
    await skopeoCopy(artifact.reference, docker('e2e/signed:sig'));

    const response = await fetch(`${app.url}/v2/e2e/signed/referrers/${subject.manifestDigest}`);
    expect(response.status).toBe(200);
    const index = (await response.json()) as { manifests: Array<{ digest: string; artifactType: string }> };
    expect(index.manifests).toEqual([
      expect.objectContaining({ digest: artifact.manifestDigest, artifactType: 'application/vnd.example.signature' }),
    ]);
  });

  test('list-tags, copy between repositories, and delete', async () => {
    const image = await buildImageLayout(path.join(work, 'tags-src'), { tag: 'a', layers: 1, layerSize: 10_000, seed: 'tags' });
    for (const tag of ['1.0', '1.1', 'latest']) await skopeoCopy(image.reference, docker(`e2e/tagged:${tag}`));
    expect(await skopeoListTags(docker('e2e/tagged'))).toEqual(['1.0', '1.1', 'latest']);

    // Registry to registry: skopeo mounts the blobs across repositories instead of uploading them again.
    await skopeoCopy(docker('e2e/tagged:1.0'), docker('e2e/copied:1.0'));
    expect((await skopeoInspect(docker('e2e/copied:1.0'))).Digest).toBe(image.manifestDigest);

    await skopeoDelete(docker('e2e/copied:1.0'));
    await expect(skopeoInspect(docker('e2e/copied:1.0'))).rejects.toThrow(/manifest unknown/i);
    // The original repository is untouched.
    expect((await skopeoInspect(docker('e2e/tagged:latest'))).Digest).toBe(image.manifestDigest);
  });
});

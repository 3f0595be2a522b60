import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Descriptor } from '../../src/oci/manifest';
import { MediaType } from '../../src/oci/media-types';
import { digestOf, json, PushedImage, PushedManifest, RegistryClient } from '../helpers/registry-client';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const COSIGN_SIGNATURE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
const NOTATION_SIGNATURE = 'application/vnd.cncf.notary.signature';

/** dist-spec 1.1 referrers tag schema: `<alg>-<ref>`. */
const referrersTag = (digest: string) => digest.replace(':', '-');

interface ReferrersIndex {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}

/**
 * Referrers through the cache in front of the reference registry 2.8, which has no referrers API: what
 * cosign and notation push there is an artifact manifest with a `subject`, and the referrers tag
 * `sha256-<hex>` holding an index of them (dist-spec 1.1 "referrers tag schema"), plus cosign's own
 * `sha256-<hex>.sig` tag.
 */
describe('GET /v2/proxy/<upstream>/<name>/referrers/<digest> in front of docker-registry 2.8', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let work: string;
  let pusher: RegistryClient;
  let subject: PushedImage;
  let cosignArtifact: PushedManifest;
  let notationArtifact: PushedManifest;
  let sigTag: string;
  let sigManifest: PushedManifest;
  const name = 'team/signed';
  const proxied = `proxy/upstream.test/${name}`;

  /** distribution 2.8 has no monolithic POST: POST opens the session, PUT ?digest= with the bytes closes it. */
  async function pushBlob(content: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = digestOf(content);
    const opened = await fetch(`${upstream.url}/v2/${name}/blobs/uploads/`, { method: 'POST' });
    expect(opened.status).toBe(202);
    const location = new URL(opened.headers.get('location')!, upstream.url);
    location.searchParams.set('digest', digest);
    const closed = await fetch(location, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: content });
    expect(closed.status).toBe(201);
    return { mediaType, digest, size: content.length };
  }

  /** An artifact manifest as cosign (OCI 1.1 mode) and notation push it: empty config, one layer, a subject. */
  async function pushArtifact(artifactType: string): Promise<PushedManifest> {
    const config = await pushBlob(Buffer.from('{}'), MediaType.OciEmpty);
    const layer = await pushBlob(json({ signature: randomBytes(16).toString('hex') }), 'application/octet-stream');
    const manifest = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, artifactType, config, layers: [layer], subject: subject.descriptor });
    const pushed = await pusher.putManifest(name, digestOf(manifest), manifest);
    return { ...pushed, descriptor: { ...pushed.descriptor, artifactType } };
  }

  async function referrers(query = ''): Promise<{ response: Response; index: ReferrersIndex }> {
    const response = await fetch(`${app.url}/v2/${proxied}/referrers/${subject.digest}${query}`);
    expect(response.status).toBe(200);
    return { response, index: (await response.json()) as ReferrersIndex };
  }

  const upstreamRequests = async (uriPart: string) =>
    (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.includes(uriPart)).length;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-referrers-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createTestApp({
      configuration: `[proxy]\ntag_ttl = "1s"\ntimeout = "5s"\n\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`,
    });
    pusher = new RegistryClient({ url: upstream.url });
    const config = await pushBlob(json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }), 'application/vnd.oci.image.config.v1+json');
    const layer = await pushBlob(randomBytes(1000), 'application/vnd.oci.image.layer.v1.tar+gzip');
    const image = await pusher.putManifest(name, 'v1', { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] });
    subject = { ...image, config, layers: [layer] };
    cosignArtifact = await pushArtifact(COSIGN_SIGNATURE);
    notationArtifact = await pushArtifact(NOTATION_SIGNATURE);
    // What a client does against a registry without the referrers API: keep the index under the tag.
    await pusher.putManifest(name, referrersTag(subject.digest), {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [cosignArtifact.descriptor, notationArtifact.descriptor],
    });
    // cosign's tag scheme: the signature is an ordinary image under sha256-<hex>.sig.
    sigTag = `${referrersTag(subject.digest)}.sig`;
    const sigConfig = await pushBlob(json({ architecture: '', os: '', config: {} }), 'application/vnd.oci.image.config.v1+json');
    const payload = await pushBlob(json({ critical: { image: { 'docker-manifest-digest': subject.digest } } }), 'application/vnd.dev.cosign.simplesigning.v1+json');
    sigManifest = await pusher.putManifest(name, sigTag, {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: sigConfig,
      layers: [{ ...payload, annotations: { 'dev.cosignproject.cosign/signature': 'MEUCIQ-test' } }],
    });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the upstream has no referrers API: the list comes from its referrers tag, filtered by artifactType here', async () => {
    const { response, index } = await referrers();
    expect(response.headers.get('content-type')).toBe(MediaType.OciIndex);
    expect(index.mediaType).toBe(MediaType.OciIndex);
    expect(index.manifests.map((descriptor) => descriptor.digest).sort()).toEqual([cosignArtifact.digest, notationArtifact.digest].sort());
    expect(index.manifests.find((descriptor) => descriptor.digest === notationArtifact.digest)?.artifactType).toBe(NOTATION_SIGNATURE);
    // Asked the API first (404 from 2.8), then the tag.
    expect(await upstreamRequests(`/v2/${name}/referrers/${subject.digest}`)).toBeGreaterThanOrEqual(1);
    expect(await upstreamRequests(`/v2/${name}/manifests/${referrersTag(subject.digest)}`)).toBeGreaterThanOrEqual(1);

    const filtered = await referrers(`?artifactType=${encodeURIComponent(NOTATION_SIGNATURE)}`);
    expect(filtered.response.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(filtered.index.manifests.map((descriptor) => descriptor.digest)).toEqual([notationArtifact.digest]);

    // The referrers themselves are pulled through the cache like any manifest, by digest.
    const referrer = await fetch(`${app.url}/v2/${proxied}/manifests/${notationArtifact.digest}`, { headers: { Accept: MediaType.OciManifest } });
    expect(referrer.status).toBe(200);
    expect(digestOf(Buffer.from(await referrer.arrayBuffer()))).toBe(notationArtifact.digest);
  });

  test('cached for tag_ttl once the subject is cached, then served with the upstream stopped; the .sig tag pulls with skopeo', async () => {
    await skopeoCopy(`docker://${app.host}/${proxied}:v1`, `dir:${path.join(work, 'subject')}`);
    await skopeoCopy(`docker://${app.host}/${proxied}:${sigTag}`, `dir:${path.join(work, 'sig-online')}`);
    expect(fs.readFileSync(path.join(work, 'sig-online', 'manifest.json')).equals(sigManifest.content)).toBe(true);

    await referrers();
    const asked = await upstreamRequests(`/v2/${name}/manifests/${referrersTag(subject.digest)}`);
    // Within tag_ttl the kept answer stands: no further upstream request.
    await referrers();
    expect(await upstreamRequests(`/v2/${name}/manifests/${referrersTag(subject.digest)}`)).toBe(asked);

    await upstream.stop();
    try {
      // Past tag_ttl: the upstream would be asked again, and it is down.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const { index } = await referrers();
      expect(index.manifests.map((descriptor) => descriptor.digest).sort()).toEqual([cosignArtifact.digest, notationArtifact.digest].sort());
      const filtered = await referrers(`?artifactType=${encodeURIComponent(COSIGN_SIGNATURE)}`);
      expect(filtered.index.manifests.map((descriptor) => descriptor.digest)).toEqual([cosignArtifact.digest]);

      const sigOffline = path.join(work, 'sig-offline');
      await skopeoCopy(`docker://${app.host}/${proxied}:${sigTag}`, `dir:${sigOffline}`);
      expect(fs.readFileSync(path.join(sigOffline, 'manifest.json')).equals(sigManifest.content)).toBe(true);
      expect((await skopeoInspect(`docker://${app.host}/${proxied}:${sigTag}`, { raw: true })).length).toBeGreaterThan(0);

      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/registry_proxy_cache_requests_total\{upstream="upstream.test",kind="referrers",result="stale"\} [1-9]/);
      expect(metrics).toMatch(/registry_proxy_cache_requests_total\{upstream="upstream.test",kind="referrers",result="hit"\} [1-9]/);
    } finally {
      await upstream.start();
    }
  });

  test('referrers of a manifest never cached, with the upstream down: 503 UNAVAILABLE, not an empty list', async () => {
    await upstream.stop();
    try {
      const unknown = `sha256:${'0'.repeat(64)}`;
      const response = await fetch(`${app.url}/v2/${proxied}/referrers/${unknown}`);
      expect(response.status).toBe(503);
      expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('UNAVAILABLE');
    } finally {
      await upstream.start();
    }
  });
});

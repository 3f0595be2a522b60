import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Descriptor } from '../../../src/oci/manifest';
import { MediaType } from '../../../src/oci/media-types';
import { digestOf, json } from '../../helpers/registry-client';
import { createTestApp, TestApp } from '../../helpers/test-app';

const SIGNATURE = 'application/vnd.example.signature.v1';
const SBOM = 'application/vnd.example.sbom.v1';

const subject = json({
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'1'.repeat(64)}`, size: 2 },
  layers: [],
});
const subjectDigest = digestOf(subject);
const referrerList: Descriptor[] = [
  { mediaType: MediaType.OciManifest, digest: `sha256:${'a'.repeat(64)}`, size: 100, artifactType: SIGNATURE },
  { mediaType: MediaType.OciManifest, digest: `sha256:${'b'.repeat(64)}`, size: 200, artifactType: SBOM, annotations: { 'org.example.kind': 'sbom' } },
];

/**
 * An upstream with the dist-spec 1.1 referrers API (the reference registry 2.8 has none): it filters by
 * artifactType and says so with OCI-Filters-Applied, and counts what it was asked.
 */
describe('GET /v2/proxy/<upstream>/<name>/referrers/<digest> from an upstream with the referrers API', () => {
  let app: TestApp;
  let upstream: http.Server;
  const asked: string[] = [];

  beforeAll(async () => {
    upstream = http.createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://upstream.invalid');
      const [, , repository, kind, reference] = url.pathname.split('/');
      if (kind === 'referrers') {
        asked.push(`${repository} ${url.search}`);
        if (repository === 'huge') {
          response.writeHead(200, { 'content-type': MediaType.OciIndex });
          // Far over max_manifest_size, and it would go on: the cache stops reading at the cap.
          return void response.end(json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: Array(5000).fill(referrerList[0]) }));
        }
        if (repository === 'not-an-index') {
          response.writeHead(200, { 'content-type': 'application/json' });
          return void response.end('{"manifests":"none"}');
        }
        const artifactType = url.searchParams.get('artifactType');
        const headers: Record<string, string> = { 'content-type': MediaType.OciIndex };
        if (artifactType !== null) headers['OCI-Filters-Applied'] = 'artifactType';
        response.writeHead(200, headers);
        const manifests = referrerList.filter((descriptor) => artifactType === null || descriptor.artifactType === artifactType);
        return void response.end(json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
      }
      if (kind === 'manifests' && (reference === 'v1' || reference === subjectDigest)) {
        response.writeHead(200, { 'content-type': MediaType.OciManifest, 'docker-content-digest': subjectDigest });
        return void response.end(subject);
      }
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    app = await createTestApp({
      overrides: { max_manifest_size: '64KiB' },
      configuration: `[proxy]\ntag_ttl = "1h"\n\n[[proxy.upstreams]]\nhost = "api.test"\nurl = "${url}"\n`,
    });
  });
  afterAll(async () => {
    await app?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  });

  async function referrers(repository: string, query = ''): Promise<{ response: Response; manifests: Descriptor[] }> {
    const response = await fetch(`${app.url}/v2/proxy/api.test/${repository}/referrers/${subjectDigest}${query}`);
    expect(response.status).toBe(200);
    return { response, manifests: ((await response.json()) as { manifests: Descriptor[] }).manifests };
  }

  test('artifactType is passed on to the upstream, and its filtered answer is served as it is', async () => {
    asked.length = 0;
    const { response, manifests } = await referrers('filtered', `?artifactType=${encodeURIComponent(SBOM)}`);
    expect(asked).toEqual([`filtered ?artifactType=${encodeURIComponent(SBOM)}`]);
    expect(response.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(manifests).toEqual([referrerList[1]]);
  });

  test('the whole list of a cached subject is kept for tag_ttl: later requests, filtered or not, are answered from it; eviction drops it', async () => {
    const pulled = await fetch(`${app.url}/v2/proxy/api.test/kept/manifests/v1`, { headers: { Accept: MediaType.OciManifest } });
    expect(pulled.status).toBe(200);
    // One URL: which one served is no news, and its address is not told.
    expect(pulled.headers.get('x-registry-upstream')).toBeNull();
    asked.length = 0;
    expect((await referrers('kept')).manifests).toEqual(referrerList);
    expect((await referrers('kept')).manifests).toEqual(referrerList);
    const filtered = await referrers('kept', `?artifactType=${encodeURIComponent(SIGNATURE)}`);
    expect(filtered.manifests).toEqual([referrerList[0]]);
    expect(filtered.response.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(asked).toEqual(['kept ']);

    // The kept list goes with its subject: once evicted, the upstream is asked again.
    const evicted = await fetch(`${app.url}/api/cache/proxy/api.test/kept`, { method: 'DELETE' });
    expect(evicted.status).toBe(200);
    expect((await referrers('kept')).manifests).toEqual(referrerList);
    expect(asked).toEqual(['kept ', 'kept ']);
  });

  test.each([
    ['huge', 'over'],
    ['not-an-index', 'not an OCI index'],
  ])('a referrers answer that is %s: 503 UNAVAILABLE naming the upstream', async (repository, says) => {
    const response = await fetch(`${app.url}/v2/proxy/api.test/${repository}/referrers/${subjectDigest}`);
    expect(response.status).toBe(503);
    const body = (await response.json()) as { errors: Array<{ code: string; message: string }> };
    expect(body.errors[0].code).toBe('UNAVAILABLE');
    expect(body.errors[0].message).toContain('api.test');
    expect(body.errors[0].message).toContain(says);
  });
});

import http from 'node:http';
import { AddressInfo } from 'node:net';
import { digestOf } from '../../../src/oci/digest';
import { MediaType } from '../../../src/oci/media-types';
import { createTestApp, TestApp } from '../../helpers/test-app';

const CONFIG = Buffer.from('{}');
const MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(CONFIG), size: CONFIG.length },
    layers: [],
  }),
);

/** An upstream whose one tag can be deleted: then it answers 404 MANIFEST_UNKNOWN, as registries do. */
function startUpstream() {
  const state = { deleted: false, manifestRequests: 0 };
  const server = http.createServer((request, response) => {
    if (request.url === '/v2/') return response.end('{}');
    if (request.url === '/v2/team/app/manifests/1') state.manifestRequests++;
    if (request.url !== '/v2/team/app/manifests/1' || state.deleted) {
      response.writeHead(404, { 'Content-Type': 'application/json' });
      return response.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
    }
    response.writeHead(200, { 'Content-Type': MediaType.OciManifest, 'Content-Length': MANIFEST.length, 'Docker-Content-Digest': digestOf(MANIFEST) });
    response.end(request.method === 'HEAD' ? undefined : MANIFEST);
  });
  return new Promise<{ url: string; state: typeof state; close: () => Promise<void> }>((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        state,
        close: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    );
  });
}

describe('GET /v2/proxy/<upstream>/<name>/manifests/<tag> after the upstream deleted the tag', () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let app: TestApp;

  beforeEach(async () => {
    upstream = await startUpstream();
  });
  afterEach(async () => {
    await app?.close();
    await upstream?.close();
  });

  const start = (serveDeleted: string) =>
    createTestApp({
      configuration: `[proxy]\ntag_ttl = "1s"\nserve_deleted = "${serveDeleted}"\n[[proxy.upstreams]]\nhost = "gone.test"\nurl = "${upstream.url}"\n`,
    });
  const pullTag = () => fetch(`${app.url}/v2/proxy/gone.test/team/app/manifests/1`, { headers: { Accept: MediaType.OciManifest } });
  const deleteAfterTagTtl = async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    upstream.state.deleted = true;
  };

  test('serve_deleted = "all": served from the cache, and not asked again within tag_ttl', async () => {
    app = await start('all');
    expect((await pullTag()).status).toBe(200);
    await deleteAfterTagTtl();
    const served = await pullTag();
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer())).toEqual(MANIFEST);
    const requests = upstream.state.manifestRequests;
    expect((await pullTag()).status).toBe(200);
    expect(upstream.state.manifestRequests).toBe(requests);
  });

  test('serve_deleted = "pinned" without a pin: the 404 is passed on as MANIFEST_UNKNOWN', async () => {
    app = await start('pinned');
    expect((await pullTag()).status).toBe(200);
    await deleteAfterTagTtl();
    const response = await pullTag();
    expect(response.status).toBe(404);
    expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
});

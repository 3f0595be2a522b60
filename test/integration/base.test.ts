import { API_VERSION, RegistryClient, expectErrorCode } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

describe('base API and routing', () => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  test('GET /v2/ answers 200 {} as JSON with Docker-Distribution-API-Version', async () => {
    const response = await client.fetch('/v2/');
    expect(response.status).toBe(200);
    expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
    expect(response.headers.get('Content-Type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({});
  });

  test('HEAD /v2/ answers 200 with the API version header', async () => {
    const response = await client.fetch('/v2/', { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
  });

  // dist-spec: the header is on every response, not only on /v2/.
  test.each([
    ['GET /v2/_catalog', '/v2/_catalog', 200],
    ['GET an unknown blob', `/v2/some/repo/blobs/sha256:${'0'.repeat(64)}`, 404],
    ['GET tags/list of an invalid name', '/v2/UPPER/tags/list', 400],
    ['GET an unknown route', '/v3/', 404],
  ])('%s carries Docker-Distribution-API-Version', async (_, path, status) => {
    const response = await client.fetch(path);
    expect(response.status).toBe(status);
    expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
  });

  test.each([
    ['GET /v3/', 'GET', '/v3/'],
    ['GET /', 'GET', '/'],
    ['GET /v2/<name>/unknown', 'GET', '/v2/library/alpine/unknown'],
    ['GET /v2/<name>/manifests/ (no reference)', 'GET', '/v2/library/alpine/manifests/'],
    ['GET /v2/<name>/referrers/ (no digest)', 'GET', '/v2/library/alpine/referrers/'],
  ])('an unknown route (%s) is 404 with a JSON error body', async (_, method, path) => {
    const response = await client.fetch(path, { method });
    const body = await expectErrorCode(response, 404, 'UNSUPPORTED');
    expect(body.errors[0].message).toContain(path);
  });

  // RFC 9110: a 405 names the methods the resource has in Allow.
  test.each([
    ['PUT /v2/', 'PUT', '/v2/', ['GET', 'HEAD']],
    ['DELETE /v2/_catalog', 'DELETE', '/v2/_catalog', ['GET', 'HEAD']],
    ['POST /v2/<name>/tags/list', 'POST', '/v2/library/alpine/tags/list', ['GET', 'HEAD']],
    ['POST /v2/<name>/manifests/<reference>', 'POST', '/v2/library/alpine/manifests/latest', ['DELETE', 'GET', 'HEAD', 'PUT']],
    ['PATCH /v2/<name>/blobs/<digest>', 'PATCH', `/v2/library/alpine/blobs/sha256:${'0'.repeat(64)}`, ['DELETE', 'GET', 'HEAD']],
    ['PUT /v2/<name>/blobs/uploads/', 'PUT', '/v2/library/alpine/blobs/uploads/', ['POST']],
  ])('a wrong method on a known route (%s) is 405 with a JSON body and Allow', async (_, method, path, allowed) => {
    const response = await client.fetch(path, { method });
    const allow = response.headers.get('Allow');
    await expectErrorCode(response, 405, 'UNSUPPORTED');
    const methods = allow?.split(/,\s*/) ?? [];
    expect(methods).toEqual(expect.arrayContaining(allowed));
    expect(methods).not.toContain(method);
  });

  test('a method no route has (PROPFIND) is 501 with a JSON body', async () => {
    const response = await client.fetch('/v2/library/alpine/tags/list', { method: 'PROPFIND' });
    await expectErrorCode(response, 501, 'UNSUPPORTED');
  });
});

import http from 'node:http';
import { AddressInfo } from 'node:net';
import { createTestApp, TestApp } from '../../helpers/test-app';

/** An upstream whose answers are not what the distribution spec says: each must be a clean 503, never a 500. */
const TAG_LISTS: Record<string, string> = {
  'not-json': '<html>busy</html>',
  'json-null': 'null',
  'tags-string': '{"name":"x","tags":"latest"}',
  'tags-number': '{"name":"x","tags":5}',
  'tags-objects': '{"name":"x","tags":[{"evil":true}]}',
};

describe('GET /v2/proxy/<upstream>/<name>/tags/list and manifests from a malformed upstream', () => {
  let app: TestApp;
  let upstream: http.Server;

  beforeAll(async () => {
    upstream = http.createServer((request, response) => {
      const [, , kind, , resource] = (request.url ?? '').split('/');
      if (resource === 'tags') {
        response.writeHead(200, { 'content-type': 'application/json' });
        if (kind === 'tags-null') return void response.end('{"name":"x","tags":null}');
        if (kind === 'some-invalid') return void response.end('{"name":"x","tags":["v1","not a tag","../../x","v2"]}');
        return void response.end(TAG_LISTS[kind]);
      }
      if (resource === 'manifests') {
        // Not a manifest at all, under any reference.
        response.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
        return void response.end('{"schemaVersion":"two"}');
      }
      response.writeHead(404);
      response.end();
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    app = await createTestApp({ configuration: `[[proxy.upstreams]]\nhost = "malformed.test"\nurl = "${url}"\n` });
  });
  afterAll(async () => {
    await app?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  });

  test.each(Object.keys(TAG_LISTS))('a tag list that is %s: 503 UNAVAILABLE naming the upstream', async (kind) => {
    const response = await fetch(`${app.url}/v2/proxy/malformed.test/${kind}/app/tags/list`);
    expect(response.status).toBe(503);
    const body = (await response.json()) as { errors: Array<{ code: string; message: string }> };
    expect(body.errors[0].code).toBe('UNAVAILABLE');
    expect(body.errors[0].message).toContain('malformed.test');
  });

  test('"tags": null is an empty list, and names that are not tags are left out', async () => {
    const empty = await fetch(`${app.url}/v2/proxy/malformed.test/tags-null/app/tags/list`);
    expect(empty.status).toBe(200);
    expect(((await empty.json()) as { tags: string[] }).tags).toEqual([]);
    const some = await fetch(`${app.url}/v2/proxy/malformed.test/some-invalid/app/tags/list`);
    expect(((await some.json()) as { tags: string[] }).tags).toEqual(['v1', 'v2']);
  });

  test('a manifest that is not one, or does not match its digest: 503 UNAVAILABLE, nothing cached', async () => {
    for (const reference of ['latest', `sha256:${'c'.repeat(64)}`]) {
      const response = await fetch(`${app.url}/v2/proxy/malformed.test/bad/app/manifests/${reference}`);
      expect(response.status).toBe(503);
      expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('UNAVAILABLE');
    }
    expect(await app.registry.index.repositoryExists('proxy/malformed.test/bad/app')).toBe(false);
  });
});

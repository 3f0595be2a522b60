import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  API_VERSION,
  RegistryClient,
  digestOf,
  expectErrorCode,
  expectStatus,
  requireHeader,
  uniqueName,
} from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

const SHA256_EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const UNKNOWN_DIGEST = `sha256:${'0'.repeat(64)}`;

/** Every file under `dir`, recursively. */
function listFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((entry) => fs.statSync(path.join(dir, entry)).isFile());
}

describe('blobs', () => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  describe('POST /v2/<name>/blobs/uploads/?digest= (monolithic)', () => {
    test('201 with Location and Docker-Content-Digest; the blob is readable', async () => {
      const name = uniqueName('mono');
      const content = randomBytes(1000);
      const digest = digestOf(content);
      const response = await client.pushBlobMonolithic(name, content);
      expect(response.status).toBe(201);
      expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(new URL(requireHeader(response, 'Location'), app.url).pathname).toBe(`/v2/${name}/blobs/${digest}`);

      const { response: get, body } = await client.getBlob(name, digest);
      expect(get.status).toBe(200);
      expect(body.equals(content)).toBe(true);
    });

    test('a zero-length blob is 201 and reads back empty', async () => {
      const name = uniqueName('mono-empty');
      const response = await client.pushBlobMonolithic(name, Buffer.alloc(0));
      expect(response.status).toBe(201);
      expect(response.headers.get('Docker-Content-Digest')).toBe(SHA256_EMPTY);

      const head = await client.headBlob(name, SHA256_EMPTY);
      expect(head.status).toBe(200);
      expect(head.headers.get('Content-Length')).toBe('0');
      const { response: get, body } = await client.getBlob(name, SHA256_EMPTY);
      expect(get.status).toBe(200);
      expect(body.length).toBe(0);
    });

    test('a digest that does not match the body is 400 DIGEST_INVALID and nothing is stored', async () => {
      const name = uniqueName('mono-mismatch');
      const content = Buffer.from('what was sent');
      const claimed = digestOf('something else');
      await expectErrorCode(await client.pushBlobMonolithic(name, content, claimed), 400, 'DIGEST_INVALID');
      expect((await client.headBlob(name, claimed)).status).toBe(404);
      expect((await client.headBlob(name, digestOf(content))).status).toBe(404);
    });

    test('sha512 digests are accepted and the blob is served under them', async () => {
      const name = uniqueName('mono-sha512');
      const content = randomBytes(500);
      const digest = digestOf(content, 'sha512');
      const response = await client.pushBlobMonolithic(name, content, digest);
      expect(response.status).toBe(201);
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);

      const { response: get, body } = await client.getBlob(name, digest);
      expect(get.status).toBe(200);
      expect(get.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(body.equals(content)).toBe(true);
    });
  });

  describe('HEAD and GET /v2/<name>/blobs/<digest>', () => {
    const name = 'blobs/read';
    const content = Buffer.from('0123456789');
    const digest = digestOf(content);

    beforeAll(async () => {
      await client.pushBlob(name, content);
    });

    test('HEAD is 200 with Content-Length, Docker-Content-Digest and Content-Type, and no body', async () => {
      const response = await client.headBlob(name, digest);
      expect(response.status).toBe(200);
      expect(response.headers.get('Content-Length')).toBe('10');
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(response.headers.get('Content-Type')).toBe('application/octet-stream');
      expect((await response.arrayBuffer()).byteLength).toBe(0);
    });

    test('GET is 200 with the exact bytes and the same headers', async () => {
      const { response, body } = await client.getBlob(name, digest);
      expect(response.status).toBe(200);
      expect(response.headers.get('Content-Length')).toBe('10');
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(response.headers.get('Content-Type')).toBe('application/octet-stream');
      expect(body.toString()).toBe('0123456789');
    });

    test.each([
      ['bytes=0-3', '0123', 'bytes 0-3/10'],
      ['bytes=5-', '56789', 'bytes 5-9/10'],
      ['bytes=-3', '789', 'bytes 7-9/10'],
      ['bytes=8-100', '89', 'bytes 8-9/10'],
    ])('GET with Range: %s is 206 with Content-Range', async (range, expected, contentRange) => {
      const { response, body } = await client.getBlob(name, digest, { Range: range });
      expect(response.status).toBe(206);
      expect(response.headers.get('Content-Range')).toBe(contentRange);
      expect(response.headers.get('Content-Length')).toBe(String(expected.length));
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
      expect(body.toString()).toBe(expected);
    });

    test.each(['bytes=10-', 'bytes=20-30', 'bytes=-0'])('GET with an unsatisfiable Range (%s) is 416', async (range) => {
      const { response } = await client.getBlob(name, digest, { Range: range });
      expect(response.status).toBe(416);
      expect(response.headers.get('Content-Range')).toBe('bytes */10');
      expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
    });

    test('GET of an unknown blob is 404 BLOB_UNKNOWN; HEAD is 404', async () => {
      await expectErrorCode(await client.fetch(`/v2/${name}/blobs/${UNKNOWN_DIGEST}`), 404, 'BLOB_UNKNOWN');
      expect((await client.headBlob(name, UNKNOWN_DIGEST)).status).toBe(404);
    });

    test('a blob pushed to repository A is not readable from repository B', async () => {
      const other = uniqueName('blobs/other');
      await client.pushBlob(other, Buffer.from('makes the other repository exist'));
      await expectErrorCode(await client.fetch(`/v2/${other}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      expect((await client.headBlob(other, digest)).status).toBe(404);
      // Nor from a repository that does not exist at all.
      await expectErrorCode(await client.fetch(`/v2/blobs/never-pushed/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    });
  });

  describe('DELETE /v2/<name>/blobs/<digest>', () => {
    test('202, then the blob is 404 in that repository only', async () => {
      const content = randomBytes(64);
      const digest = digestOf(content);
      const [a, b] = [uniqueName('delete-a'), uniqueName('delete-b')];
      await client.pushBlob(a, content);
      await client.pushBlob(b, content);

      const response = await client.fetch(`/v2/${a}/blobs/${digest}`, { method: 'DELETE' });
      expect(response.status).toBe(202);
      expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
      await expectErrorCode(await client.fetch(`/v2/${a}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      expect((await client.headBlob(b, digest)).status).toBe(200);
    });

    test('deleting an unknown blob is 404 BLOB_UNKNOWN', async () => {
      const response = await client.fetch(`/v2/${uniqueName('delete')}/blobs/${UNKNOWN_DIGEST}`, { method: 'DELETE' });
      await expectErrorCode(response, 404, 'BLOB_UNKNOWN');
    });
  });

  describe('malformed digests', () => {
    const malformed = [
      ['a path', 'sha256:../../etc/passwd'],
      ['a short hex', 'sha256:abc'],
      ['an unsupported algorithm', 'md5:d41d8cd98f00b204e9800998ecf8427e'],
      ['uppercase hex', `sha256:${'A'.repeat(64)}`],
      ['no algorithm', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ];

    test.each(malformed)('GET /v2/<name>/blobs/<%s> is 400 DIGEST_INVALID', async (_, digest) => {
      // Encoded, so that fetch does not resolve the dots before the server sees them.
      const response = await client.fetch(`/v2/blobs/malformed/blobs/${encodeURIComponent(digest)}`);
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
    });

    test.each(malformed)('DELETE /v2/<name>/blobs/<%s> is 400 DIGEST_INVALID', async (_, digest) => {
      const response = await client.fetch(`/v2/blobs/malformed/blobs/${encodeURIComponent(digest)}`, { method: 'DELETE' });
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
    });

    test.each(malformed)('POST ?digest=<%s> is 400 DIGEST_INVALID and stores nothing', async (_, digest) => {
      const response = await client.pushBlobMonolithic('blobs/malformed', Buffer.from('payload'), digest);
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
      expect((await client.headBlob('blobs/malformed', digestOf('payload'))).status).toBe(404);
    });

    test('PUT /v2/<name>/blobs/uploads/<uuid>?digest=<path> is 400 DIGEST_INVALID; the session stays usable', async () => {
      const name = uniqueName('malformed-put');
      const content = Buffer.from('payload');
      const session = await client.pushChunk(await client.startUpload(name), content);
      await expectErrorCode(await client.closeUpload(session, 'sha256:../../etc/passwd'), 400, 'DIGEST_INVALID');
      await client.finishUpload(name, session, digestOf(content));
    });

    test('digests that name paths create no file outside the storage directories', async () => {
      const marker = `escape-${randomUUID()}`;
      const traversals = [`sha256:../../${marker}`, `sha256:../../../../${marker}`, `sha512:/tmp/${marker}`];
      for (const digest of traversals) {
        await expectErrorCode(await client.pushBlobMonolithic('blobs/traversal', Buffer.from(marker), digest), 400, 'DIGEST_INVALID');
        const session = await client.startUpload('blobs/traversal');
        await expectErrorCode(await client.closeUpload(session, digest, Buffer.from(marker)), 400, 'DIGEST_INVALID');
      }
      const parent = path.dirname(app.storageDir);
      expect(fs.readdirSync(parent).filter((entry) => entry.includes(marker))).toEqual([]);
      expect(fs.existsSync(path.join('/tmp', marker))).toBe(false);
      expect(listFiles(app.storageDir).filter((entry) => entry.includes(marker))).toEqual([]);
      // And nothing was left half-written in the store's incoming directory.
      const incoming = path.join(app.config.registry_storage, '.incoming');
      expect(fs.existsSync(incoming) ? fs.readdirSync(incoming) : []).toEqual([]);
    });
  });

  describe('cross-repository mount: POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>', () => {
    const source = 'mount/source';
    const content = randomBytes(256);
    const digest = digestOf(content);

    beforeAll(async () => {
      await client.pushBlob(source, content);
    });

    test('201 with Location when the blob is in `from`, and the blob becomes readable in the target', async () => {
      const target = uniqueName('mount/target');
      const response = await client.fetch(`/v2/${target}/blobs/uploads/?mount=${digest}&from=${source}`, { method: 'POST' });
      expect(response.status).toBe(201);
      expect(new URL(requireHeader(response, 'Location'), app.url).pathname).toBe(`/v2/${target}/blobs/${digest}`);
      expect(response.headers.get('Docker-Content-Digest')).toBe(digest);

      const { response: get, body } = await client.getBlob(target, digest);
      expect(get.status).toBe(200);
      expect(body.equals(content)).toBe(true);
    });

    test.each([
      ['the blob is not in `from`', () => `mount=${UNKNOWN_DIGEST}&from=${source}`],
      ['`from` does not exist', () => `mount=${digest}&from=mount/nowhere`],
      ['`from` is not a valid name', () => `mount=${digest}&from=UPPER/Case`],
      ['`from` is missing', () => `mount=${digest}`],
    ])('202 upload session when %s', async (_, query) => {
      const target = uniqueName('mount/fallback');
      const response = await client.fetch(`/v2/${target}/blobs/uploads/?${query()}`, { method: 'POST' });
      await expectStatus(response, 202);
      const location = requireHeader(response, 'Location');
      const uploadId = requireHeader(response, 'Docker-Upload-UUID');
      expect(new URL(location, app.url).pathname).toBe(`/v2/${target}/blobs/uploads/${uploadId}`);
      expect(response.headers.get('Range')).toBe('0-0');
      // The blob did not come along, and the session works.
      expect((await client.headBlob(target, digest)).status).toBe(404);
      await client.finishUpload(target, { location, uploadId, offset: 0 }, digest, content);
      expect((await client.headBlob(target, digest)).status).toBe(200);
    });
  });
});

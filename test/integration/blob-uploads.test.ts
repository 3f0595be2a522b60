import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  RegistryClient,
  UploadSession,
  digestOf,
  expectErrorCode,
  expectStatus,
  requireHeader,
  uniqueName,
} from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';
import { Radosgw, startRadosgw } from '../helpers/radosgw';

const SHA256_EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A request body that fetch sends with Transfer-Encoding: chunked, piece by piece. */
function streamOf(pieces: Buffer[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < pieces.length) controller.enqueue(pieces[next++]);
      else controller.close();
    },
  });
}

/**
 * Where sessions keep their bytes: files under temporary_registry_storage (the filesystem backend) or the
 * bucket (s3: multipart uploads and tail objects on a radosgw this file starts when it first needs it).
 * The protocol is the same on both.
 */
jest.setTimeout(120_000);

const BACKENDS = ['filesystem', 's3'] as const;
type Backend = (typeof BACKENDS)[number];
let gateway: Radosgw | undefined;
let buckets = 0;

async function backendSettings(backend: Backend): Promise<Record<string, string>> {
  if (backend === 'filesystem') return {};
  gateway ??= await startRadosgw();
  const bucket = `uploads-${++buckets}`;
  await gateway.createBucket(bucket);
  return gateway.registrySettings(bucket);
}

afterAll(() => gateway?.close());

describe.each(BACKENDS)('blob uploads (%s)', (backend) => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp({ overrides: await backendSettings(backend) });
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  /** GET <location>: the upload's status, which must be 204 with its Range, Location and UUID. */
  async function expectUploadStatus(name: string, session: UploadSession, offset: number): Promise<void> {
    const response = await client.fetch(session.location);
    await expectStatus(response, 204);
    expect(response.headers.get('Range')).toBe(`0-${Math.max(offset - 1, 0)}`);
    expect(response.headers.get('Docker-Upload-UUID')).toBe(session.uploadId);
    expect(new URL(requireHeader(response, 'Location'), app.url).pathname).toBe(`/v2/${name}/blobs/uploads/${session.uploadId}`);
  }

  async function expectBlob(name: string, content: Buffer, digest = digestOf(content)): Promise<void> {
    const { response, body } = await client.getBlob(name, digest);
    await expectStatus(response, 200);
    expect(response.headers.get('Content-Length')).toBe(String(content.length));
    expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
    expect(body.equals(content)).toBe(true);
  }

  describe('POST /v2/<name>/blobs/uploads/', () => {
    test('202 with Location, Docker-Upload-UUID and Range: 0-0; GET on it is 204 at offset 0', async () => {
      const name = uniqueName('session');
      const session = await client.startUpload(name);
      expect(new URL(session.location, app.url).pathname).toBe(`/v2/${name}/blobs/uploads/${session.uploadId}`);
      await expectUploadStatus(name, session, 0);
    });

    test('each POST opens its own session', async () => {
      const name = uniqueName('session');
      const [first, second] = await Promise.all([client.startUpload(name), client.startUpload(name)]);
      expect(first.uploadId).not.toBe(second.uploadId);
    });
  });

  describe('PATCH /v2/<name>/blobs/uploads/<uuid>', () => {
    test('chunks with Content-Range are 202 with Range: 0-<end>, then PUT ?digest= without a body is 201', async () => {
      const name = uniqueName('chunked');
      const content = randomBytes(3000);
      let session = await client.startUpload(name);
      session = await client.pushChunk(session, content.subarray(0, 1000));
      await expectUploadStatus(name, session, 1000);
      session = await client.pushChunk(session, content.subarray(1000, 2500));
      session = await client.pushChunk(session, content.subarray(2500));
      await expectUploadStatus(name, session, 3000);
      await client.finishUpload(name, session, digestOf(content));
      await expectBlob(name, content);
    });

    test('PUT ?digest= with the final chunk is 201', async () => {
      const name = uniqueName('final-chunk');
      const content = randomBytes(2000);
      const session = await client.pushChunk(await client.startUpload(name), content.subarray(0, 1200));
      await client.finishUpload(name, session, digestOf(content), content.subarray(1200));
      await expectBlob(name, content);
    });

    test('POST then a single PUT ?digest= carrying the whole blob is 201', async () => {
      const name = uniqueName('post-put');
      const content = randomBytes(700);
      await client.finishUpload(name, await client.startUpload(name), digestOf(content), content);
      await expectBlob(name, content);
    });

    // Past 64 MiB the upload's file is fdatasynced in the background while the body still arrives.
    test('a monolithic PUT of 70 MiB (a background sync on the way) is 201 and reads back whole', async () => {
      const name = uniqueName('post-put-large');
      const content = Buffer.alloc(70 * 1024 * 1024);
      for (let offset = 0; offset < content.length; offset += 1024 * 1024) randomBytes(64).copy(content, offset);
      await client.finishUpload(name, await client.startUpload(name), digestOf(content), content);
      await expectBlob(name, content);
    }, 60_000);

    test('a zero-length blob: POST then PUT ?digest= with no body is 201', async () => {
      const name = uniqueName('empty-upload');
      await client.finishUpload(name, await client.startUpload(name), SHA256_EMPTY);
      await expectBlob(name, Buffer.alloc(0), SHA256_EMPTY);
    });

    test('a streamed PATCH without Content-Range (chunked transfer) is 202; so is a streamed final PUT', async () => {
      const name = uniqueName('streamed');
      const pieces = [randomBytes(10_000), randomBytes(30_000), randomBytes(5)];
      const last = randomBytes(4000);
      const content = Buffer.concat([...pieces, last]);
      const session = await client.startUpload(name);

      const patch = await client.fetch(session.location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: streamOf(pieces),
        duplex: 'half',
      });
      await expectStatus(patch, 202);
      expect(patch.headers.get('Range')).toBe(`0-${40_004}`);
      await expectUploadStatus(name, session, 40_005);

      const put = new URL(client.url(requireHeader(patch, 'Location')));
      put.searchParams.set('digest', digestOf(content));
      const response = await fetch(put, { method: 'PUT', body: streamOf([last]), duplex: 'half' } as RequestInit);
      await expectStatus(response, 201);
      expect(response.headers.get('Docker-Content-Digest')).toBe(digestOf(content));
      await expectBlob(name, content);
    });

    test('PATCHes without Content-Range append one after the other', async () => {
      const name = uniqueName('appended');
      const content = randomBytes(900);
      let session = await client.startUpload(name);
      session = await client.pushChunk(session, content.subarray(0, 300), { contentRange: false });
      session = await client.pushChunk(session, content.subarray(300), { contentRange: false });
      await client.finishUpload(name, session, digestOf(content));
      await expectBlob(name, content);
    });

    test('an out-of-order chunk is 416 and the session keeps its offset', async () => {
      const name = uniqueName('out-of-order');
      const content = randomBytes(300);
      const session = await client.pushChunk(await client.startUpload(name), content.subarray(0, 100));

      const skipped = await client.patchChunk(session, content.subarray(200), { start: 200 });
      await expectErrorCode(skipped, 416, 'RANGE_INVALID');
      await expectUploadStatus(name, session, 100);

      const rest = await client.pushChunk(session, content.subarray(100));
      await client.finishUpload(name, rest, digestOf(content));
      await expectBlob(name, content);
    });

    test('a retried (already written) chunk is 416 and changes nothing', async () => {
      const name = uniqueName('retried');
      const content = randomBytes(200);
      const first = await client.startUpload(name);
      const session = await client.pushChunk(first, content.subarray(0, 100));

      const retried = await client.patchChunk(first, content.subarray(0, 100));
      await expectErrorCode(retried, 416, 'RANGE_INVALID');
      expect(retried.headers.get('Range')).toBe('0-99');
      await expectUploadStatus(name, session, 100);

      await client.finishUpload(name, session, digestOf(content), content.subarray(100));
      await expectBlob(name, content);
    });

    test('a chunk shorter than its Content-Range is 416 and its bytes are dropped', async () => {
      const name = uniqueName('short-chunk');
      const content = randomBytes(100);
      const session = await client.startUpload(name);
      const response = await client.fetch(session.location, {
        method: 'PATCH',
        headers: { 'Content-Range': '0-199' },
        body: content,
      });
      await expectErrorCode(response, 416, 'RANGE_INVALID');
      await expectUploadStatus(name, session, 0);
    });

    test('sha512: a chunked upload closes with a sha512 digest', async () => {
      const name = uniqueName('chunked-sha512');
      const content = randomBytes(5000);
      const digest = digestOf(content, 'sha512');
      let session = await client.startUpload(name);
      session = await client.pushChunk(session, content.subarray(0, 2000));
      await client.finishUpload(name, session, digest, content.subarray(2000));
      await expectBlob(name, content, digest);
      // The same bytes are not there under their sha256.
      expect((await client.headBlob(name, digestOf(content))).status).toBe(404);
    });

    test('a 20 MiB blob in 5 MiB chunks arrives intact', async () => {
      const name = uniqueName('large');
      const content = randomBytes(20 * 1024 * 1024);
      const digest = digestOf(content);
      let session = await client.startUpload(name);
      const chunkSize = 5 * 1024 * 1024;
      for (let start = 0; start < content.length; start += chunkSize) {
        session = await client.pushChunk(session, content.subarray(start, start + chunkSize));
      }
      expect(session.offset).toBe(content.length);
      await client.finishUpload(name, session, digest);

      const { response, body } = await client.getBlob(name, digest);
      expect(response.status).toBe(200);
      expect(response.headers.get('Content-Length')).toBe(String(content.length));
      expect(`sha256:${createHash('sha256').update(body).digest('hex')}`).toBe(digest);
    });
  });

  describe('PUT /v2/<name>/blobs/uploads/<uuid>?digest=', () => {
    test('a digest that does not match is 400 DIGEST_INVALID: nothing stored, the session is gone', async () => {
      const name = uniqueName('mismatch');
      const content = randomBytes(500);
      const wrong = digestOf('not these bytes');
      const session = await client.pushChunk(await client.startUpload(name), content);

      await expectErrorCode(await client.closeUpload(session, wrong), 400, 'DIGEST_INVALID');
      expect((await client.headBlob(name, wrong)).status).toBe(404);
      expect((await client.headBlob(name, digestOf(content))).status).toBe(404);
      await expectErrorCode(await client.fetch(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectErrorCode(await client.closeUpload(session, digestOf(content)), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    test('a digest that does not match the final chunk is 400 DIGEST_INVALID and nothing is stored', async () => {
      const name = uniqueName('mismatch-final');
      const content = randomBytes(300);
      const session = await client.pushChunk(await client.startUpload(name), content.subarray(0, 100));
      const wrong = digestOf(content.subarray(0, 299));
      await expectErrorCode(await client.closeUpload(session, wrong, content.subarray(100)), 400, 'DIGEST_INVALID');
      expect((await client.headBlob(name, digestOf(content))).status).toBe(404);
      expect((await client.headBlob(name, wrong)).status).toBe(404);
    });

    test('without ?digest= it is 400 DIGEST_INVALID and the session stays open', async () => {
      const name = uniqueName('no-digest');
      const content = randomBytes(50);
      const session = await client.pushChunk(await client.startUpload(name), content);
      const response = await client.fetch(session.location, { method: 'PUT' });
      await expectErrorCode(response, 400, 'DIGEST_INVALID');
      await expectUploadStatus(name, session, 50);
    });

    test('a closed session is gone: GET and PATCH on it are 404 BLOB_UPLOAD_UNKNOWN', async () => {
      const name = uniqueName('closed');
      const content = randomBytes(50);
      const session = await client.startUpload(name);
      await client.finishUpload(name, session, digestOf(content), content);
      await expectErrorCode(await client.fetch(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectErrorCode(await client.patchChunk(session, content), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
  });

  describe('DELETE /v2/<name>/blobs/uploads/<uuid>', () => {
    test('204, then the session is 404 BLOB_UPLOAD_UNKNOWN', async () => {
      const name = uniqueName('cancel');
      const session = await client.pushChunk(await client.startUpload(name), randomBytes(10));
      const response = await client.fetch(session.location, { method: 'DELETE' });
      expect(response.status).toBe(204);
      await expectErrorCode(await client.fetch(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectErrorCode(await client.fetch(session.location, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
  });

  describe('unknown sessions are 404 BLOB_UPLOAD_UNKNOWN', () => {
    const requests: Array<[string, string, RequestInit]> = [
      ['GET', 'GET', {}],
      ['PATCH', 'PATCH', { body: Buffer.from('data'), headers: { 'Content-Range': '0-3' } }],
      ['PUT', 'PUT', {}],
      ['DELETE', 'DELETE', {}],
    ];

    test.each(requests)('%s with an upload id that was never issued', async (_, method, init) => {
      const response = await client.fetch(`/v2/uploads/unknown/blobs/uploads/${randomUUID()}?digest=${SHA256_EMPTY}`, { ...init, method });
      await expectErrorCode(response, 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    test.each(requests)('%s with the upload id of another repository; the session itself is untouched', async (_, method, init) => {
      const owner = uniqueName('uploads/owner');
      const session = await client.pushChunk(await client.startUpload(owner), Buffer.from('owned'));
      const response = await client.fetch(`/v2/uploads/intruder/blobs/uploads/${session.uploadId}?digest=${SHA256_EMPTY}`, {
        ...init,
        method,
      });
      await expectErrorCode(response, 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectUploadStatus(owner, session, 5);
    });

    test.each([
      ['not a uuid', 'not-an-upload'],
      ['a path', encodeURIComponent('../../etc/passwd')],
      ['uppercase', randomUUID().toUpperCase()],
      ['too long', `${randomUUID()}0`],
    ])('GET, PATCH, PUT and DELETE with a malformed upload id (%s)', async (_, uploadId) => {
      for (const [, method, init] of requests) {
        const response = await client.fetch(`/v2/uploads/malformed/blobs/uploads/${uploadId}?digest=${SHA256_EMPTY}`, {
          ...init,
          method,
        });
        await expectErrorCode(response, 404, 'BLOB_UPLOAD_UNKNOWN');
      }
    });
  });

  describe('concurrent PATCHes on one session', () => {
    test('the same Content-Range twice at once: one is 202, the other 416, and the blob is right', async () => {
      const name = uniqueName('race-range');
      const content = randomBytes(64 * 1024);
      const session = await client.startUpload(name);
      const responses = await Promise.all([client.patchChunk(session, content), client.patchChunk(session, content)]);
      expect(responses.map((response) => response.status).sort()).toEqual([202, 416]);
      await Promise.all(responses.map((response) => response.arrayBuffer()));
      await expectUploadStatus(name, session, content.length);
      await client.finishUpload(name, { ...session, offset: content.length }, digestOf(content));
      await expectBlob(name, content);
    });

    test('two PATCHes without Content-Range at once serialize: both land, whole and in turn', async () => {
      const name = uniqueName('race-append');
      const chunk = randomBytes(256 * 1024);
      const session = await client.startUpload(name);
      const responses = await Promise.all([
        client.patchChunk(session, chunk, { contentRange: false }),
        client.patchChunk(session, chunk, { contentRange: false }),
      ]);
      expect(responses.map((response) => response.status)).toEqual([202, 202]);
      // Whichever went first, one saw the first chunk's end and the other the second's.
      const ranges = new Set(responses.map((response) => response.headers.get('Range')));
      expect(ranges).toEqual(new Set([`0-${chunk.length - 1}`, `0-${chunk.length * 2 - 1}`]));
      const content = Buffer.concat([chunk, chunk]);
      await client.finishUpload(name, { ...session, offset: content.length }, digestOf(content));
      await expectBlob(name, content);
    });
  });
});

describe.each(BACKENDS)('blob uploads across a restart (%s)', (backend) => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp({ overrides: await backendSettings(backend) });
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  test('a session resumes: PATCH half, restart, GET shows the offset, PATCH the rest, PUT', async () => {
    const name = 'resume/after-restart';
    const content = randomBytes(100_000);
    const half = 40_000;
    let session = await client.pushChunk(await client.startUpload(name), content.subarray(0, half));

    await app.restart();

    const status = await client.fetch(session.location);
    await expectStatus(status, 204);
    expect(status.headers.get('Range')).toBe(`0-${half - 1}`);
    expect(status.headers.get('Docker-Upload-UUID')).toBe(session.uploadId);

    // The bytes before the restart count: a retry of them is refused, the rest is appended.
    await expectErrorCode(await client.patchChunk(session, content.subarray(0, half), { start: 0 }), 416, 'RANGE_INVALID');
    session = await client.pushChunk(session, content.subarray(half));
    await client.finishUpload(name, session, digestOf(content));

    const { response, body } = await client.getBlob(name, digestOf(content));
    expect(response.status).toBe(200);
    expect(body.equals(content)).toBe(true);
  });

  test('a digest mismatch after a restart is still caught (the data is hashed again)', async () => {
    const name = 'resume/mismatch';
    const content = randomBytes(10_000);
    const session = await client.pushChunk(await client.startUpload(name), content);
    await app.restart();
    const wrong = digestOf(content.subarray(1));
    await expectErrorCode(await client.closeUpload(session, wrong), 400, 'DIGEST_INVALID');
    expect((await client.headBlob(name, wrong)).status).toBe(404);
    await expectErrorCode(await client.fetch(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  test('a blob pushed before a restart is served after it', async () => {
    const name = 'resume/stored';
    const content = randomBytes(1000);
    await client.pushBlob(name, content);
    await app.restart();
    const { response, body } = await client.getBlob(name, digestOf(content));
    expect(response.status).toBe(200);
    expect(body.equals(content)).toBe(true);
  });
});

describe('upload sessions are bounded', () => {
  test('POST /v2/<name>/blobs/uploads/ past max_upload_sessions is 429 TOOMANYREQUESTS; a closed session frees its place', async () => {
    const app = await createTestApp({ overrides: { max_upload_sessions: '3', 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    try {
      const sessions = await Promise.all([1, 2, 3].map(() => client.startUpload('bounded/app')));
      const refused = await client.fetch('/v2/bounded/other/blobs/uploads/', { method: 'POST' });
      await expectErrorCode(refused, 429, 'TOOMANYREQUESTS');
      // Opening many at once cannot slip past the check either.
      const burst = await Promise.all([1, 2, 3].map(() => client.fetch('/v2/bounded/app/blobs/uploads/', { method: 'POST' })));
      expect(burst.map((response) => response.status)).toEqual([429, 429, 429]);

      const blob = randomBytes(100);
      await client.finishUpload('bounded/app', sessions[0], digestOf(blob), blob);
      await client.startUpload('bounded/app');
    } finally {
      await app.close();
    }
  });

  test('an expired session leaves no running hash in memory', async () => {
    const app = await createTestApp({ overrides: { 'gc.upload_ttl': '1ms', 'gc.interval': '0' } });
    const client = new RegistryClient(app);
    // The hosted upload sessions of the registry, reached for what only they know: the hashes they hold.
    const uploads = () => (app.registry as unknown as { hosted: { uploads: { hashesInMemory: number } } }).hosted.uploads;
    try {
      const session = await client.startUpload('expiring/app');
      await client.pushChunk(session, randomBytes(1000));
      expect(uploads().hashesInMemory).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect((await app.registry.collectGarbage()).uploadsExpired).toBe(1);
      expect(uploads().hashesInMemory).toBe(0);
      await expectErrorCode(await client.fetch(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
    } finally {
      await app.close();
    }
  });
});

import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { toDigest } from '../../src/oci/digest';
import { RegistryError } from '../../src/oci/errors';
import { BucketUploadData } from '../../src/storage/bucket-upload-data';
import type { S3BlobStore } from '../../src/storage/s3-blob-store';
import { UploadSessions } from '../../src/storage/uploads';
import { RegistryClient, digestOf, expectStatus, requireHeader } from '../helpers/registry-client';
import { Radosgw, startRadosgw } from '../helpers/radosgw';
import { createTestApp, TestApp } from '../helpers/test-app';
import { waitFor } from '../helpers/files';

/*
 * Upload sessions in the bucket (the s3 backend, bucket-upload-data.ts), on Ceph's RADOS Gateway: how a
 * session's bytes lie in the bucket, two registries continuing one session at once, a body cut midway, and
 * what garbage collection removes. The protocol itself runs on both backends in blob-uploads.test.ts.
 */
jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const UPLOADS = 'registry/uploads/';

let gateway: Radosgw;
let buckets = 0;

beforeAll(async () => {
  gateway = await startRadosgw();
});
afterAll(() => gateway?.close());

async function bucketApp(overrides: Record<string, string> = {}): Promise<{ app: TestApp; bucket: string }> {
  const bucket = `bucket-uploads-${++buckets}`;
  await gateway.createBucket(bucket);
  return { app: await createTestApp({ overrides: { ...gateway.registrySettings(bucket), ...overrides } }), bucket };
}

/** The hosted store of a registry: the bucket sessions publish into. */
function hostedStore(app: TestApp): S3BlobStore {
  return (app.registry as unknown as { hosted: { store: S3BlobStore } }).hosted.store;
}

/** The registry's part buffer pool: buffers lent, and chunks waiting for one. */
function partPool(app: TestApp): { partsLent: number; waitingForParts: unknown[] } {
  return (app.registry as unknown as { uploadData: { partsLent: number; waitingForParts: unknown[] } }).uploadData;
}

async function partSizes(bucket: string, uploadId: string): Promise<number[]> {
  const [key] = await gateway.multipartKeys(bucket, `${UPLOADS}${uploadId}/`);
  const { Uploads } = await gateway.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
  const parts = await gateway.client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: Uploads![0].UploadId }));
  return (parts.Parts ?? []).map((part) => part.Size!);
}

describe('a session in the bucket', () => {
  let app: TestApp;
  let bucket: string;
  let client: RegistryClient;

  beforeAll(async () => {
    ({ app, bucket } = await bucketApp());
    client = new RegistryClient(app);
  });
  afterAll(() => app?.close());

  test('is cut into 8 MiB parts; what is short of 5 MiB waits in a tail object; a finished upload leaves nothing under uploads/', async () => {
    const content = randomBytes(13 * MiB + 100);
    let session = await client.startUpload('bucket/parts');
    const tails = async () => (await gateway.objectKeys(bucket, `${UPLOADS}${session.uploadId}/`)).filter((key) => key.includes('/tail-'));

    session = await client.pushChunk(session, content.subarray(0, 12 * MiB));
    expect(await partSizes(bucket, session.uploadId)).toEqual([8 * MiB]);
    expect(await tails()).toHaveLength(1);

    // The 4 MiB tail and 1 MiB more make a part of S3's least size: no tail left.
    session = await client.pushChunk(session, content.subarray(12 * MiB, 13 * MiB));
    expect(await partSizes(bucket, session.uploadId)).toEqual([8 * MiB, 5 * MiB]);
    expect(await tails()).toEqual([]);

    session = await client.pushChunk(session, content.subarray(13 * MiB));
    expect(await tails()).toHaveLength(1);

    await client.finishUpload('bucket/parts', session, digestOf(content));
    const { body } = await client.getBlob('bucket/parts', digestOf(content));
    expect(body.equals(content)).toBe(true);
    expect(await gateway.objectKeys(bucket, UPLOADS)).toEqual([]);
    expect(await gateway.multipartKeys(bucket, UPLOADS)).toEqual([]);
  });

  test('continued by two registries at once (their own locks, one index and bucket): one chunk is recorded, the other refused with the offset', async () => {
    const index = app.registry.index;
    const store = hostedStore(app);
    // Two replicas' worth of sessions: each with its own per-process lock, sharing the index and the bucket.
    const [one, two] = [1, 2].map(() => new UploadSessions(index, new BucketUploadData(index, store)));
    const { id } = await one.start('bucket/race');
    const contents = [randomBytes(9 * MiB), randomBytes(9 * MiB)];
    const outcomes = await Promise.allSettled([
      one.append('bucket/race', id, Readable.from([contents[0]]), { start: 0, end: contents[0].length - 1 }),
      two.append('bucket/race', id, Readable.from([contents[1]]), { start: 0, end: contents[1].length - 1 }),
    ]);
    const won = outcomes.findIndex((outcome) => outcome.status === 'fulfilled');
    expect(won).toBeGreaterThanOrEqual(0);
    const lost = outcomes[1 - won];
    expect(lost.status).toBe('rejected');
    const refusal = (lost as PromiseRejectedResult).reason as RegistryError;
    expect(refusal).toBeInstanceOf(RegistryError);
    expect(refusal.code).toBe('RANGE_INVALID');
    expect(refusal.headers?.Range).toBe(`0-${9 * MiB - 1}`);

    // The loser's parts went up under other numbers: the blob is the winner's bytes alone.
    await two.finish('bucket/race', id, toDigest(digestOf(contents[won])));
    const { body } = await client.getBlob('bucket/race', digestOf(contents[won]));
    expect(body.equals(contents[won])).toBe(true);
    expect(await gateway.multipartKeys(bucket, UPLOADS)).toEqual([]);
  });

  test('12 chunks of 17 MiB at once, wanting 36 part buffers, share 32: all arrive, and every buffer is given back', async () => {
    const contents = Array.from({ length: 12 }, () => randomBytes(17 * MiB));
    await Promise.all(
      contents.map(async (content, n) => {
        const session = await client.pushChunk(await client.startUpload(`bucket/many-${n}`), content);
        await client.finishUpload(`bucket/many-${n}`, session, digestOf(content));
      }),
    );
    for (const [n, content] of contents.entries()) {
      expect((await client.getBlob(`bucket/many-${n}`, digestOf(content))).body.equals(content)).toBe(true);
    }
    const uploadData = partPool(app);
    expect(uploadData.partsLent).toBe(0);
    expect(uploadData.waitingForParts).toEqual([]);
  });

  test('32 PATCHes whose clients stall holding every part buffer give them back to a push that waits; then they complete', async () => {
    const uploadData = partPool(app);
    // Four stall past S3's least part (their bytes go up as a part), the rest short of it (set aside in an object).
    const stalled = await Promise.all(
      Array.from({ length: 32 }, async (_, n) => {
        const name = `bucket/stalled-${n}`;
        const content = randomBytes((n < 4 ? 6 : 1) * MiB + 2 * MiB);
        const session = await client.startUpload(name);
        const request = http.request(new URL(client.url(session.location)), { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' } });
        const response = new Promise<http.IncomingMessage>((resolve, reject) => request.on('response', resolve).on('error', reject));
        request.write(content.subarray(0, content.length - 2 * MiB));
        return { name, content, session, request, response };
      }),
    );
    await waitFor(() => uploadData.partsLent === 32, 30_000);
    expect(uploadData.partsLent).toBe(32);
    // Past the time a buffer may be held while others wait, so that the next push finds them all to take back.
    await new Promise((resolve) => setTimeout(resolve, 2500));

    const waiting = randomBytes(9 * MiB);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the push still waits for a part buffer after 30 s')), 30_000);
    });
    try {
      await Promise.race([
        timeout,
        (async () => {
          const session = await client.pushChunk(await client.startUpload('bucket/waiting'), waiting);
          await client.finishUpload('bucket/waiting', session, digestOf(waiting));
        })(),
      ]);
    } finally {
      clearTimeout(timer);
    }
    expect((await client.getBlob('bucket/waiting', digestOf(waiting))).body.equals(waiting)).toBe(true);
    expect(await partSizes(bucket, stalled[0].session.uploadId)).toEqual([6 * MiB]);
    expect(await gateway.objectKeys(bucket, `${UPLOADS}${stalled[4].session.uploadId}/`)).toEqual([expect.stringContaining('/tail-')]);

    for (const { name, content, session, request, response } of stalled) {
      request.end(content.subarray(content.length - 2 * MiB));
      const answer = await response;
      answer.resume();
      expect(answer.statusCode).toBe(202);
      expect(answer.headers.range).toBe(`0-${content.length - 1}`);
      await client.finishUpload(name, { ...session, location: answer.headers.location!, offset: content.length }, digestOf(content));
      expect((await client.getBlob(name, digestOf(content))).body.equals(content)).toBe(true);
    }
    expect(uploadData.partsLent).toBe(0);
    expect(uploadData.waitingForParts).toEqual([]);
    expect(await gateway.objectKeys(bucket, UPLOADS)).toEqual([]);
    expect(await gateway.multipartKeys(bucket, UPLOADS)).toEqual([]);
  });

  test('a body cut midway keeps what arrived, and the push goes on from there', async () => {
    const content = randomBytes(12 * MiB);
    let session = await client.startUpload('bucket/cut');
    const url = new URL(client.url(session.location));
    await new Promise<void>((resolve) => {
      const request = http.request(url, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' } });
      request.on('error', () => resolve());
      request.on('response', () => resolve());
      // 9 MiB of the 12, then the connection is gone.
      let sent = 0;
      const more = () => {
        while (sent < 9 * MiB) {
          const piece = content.subarray(sent, sent + MiB);
          sent += piece.length;
          if (!request.write(piece)) return void request.once('drain', more);
        }
        setTimeout(() => request.destroy(), 500);
      };
      more();
    });
    // The registry records what arrived once it sees the connection gone.
    let offset = 0;
    const deadline = Date.now() + 20_000;
    while (offset === 0 && Date.now() < deadline) {
      const status = await client.fetch(session.location);
      await expectStatus(status, 204);
      offset = Number(requireHeader(status, 'Range').split('-')[1]) + 1;
      if (offset <= 1) {
        offset = 0;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThanOrEqual(9 * MiB);
    session = await client.pushChunk({ ...session, offset }, content.subarray(offset));
    await client.finishUpload('bucket/cut', session, digestOf(content));
    const { body } = await client.getBlob('bucket/cut', digestOf(content));
    expect(body.equals(content)).toBe(true);
  });
});

describe('garbage collection of sessions in the bucket', () => {
  test('removes a session untouched for upload_ttl with its parts and tail, and what no session records; a live session stays', async () => {
    const { app, bucket } = await bucketApp({ 'gc.upload_ttl': '2s', 'gc.interval': '0' });
    try {
      const client = new RegistryClient(app);
      const stale = await client.pushChunk(await client.startUpload('bucket/stale'), randomBytes(9 * MiB));
      // What a replica that died mid-chunk leaves: a tail it never recorded, a multipart upload of no session.
      const orphanTail = `${UPLOADS}${randomUUID()}/tail-${randomUUID()}`;
      const orphanUpload = `${UPLOADS}${randomUUID()}/data`;
      await gateway.client.send(new PutObjectCommand({ Bucket: bucket, Key: orphanTail, Body: 'x' }));
      await gateway.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: orphanUpload }));
      await new Promise((resolve) => setTimeout(resolve, 2200));

      const content = randomBytes(9 * MiB);
      let live = await client.pushChunk(await client.startUpload('bucket/live'), content.subarray(0, 9 * MiB - 10));
      expect((await app.registry.collectGarbage()).uploadsExpired).toBe(1);

      const liveData = `${UPLOADS}${live.uploadId}/`;
      expect(await gateway.multipartKeys(bucket, UPLOADS)).toEqual([`${liveData}data`]);
      expect((await gateway.objectKeys(bucket, UPLOADS)).every((key) => key.startsWith(liveData))).toBe(true);
      expect((await client.fetch(stale.location)).status).toBe(404);

      live = await client.pushChunk(live, content.subarray(9 * MiB - 10));
      await client.finishUpload('bucket/live', live, digestOf(content));
      expect((await client.getBlob('bucket/live', digestOf(content))).body.equals(content)).toBe(true);
    } finally {
      await app.close();
    }
  });
});

/**
 * S3BlobStore against a real S3 service (Ceph's RADOS Gateway, test/helpers/radosgw.ts): what the
 * registry relies on from a store, said in its terms (digests, ranges, missing blobs, removals).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, ListObjectsV2Command, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { isNotFound } from '../../src/storage/blob-store';
import { GarbageCollector } from '../../src/storage/gc';
import { createLogger } from '../../src/log';
import { RegistryIndex } from '../../src/storage/registry-index';
import { S3BlobStore, S3StoreOptions } from '../../src/storage/s3-blob-store';
import { Radosgw, startRadosgw } from '../helpers/radosgw';
import { FileUploadData } from '../../src/storage/file-upload-data';

jest.setTimeout(120_000);

const sha256 = (content: Buffer) => `sha256:${createHash('sha256').update(content).digest('hex')}`;

let gateway: Radosgw;
let staging: string;
let bucketCount = 0;

beforeAll(async () => {
  gateway = await startRadosgw();
  staging = await mkdtemp(path.join(os.tmpdir(), 's3-staging-'));
});

afterAll(async () => {
  await gateway?.close();
  await rm(staging, { recursive: true, force: true });
});

async function freshStore(options: Partial<ConstructorParameters<typeof S3BlobStore>[0]> = {}): Promise<{ store: S3BlobStore; bucket: string }> {
  const bucket = `store-test-${++bucketCount}`;
  await gateway.createBucket(bucket);
  return { bucket, store: new S3BlobStore({ client: gateway.client, bucket, prefix: 'team/registry/', stagingRoot: staging, ...options }) };
}

async function keys(bucket: string): Promise<string[]> {
  const page = await gateway.client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (page.Contents ?? []).map((object) => object.Key!).sort();
}

async function read(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('S3BlobStore on radosgw', () => {
  it('writes a stream under its digest, reads it whole and by range, and says what it holds', async () => {
    const { store, bucket } = await freshStore();
    const content = randomBytes(3 * 1024 * 1024 + 17);
    const digest = sha256(content);
    const written = await store.write(Readable.from([content.subarray(0, 1000), content.subarray(1000)]), { expectedDigest: digest });
    expect(written).toEqual({ digest, size: content.length });
    expect(await keys(bucket)).toEqual([`team/registry/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`]);
    expect(await store.size(digest)).toBe(content.length);
    expect(await store.holds(digest, content.length)).toBe(true);
    expect(await store.holds(digest, content.length - 1)).toBe(false);
    expect((await read(await store.open(digest))).equals(content)).toBe(true);
    expect((await read(await store.open(digest, { start: 5, end: 1_000_004 }))).equals(content.subarray(5, 1_000_005))).toBe(true);
    expect((await store.readAll(digest)).equals(content)).toBe(true);
    // Nothing is left behind in the staging directory.
    expect(await readdir(store.stagingDirectory)).toEqual([]);
  });

  it('keeps nothing of content whose digest is not the one expected, or that passes maxSize', async () => {
    const { store, bucket } = await freshStore();
    const content = randomBytes(100_000);
    await expect(store.write(Readable.from([content]), { expectedDigest: sha256(Buffer.from('other')) })).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    await expect(store.write(Readable.from([content]), { maxSize: 99_999 })).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    await expect(store.write(content, { expectedDigest: sha256(Buffer.from('other')) })).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(await keys(bucket)).toEqual([]);
    expect(await readdir(store.stagingDirectory)).toEqual([]);
  });

  it('answers a missing blob with null sizes and an ENOENT open, before any byte', async () => {
    const { store } = await freshStore();
    const digest = sha256(Buffer.from('absent'));
    expect(await store.size(digest)).toBeNull();
    expect(await store.holds(digest, 6)).toBe(false);
    const error = await store.open(digest).catch((caught: unknown) => caught);
    expect(isNotFound(error)).toBe(true);
  });

  it('takes a local file larger than one PUT as a multipart upload, and removes the file', async () => {
    const { store, bucket } = await freshStore();
    const file = path.join(staging, 'large');
    const hash = createHash('sha256');
    const out = fs.createWriteStream(file);
    // 70 MiB in 1 MiB random pieces: past the single-PUT limit, five 16 MiB parts.
    for (let i = 0; i < 70; i++) {
      const piece = randomBytes(1024 * 1024);
      hash.update(piece);
      out.write(piece);
    }
    await new Promise((resolve) => out.end(resolve));
    const digest = `sha256:${hash.digest('hex')}`;
    await store.adopt(file, digest, 70 * 1024 * 1024);
    expect(fs.existsSync(file)).toBe(false);
    expect(await store.size(digest)).toBe(70 * 1024 * 1024);
    const check = createHash('sha256');
    for await (const chunk of await store.open(digest)) check.update(chunk as Buffer);
    expect(`sha256:${check.digest('hex')}`).toBe(digest);
    const uploads = await gateway.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });

  it.each([
    ['in one CopyObject', {}],
    ['part by part (UploadPartCopy) past the single-copy limit', { singleCopyMax: 1024 * 1024, copyPartSize: 5 * 1024 * 1024 }],
  ])('adopts an object of the bucket under its digest %s, leaving the source', async (_how, options) => {
    const { store, bucket } = await freshStore(options);
    const content = randomBytes(11 * 1024 * 1024 + 17);
    const source = 'team/registry/uploads/some-session/data';
    await gateway.client.send(new PutObjectCommand({ Bucket: bucket, Key: source, Body: content }));
    await store.adoptObject(source, sha256(content), content.length);
    expect((await store.readAll(sha256(content))).equals(content)).toBe(true);
    expect(await keys(bucket)).toContain(source);
    const uploads = await gateway.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });

  it('leaves the local file in place when the bucket refuses it, for the caller to retry or remove', async () => {
    const store = new S3BlobStore({ client: gateway.client, bucket: 'no-such-bucket', prefix: '', stagingRoot: staging });
    const file = path.join(staging, 'kept');
    fs.writeFileSync(file, 'kept');
    await expect(store.adopt(file, sha256(Buffer.from('kept')), 4)).rejects.toThrow(/^object store s3:\/\/no-such-bucket\/: NoSuchBucket \(HTTP 404\)/);
    expect(fs.readFileSync(file, 'utf8')).toBe('kept');
    // A stream it staged itself is its own to remove.
    await expect(store.write(Readable.from([Buffer.from('staged')]))).rejects.toThrow(/NoSuchBucket/);
    expect(await readdir(store.stagingDirectory)).toEqual([]);
  });

  it('lists every blob across pages, and nothing else under its prefix', async () => {
    const { store, bucket } = await freshStore({ listPageSize: 2 });
    const digests = [];
    for (let i = 0; i < 5; i++) digests.push((await store.writeVerified(Buffer.from(`blob ${i}`), sha256(Buffer.from(`blob ${i}`)))).digest);
    // Not a store's key: a stray object under blobs/, and a wrong two-letter directory.
    await gateway.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'team/registry/blobs/sha256/zz/notes.txt', Body: 'x' }));
    const wrongPrefix = `team/registry/blobs/sha256/00/${digests[0].slice(7)}`;
    await gateway.client.send(new PutObjectCommand({ Bucket: bucket, Key: wrongPrefix, Body: 'x' }));
    const listed = [];
    for await (const file of store.list()) listed.push(file);
    expect(listed.map((file) => file.digest).sort()).toEqual([...digests].sort());
    expect(listed.every((file) => file.size === 6 && file.mtimeMs > Date.now() - 600_000)).toBe(true);
  });

  it('removes what the re-check dooms, keeps the rest, and only after the re-check', async () => {
    const { store } = await freshStore();
    const [a, b] = await Promise.all(['a', 'b'].map((text) => store.writeVerified(Buffer.from(text), sha256(Buffer.from(text)))));
    const removed = await store.removeGarbage(
      [a, b].map((blob) => ({ ...blob, mtimeMs: 0 })),
      async (digests) => {
        expect(digests.sort()).toEqual([a.digest, b.digest].sort());
        return new Set([a.digest]);
      },
    );
    expect(removed.map((file) => file.digest)).toEqual([a.digest]);
    expect(await store.size(a.digest)).toBeNull();
    expect(await store.size(b.digest)).toBe(1);
  });

  it('holds a write back while a collection is removing its digest, and records it again before the PUT', async () => {
    let removing = true;
    const recorded: string[] = [];
    const { store } = await freshStore({
      beforeCommit: async (digest) => {
        recorded.push(digest);
        return removing;
      },
    });
    const content = Buffer.from('wanted again');
    const write = store.writeVerified(content, sha256(content));
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(await store.size(sha256(content))).toBeNull();
    removing = false;
    await write;
    expect(await store.size(sha256(content))).toBe(content.length);
    // Recorded on every look: the last record (after the removal ended) is what the collector sees.
    expect(recorded.length).toBeGreaterThanOrEqual(3);
  });

  it('gives presigned URLs that serve the blob and its ranges without credentials, when redirects are on', async () => {
    const { store: plain } = await freshStore();
    expect(await plain.redirectUrl(sha256(Buffer.from('x')))).toBeNull();
    const { store } = await freshStore({ redirectExpirySeconds: 60 });
    const content = randomBytes(1000);
    const { digest } = await store.writeVerified(content, sha256(content));
    const url = (await store.redirectUrl(digest))!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/store-test-\d+\/team\/registry\/blobs\/sha256\/.*X-Amz-Signature=/);
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(content)).toBe(true);
    const part = await fetch(url, { headers: { Range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(content.subarray(10, 20))).toBe(true);
    // The signature covers the key: another key with the same query is refused.
    const forged = await fetch(url.replace(digest.slice(7), sha256(Buffer.from('y')).slice(7)));
    expect(forged.status).toBe(403);
  });

  it('aborts multipart uploads and removes staging files an interrupted write left, once older than the cutoff', async () => {
    const { store, bucket } = await freshStore();
    const begun = async (key: string) => gateway.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await begun('team/registry/blobs/sha256/ab/left-by-a-crash');
    // Another store's (or another application's) upload under another prefix is not this store's to abort.
    await begun('elsewhere/upload');
    // An upload session's: it lives as long as its session (bucket-upload-data.ts), whatever its age.
    await begun('team/registry/uploads/0b5e4c8e-1f9e-4a34-9a47-2a3c1d7e9f10/data');
    fs.mkdirSync(store.stagingDirectory, { recursive: true });
    fs.writeFileSync(path.join(store.stagingDirectory, 'left-by-a-crash'), 'x');
    const open = async () => ((await gateway.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((upload) => upload.Key);

    expect(await store.removeLeftovers(Date.now() - 60_000)).toBe(0);
    const session = 'team/registry/uploads/0b5e4c8e-1f9e-4a34-9a47-2a3c1d7e9f10/data';
    expect((await open()).sort()).toEqual(['elsewhere/upload', 'team/registry/blobs/sha256/ab/left-by-a-crash', session]);
    expect(await store.removeLeftovers(Date.now() + 60_000)).toBe(2);
    expect((await open()).sort()).toEqual(['elsewhere/upload', session]);
    expect(await readdir(store.stagingDirectory)).toEqual([]);
  });

  it('quarantines a blob out of reach of its digest', async () => {
    const { store, bucket } = await freshStore();
    const { digest } = await store.writeVerified(Buffer.from('corrupt'), sha256(Buffer.from('corrupt')));
    await store.quarantine(digest);
    expect(await store.size(digest)).toBeNull();
    expect(await keys(bucket)).toEqual([expect.stringMatching(/^team\/registry\/quarantine\/sha256-[0-9a-f]{64}-\d+$/)]);
  });
});


describe('garbage collection on an S3 store', () => {
  /** Its deletions wait for `release`: a collection held between its re-check and its DELETE. */
  class HeldDeletes extends S3BlobStore {
    // Field initializers run in order: each promise's executor sets the function declared before it.
    startedDeleting!: () => void;
    readonly deleting = new Promise<void>((resolve) => (this.startedDeleting = resolve));
    release!: () => void;
    private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
    override async delete(digest: string): Promise<void> {
      this.startedDeleting();
      await this.gate;
      return super.delete(digest);
    }
  }

  /**
   * An index in a temp dir, a fresh bucket with a hosted store (of class `Hosted`) and a proxy store that
   * record their writes in it, and a collector over them with a grace of half an hour and the clock `now`.
   */
  async function withCollector<T extends S3BlobStore>(
    Hosted: new (options: S3StoreOptions) => T,
    now: (() => number) | undefined,
    test: (setup: { index: RegistryIndex; hosted: T; collector: GarbageCollector }) => Promise<void>,
  ): Promise<void> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 's3-gc-'));
    const index = await RegistryIndex.open(path.join(dir, 'index.db'));
    try {
      const bucket = `store-test-${++bucketCount}`;
      await gateway.createBucket(bucket);
      const beforeCommit = (digest: string, size: number) => index.recordBlobWrite(digest, size);
      const hosted = new Hosted({ client: gateway.client, bucket, prefix: 'registry/', stagingRoot: dir, beforeCommit });
      const proxy = new S3BlobStore({ client: gateway.client, bucket, prefix: 'proxy/', stagingRoot: dir, beforeCommit });
      const collector = new GarbageCollector({
        index,
        stores: { hosted, proxy },
        uploads: new FileUploadData(index, hosted, dir),
        gc: { interval: 0, grace: 1_800_000, upload_ttl: 86_400_000, delete_untagged: false },
        proxy: { max_age: 0, max_size: 0 },
        log: createLogger('silent'),
        now,
      });
      await test({ index, hosted, collector });
    } finally {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('keeps a blob pushed again while a sweep is removing it: the push waits for the DELETE, then puts it back', async () => {
    // An hour from now with a grace of half an hour: a blob pushed and never referenced is garbage.
    await withCollector(HeldDeletes, () => Date.now() + 3_600_000, async ({ index, hosted, collector }) => {
      const content = randomBytes(10_000);
      const { digest } = await hosted.write(content);
      const collection = collector.collect();
      // A collection that ends (or fails) without deleting anything fails the test here, not by a timeout.
      await Promise.race([hosted.deleting, collection.then((report) => Promise.reject(new Error(`collected without a DELETE: ${JSON.stringify(report)}`)))]);
      let pushed = false;
      const push = hosted.write(content).then(() => (pushed = true));
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(pushed).toBe(false);
      hosted.release();
      const report = await collection;
      await push;
      expect(report.blobs.map((blob) => blob.digest)).toEqual([digest]);
      expect(await hosted.size(digest)).toBe(content.length);
      expect(await index.sql.all('SELECT digest FROM blob_removals')).toEqual([]);
    });
  });

  it('finishes the removals a crashed collection left (rows older than 10 min), and leaves a live one alone', async () => {
    await withCollector(S3BlobStore, undefined, async ({ index, hosted, collector }) => {
      const crashed = await hosted.write(Buffer.from('left by a crashed collection'));
      const live = await hosted.write(Buffer.from('being removed by a collection running now'));
      const now = Date.now();
      // Both written two hours ago as far as the index knows (garbage), both objects new (so no sweep selects them).
      for (const blob of [crashed, live]) await index.recordBlobWrite(blob.digest, blob.size, now - 7_200_000);
      const removal = (digest: string, startedAt: number) =>
        index.sql.run('INSERT INTO blob_removals (digest, started_at) VALUES (@digest, @startedAt)', { digest, startedAt });
      await removal(crashed.digest, now - 11 * 60_000);
      await removal(live.digest, now - 5_000);
      await collector.recoverRemovals();
      expect(await hosted.size(crashed.digest)).toBeNull();
      expect(await hosted.size(live.digest)).toBe(live.size);
      expect(await index.sql.all('SELECT digest FROM blob_removals')).toEqual([{ digest: live.digest }]);
      // A writer waits for the live row, not for a stale one.
      expect(await index.recordBlobWrite(live.digest, live.size)).toBe(true);
      await removal(crashed.digest, now - 11 * 60_000);
      expect(await index.recordBlobWrite(crashed.digest, crashed.size)).toBe(false);
    });
  });
});

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import pLimit from 'p-limit';
import { DigestAlgorithm, digestOf, parseDigest } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { BlobStore, ByteRange, CommitHook, StoredFile, WrittenBlob, algorithmOf, notFound } from './blob-store';
import { attributeTo } from './disk-full';
import { removeFilesOlderThan, requireDigest, writeHashed } from './staging';
import { blobRelativePath, incomingDirectory } from './paths';

/** Objects up to this size go up in one PUT; larger ones as a multipart upload of PART_SIZE parts. */
const SINGLE_PUT_MAX = 64 * 1024 * 1024;
/** S3's multipart limits: parts of 5 MiB at least (but the last), 10,000 parts at most. */
export const S3_MIN_PART = 5 * 1024 * 1024;
export const S3_MAX_PARTS = 10_000;
/** This store's parts: 16 MiB parts carry blobs up to 156 GiB. */
const PART_SIZE = 16 * 1024 * 1024;
/** Parts of one upload in flight at once. */
const PART_CONCURRENCY = 4;
/** S3 copies an object of up to 5 GiB in one request; a larger one part by part (UploadPartCopy). */
const SINGLE_COPY_MAX = 5 * 1024 * 1024 * 1024;
const COPY_PART_SIZE = 1024 * 1024 * 1024;
/** Tries of one PUT or part: each with a fresh read of the file (the SDK cannot rewind a stream it sent). */
const UPLOAD_ATTEMPTS = 3;
/** Blobs re-checked together and then deleted, in a sweep. */
const REMOVAL_BATCH = 500;
/** Deletions of one sweep in flight at once. */
const DELETE_CONCURRENCY = 8;
/** How often a writer looks again whether a collection's removal of its digest is over, and for how long. */
const REMOVAL_POLL_MS = 100;
const REMOVAL_WAIT_MS = 120_000;
/** How long a readiness probe waits for the object store. */
const PROBE_TIMEOUT_MS = 5000;
/** ListObjectsV2's page. */
const LIST_PAGE = 1000;

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix of this store's objects, '' or ending in '/': e.g. "registry/" or "team/proxy/". */
  prefix: string;
  /** A local directory whose `.incoming/` holds files on their way into the bucket. */
  stagingRoot: string;
  beforeCommit?: CommitHook;
  /** Blob GETs answer with a presigned URL valid this long; 0 (the default): the registry streams every blob. */
  redirectExpirySeconds?: number;
  /** Keys per ListObjectsV2 page (S3's most is 1000). */
  listPageSize?: number;
  /** Objects larger than this are copied part by part (S3: 5 GiB at most in one copy); tests make it small. */
  singleCopyMax?: number;
  copyPartSize?: number;
}

/**
 * Content-addressed objects in an S3-compatible bucket: `<prefix>blobs/<algorithm>/<xx>/<hex>`, the
 * filesystem store's layout. Content is hashed into a local staging file before it goes up, so an object
 * appears at a digest's key only with the bytes of that digest (an object store has no rename to publish a
 * verified file). Reads stream from the bucket, or, with `redirectExpirySeconds`, clients fetch a
 * presigned URL themselves.
 */
export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  private readonly stagingRoot: string;
  private readonly beforeCommit: CommitHook;
  private readonly redirectExpirySeconds: number;
  private readonly listPageSize: number;
  private readonly singleCopyMax: number;
  private readonly copyPartSize: number;

  constructor(options: S3StoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.stagingRoot = options.stagingRoot;
    this.beforeCommit = options.beforeCommit ?? (async () => false);
    this.redirectExpirySeconds = options.redirectExpirySeconds ?? 0;
    this.listPageSize = options.listPageSize ?? LIST_PAGE;
    this.singleCopyMax = options.singleCopyMax ?? SINGLE_COPY_MAX;
    this.copyPartSize = options.copyPartSize ?? COPY_PART_SIZE;
  }

  /** Where upload sessions keep their bytes (bucket-upload-data.ts): `<prefix>uploads/<uploadId>/…`. */
  get uploadsPrefix(): string {
    return `${this.prefix}uploads/`;
  }

  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  get stagingDirectory(): string {
    return incomingDirectory(this.stagingRoot);
  }

  key(digest: string): string {
    return this.prefix + blobRelativePath(digest);
  }

  localPath(): null {
    return null;
  }

  async redirectUrl(digest: string): Promise<string | null> {
    if (this.redirectExpirySeconds <= 0) return null;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }), {
      expiresIn: this.redirectExpirySeconds,
    });
  }

  /** One listing of a key under the prefix: the bucket exists, the credentials are good, the service answers. */
  async probe(): Promise<string> {
    try {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 }), {
        abortSignal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
      });
      return 'ok';
    } catch (error) {
      return `not answering: ${storageError(error, this.location).message}`;
    }
  }

  async size(digest: string): Promise<number | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }));
      return head.ContentLength ?? null;
    } catch (error) {
      if (isMissingObject(error)) return null;
      throw storageError(error, this.location);
    }
  }

  async holds(digest: string, size: number): Promise<boolean> {
    return (await this.size(digest)) === size;
  }

  async open(digest: string, range?: ByteRange): Promise<Readable> {
    // An empty range (of an empty blob) is not a Range header S3 accepts.
    if (range && range.end < range.start) return Readable.from([]);
    try {
      const answer = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.key(digest),
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      return answer.Body as Readable;
    } catch (error) {
      if (isMissingObject(error)) throw notFound(digest);
      throw storageError(error, this.location);
    }
  }

  async readAll(digest: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.open(digest)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async write(
    source: Readable | Buffer,
    options: { expectedDigest?: string; algorithm?: DigestAlgorithm; maxSize?: number } = {},
  ): Promise<WrittenBlob> {
    const algorithm = options.algorithm ?? algorithmOf(options.expectedDigest) ?? 'sha256';
    if (Buffer.isBuffer(source)) {
      if (options.maxSize !== undefined && source.length > options.maxSize) {
        throw new RegistryError('SIZE_INVALID', { message: `content exceeds ${options.maxSize} bytes` });
      }
      const digest = digestOf(source, algorithm);
      requireDigest(digest, options.expectedDigest);
      return this.writeVerified(source, digest);
    }
    await fsp.mkdir(this.stagingDirectory, { recursive: true });
    const staged = path.join(this.stagingDirectory, randomUUID());
    let written: WrittenBlob;
    try {
      // No fsync: the file is read back right away and the object store is what keeps it.
      written = await writeHashed(source, staged, { algorithm, maxSize: options.maxSize, flush: false });
    } catch (error) {
      await fsp.rm(staged, { force: true });
      throw attributeTo(error, staged);
    }
    const { digest, size } = written;
    try {
      requireDigest(digest, options.expectedDigest);
      await this.adopt(staged, digest, size);
    } catch (error) {
      await fsp.rm(staged, { force: true });
      throw error;
    }
    return { digest, size };
  }

  async writeVerified(content: Buffer, digest: string): Promise<WrittenBlob> {
    await this.commit(digest, content.length);
    await this.put(digest, content, content.length);
    return { digest, size: content.length };
  }

  /** Left in place when the upload fails: the caller decides (an upload session keeps it for a retried PUT). */
  async adopt(file: string, digest: string, size: number): Promise<void> {
    await this.commit(digest, size);
    if (size <= SINGLE_PUT_MAX) {
      await withAttempts(() => this.put(digest, fs.createReadStream(file), size));
    } else {
      await this.putInParts(file, digest, size);
    }
    await fsp.rm(file, { force: true });
  }

  /**
   * Takes an object of the bucket with verified content (an upload session's) to `digest`'s key, copied
   * by the object store itself; the source stays (its owner removes it).
   */
  async adoptObject(sourceKey: string, digest: string, size: number): Promise<void> {
    await this.commit(digest, size);
    const target = { Bucket: this.bucket, Key: this.key(digest) };
    const source = `${this.bucket}/${encodeURI(sourceKey)}`;
    if (size <= this.singleCopyMax) {
      try {
        await withAttempts(() => this.client.send(new CopyObjectCommand({ ...target, CopySource: source })));
      } catch (error) {
        throw storageError(error, this.location);
      }
      return;
    }
    await this.inParts(target, Math.ceil(size / this.copyPartSize), async (partNumber, uploadId) => {
      const start = (partNumber - 1) * this.copyPartSize;
      const end = Math.min(size, start + this.copyPartSize) - 1;
      const answer = await withAttempts(() =>
        this.client.send(
          new UploadPartCopyCommand({ ...target, UploadId: uploadId, PartNumber: partNumber, CopySource: source, CopySourceRange: `bytes=${start}-${end}` }),
        ),
      );
      return answer.CopyPartResult?.ETag;
    });
  }

  /**
   * A multipart upload whose parts are read from the file as they go up, PART_CONCURRENCY at a time:
   * memory holds a stream buffer per part, not the parts (lib-storage's Upload buffers each part whole, and
   * a 256 MiB push took the process to 450 MiB).
   */
  private async putInParts(file: string, digest: string, size: number): Promise<void> {
    const target = { Bucket: this.bucket, Key: this.key(digest) };
    // Larger parts past 156 GiB: S3 takes 10,000 at most.
    const partSize = Math.max(PART_SIZE, Math.ceil(size / S3_MAX_PARTS));
    await this.inParts(target, Math.ceil(size / partSize), async (partNumber, uploadId) => {
      const start = (partNumber - 1) * partSize;
      const end = Math.min(size, start + partSize) - 1;
      const { ETag } = await withAttempts(() =>
        this.client.send(
          new UploadPartCommand({
            ...target,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: fs.createReadStream(file, { start, end }),
            ContentLength: end - start + 1,
          }),
        ),
      );
      return ETag;
    });
  }

  /**
   * One multipart upload of `count` parts to `target`, PART_CONCURRENCY parts at a time, each sent by
   * `sendPart` (which answers its ETag). Aborted on failure, so no parts are left in the bucket.
   */
  private async inParts(
    target: { Bucket: string; Key: string },
    count: number,
    sendPart: (partNumber: number, uploadId: string) => Promise<string | undefined>,
  ): Promise<void> {
    let uploadId: string | undefined;
    try {
      ({ UploadId: uploadId } = await this.client.send(new CreateMultipartUploadCommand(target)));
      const limit = pLimit(PART_CONCURRENCY);
      let failed = false;
      const parts = await Promise.all(
        Array.from({ length: count }, (_, index) =>
          limit(async () => {
            // After one part failed, the rest are not sent: the upload is aborted anyway.
            if (failed) throw new Error('an earlier part failed');
            try {
              return { PartNumber: index + 1, ETag: await sendPart(index + 1, uploadId!) };
            } catch (error) {
              failed = true;
              throw error;
            }
          }),
        ),
      );
      await this.client.send(new CompleteMultipartUploadCommand({ ...target, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    } catch (error) {
      if (uploadId !== undefined) {
        await this.client.send(new AbortMultipartUploadCommand({ ...target, UploadId: uploadId })).catch(() => undefined);
      }
      throw storageError(error, this.location);
    }
  }

  async delete(digest: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }));
    } catch (error) {
      if (!isMissingObject(error)) throw storageError(error, this.location);
    }
  }

  async *list(): AsyncIterable<StoredFile> {
    const blobs = `${this.prefix}blobs/`;
    for await (const object of this.objects(blobs)) {
      const digest = digestOfKey(object.key.slice(blobs.length));
      // Anything else under blobs/ was not put there by a store: never listed, so never removed.
      if (digest === null || object.key !== this.key(digest)) continue;
      yield { digest, size: object.size, mtimeMs: object.lastModified };
    }
  }

  /** The bucket's objects under `prefix` (a full key prefix), page by page. */
  async *objects(prefix: string): AsyncIterable<{ key: string; size: number; lastModified: number }> {
    let continuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: this.listPageSize, ContinuationToken: continuationToken }),
        );
      } catch (error) {
        throw storageError(error, this.location);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key) yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified?.getTime() ?? 0 };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }

  /** The bucket's unfinished multipart uploads under `prefix` (a full key prefix), page by page. */
  async *multipartUploads(prefix: string): AsyncIterable<{ key: string; uploadId: string; initiated: number }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        );
      } catch (error) {
        throw storageError(error, this.location);
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key && upload.UploadId) yield { key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated?.getTime() ?? 0 };
      }
      [keyMarker, uploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (keyMarker !== undefined);
  }

  /** Aborts a multipart upload; one that is gone already is as good. */
  async abortMultipart(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (error) {
      if (!isMissingUpload(error)) throw storageError(error, this.location);
    }
  }

  /**
   * Re-checks first, then deletes: an object store has no rename to move a blob aside. A writer that
   * recorded its write after the re-check finds the digest in `blob_removals` and waits before its PUT
   * (`commit`), so no DELETE can land after that PUT.
   */
  async removeGarbage(
    selected: StoredFile[],
    recheck: (digests: string[]) => Promise<Set<string>>,
    removed: (digest: string) => Promise<void> = async () => undefined,
  ): Promise<StoredFile[]> {
    const limit = pLimit(DELETE_CONCURRENCY);
    const doomed: StoredFile[] = [];
    // Re-checked a batch at a time, right before its DELETEs: a removal's row lives seconds, not the whole
    // sweep, so no live row gets as old as a crashed collection's (which writers stop waiting for).
    for (let start = 0; start < selected.length; start += REMOVAL_BATCH) {
      const batch = selected.slice(start, start + REMOVAL_BATCH);
      const garbage = await recheck(batch.map((file) => file.digest));
      const batchDoomed = batch.filter((file) => garbage.has(file.digest));
      await Promise.all(
        batchDoomed.map((file) =>
          limit(async () => {
            await this.delete(file.digest);
            // At once, not when the sweep ends: a writer waiting for this digest goes on now.
            await removed(file.digest);
          }),
        ),
      );
      doomed.push(...batchDoomed);
    }
    return doomed;
  }

  /** Nothing is moved aside here: what a crash interrupted is in `blob_removals`, which the collector finishes. */
  async recoverRemovals(): Promise<{ restored: number; deleted: number }> {
    return { restored: 0, deleted: 0 };
  }

  /**
   * Staging files, and multipart uploads under this store's prefix begun before `before` (a crash mid-upload),
   * but for upload sessions'.
   */
  async removeLeftovers(before: number): Promise<number> {
    let removed = await removeFilesOlderThan(this.stagingDirectory, before);
    for await (const upload of this.multipartUploads(this.prefix)) {
      // An upload session's lives as long as the session (bucket-upload-data.ts expire).
      if (upload.initiated >= before || upload.key.startsWith(this.uploadsPrefix)) continue;
      await this.abortMultipart(upload.key, upload.uploadId);
      removed++;
    }
    return removed;
  }

  async quarantine(digest: string): Promise<void> {
    const { algorithm, hex } = parseDigest(digest)!;
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: `${this.prefix}quarantine/${algorithm}-${hex}-${Date.now()}`,
          CopySource: `${this.bucket}/${encodeURI(this.key(digest))}`,
        }),
      );
    } catch (error) {
      if (!isMissingObject(error)) throw storageError(error, this.location);
    }
    await this.delete(digest);
  }

  private async put(digest: string, body: Buffer | Readable, size: number): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.key(digest), Body: body, ContentLength: size }),
      );
    } catch (error) {
      throw storageError(error, this.location);
    }
  }

  /** Records the write in the index; waits while a collection is removing the digest (see removeGarbage). */
  private async commit(digest: string, size: number): Promise<void> {
    const deadline = Date.now() + REMOVAL_WAIT_MS;
    while (await this.beforeCommit(digest, size)) {
      if (Date.now() > deadline) {
        throw new RegistryError('UNAVAILABLE', {
          message: `a garbage collection has been removing ${digest} for ${REMOVAL_WAIT_MS / 1000} s; try again later`,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, REMOVAL_POLL_MS));
    }
  }
}

/** `operation` again after a failure, up to UPLOAD_ATTEMPTS in all; the last failure is thrown. */
export async function withAttempts<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= UPLOAD_ATTEMPTS || !isRetryable(error)) throw error;
    }
  }
}

/** A failure another try may not meet: a server error, a throttle, a connection lost; not a refusal. */
function isRetryable(error: unknown): boolean {
  const service = error instanceof Error && error.cause instanceof S3ServiceException ? error.cause : error;
  const status = (service as S3ServiceException).$metadata?.httpStatusCode;
  return status === undefined || status >= 500 || status === 429 || status === 408;
}

/** `<algorithm>/<xx>/<hex>` → digest, or null for a key no store writes. */
function digestOfKey(relative: string): string | null {
  const [algorithm, prefix, hex, ...rest] = relative.split('/');
  if (rest.length > 0 || !algorithm || !hex || prefix !== hex.slice(0, 2)) return null;
  const digest = `${algorithm}:${hex}`;
  return parseDigest(digest) ? digest : null;
}

export function isMissingObject(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  return error.name === 'NotFound' || error.name === 'NoSuchKey' || error.$metadata?.httpStatusCode === 404;
}

/** A multipart upload that is gone (completed or aborted), or its object. */
export function isMissingUpload(error: unknown): boolean {
  return isMissingObject(error) || (error as Error).name === 'NoSuchUpload';
}

/**
 * An object store's failure, said as one: which bucket and what it answered. Not a client's error: the
 * registry's error handling turns it into a 500 (or the cache falls back to what it can serve).
 */
export function storageError(error: unknown, location: string): Error {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata?.httpStatusCode;
    return new Error(`object store ${location}: ${error.name}${status ? ` (HTTP ${status})` : ''}: ${error.message}`, { cause: error });
  }
  if (error instanceof Error) return new Error(`object store ${location}: ${error.message}`, { cause: error });
  return new Error(`object store ${location}: ${String(error)}`);
}

import { Hash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RegistryError } from '../oci/errors';
import { Digest, DigestAlgorithm, createDigester, digestAlgorithm } from '../oci/digest';
import { BlobStore, WRITE_BUFFER, WrittenBlob, isNotFound } from './blob-store';
import { RegistryIndex, UploadRecord } from './registry-index';
import { isUploadId, uploadDataPath } from './paths';
import { attributeTo, isDiskFull } from './disk-full';

/** A client's claim about where a chunk goes (dist-spec PATCH `Content-Range: <start>-<end>`, inclusive). */
export interface ChunkRange {
  start: number;
  end: number;
}

/**
 * Upload sessions: state in SQLite, bytes in temporary_registry_storage/uploads/<id>, so a session
 * survives a restart. A running sha256 per session avoids rereading the data at the end; after a
 * restart (or for sha512) the file is hashed once more instead.
 */
export class UploadSessions {
  private readonly runningHashes = new Map<string, { hash: Hash; size: number }>();
  /** Each session's background fdatasync, kept across its chunks (see BackgroundSync). */
  private readonly backgroundSyncs = new Map<string, BackgroundSync>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly index: RegistryIndex,
    private readonly store: BlobStore,
    private readonly temporaryRoot: string,
    /** Sessions open at once (`max_upload_sessions`); 0: no limit. */
    private readonly maxSessions = 0,
  ) {}

  /** Sessions whose running hash is held in memory (a few hundred bytes each). */
  get hashesInMemory(): number {
    return this.runningHashes.size;
  }

  async start(repository: string): Promise<UploadRecord> {
    const id = randomUUID();
    const file = uploadDataPath(this.temporaryRoot, id);
    // Counted and recorded in one transaction, so parallel POSTs cannot slip past the cap.
    await this.index.createUpload(id, repository, this.maxSessions);
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(file, '');
    } catch (error) {
      await this.index.deleteUpload(id);
      throw error;
    }
    this.runningHashes.set(id, { hash: createDigester('sha256'), size: 0 });
    return this.status(repository, id);
  }

  /** The session, with its size reconciled against the bytes actually on disk. */
  async status(repository: string, id: string): Promise<UploadRecord> {
    const upload = isUploadId(id) ? await this.index.upload(id) : null;
    if (!upload || upload.repository !== repository) {
      if (!upload) this.forget(id);
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId: id } });
    }
    let onDisk: number;
    try {
      onDisk = (await fsp.stat(uploadDataPath(this.temporaryRoot, id))).size;
    } catch (error) {
      if (!isNotFound(error)) throw error;
      this.forget(id);
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId: id }, message: 'upload data is gone' });
    }
    // Chunks are not fsynced one by one: after a crash the file may hold less than recorded.
    if (onDisk < upload.size) {
      await this.index.setUploadSize(id, onDisk);
      return { ...upload, size: onDisk };
    }
    return upload;
  }

  /**
   * Appends a chunk. dist-spec: a chunk is accepted as received, so a body cut midway (the client went
   * away, or a shutdown ended the connection) keeps the bytes that reached the file, and the client asks
   * for the status and resumes from there. A body that arrived whole but is refused (Content-Range says
   * otherwise) is cut off again, leaving the session as it was.
   */
  append(repository: string, id: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    return this.exclusive(id, () => this.appendUnlocked(repository, id, body, range));
  }

  /** Appends the optional last chunk, verifies the digest and moves the blob into the store. */
  finish(repository: string, id: string, digest: Digest, body?: Readable, range?: ChunkRange): Promise<WrittenBlob> {
    return this.exclusive(id, async () => {
      const upload = body ? await this.appendLast(repository, id, body, range) : await this.status(repository, id);
      const file = uploadDataPath(this.temporaryRoot, id);
      const actual = await this.digestOf(id, file, upload.size, digestAlgorithm(digest));
      if (actual !== digest) {
        // As the reference registry does: a session that produced the wrong content is dropped.
        await this.discard(id);
        throw new RegistryError('DIGEST_INVALID', { detail: { expected: digest, actual } });
      }
      // An error of a background sync is this one's too: after a failed fsync, Linux may report the next as a success.
      await this.backgroundSyncs.get(id)?.settle().catch((error: unknown) => {
        throw attributeTo(error, file);
      });
      // A store that keeps the file itself needs it on disk before the rename; an object store reads it back now.
      if (this.store.localPath(digest) !== null) await syncFile(file);
      await this.store.adopt(file, digest, upload.size);
      await this.index.linkBlob(repository, digest, upload.size);
      await this.index.deleteUpload(id);
      this.forget(id);
      return { digest, size: upload.size };
    });
  }

  /**
   * The body of the closing PUT. A monolithic upload (the session held nothing before it) that does not fit
   * is removed with its session at once, so a failed push gives its space back; a chunked one keeps what
   * was acknowledged, as any failed chunk does.
   */
  private async appendLast(repository: string, id: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    const before = await this.status(repository, id);
    try {
      return await this.appendUnlocked(repository, id, body, range);
    } catch (error) {
      if (before.size === 0 && isDiskFull(error)) await this.discard(id).catch(() => undefined);
      throw error;
    }
  }

  cancel(repository: string, id: string): Promise<void> {
    return this.exclusive(id, async () => {
      await this.status(repository, id);
      await this.discard(id);
    });
  }

  private async appendUnlocked(repository: string, id: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    const upload = await this.status(repository, id);
    if (range && range.start !== upload.size) {
      throw new RegistryError('RANGE_INVALID', {
        message: `chunk starts at ${range.start}, but the upload holds ${upload.size} bytes`,
        detail: { uploadId: id, offset: upload.size },
        headers: uploadHeaders(repository, id, upload.size),
      });
    }
    const file = uploadDataPath(this.temporaryRoot, id);
    await fsp.truncate(file, upload.size);
    const running = this.runningHashes.get(id);
    // Hash a copy: if the chunk fails, the session's hash must still be that of the kept bytes.
    const hash = running && running.size === upload.size ? running.hash.copy() : null;
    let written = 0;
    const output = fs.createWriteStream(file, { flags: 'r+', start: upload.size, highWaterMark: WRITE_BUFFER });
    const sync = this.backgroundSync(id, file);
    try {
      await pipeline(
        async function* () {
          // A write that fails (a full disk) stops reading here but leaves the request as it is, so the
          // server can answer and read the rest of the body away: destroying it would cut the connection
          // and the client would see a broken pipe instead of the error.
          for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
            written += chunk.length;
            hash?.update(chunk);
            sync.wrote(chunk.length);
            yield chunk;
          }
        },
        output,
      );
      if (range && written !== range.end - range.start + 1) {
        throw new RegistryError('RANGE_INVALID', {
          message: `Content-Range announced ${range.end - range.start + 1} bytes, the body had ${written}`,
          headers: uploadHeaders(repository, id, upload.size),
        });
      }
    } catch (error) {
      attributeTo(error, file);
      if (body.readableAborted) await this.keepReceived(id, file, output, upload.size, written, hash);
      else await fsp.truncate(file, upload.size).catch(() => undefined);
      throw error;
    }
    const size = upload.size + written;
    try {
      await this.index.setUploadSize(id, size);
    } catch (error) {
      // The index could not take the new size (full): the chunk is not acknowledged, so its bytes go.
      await fsp.truncate(file, upload.size).catch(() => undefined);
      this.runningHashes.delete(id);
      throw error;
    }
    if (hash) this.runningHashes.set(id, { hash, size });
    else this.runningHashes.delete(id);
    return { ...upload, size };
  }

  /**
   * After a body cut midway: records what reached the file. The bytes are written in order from the
   * session's size, so whatever is on disk once the write stream has closed is a prefix of the chunk;
   * writes still queued were dropped with the stream.
   */
  private async keepReceived(id: string, file: string, output: fs.WriteStream, from: number, written: number, hash: Hash | null): Promise<void> {
    if (!output.closed) await new Promise<void>((resolve) => output.once('close', () => resolve()));
    const onDisk = await fsp.stat(file).then(
      (stat) => stat.size,
      () => from,
    );
    const size = Math.min(Math.max(onDisk, from), from + written);
    await fsp.truncate(file, size).catch(() => undefined);
    await this.index.setUploadSize(id, size);
    // The hash copy saw every byte read from the socket; it only holds when all of them were kept.
    if (hash && size === from + written) this.runningHashes.set(id, { hash, size });
    else this.runningHashes.delete(id);
  }

  private async digestOf(id: string, file: string, size: number, algorithm: DigestAlgorithm): Promise<string> {
    const running = this.runningHashes.get(id);
    if (algorithm === 'sha256' && running && running.size === size) {
      return `sha256:${running.hash.digest('hex')}`;
    }
    const hash = createDigester(algorithm);
    await pipeline(fs.createReadStream(file), hash);
    return `${algorithm}:${hash.digest('hex')}`;
  }

  private async discard(id: string): Promise<void> {
    await this.index.deleteUpload(id);
    this.forget(id);
    await fsp.rm(uploadDataPath(this.temporaryRoot, id), { force: true });
  }

  /** The session's background fdatasync, started with its first chunk. */
  private backgroundSync(id: string, file: string): BackgroundSync {
    let sync = this.backgroundSyncs.get(id);
    if (!sync) this.backgroundSyncs.set(id, (sync = new BackgroundSync(file)));
    return sync;
  }

  /** Drops what memory holds for a session (its running hash): it was closed, cancelled or expired. */
  forget(id: string): void {
    this.runningHashes.delete(id);
    this.backgroundSyncs.delete(id);
  }

  /** Runs one operation at a time per session, in arrival order. */
  private exclusive<T>(id: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const result = previous.then(operation, operation);
    const settled = result.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return result;
  }
}

/** dist-spec: upload responses carry Location, Docker-Upload-UUID and Range: 0-<last byte> ("0-0" when empty). */
export function uploadHeaders(repository: string, id: string, size: number): Record<string, string> {
  return {
    Location: `/v2/${repository}/blobs/uploads/${id}`,
    'Docker-Upload-UUID': id,
    Range: `0-${Math.max(size - 1, 0)}`,
  };
}

/** Bytes of an upload written between two background fdatasyncs of its file. */
const SYNC_EVERY = 64 * 1024 * 1024;

/**
 * fdatasync of an upload's file while it is still being written, every SYNC_EVERY bytes, without holding
 * up the writing: the disk works while the socket is read, and the fsync that must come before the blob is
 * published finds little left to do (a 1 GiB push waited a second or two on it). One per session, counting
 * across its chunks: counted per request, 8 MiB PATCHes never reached SYNC_EVERY and left all of a 1 GiB
 * push to the last fsync. Nothing waits for it but the closing PUT (a chunk's 202 acknowledges receipt,
 * not durability). A failed sync is kept and thrown by `settle`: after an fsync error Linux may report
 * later ones as success, so it is never ignored.
 */
class BackgroundSync {
  private unsynced = 0;
  private running: Promise<void> | undefined;
  private error: unknown;

  constructor(private readonly file: string) {}

  wrote(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < SYNC_EVERY || this.running) return;
    this.unsynced = 0;
    this.running = datasyncFile(this.file)
      .catch((error: unknown) => void (this.error ??= error))
      .finally(() => (this.running = undefined));
  }

  /** Waits for the sync under way; throws if any failed. */
  async settle(): Promise<void> {
    await this.running;
    if (this.error !== undefined) throw this.error;
  }
}

/** fdatasync through a descriptor of its own: it flushes the file's pages whichever descriptor wrote them. */
async function datasyncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function syncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

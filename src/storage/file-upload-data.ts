import { Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestAlgorithm, createDigester } from '../oci/digest';
import { BlobStore, WRITE_BUFFER, isNotFound } from './blob-store';
import { RegistryIndex, UploadRecord } from './registry-index';
import { uploadDataPath } from './paths';
import { attributeTo } from './disk-full';
import { readDirectory } from './staging';
import { UploadData, chunkLengthMismatch, uploadDataGone } from './uploads';

/**
 * Upload sessions' bytes in temporary_registry_storage/uploads/<id> (the filesystem backend), so a
 * session survives a restart. A running sha256 per session avoids rereading the data at the end; after a
 * restart (or for sha512) the file is hashed once more instead.
 */
export class FileUploadData implements UploadData {
  private readonly runningHashes = new Map<string, { hash: Hash; size: number }>();
  /** Each session's background fdatasync, kept across its chunks (see BackgroundSync). */
  private readonly backgroundSyncs = new Map<string, BackgroundSync>();

  constructor(
    private readonly index: RegistryIndex,
    private readonly store: BlobStore,
    private readonly temporaryRoot: string,
  ) {}

  get hashesInMemory(): number {
    return this.runningHashes.size;
  }

  async create(id: string): Promise<void> {
    const file = uploadDataPath(this.temporaryRoot, id);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, '');
    this.runningHashes.set(id, { hash: createDigester('sha256'), size: 0 });
  }

  async reconcile(upload: UploadRecord): Promise<UploadRecord> {
    let onDisk: number;
    try {
      onDisk = (await fsp.stat(uploadDataPath(this.temporaryRoot, upload.id))).size;
    } catch (error) {
      if (!isNotFound(error)) throw error;
      this.forget(upload.id);
      throw uploadDataGone(upload.id);
    }
    // Chunks are not fsynced one by one: after a crash the file may hold less than recorded.
    if (onDisk < upload.size) {
      await this.index.setUploadSize(upload.id, onDisk);
      return { ...upload, size: onDisk };
    }
    return upload;
  }

  async append(upload: UploadRecord, body: Readable, expectedLength?: number): Promise<number> {
    const id = upload.id;
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
      if (expectedLength !== undefined && written !== expectedLength) throw chunkLengthMismatch(upload, expectedLength, written);
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
    return size;
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

  async digest(upload: UploadRecord, algorithm: DigestAlgorithm): Promise<string> {
    const { id, size } = upload;
    const running = this.runningHashes.get(id);
    if (algorithm === 'sha256' && running && running.size === size) {
      // A copy: the session keeps its hash should the publishing fail and the client try the PUT again.
      return `sha256:${running.hash.copy().digest('hex')}`;
    }
    const hash = createDigester(algorithm);
    await pipeline(fs.createReadStream(uploadDataPath(this.temporaryRoot, id)), hash);
    return `${algorithm}:${hash.digest('hex')}`;
  }

  async publish(upload: UploadRecord, digest: string): Promise<void> {
    const file = uploadDataPath(this.temporaryRoot, upload.id);
    // An error of a background sync is this one's too: after a failed fsync, Linux may report the next as a success.
    await this.backgroundSyncs.get(upload.id)?.settle().catch((error: unknown) => {
      throw attributeTo(error, file);
    });
    // A store that keeps the file itself needs it on disk before the rename; an object store reads it back now.
    if (this.store.localPath(digest) !== null) await syncFile(file);
    await this.store.adopt(file, digest, upload.size);
  }

  async remove(id: string): Promise<void> {
    this.forget(id);
    await fsp.rm(uploadDataPath(this.temporaryRoot, id), { force: true });
  }

  forget(id: string): void {
    this.runningHashes.delete(id);
    this.backgroundSyncs.delete(id);
  }

  /** Sessions untouched for upload_ttl (neither their row nor their file), and files no session owns. */
  async expire(before: number, dryRun: boolean): Promise<number> {
    const directory = path.join(this.temporaryRoot, 'uploads');
    const sessions = new Set((await this.index.uploadSessions()).map((session) => session.id));
    const updatedAt = async (id: string) => (await this.index.upload(id))?.updatedAt;
    let expired = 0;
    for (const entry of await readDirectory(directory)) {
      const file = path.join(directory, entry);
      const stat = await fsp.stat(file).catch(() => null);
      const lastTouched = Math.max(stat?.mtimeMs ?? 0, (await updatedAt(entry)) ?? 0);
      if (lastTouched >= before) continue;
      expired++;
      sessions.delete(entry);
      if (dryRun) continue;
      await this.index.deleteUpload(entry);
      this.forget(entry);
      await fsp.rm(file, { force: true });
    }
    // Sessions whose file is gone cannot be resumed.
    for (const id of sessions) {
      if (((await updatedAt(id)) ?? before) >= before) continue;
      expired++;
      if (dryRun) continue;
      await this.index.deleteUpload(id);
      this.forget(id);
    }
    return expired;
  }

  /** The session's background fdatasync, started with its first chunk. */
  private backgroundSync(id: string, file: string): BackgroundSync {
    let sync = this.backgroundSyncs.get(id);
    if (!sync) this.backgroundSyncs.set(id, (sync = new BackgroundSync(file)));
    return sync;
  }
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

import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { RegistryError } from '../oci/errors';
import { Digest, DigestAlgorithm, digestAlgorithm } from '../oci/digest';
import { WrittenBlob } from './blob-store';
import { RegistryIndex, UploadRecord } from './registry-index';
import { isUploadId } from './paths';
import { isDiskFull } from './disk-full';

/** A client's claim about where a chunk goes (dist-spec PATCH `Content-Range: <start>-<end>`, inclusive). */
export interface ChunkRange {
  start: number;
  end: number;
}

/**
 * Where an upload session's bytes are, and its running hash: a file under temporary_registry_storage
 * (file-upload-data.ts, the filesystem backend) or the bucket (bucket-upload-data.ts, the s3 backend,
 * where any replica can continue a session). The session itself (its repository, size, owner) is a row
 * in the index either way, created and deleted by UploadSessions.
 */
export interface UploadData {
  /** Sessions whose running hash only this process holds (in memory). */
  readonly hashesInMemory: number;
  /** Makes room for a new session's bytes. */
  create(id: string): Promise<void>;
  /**
   * The session as its bytes have it (a file may hold less than recorded after a crash); throws
   * BLOB_UPLOAD_UNKNOWN when they are gone.
   */
  reconcile(upload: UploadRecord): Promise<UploadRecord>;
  /**
   * Appends `body` at `upload.size` and records the new size, which it returns. dist-spec: a chunk is
   * accepted as received, so a body cut midway keeps the bytes that arrived; a chunk refused
   * (`expectedLength` not met: chunkLengthMismatch) leaves the session as it was.
   */
  append(upload: UploadRecord, body: Readable, expectedLength?: number): Promise<number>;
  /** The digest of the session's bytes. */
  digest(upload: UploadRecord, algorithm: DigestAlgorithm): Promise<string>;
  /** Puts the session's bytes into the store as `digest` (verified); they stay the session's if this throws. */
  publish(upload: UploadRecord, digest: string): Promise<void>;
  /** Removes the session's bytes (before its row goes: what they are may be recorded there). */
  remove(id: string): Promise<void>;
  /** Drops what memory holds for a session (it was closed, cancelled or expired). */
  forget(id: string): void;
  /**
   * Sessions untouched since `before`, with their bytes, and bytes no session owns; how many sessions.
   * Garbage collection runs it.
   */
  expire(before: number, dryRun: boolean): Promise<number>;
}

/**
 * Upload sessions (dist-spec "pushing blobs"): a row in the index per session, its bytes wherever the
 * backend keeps them (UploadData). One operation at a time per session in this process; across replicas
 * the bucket's sessions refuse a chunk that another replica's took the place of (see bucket-upload-data.ts).
 */
export class UploadSessions {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly index: RegistryIndex,
    private readonly data: UploadData,
    /** Sessions open at once (`max_upload_sessions`); 0: no limit. */
    private readonly maxSessions = 0,
  ) {}

  /** Sessions whose running hash is held in memory (a few hundred bytes each). */
  get hashesInMemory(): number {
    return this.data.hashesInMemory;
  }

  async start(repository: string): Promise<UploadRecord> {
    const id = randomUUID();
    // Counted and recorded in one transaction, so parallel POSTs cannot slip past the cap.
    await this.index.createUpload(id, repository, this.maxSessions);
    try {
      await this.data.create(id);
    } catch (error) {
      await this.index.deleteUpload(id);
      throw error;
    }
    return this.status(repository, id);
  }

  /** The session, with its size reconciled against its bytes. */
  async status(repository: string, id: string): Promise<UploadRecord> {
    const upload = isUploadId(id) ? await this.index.upload(id) : null;
    if (!upload || upload.repository !== repository) {
      if (!upload) this.data.forget(id);
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId: id } });
    }
    return this.data.reconcile(upload);
  }

  /** Appends a chunk (see UploadData.append). */
  append(repository: string, id: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    return this.exclusive(id, () => this.appendUnlocked(repository, id, body, range));
  }

  /** Appends the optional last chunk, verifies the digest and moves the blob into the store. */
  finish(repository: string, id: string, digest: Digest, body?: Readable, range?: ChunkRange): Promise<WrittenBlob> {
    return this.exclusive(id, async () => {
      const upload = body ? await this.appendLast(repository, id, body, range) : await this.status(repository, id);
      const actual = await this.data.digest(upload, digestAlgorithm(digest));
      if (actual !== digest) {
        // As the reference registry does: a session that produced the wrong content is dropped.
        await this.discard(id);
        throw new RegistryError('DIGEST_INVALID', { detail: { expected: digest, actual } });
      }
      await this.data.publish(upload, digest);
      await this.index.linkBlob(repository, digest, upload.size);
      await this.index.deleteUpload(id);
      this.data.forget(id);
      return { digest, size: upload.size };
    });
  }

  cancel(repository: string, id: string): Promise<void> {
    return this.exclusive(id, async () => {
      await this.status(repository, id);
      await this.discard(id);
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

  private async appendUnlocked(repository: string, id: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    const upload = await this.status(repository, id);
    if (range && range.start !== upload.size) {
      throw new RegistryError('RANGE_INVALID', {
        message: `chunk starts at ${range.start}, but the upload holds ${upload.size} bytes`,
        detail: { uploadId: id, offset: upload.size },
        headers: uploadHeaders(repository, id, upload.size),
      });
    }
    const size = await this.data.append(upload, body, range && range.end - range.start + 1);
    return { ...upload, size };
  }

  private async discard(id: string): Promise<void> {
    await this.data.remove(id);
    await this.index.deleteUpload(id);
    this.data.forget(id);
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

/** The refusal of a chunk whose body was not as long as its Content-Range said; the session is as it was. */
export function chunkLengthMismatch(upload: UploadRecord, expected: number, received: number): RegistryError {
  return new RegistryError('RANGE_INVALID', {
    message: `Content-Range announced ${expected} bytes, the body had ${received}`,
    headers: uploadHeaders(upload.repository, upload.id, upload.size),
  });
}

/** The session's bytes are gone (a crash, a collection): it cannot be continued. */
export function uploadDataGone(id: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId: id }, message: 'upload data is gone' });
}

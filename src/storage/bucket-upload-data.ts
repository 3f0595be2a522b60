import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { IHasher, createSHA256, createSHA512 } from 'hash-wasm';
import { DigestAlgorithm } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { BucketUploadChange, BucketUploadState, RegistryIndex, UploadPart, UploadRecord } from './registry-index';
import { S3BlobStore, S3_MAX_PARTS, S3_MIN_PART, isMissingObject, isMissingUpload, storageError, withAttempts } from './s3-blob-store';
import { UploadData, chunkLengthMismatch, uploadDataGone, uploadHeaders } from './uploads';

/**
 * Parts a chunk is cut into (S3_MAX_PARTS of them: blobs of up to 78 GiB; bytes short of S3_MIN_PART
 * wait in the session's tail object), and how many go up at once while the next fills (memory: 24 MiB
 * per chunk under way).
 */
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;
/**
 * Part buffers of all chunks under way together (256 MiB): past it, a chunk whose part is full waits for a
 * buffer (reading no more of its body) rather than the process growing with every PATCH a client opens.
 */
const MAX_PART_BUFFERS = 32;
/**
 * Part buffers kept between chunks (a fresh one costs its page faults and a collection), until no chunk
 * has been under way for FREE_PARTS_IDLE_MS (a push's PATCHes follow each other within milliseconds; an
 * idle registry gives the memory back).
 */
const FREE_PARTS_KEPT = 4;
const FREE_PARTS_IDLE_MS = 2000;
/**
 * While chunks wait for a buffer, one lent longer ago than this to a chunk now waiting on its client goes
 * back: its bytes go up as a part (5 MiB or more) or into an object in the bucket, read back when the
 * client sends more. So clients that open PATCHes and trickle cannot keep the pool from other pushes.
 */
const HOLD_LIMIT_MS = 2000;

/*
 * Upload sessions' bytes in the bucket (the s3 backend), so that a session's chunks may land on any
 * replica, and a replica that dies mid-push leaves a session another continues:
 *
 *   <prefix>registry/uploads/<uploadId>/data          the session's S3 multipart upload (PART_SIZE parts),
 *                                                     then, completed, the whole blob before its copy
 *                                                     to blobs/<algorithm>/…
 *   <prefix>registry/uploads/<uploadId>/tail-<random> the bytes past the last part (under S3_MIN_PART)
 *
 * The index says which of these hold the session's acknowledged bytes (upload_parts, uploads.tail_key)
 * and keeps the running sha256's state after them (hash-wasm: Node's hash cannot hand its state over), so
 * no replica reads a session back to hash it. A chunk writes new parts (numbers the index hands out, so two
 * requests never write one part) and a new tail, and then records them in one transaction, if the session
 * is still as the chunk found it: of two requests continuing one session on two replicas (a client's
 * retry), one wins and the other is refused with the session's offset. What a chunk wrote and did not
 * record is never part of the blob: unlisted parts are dropped when the multipart upload completes, and
 * garbage collection removes the rest (`expire`).
 */
export class BucketUploadData implements UploadData {
  /** Nothing: a session's hash is in the index. */
  readonly hashesInMemory = 0;
  private readonly freeParts: Buffer[] = [];
  /** Part buffers lent to chunks now, and the chunks waiting for one. */
  private partsLent = 0;
  private readonly waitingForParts: Array<() => void> = [];
  private freePartsTimer: NodeJS.Timeout | undefined;
  /** Chunks filling a lent buffer, and the timer that takes buffers back from slow ones while others wait. */
  private readonly holders = new Set<PartWriter>();
  private reclaimTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly index: RegistryIndex,
    private readonly store: S3BlobStore,
  ) {}

  /** Nothing goes into the bucket before the first byte. */
  async create(): Promise<void> {}

  /** The index is the record: every byte it counts was in an object before it was counted. */
  async reconcile(upload: UploadRecord): Promise<UploadRecord> {
    return upload;
  }

  async append(upload: UploadRecord, body: Readable, expectedLength?: number): Promise<number> {
    const state = await this.state(upload);
    const hasher = await loadHasher('sha256', state.hashState);
    const writer = new PartWriter(this, upload.id, state.multipartId);
    let received = 0;
    let cut: unknown;
    try {
      const chunks = body.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (error) {
          // dist-spec: a chunk is accepted as received; the client asks for the offset and resumes there.
          if (!body.readableAborted) throw error;
          cut = error;
          break;
        }
        if (next.done) break;
        // The tail goes ahead of the chunk into the next part; only once a byte came (an empty PATCH changes nothing).
        if (received === 0 && state.tailKey) await writer.addObject(state.tailKey);
        received += next.value.length;
        hasher.update(next.value);
        await writer.add(next.value);
      }
      if (cut === undefined && expectedLength !== undefined && received !== expectedLength) {
        throw chunkLengthMismatch(upload, expectedLength, received);
      }
      if (received === 0) {
        if (cut !== undefined) throw cut;
        return upload.size;
      }
      await this.record(upload, state, await writer.finish({ size: upload.size + received, hashState: saveHasher(hasher), last: false }));
    } catch (error) {
      await writer.abandon();
      throw error;
    }
    if (cut !== undefined) throw cut;
    return upload.size + received;
  }

  async digest(upload: UploadRecord, algorithm: DigestAlgorithm): Promise<string> {
    const state = await this.state(upload);
    if (algorithm === 'sha256') return `sha256:${(await loadHasher('sha256', state.hashState)).digest('hex')}`;
    // Another algorithm (sha512, rare): the blob is assembled and read back once.
    const key = await this.assemble(upload, state);
    const hasher = await loadHasher(algorithm, null);
    if (key !== null) for await (const chunk of await this.read(key)) hasher.update(chunk as Buffer);
    return `${algorithm}:${hasher.digest('hex')}`;
  }

  async publish(upload: UploadRecord, digest: string): Promise<void> {
    const key = await this.assemble(upload, await this.state(upload));
    if (key === null) await this.store.writeVerified(Buffer.alloc(0), digest);
    else await this.store.adoptObject(key, digest, upload.size);
    // The blob is in place: what is left of the session (the bucket did not answer) is garbage collection's.
    await this.removeObjects(upload.id).catch(() => undefined);
  }

  /** Best effort: what is left (the bucket did not answer) is garbage collection's (`expire`). */
  async remove(id: string): Promise<void> {
    const state = await this.index.bucketUpload(id);
    if (state?.multipartId) await this.abort(this.dataKey(id), state.multipartId).catch(() => undefined);
    await this.removeObjects(id).catch(() => undefined);
  }

  forget(): void {}

  /**
   * Sessions untouched since `before` go with their bytes; so do multipart uploads and objects under
   * uploads/ begun before it that no session records (a chunk that lost its race, or a replica that died
   * before recording what it wrote).
   */
  async expire(before: number, dryRun: boolean): Promise<number> {
    const sessions = new Map((await this.index.uploadSessions()).map((session) => [session.id, session]));
    let expired = 0;
    for (const session of sessions.values()) {
      if (session.updatedAt >= before) continue;
      expired++;
      sessions.delete(session.id);
      if (dryRun) continue;
      if (session.multipartId) await this.abort(this.dataKey(session.id), session.multipartId);
      await this.removeObjects(session.id);
      await this.index.deleteUpload(session.id);
    }
    if (dryRun) return expired;
    const prefix = this.store.uploadsPrefix;
    const idOf = (key: string) => key.slice(prefix.length).split('/')[0];
    for await (const upload of this.store.multipartUploads(prefix)) {
      if (upload.initiated >= before || sessions.get(idOf(upload.key))?.multipartId === upload.uploadId) continue;
      await this.abort(upload.key, upload.uploadId);
    }
    for await (const object of this.store.objects(prefix)) {
      const session = sessions.get(idOf(object.key));
      if (object.lastModified >= before || (session && session.tailKey === object.key)) continue;
      await this.deleteObject(object.key);
    }
    return expired;
  }

  // --- what PartWriter and the steps above do in the bucket ---------------------------------------------

  /** A PART_SIZE buffer to fill, waiting while MAX_PART_BUFFERS are lent; `releasePart` gives it back. */
  async partBuffer(): Promise<Buffer> {
    while (this.partsLent >= MAX_PART_BUFFERS) {
      const lent = new Promise<void>((resolve) => this.waitingForParts.push(resolve));
      this.reclaimSlowHolders();
      await lent;
    }
    return this.lendPart();
  }

  /** A chunk fills a lent buffer from now (`release`: no longer). */
  holding(writer: PartWriter, holds: boolean): void {
    if (holds) this.holders.add(writer);
    else this.holders.delete(writer);
  }

  /** While chunks wait for buffers: those lent one over HOLD_LIMIT_MS ago, now waiting on their clients, give it back. */
  private reclaimSlowHolders(): void {
    if (this.reclaimTimer !== undefined) return;
    const check = () => {
      this.reclaimTimer = undefined;
      if (this.waitingForParts.length === 0) return;
      const since = Date.now() - HOLD_LIMIT_MS;
      for (const writer of this.holders) writer.yieldBufferIfLentBefore(since);
      this.reclaimTimer = setTimeout(check, HOLD_LIMIT_MS / 4).unref();
    };
    this.reclaimTimer = setTimeout(check, HOLD_LIMIT_MS / 4).unref();
  }

  /** A buffer when one can be lent at once; null otherwise. */
  tryPartBuffer(): Buffer | null {
    return this.partsLent < MAX_PART_BUFFERS ? this.lendPart() : null;
  }

  /** A buffer back; null for one that may not be reused (a failed part's, which a socket may still hold). */
  releasePart(buffer: Buffer | null): void {
    this.partsLent--;
    if (buffer && this.freeParts.length < FREE_PARTS_KEPT) this.freeParts.push(buffer);
    this.waitingForParts.shift()?.();
    if (this.partsLent === 0) {
      clearTimeout(this.freePartsTimer);
      this.freePartsTimer = setTimeout(() => (this.freeParts.length = 0), FREE_PARTS_IDLE_MS).unref();
    }
  }

  private lendPart(): Buffer {
    clearTimeout(this.freePartsTimer);
    this.partsLent++;
    return this.freeParts.pop() ?? Buffer.allocUnsafe(PART_SIZE);
  }

  /** `<prefix>uploads/<id>/data`: the key of the session's multipart upload, and of the blob it completes to. */
  dataKey(id: string): string {
    return `${this.store.uploadsPrefix}${id}/data`;
  }

  newTailKey(id: string): string {
    return `${this.store.uploadsPrefix}${id}/tail-${randomUUID()}`;
  }

  async startMultipart(id: string): Promise<string> {
    const { UploadId } = await this.send((client) =>
      client.send(new CreateMultipartUploadCommand({ Bucket: this.store.bucket, Key: this.dataKey(id) })),
    );
    if (!UploadId) throw storageError(new Error('CreateMultipartUpload answered no UploadId'), this.store.location);
    return UploadId;
  }

  /** Sends one part under a part number no other request has; answers it as the index records it. */
  async uploadPart(id: string, multipartId: string, content: Buffer): Promise<UploadPart> {
    const partNumber = await this.index.reserveUploadParts(id, 1);
    if (partNumber === null) throw uploadDataGone(id);
    if (partNumber > S3_MAX_PARTS) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', {
        message: `an upload to this registry's bucket takes ${S3_MAX_PARTS} parts of ${PART_SIZE / 1024 / 1024} MiB at most`,
      });
    }
    const { ETag } = await withAttempts(() =>
      this.send((client) =>
        client.send(
          new UploadPartCommand({
            Bucket: this.store.bucket,
            Key: this.dataKey(id),
            UploadId: multipartId,
            PartNumber: partNumber,
            // A stream, not the buffer: the SDK would hash a buffer to sign it (a fifth of a push's CPU);
            // the blob's own digest is checked at the end.
            Body: Readable.from([content]),
            ContentLength: content.length,
          }),
        ),
      ),
    );
    if (!ETag) throw storageError(new Error('UploadPart answered no ETag'), this.store.location);
    return { partNumber, etag: ETag, size: content.length };
  }

  /** Aborts a multipart upload; one that is gone already is as good. */
  abort(key: string, multipartId: string): Promise<void> {
    return this.store.abortMultipart(key, multipartId);
  }

  async putObject(key: string, content: Buffer): Promise<void> {
    const put = new PutObjectCommand({ Bucket: this.store.bucket, Key: key, Body: content, ContentLength: content.length });
    await withAttempts(() => this.send((client) => client.send(put)));
  }

  async read(key: string): Promise<Readable> {
    try {
      return (await this.store.client.send(new GetObjectCommand({ Bucket: this.store.bucket, Key: key }))).Body as Readable;
    } catch (error) {
      if (isMissingObject(error)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { message: 'upload data is gone' });
      throw storageError(error, this.store.location);
    }
  }

  /** An object of `length` bytes into the start of `buffer`; another length is the store failing. */
  async readInto(key: string, buffer: Buffer, length: number): Promise<void> {
    let read = 0;
    for await (const chunk of await this.read(key)) {
      if (read + (chunk as Buffer).length > length) break;
      read += (chunk as Buffer).copy(buffer, read);
    }
    if (read !== length) throw storageError(new Error(`${key} is not the ${length} bytes written`), this.store.location);
  }

  async deleteObject(key: string): Promise<void> {
    await this.send((client) => client.send(new DeleteObjectCommand({ Bucket: this.store.bucket, Key: key })));
  }

  // --- steps ------------------------------------------------------------------------------------------

  /** The session's record in the index, which must be the one `upload` was read with. */
  private async state(upload: UploadRecord): Promise<BucketUploadState> {
    const state = await this.index.bucketUpload(upload.id);
    if (!state) throw uploadDataGone(upload.id);
    if (state.size !== upload.size) throw this.changedMeanwhile(upload, state.size);
    // A session with bytes but no hash was not written by this store (an index moved from a filesystem registry).
    if (state.size > 0 && state.hashState === null) throw uploadDataGone(upload.id);
    return state;
  }

  /** Records a chunk's change; refused (and its objects left to `abandon`) when the session moved on meanwhile. */
  private async record(upload: UploadRecord, from: BucketUploadState, to: BucketUploadChange): Promise<void> {
    if (!(await this.index.commitBucketUpload(upload.id, from, to))) {
      throw this.changedMeanwhile(upload, (await this.index.upload(upload.id))?.size ?? upload.size);
    }
    // The old tail's bytes are in the new parts or tail now.
    if (from.tailKey && from.tailKey !== to.tailKey) await this.deleteObject(from.tailKey).catch(() => undefined);
  }

  /**
   * The session's bytes as one object: its multipart upload completed with the tail as the last part, and
   * recorded so (the data object as the tail, no parts) before anything else happens to it. Null for an
   * empty session.
   */
  private async assemble(upload: UploadRecord, state: BucketUploadState): Promise<string | null> {
    if (state.multipartId === null) return state.tailKey;
    const writer = new PartWriter(this, upload.id, state.multipartId);
    try {
      if (state.tailKey) await writer.addObject(state.tailKey);
      const last = await writer.finish({ size: state.size, hashState: state.hashState, last: true });
      const parts = [...state.parts, ...last.newParts];
      const key = this.dataKey(upload.id);
      await this.complete(key, state.multipartId, parts, state.size);
      const assembled = { size: state.size, multipartId: null, tailKey: key, hashState: state.hashState, newParts: [], replaceParts: true };
      await this.record(upload, state, assembled);
      return key;
    } catch (error) {
      await writer.abandon();
      throw error;
    }
  }

  /**
   * CompleteMultipartUpload; when the upload is gone already and its object is there whole, a completion
   * that was not recorded (the replica died after it), which is as good.
   */
  private async complete(key: string, multipartId: string, parts: UploadPart[], size: number): Promise<void> {
    try {
      await this.store.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.store.bucket,
          Key: key,
          UploadId: multipartId,
          MultipartUpload: { Parts: parts.map((part) => ({ PartNumber: part.partNumber, ETag: part.etag })) },
        }),
      );
    } catch (error) {
      if (!isMissingUpload(error)) throw storageError(error, this.store.location);
      const head = await this.send((client) => client.send(new HeadObjectCommand({ Bucket: this.store.bucket, Key: key }))).catch(() => null);
      if (head?.ContentLength !== size) throw storageError(error, this.store.location);
    }
  }

  /** Every object of the session. */
  private async removeObjects(id: string): Promise<void> {
    for await (const object of this.store.objects(`${this.store.uploadsPrefix}${id}/`)) await this.deleteObject(object.key);
  }

  private changedMeanwhile(upload: UploadRecord, size: number): RegistryError {
    return new RegistryError('RANGE_INVALID', {
      message: 'another request changed this upload meanwhile; continue from the offset it has now',
      detail: { uploadId: upload.id, offset: size },
      headers: uploadHeaders(upload.repository, upload.id, size),
    });
  }

  /** A request to the bucket, its failure said as the store's. */
  private async send<T>(request: (client: S3Client) => Promise<T>): Promise<T> {
    try {
      return await request(this.store.client);
    } catch (error) {
      throw storageError(error, this.store.location);
    }
  }
}

/**
 * Cuts a chunk's bytes into parts as they come, PART_SIZE each, PARTS_IN_FLIGHT going up while the next
 * fills (a 256 MiB PATCH into radosgw here: 6.1–7.2 s with one part at a time, 5.7–6.5 s with two, 5.4–6.0 s
 * with four); the bytes short of a part at the end become the session's new tail (or, `last`, its last
 * part). Its buffers are reused (a fresh 8 MiB buffer per part cost page faults and collections, a fifth
 * of a push's CPU), and kept between chunks (BucketUploadData.freeParts).
 */
class PartWriter {
  /** The part filling now (from the first byte); `filled` bytes of it so far. */
  private part: Buffer | null = null;
  private filled = 0;
  /** Parts going up, and the first failure among them. */
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | null = null;
  private readonly newParts: UploadPart[] = [];
  private tailKey: string | null = null;
  /** The multipart upload this chunk began, when the session had none. */
  private begun: string | null = null;
  /** When the buffer filling was lent; calls to add() or finish() under way (the writer waits on its client when none). */
  private lentAt = 0;
  private busy = 0;
  /** Bytes of the part filling that went into the bucket to give its buffer back (yieldBufferIfLentBefore). */
  private setAside: { key: string; length: number } | null = null;
  private yielding: Promise<void> | null = null;

  constructor(
    private readonly bucket: BucketUploadData,
    private readonly id: string,
    private multipartId: string | null,
  ) {}

  async add(chunk: Buffer): Promise<void> {
    this.busy++;
    try {
      if (this.yielding) await this.yielding;
      for (let offset = 0; offset < chunk.length; ) {
        if (!this.part) await this.takeBuffer();
        const copied = chunk.copy(this.part!, this.filled, offset);
        this.filled += copied;
        offset += copied;
        if (this.filled === PART_SIZE) await this.sendPart(this.takePart());
      }
    } finally {
      this.busy--;
    }
  }

  /**
   * The pool wants buffers back: one lent before `since` to this chunk, now waiting on its client, goes.
   * Its bytes go up as a part when S3 takes them as one (S3_MIN_PART), else into an object that add() reads
   * back into the next buffer (or that becomes the session's tail). A failure keeps the buffer.
   */
  yieldBufferIfLentBefore(since: number): void {
    if (!this.part || this.busy > 0 || this.yielding || this.lentAt > since) return;
    this.yielding = (async () => {
      try {
        if (this.filled === 0) return this.releaseBuffers();
        if (this.filled >= S3_MIN_PART) {
          // The part's bytes are out of the writer's hands now: failing to send them fails the chunk.
          await this.sendPart(this.takePart()).catch((error: unknown) => void (this.failure ??= { error }));
          return;
        }
        const key = this.bucket.newTailKey(this.id);
        await this.bucket.putObject(key, this.part!.subarray(0, this.filled));
        this.setAside = { key, length: this.filled };
        this.releaseBuffers();
      } catch {
        this.lentAt = Date.now();
      }
    })().finally(() => (this.yielding = null));
  }

  /** An object's bytes (the old tail), streamed in. */
  async addObject(key: string): Promise<void> {
    for await (const chunk of await this.bucket.read(key)) await this.add(chunk as Buffer);
  }

  /** Sends what is left; the change to record. */
  async finish(after: { size: number; hashState: string | null; last: boolean }): Promise<BucketUploadChange> {
    this.busy++;
    try {
      return await this.finishParts(after);
    } finally {
      this.busy--;
    }
  }

  private async finishParts(after: { size: number; hashState: string | null; last: boolean }): Promise<BucketUploadChange> {
    if (this.yielding) await this.yielding;
    // Bytes set aside are short of a part: the new tail as they are, or read back to go up as the last part.
    if (this.setAside && !after.last) {
      this.tailKey = this.setAside.key;
      this.setAside = null;
    } else if (this.setAside) await this.takeBuffer();
    const rest = this.part?.subarray(0, this.filled) ?? Buffer.alloc(0);
    if (rest.length >= S3_MIN_PART || (after.last && rest.length > 0)) await this.sendPart(this.takePart());
    await this.settle();
    if (rest.length > 0 && rest.length < S3_MIN_PART && !after.last) {
      this.tailKey = this.bucket.newTailKey(this.id);
      await this.bucket.putObject(this.tailKey, rest);
    }
    this.releaseBuffers();
    const newParts = this.newParts.sort((a, b) => a.partNumber - b.partNumber);
    return { size: after.size, multipartId: this.multipartId, tailKey: this.tailKey, hashState: after.hashState, newParts };
  }

  /**
   * After a failure, or a chunk the index refused: the new tail goes, and so does a multipart upload this
   * chunk began (no one records it); new parts of the session's upload are dropped by S3 when it completes
   * without them.
   */
  async abandon(): Promise<void> {
    // Done with: its buffer is not to be set aside any more.
    this.busy++;
    await this.yielding;
    await this.settle().catch(() => undefined);
    this.releaseBuffers();
    if (this.setAside) await this.bucket.deleteObject(this.setAside.key).catch(() => undefined);
    if (this.tailKey) await this.bucket.deleteObject(this.tailKey).catch(() => undefined);
    if (this.begun) await this.bucket.abort(this.bucket.dataKey(this.id), this.begun).catch(() => undefined);
  }

  /** The part filled so far, out of the writer's hands. */
  private takePart(): Buffer {
    const taken = this.part!.subarray(0, this.filled);
    this.part = null;
    this.filled = 0;
    this.bucket.holding(this, false);
    return taken;
  }

  /** A buffer to fill, with the bytes set aside (if any) read back into it first. */
  private async takeBuffer(): Promise<void> {
    this.part = await this.nextBuffer();
    this.filled = 0;
    this.lentAt = Date.now();
    this.bucket.holding(this, true);
    if (!this.setAside) return;
    const { key, length } = this.setAside;
    await this.bucket.readInto(key, this.part, length);
    this.filled = length;
    this.setAside = null;
    await this.bucket.deleteObject(key).catch(() => undefined);
  }

  /**
   * Starts sending a part once fewer than PARTS_IN_FLIGHT are going up (its number is taken as it starts,
   * so numbers follow the bytes' order); its buffer goes back to the bucket once it is up, so that a chunk
   * whose client goes slow holds one buffer, the one filling.
   */
  private async sendPart(content: Buffer): Promise<void> {
    const buffer = Buffer.from(content.buffer, content.byteOffset, PART_SIZE);
    let multipartId: string;
    try {
      while (this.inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure.error;
      if (this.multipartId === null) this.multipartId = this.begun = await this.bucket.startMultipart(this.id);
      multipartId = this.multipartId;
    } catch (error) {
      this.bucket.releasePart(buffer);
      throw error;
    }
    const sent: Promise<void> = this.bucket
      .uploadPart(this.id, multipartId, content)
      .then(
        (part) => {
          this.newParts.push(part);
          this.bucket.releasePart(buffer);
        },
        (error: unknown) => {
          this.failure ??= { error };
          this.bucket.releasePart(null);
        },
      )
      .finally(() => this.inFlight.delete(sent));
    this.inFlight.add(sent);
  }

  /**
   * A buffer to fill, lent by the bucket. A chunk with parts going up takes one only if it is free at once,
   * and otherwise waits for a part of its own to be up (giving its buffer back); one with none waits its
   * turn. (Waiting in turn while holding buffers could leave every chunk waiting for another's.)
   */
  private async nextBuffer(): Promise<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure.error;
      if (this.inFlight.size === 0) return this.bucket.partBuffer();
      const lent = this.bucket.tryPartBuffer();
      if (lent) return lent;
      await Promise.race(this.inFlight);
    }
  }

  /** Waits for every part going up; the first failure among them is thrown. */
  private async settle(): Promise<void> {
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure.error;
  }

  /** Once nothing is going up: the buffer filling goes back to the bucket. */
  private releaseBuffers(): void {
    if (this.part) {
      this.bucket.holding(this, false);
      this.bucket.releasePart(this.part);
    }
    this.part = null;
    this.filled = 0;
  }
}

async function loadHasher(algorithm: DigestAlgorithm, state: string | null): Promise<IHasher> {
  const hasher = algorithm === 'sha512' ? await createSHA512() : await createSHA256();
  hasher.init();
  if (state !== null) hasher.load(Buffer.from(state, 'base64'));
  return hasher;
}

function saveHasher(hasher: IHasher): string {
  return Buffer.from(hasher.save()).toString('base64');
}

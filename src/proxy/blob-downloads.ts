import { EventEmitter, once } from 'node:events';
import fsp, { FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { createDigester, parseDigest } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import type { Readable } from 'node:stream';
import { BlobStore, ByteRange, IO_CHUNK, isNotFound } from '../storage/blob-store';
import { attributeTo } from '../storage/disk-full';
import { SendableStream } from '../streams';

const READ_SIZE = IO_CHUNK;
/**
 * At most this much of a transfer is held in memory, read from the upstream but not yet on disk: the
 * upstream is read while the last batch is being written (so neither waits for the other), and past this
 * the reading waits for the disk.
 */
const MAX_UNWRITTEN = 4 * 1024 * 1024;
/**
 * A write starts once this much has arrived (or at the end): every write wakes the readers following the
 * transfer for a read and a socket write each, so 64 KiB network chunks made four operations per chunk.
 */
const MIN_BATCH = 512 * 1024;
/** How long bytes short of a batch may wait for more before they are written anyway. */
const MAX_BATCH_DELAY_MS = 20;

/**
 * Appends chunks to a file in batches: while one write is under way, the chunks that arrive are queued and
 * go in the next write as one writev. One awaited write per network chunk (often 16–64 KiB) kept the
 * upstream waiting on a thread-pool round trip for every chunk.
 */
class FileAppender {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private writingBytes = 0;
  private writing: Promise<void> | undefined;
  private lateWrite: NodeJS.Timeout | undefined;
  private error: unknown;

  constructor(
    private readonly handle: FileHandle,
    /** Called after each batch is written, with its length. */
    private readonly written: (bytes: number) => void,
  ) {}

  /** Bytes handed to `append` that are not on disk yet (written in batches of MIN_BATCH, the rest by `flush`). */
  get unwritten(): number {
    return this.queuedBytes + this.writingBytes;
  }

  /** Queues `chunk`; throws the error of an earlier write that failed. */
  append(chunk: Buffer): void {
    if (this.error !== undefined) throw this.error;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes >= MIN_BATCH) this.startWriting(false);
    // A slow upstream's bytes still reach the disk (and the clients) soon, a batch or not.
    else this.lateWrite ??= setTimeout(() => this.startWriting(true), MAX_BATCH_DELAY_MS);
  }

  /** Settles once everything appended is on disk; throws the error of a write that failed. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.writing) await this.startWriting(true);
    if (this.error !== undefined) throw this.error;
  }

  /** The write under way, or a new one. */
  private startWriting(all: boolean): Promise<void> {
    if (!this.writing) {
      // Forgotten once settled, asynchronously: `writing` is never left holding a finished write.
      const writing = this.writeQueued(all).finally(() => {
        if (this.writing === writing) this.writing = undefined;
      });
      this.writing = writing;
    }
    return this.writing;
  }

  /**
   * Writes batch after batch while a whole batch is queued (or, with `all`, until the queue is empty).
   * Never rejects: a failure is kept for append and flush.
   */
  private async writeQueued(all = false): Promise<void> {
    clearTimeout(this.lateWrite);
    this.lateWrite = undefined;
    try {
      while (this.queuedBytes >= MIN_BATCH || (all && this.queue.length > 0)) {
        const batch = this.queue;
        this.writingBytes = this.queuedBytes;
        this.queue = [];
        this.queuedBytes = 0;
        const { bytesWritten } = await this.handle.writev(batch);
        // libuv writes every buffer or fails; a short count (a full disk) must not pass as written.
        if (bytesWritten !== this.writingBytes) throw new Error(`wrote ${bytesWritten} of ${this.writingBytes} bytes`);
        const bytes = this.writingBytes;
        this.writingBytes = 0;
        this.written(bytes);
      }
    } catch (error) {
      this.error = error;
      this.queue = [];
      this.queuedBytes = 0;
      this.writingBytes = 0;
    }
  }
}

/**
 * One upstream transfer of one blob, shared by every client that asks for it meanwhile.
 * The body is written to a temporary file while being hashed; readers follow the growing file
 * (a late joiner starts from byte 0 on disk, not from the upstream). Only a transfer that ends with
 * the right digest (and announced size) is moved into the store: anything else is never cached,
 * and readers see their stream fail, so clients get a cut response rather than wrong bytes.
 */
export class BlobDownload {
  /** From the upstream's Content-Length; undefined if it sent none. */
  readonly size: number | undefined;
  /** No more than this is written: the announced size, else the size a manifest declared. */
  private readonly bound: number;
  /** Settles when the blob is verified and in the store, or the transfer failed. */
  readonly done: Promise<void>;
  private written = 0;
  private state: 'running' | 'complete' | 'failed' = 'running';
  /**
   * Every byte arrived and the digest matched: readers may have the last byte, even before the blob is
   * synced and moved into the store (which can take as long as the transfer on a slow disk), and a failure
   * of that move no longer fails them. Requests keep joining this transfer until the blob is in the store.
   */
  private verified = false;
  private failure: Error | undefined;
  private readonly progress = new EventEmitter();
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private abortReason: Error | undefined;

  constructor(
    readonly digest: string,
    private readonly file: string,
    private readonly handle: FileHandle,
    body: ReadableStream<Uint8Array>,
    size: number | undefined,
    bound: number | undefined,
    private readonly store: BlobStore,
    /** Called once the blob is in the store, before new requests stop joining this transfer. */
    private readonly stored: (size: number) => Promise<void>,
    /** Called the moment the transfer is verified or has failed, before any cleanup is awaited. */
    private readonly settled: () => void,
  ) {
    this.size = size;
    this.bound = size ?? bound ?? Infinity;
    this.progress.setMaxListeners(0);
    this.reader = body.getReader();
    this.done = this.transfer();
    this.done.catch(() => undefined); // readers and joiners observe failures; never unhandled
  }

  /** The blob's bytes (or a range of them) as they arrive. */
  read(range?: ByteRange): SendableStream {
    return new TransferStream(this, range);
  }

  /**
   * The next bytes at `position` (up to `end`, exclusive) read into `buffer`, once the transfer has them;
   * null at `end`. Throws the transfer's failure when it failed before `position`.
   */
  async readAt(file: FileHandle, buffer: Buffer, position: number, end: number): Promise<Buffer | null> {
    for (;;) {
      if (position >= end) return null;
      // The last byte waits for verification: a transfer with the wrong digest must end in a cut
      // response, never in a complete one that a client could take for the blob.
      const readable = this.verified ? this.written : this.written - 1;
      if (position < readable) {
        const length = Math.min(buffer.length, readable - position, end - position);
        const { bytesRead } = await file.read(buffer, 0, length, position);
        if (bytesRead === 0) throw new Error('the transfer file ended before what was written');
        return buffer.subarray(0, bytesRead);
      }
      if (this.verified) return null;
      if (this.state === 'failed') throw this.failure!;
      await once(this.progress, 'progress');
    }
  }

  /**
   * The growing file; once the transfer has moved it into the store, the stored blob's file (the same
   * bytes), or null when the store keeps no files (read the stored blob with `openStored` then).
   */
  async openForReading(): Promise<FileHandle | null> {
    try {
      return await fsp.open(this.file, 'r');
    } catch (error) {
      // Verified, it may have been moved into the store since.
      if (!isNotFound(error) || !this.verified) throw error;
      const stored = this.store.localPath(this.digest);
      return stored === null ? null : fsp.open(stored, 'r');
    }
  }

  /** The stored blob from `start` to `end` (exclusive), for a reader that came after the file went into the store. */
  async openStored(start: number, end: number): Promise<Readable> {
    const size = this.written;
    return this.store.open(this.digest, { start, end: Math.min(end, size) - 1 }, size);
  }

  /**
   * Stops the transfer (a shutdown): the upstream connection is dropped and the transfer fails as a cut
   * one does, so the temporary file goes and nothing reaches the store or the index; the next request
   * (after a restart) downloads the blob again. A transfer already verifying its last byte completes.
   * Settles with `done`.
   */
  async abort(reason: Error): Promise<void> {
    if (this.state === 'running' && this.abortReason === undefined) {
      this.abortReason = reason;
      await this.reader.cancel(reason).catch(() => undefined);
    }
    await this.done.catch(() => undefined);
  }

  private async transfer(): Promise<void> {
    const { algorithm } = parseDigest(this.digest)!;
    const hash = createDigester(algorithm);
    const file = new FileAppender(this.handle, (bytes) => {
      this.written += bytes;
      this.progress.emit('progress');
    });
    let received = 0;
    try {
      for (;;) {
        const { done, value: chunk } = await this.reader.read();
        // A cancelled body reads as ended: the abort, not the size or digest check, says why it stopped.
        if (this.abortReason) throw this.abortReason;
        if (done) break;
        // Stopped as soon as it passes what was announced: the disk is not the upstream's to fill.
        if (received + chunk.length > this.bound) {
          throw new Error(`upstream sent more than the ${this.bound} bytes of ${this.digest} it ${this.size === undefined ? 'declared' : 'announced'}`);
        }
        received += chunk.length;
        hash.update(chunk);
        file.append(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if (file.unwritten >= MAX_UNWRITTEN) await file.flush();
      }
      await file.flush();
      if (this.size !== undefined && this.written !== this.size) {
        throw new Error(`upstream sent ${this.written} of ${this.size} bytes of ${this.digest}`);
      }
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== this.digest) throw new Error(`upstream sent content with digest ${actual} for ${this.digest}`);
      this.verified = true;
      this.progress.emit('progress');
      await this.handle.sync();
      await this.store.adopt(this.file, this.digest, this.written);
      this.state = 'complete';
      // Recorded before the transfer stops taking joiners, so that no request falls between the two.
      await this.stored(this.written);
      this.settled();
    } catch (error) {
      attributeTo(error, this.file);
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.state = 'failed';
      // New requests start a new transfer from now on, not join this failed one.
      this.settled();
      // A batch still being written finishes (or fails) before the file goes.
      await file.flush().catch(() => undefined);
      await fsp.rm(this.file, { force: true });
      throw this.failure;
    } finally {
      this.progress.emit('progress');
      await this.handle.close();
    }
  }
}

/** A client's read of a transfer: follows the growing file (opened lazily) from the range's start. */
class TransferStream extends SendableStream {
  /**
   * A reader following a transfer gets what the upstream delivered since its last read, rarely more than a
   * few hundred KiB: small buffers keep 16 clients of one cold blob from holding 64 MiB between them.
   */
  protected override readonly sendBufferSize = 512 * 1024;
  private file: FileHandle | undefined;
  /** In place of the file: the stored blob, when the store keeps no files and the transfer is in it already. */
  private stored: AsyncIterator<Buffer> | undefined;
  private storedStream: Readable | undefined;
  private position: number;
  private readonly end: number;

  constructor(
    private readonly download: BlobDownload,
    range: ByteRange | undefined,
  ) {
    super({ highWaterMark: READ_SIZE });
    this.position = range?.start ?? 0;
    this.end = range ? range.end + 1 : Infinity;
  }

  /**
   * A transfer the upstream failed, said as the spec's UNAVAILABLE (a client sees it when it fails before
   * its first byte); the system's errors (a full disk) pass as they are, for the error middleware to name.
   */
  protected async readInto(buffer: Buffer): Promise<Buffer | null> {
    try {
      return await this.readNext(buffer);
    } catch (error) {
      if (error instanceof RegistryError || (error as NodeJS.ErrnoException).code !== undefined) throw error;
      throw new RegistryError('UNAVAILABLE', { message: `fetching ${this.download.digest} failed: ${(error as Error).message}` });
    }
  }

  private async readNext(buffer: Buffer): Promise<Buffer | null> {
    if (!this.file && !this.stored) {
      const file = await this.download.openForReading();
      if (file) {
        this.file = file;
      } else {
        this.storedStream = await this.download.openStored(this.position, this.end);
        this.stored = this.storedStream[Symbol.asyncIterator]();
      }
    }
    if (this.stored) {
      const next = await this.stored.next();
      return next.done ? null : next.value;
    }
    const chunk = await this.download.readAt(this.file!, buffer, this.position, this.end);
    if (chunk) this.position += chunk.length;
    return chunk;
  }

  protected async release(): Promise<void> {
    this.storedStream?.destroy();
    await this.file?.close().catch(() => undefined);
  }
}

/** What an upstream answered for a blob: its body, its Content-Length, and the most it may send. */
export interface UpstreamBlobBody {
  body: ReadableStream<Uint8Array>;
  size: number | undefined;
  /** Without a Content-Length: the size a manifest declared, which the transfer may not pass. */
  bound?: number;
  /** Called once the transfer has ended, either way (gives back the room it held: `[proxy] min_free`). */
  ended?: () => void;
}

/**
 * Concurrent requests for one uncached blob share one download: `inflight.get(key) ?? start(key)`.
 * The key is the upstream repository and the digest: a client of one repository is never served bytes
 * that its own upstream repository was not asked for. At most `maxConcurrent` transfers run at once
 * (each holds a connection and a growing file); further ones wait for a slot before asking the upstream.
 */
export class BlobDownloads {
  private readonly inflight = new Map<string, Promise<BlobDownload>>();
  private closed = false;
  private running_ = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly store: BlobStore,
    private readonly maxConcurrent = Infinity,
  ) {}

  /** Transfers holding a slot now. */
  get transfers(): number {
    return this.running_;
  }

  /** The download under way for `source` (an upstream repository) and `digest`, if any. */
  running(source: string, digest: string): Promise<BlobDownload> | undefined {
    return this.inflight.get(`${source}@${digest}`);
  }

  /**
   * The running download, or a new one whose response comes from `fetchBody` (which throws the registry
   * error to give clients when the upstream does not deliver) and which calls `stored` once the verified
   * blob is in the store. Resolves once the upstream has answered, so the first bytes can flow.
   * `claim` runs first, before the transfer waits for a slot: waiting that moves no bytes (for another
   * replica's download of the blob, the download lease) holds none. It answers its own undoing, called
   * when fetchBody is not (a shutdown meanwhile); fetchBody undoes it when it runs.
   */
  join(
    source: string,
    digest: string,
    fetchBody: () => Promise<UpstreamBlobBody>,
    stored: (size: number) => Promise<void>,
    claim?: () => Promise<() => Promise<void>>,
  ): Promise<BlobDownload> {
    const key = `${source}@${digest}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const forget = () => {
      if (this.inflight.get(key) === started) this.inflight.delete(key);
    };
    const started = this.start(digest, fetchBody, stored, forget, claim);
    this.inflight.set(key, started);
    started.catch(forget);
    return started;
  }

  /**
   * A shutdown: aborts every transfer under way (see BlobDownload.abort) and those still waiting for
   * their upstream's answer, and settles once their temporary files are gone.
   */
  async abortAll(): Promise<void> {
    this.closed = true;
    const reason = new Error('the server is shutting down');
    await Promise.all(
      [...this.inflight.values()].map(async (started) => {
        const download = await started.catch(() => undefined);
        await download?.abort(reason);
      }),
    );
  }

  private async start(
    digest: string,
    fetchBody: () => Promise<UpstreamBlobBody>,
    stored: (size: number) => Promise<void>,
    settled: () => void,
    claim: (() => Promise<() => Promise<void>>) | undefined,
  ): Promise<BlobDownload> {
    const unclaim = await claim?.();
    const release = await this.slot();
    let download: BlobDownload | undefined;
    let fetching = false;
    try {
      if (this.closed) throw new Error('the server is shutting down');
      fetching = true;
      const { body, size, bound, ended } = await fetchBody();
      try {
        if (this.closed) {
          await body.cancel().catch(() => undefined);
          throw new Error('the server is shutting down');
        }
      } catch (error) {
        ended?.();
        throw error;
      }
      const directory = this.store.stagingDirectory;
      const file = path.join(directory, randomUUID());
      let handle: FileHandle;
      try {
        await fsp.mkdir(directory, { recursive: true });
        handle = await fsp.open(file, 'w');
      } catch (error) {
        ended?.();
        await body.cancel().catch(() => undefined);
        throw error;
      }
      download = new BlobDownload(digest, file, handle, body, size, bound, this.store, stored, settled);
      if (ended) void download.done.catch(() => undefined).finally(ended);
      return download;
    } finally {
      if (download) void download.done.catch(() => undefined).finally(release);
      else release();
      if (!fetching) await unclaim?.().catch(() => undefined);
    }
  }

  /** Waits for one of the `maxConcurrent` transfer slots; the function returned gives it back. */
  private async slot(): Promise<() => void> {
    if (this.running_ >= this.maxConcurrent) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running_++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running_--;
      this.waiting.shift()?.();
    };
  }
}

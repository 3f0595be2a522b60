import { EventEmitter, once } from 'node:events';
import fsp, { FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createDigester, parseDigest } from '../oci/digest';
import { BlobStore, ByteRange, IO_CHUNK, isNotFound } from '../storage/blob-store';
import { incomingDirectory } from '../storage/paths';

const READ_SIZE = IO_CHUNK;

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
    private readonly stored: (size: number) => void,
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
  read(range?: ByteRange): Readable {
    return Readable.from(this.follow(range));
  }

  private async *follow(range?: ByteRange): AsyncGenerator<Buffer> {
    const reader = await this.openForReading();
    try {
      let position = range?.start ?? 0;
      const end = range ? range.end + 1 : Infinity;
      while (position < end) {
        // The last byte waits for verification: a transfer with the wrong digest must end in a cut
        // response, never in a complete one that a client could take for the blob.
        const readable = this.state === 'complete' ? this.written : this.written - 1;
        if (position < readable) {
          const length = Math.min(READ_SIZE, readable - position, end - position);
          const buffer = Buffer.allocUnsafe(length);
          const { bytesRead } = await reader.read(buffer, 0, length, position);
          position += bytesRead;
          yield buffer.subarray(0, bytesRead);
        } else if (this.state === 'failed') {
          throw this.failure!;
        } else if (this.state === 'complete') {
          return;
        } else {
          await once(this.progress, 'progress');
        }
      }
    } finally {
      await reader.close();
    }
  }

  /** The growing file; once the transfer has moved it into the store, the stored blob (the same bytes). */
  private async openForReading(): Promise<FileHandle> {
    try {
      return await fsp.open(this.file, 'r');
    } catch (error) {
      if (!isNotFound(error) || this.state !== 'complete') throw error;
      return fsp.open(this.store.path(this.digest), 'r');
    }
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
    try {
      for (;;) {
        const { done, value: chunk } = await this.reader.read();
        // A cancelled body reads as ended: the abort, not the size or digest check, says why it stopped.
        if (this.abortReason) throw this.abortReason;
        if (done) break;
        // Stopped as soon as it passes what was announced: the disk is not the upstream's to fill.
        if (this.written + chunk.length > this.bound) {
          throw new Error(`upstream sent more than the ${this.bound} bytes of ${this.digest} it ${this.size === undefined ? 'declared' : 'announced'}`);
        }
        hash.update(chunk);
        await this.handle.write(chunk);
        this.written += chunk.length;
        this.progress.emit('progress');
      }
      await this.handle.sync();
      if (this.size !== undefined && this.written !== this.size) {
        throw new Error(`upstream sent ${this.written} of ${this.size} bytes of ${this.digest}`);
      }
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== this.digest) throw new Error(`upstream sent content with digest ${actual} for ${this.digest}`);
      await this.store.adopt(this.file, this.digest, this.written);
      this.state = 'complete';
      // Recorded before the transfer stops taking joiners, so that no request falls between the two.
      this.stored(this.written);
      this.settled();
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.state = 'failed';
      // New requests start a new transfer from now on, not join this failed one.
      this.settled();
      await fsp.rm(this.file, { force: true });
      throw this.failure;
    } finally {
      this.progress.emit('progress');
      await this.handle.close();
    }
  }
}

/** What an upstream answered for a blob: its body, its Content-Length, and the most it may send. */
export interface UpstreamBlobBody {
  body: ReadableStream<Uint8Array>;
  size: number | undefined;
  /** Without a Content-Length: the size a manifest declared, which the transfer may not pass. */
  bound?: number;
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
   */
  join(
    source: string,
    digest: string,
    fetchBody: () => Promise<UpstreamBlobBody>,
    stored: (size: number) => void,
  ): Promise<BlobDownload> {
    const key = `${source}@${digest}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const forget = () => {
      if (this.inflight.get(key) === started) this.inflight.delete(key);
    };
    const started = this.start(digest, fetchBody, stored, forget);
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
    stored: (size: number) => void,
    settled: () => void,
  ): Promise<BlobDownload> {
    const release = await this.slot();
    let download: BlobDownload | undefined;
    try {
      if (this.closed) throw new Error('the server is shutting down');
      const { body, size, bound } = await fetchBody();
      if (this.closed) {
        await body.cancel().catch(() => undefined);
        throw new Error('the server is shutting down');
      }
      const directory = incomingDirectory(this.store.root);
      await fsp.mkdir(directory, { recursive: true });
      const file = path.join(directory, randomUUID());
      const handle = await fsp.open(file, 'w');
      download = new BlobDownload(digest, file, handle, body, size, bound, this.store, stored, settled);
      return download;
    } finally {
      if (download) void download.done.catch(() => undefined).finally(release);
      else release();
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

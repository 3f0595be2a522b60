import { EventEmitter, once } from 'node:events';
import fsp, { FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createDigester, parseDigest } from '../oci/digest';
import { BlobStore, ByteRange } from '../storage/blob-store';
import { incomingDirectory } from '../storage/paths';

const READ_SIZE = 256 * 1024;

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
  /** Settles when the blob is verified and in the store, or the transfer failed. */
  readonly done: Promise<void>;
  private written = 0;
  private state: 'running' | 'complete' | 'failed' = 'running';
  private failure: Error | undefined;
  private readonly progress = new EventEmitter();

  constructor(
    readonly digest: string,
    private readonly file: string,
    private readonly handle: FileHandle,
    body: ReadableStream<Uint8Array>,
    size: number | undefined,
    store: BlobStore,
  ) {
    this.size = size;
    this.progress.setMaxListeners(0);
    this.done = this.transfer(body, store);
    this.done.catch(() => undefined); // readers and joiners observe failures; never unhandled
  }

  /** The blob's bytes (or a range of them) as they arrive. */
  read(range?: ByteRange): Readable {
    return Readable.from(this.follow(range));
  }

  private async *follow(range?: ByteRange): AsyncGenerator<Buffer> {
    const reader = await fsp.open(this.file, 'r');
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

  private async transfer(body: ReadableStream<Uint8Array>, store: BlobStore): Promise<void> {
    const { algorithm } = parseDigest(this.digest)!;
    const hash = createDigester(algorithm);
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
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
      await store.adopt(this.file, this.digest);
      this.state = 'complete';
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.state = 'failed';
      await fsp.rm(this.file, { force: true });
      throw this.failure;
    } finally {
      this.progress.emit('progress');
      await this.handle.close();
    }
  }
}

/** Concurrent requests for one uncached blob share one download: `inflight.get(digest) ?? start(digest)`. */
export class BlobDownloads {
  private readonly inflight = new Map<string, Promise<BlobDownload>>();

  constructor(private readonly store: BlobStore) {}

  /**
   * The running download of `digest`, or a new one whose response comes from `fetchBody` (which throws
   * the registry error to give clients when the upstream does not deliver). Resolves once the upstream
   * has answered, so the first bytes can flow.
   */
  join(
    digest: string,
    fetchBody: () => Promise<{ body: ReadableStream<Uint8Array>; size: number | undefined }>,
  ): Promise<BlobDownload> {
    const running = this.inflight.get(digest);
    if (running) return running;
    const started = this.start(digest, fetchBody);
    this.inflight.set(digest, started);
    const forget = () => {
      if (this.inflight.get(digest) === started) this.inflight.delete(digest);
    };
    started.then((download) => download.done.then(forget, forget), forget);
    return started;
  }

  private async start(
    digest: string,
    fetchBody: () => Promise<{ body: ReadableStream<Uint8Array>; size: number | undefined }>,
  ): Promise<BlobDownload> {
    const { body, size } = await fetchBody();
    const directory = incomingDirectory(this.store.root);
    await fsp.mkdir(directory, { recursive: true });
    const file = path.join(directory, randomUUID());
    const handle = await fsp.open(file, 'w');
    return new BlobDownload(digest, file, handle, body, size, this.store);
  }
}

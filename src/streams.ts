import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

/**
 * Reads a small stream whole (a manifest), stopping as soon as it passes `maxBytes`: undefined then,
 * so nothing larger than the cap is ever held. Callers say what the excess means to their client.
 */
export async function readAtMost(source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > maxBytes) return undefined;
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
  }
  return Buffer.concat(chunks);
}

/** Where `FileRangeStream.sendTo` writes: an HTTP response, or anything that acknowledges each write. */
export interface AcknowledgedWritable {
  write(chunk: Buffer, callback: (error?: Error | null) => void): boolean;
  end(): unknown;
  destroy(error?: Error): unknown;
  once(event: 'close', listener: () => void): unknown;
  readonly destroyed: boolean;
}

/**
 * At most this much memory is in the send buffers of all responses together at full size; past it, a
 * response sends from SMALL_SEND_BUFFER buffers. 16 clients of 2 MiB-buffer responses held 64 MiB between
 * them: the memory the registry needs must not grow by megabytes with every client. (Reusing buffers across
 * responses was tried: the pool stays resident between bursts and the peak RSS came out higher.)
 */
const SEND_BUFFER_BUDGET = 32 * 1024 * 1024;
/** What a response sends from once the budget is taken: a few more system calls per byte, an eighth of the memory. */
const SMALL_SEND_BUFFER = 256 * 1024;
/** Bytes in the send buffers of the responses under way. */
let sendBufferBytes = 0;

/**
 * A blob body that can write itself to a response faster than piping: `sendTo` reads into two buffers,
 * reused, the next read overlapping the last write, and refills a buffer only once the socket has
 * acknowledged it. Measured on a 1 GiB blob, fresh 1 MiB buffers per read cost about as much CPU in page
 * faults and garbage collection as the socket writes themselves. As a Readable it works anywhere a stream
 * does (a fresh buffer per read). Subclasses say how to read the next bytes into a buffer.
 */
export abstract class SendableStream extends Readable {
  /** Reads into, and writes from, buffers of this size on the fast path: 2 per response in flight. */
  static readonly SEND_BUFFER = 2 * 1024 * 1024;
  /** The size of `sendTo`'s two buffers; a subclass whose reads are smaller anyway needs less. */
  protected readonly sendBufferSize: number = SendableStream.SEND_BUFFER;

  /** The next bytes, read into `buffer` (a subarray of it), or null at the end. */
  protected abstract readInto(buffer: Buffer): Promise<Buffer | null>;

  /** Frees what the reading holds (a file handle); called once, after the last read or on destroy. */
  protected abstract release(): Promise<void>;

  private released = false;

  override _read(size: number): void {
    this.readInto(Buffer.allocUnsafeSlow(size)).then(
      (chunk) => this.push(chunk),
      (error: Error) => this.destroy(error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.releaseOnce().then(() => callback(error), callback);
  }

  /**
   * Reads the first bytes for `sendTo` now, before the response is committed: a body that fails before its
   * first byte (an upstream's transfer cut early, a file that cannot be read) is then answered with an
   * error instead of a connection closed without an answer. Rejects with that failure.
   */
  async readFirst(): Promise<void> {
    const lent = lendSendBuffers(this.sendBufferSize);
    try {
      this.firstRead = { ...lent, first: await this.readInto(lent.buffers[0]) };
    } catch (error) {
      sendBufferBytes -= 2 * lent.size;
      throw error;
    }
  }

  private firstRead: { buffers: Buffer[]; size: number; first: Buffer | null } | undefined;

  /**
   * Writes the bytes to `destination` and ends it; each chunk is emitted as 'data' once written (the request
   * log and metrics count what went out). A destination that closes early stops it; what the reading holds is
   * released either way. Never rejects: what goes wrong after the headers were sent can only cut the response.
   */
  async sendTo(destination: AcknowledgedWritable): Promise<void> {
    const { buffers, size, first } = this.firstRead ?? { ...lendSendBuffers(this.sendBufferSize), first: undefined };
    this.firstRead = undefined;
    try {
      await this.sendFrom(buffers, destination, first);
    } finally {
      sendBufferBytes -= 2 * size;
    }
  }

  /** `first`: what readFirst read into buffers[0], if it ran. */
  private async sendFrom(buffers: Buffer[], destination: AcknowledgedWritable, first: Buffer | null | undefined): Promise<void> {
    let gone = destination.destroyed;
    const closed = new Promise<void>((resolve) => destination.once('close', () => ((gone = true), resolve())));
    try {
      let turn = 0;
      let next = first === undefined ? this.readInto(buffers[turn]) : Promise.resolve(first);
      for (let chunk = await next; chunk && !gone; chunk = await next) {
        turn ^= 1;
        // The other buffer is free: the socket acknowledged it before the previous round ended.
        next = this.readInto(buffers[turn]);
        next.catch(() => undefined); // awaited next round, or dropped with the response
        const written = new Promise<void>((resolve, reject) => destination.write(chunk!, (error) => (error ? reject(error) : resolve())));
        written.catch(() => undefined); // a write the closing destination fails is not an error of ours
        await Promise.race([written, closed]);
        if (!gone) this.emit('data', chunk);
      }
      if (!gone) destination.end();
    } catch (error) {
      destination.destroy(error as Error);
    } finally {
      await this.releaseOnce();
    }
  }

  private async releaseOnce(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.release();
  }
}

/** Two send buffers of `preferred` bytes, or smaller ones past SEND_BUFFER_BUDGET; counted until given back. */
function lendSendBuffers(preferred: number): { buffers: Buffer[]; size: number } {
  const fits = sendBufferBytes + 2 * preferred <= SEND_BUFFER_BUDGET;
  const size = fits ? preferred : Math.min(SMALL_SEND_BUFFER, preferred);
  sendBufferBytes += 2 * size;
  return { buffers: [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)], size };
}

/** Bytes `start`…`end` (inclusive) of an open file. */
export class FileRangeStream extends SendableStream {
  private position: number;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    /** Inclusive; -1 for an empty file. */
    private readonly end: number,
    readSize: number,
  ) {
    super({ highWaterMark: readSize });
    this.position = start;
  }

  protected async readInto(buffer: Buffer): Promise<Buffer | null> {
    const length = Math.min(buffer.length, this.end - this.position + 1);
    if (length <= 0) return null;
    const { bytesRead } = await this.handle.read(buffer, 0, length, this.position);
    if (bytesRead === 0) throw new Error('file ended before its size');
    this.position += bytesRead;
    return bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
  }

  protected async release(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

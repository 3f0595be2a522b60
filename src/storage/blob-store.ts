import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestAlgorithm, createDigester } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { blobPath, incomingDirectory } from './paths';
import { attributeTo } from './disk-full';
import { FileRangeStream } from '../streams';

/** Read size for serving blobs. */
export const IO_CHUNK = 1024 * 1024;
/** Write buffer for incoming blobs. */
export const WRITE_BUFFER = 8 * 1024 * 1024;

export interface WrittenBlob {
  digest: string;
  size: number;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * Content-addressed files under one root. Writes are hashed on the way in, fsynced, and renamed into
 * place only once verified, so a crash never leaves a partial blob at a digest's path.
 */
export class BlobStore {
  /**
   * `beforeCommit` runs just before a file is renamed to a digest's path. The index records the write
   * there, so the garbage collector's re-check sees every file that appeared under its feet (see gc.ts).
   */
  constructor(
    readonly root: string,
    private readonly beforeCommit: (digest: string, size: number) => void = () => undefined,
  ) {}

  path(digest: string): string {
    return blobPath(this.root, digest);
  }

  /** The blob's size, or null when it is not on disk. */
  async size(digest: string): Promise<number | null> {
    try {
      return (await fsp.stat(this.path(digest))).size;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  /** Whether the file of `digest` is there with the size the index recorded (anything else is not this blob). */
  async holds(digest: string, size: number): Promise<boolean> {
    return (await this.size(digest)) === size;
  }

  /**
   * Opens before answering, so a missing file is a clean 404 rather than a broken 200 (ENOENT is thrown).
   * `size`: the file's size when the caller knows it already (no second stat on the way to a pull).
   */
  async open(digest: string, range?: ByteRange, size?: number): Promise<Readable> {
    const handle = await fsp.open(this.path(digest), 'r');
    try {
      const end = range ? range.end : (size ?? (await handle.stat()).size) - 1;
      // 1 MiB reads as a stream: a sixteenth of the reads, allocations and socket writes of the 64 KiB default.
      return new FileRangeStream(handle, range ? range.start : 0, end, IO_CHUNK);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async readAll(digest: string): Promise<Buffer> {
    return fsp.readFile(this.path(digest));
  }

  /**
   * Streams `source` into the store. With `expectedDigest`, content that hashes otherwise is
   * discarded and DIGEST_INVALID thrown. `maxSize` bounds what is read (SIZE_INVALID past it).
   */
  async write(
    source: Readable | Buffer,
    options: { expectedDigest?: string; algorithm?: DigestAlgorithm; maxSize?: number } = {},
  ): Promise<WrittenBlob> {
    const algorithm = options.algorithm ?? algorithmOf(options.expectedDigest) ?? 'sha256';
    const temporary = await this.createIncomingPath();
    const hash = createDigester(algorithm);
    let size = 0;
    try {
      const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
      await pipeline(
        input,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            size += chunk.length;
            if (options.maxSize !== undefined && size > options.maxSize) {
              throw new RegistryError('SIZE_INVALID', { message: `content exceeds ${options.maxSize} bytes` });
            }
            hash.update(chunk);
            yield chunk;
          }
        },
        // flush: fsync before close, so what gets renamed into place is on disk. A large buffer lets the
        // next socket chunk be read while the last one is written.
        fs.createWriteStream(temporary, { flush: true, highWaterMark: WRITE_BUFFER }),
      );
      const digest = `${algorithm}:${hash.digest('hex')}`;
      if (options.expectedDigest !== undefined && digest !== options.expectedDigest) {
        throw new RegistryError('DIGEST_INVALID', { detail: { expected: options.expectedDigest, actual: digest } });
      }
      await this.moveIntoPlace(temporary, digest, size);
      return { digest, size };
    } catch (error) {
      await fsp.rm(temporary, { force: true });
      throw attributeTo(error, temporary);
    }
  }

  /**
   * Stores small content the caller has hashed already (a manifest whose digest it checked): one write,
   * fdatasync, rename. For a few KiB, the stream pipeline of `write` (a Readable, a generator, a write
   * stream, an AbortController) and two mkdirs cost more than the I/O itself.
   */
  async writeVerified(content: Buffer, digest: string): Promise<WrittenBlob> {
    const temporary = path.join(incomingDirectory(this.root), randomUUID());
    const handle = await withDirectory(temporary, () => fsp.open(temporary, 'wx'));
    try {
      try {
        await handle.writeFile(content);
        // Data and size, which is all a new file needs: the rename below is what publishes it.
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.moveIntoPlace(temporary, digest, content.length);
      return { digest, size: content.length };
    } catch (error) {
      await fsp.rm(temporary, { force: true });
      throw attributeTo(error, temporary);
    }
  }

  /**
   * Moves a finished, already verified file (an upload's data) to the digest's path. Falls back to
   * copy-then-rename when the file sits on another filesystem.
   */
  async adopt(file: string, digest: string, size: number): Promise<void> {
    try {
      await this.moveIntoPlace(file, digest, size);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      const temporary = await this.createIncomingPath();
      try {
        await fsp.copyFile(file, temporary);
        const handle = await fsp.open(temporary, 'r+');
        await handle.sync().finally(() => handle.close());
        await this.moveIntoPlace(temporary, digest, size);
      } finally {
        await fsp.rm(temporary, { force: true });
      }
      await fsp.rm(file, { force: true });
    }
  }

  async delete(digest: string): Promise<void> {
    await fsp.rm(this.path(digest), { force: true });
  }

  private async moveIntoPlace(file: string, digest: string, size: number): Promise<void> {
    const target = this.path(digest);
    this.beforeCommit(digest, size);
    // Same digest means same bytes: an existing target is success, and rename replaces it atomically.
    await withDirectory(target, () => fsp.rename(file, target));
  }

  private async createIncomingPath(): Promise<string> {
    const directory = incomingDirectory(this.root);
    await fsp.mkdir(directory, { recursive: true });
    return path.join(directory, randomUUID());
  }
}

/**
 * Runs `operation`, which creates `file`; when it fails because the directory is missing (the first file
 * under a prefix, or one the collector removed when it emptied), creates the directory and runs it again.
 * The directory usually exists: this saves a mkdir per write.
 */
async function withDirectory<T>(file: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await fsp.mkdir(path.dirname(file), { recursive: true });
    return operation();
  }
}

function algorithmOf(digest: string | undefined): DigestAlgorithm | undefined {
  if (digest?.startsWith('sha512:')) return 'sha512';
  if (digest?.startsWith('sha256:')) return 'sha256';
  return undefined;
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}

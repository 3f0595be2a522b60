import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestAlgorithm, createDigester, parseDigest } from '../oci/digest';
import { blobPath, incomingDirectory, quarantineDirectory, trashDirectory } from './paths';
import { attributeTo } from './disk-full';
import { FileRangeStream } from '../streams';
import { BlobStore, ByteRange, CommitHook, IO_CHUNK, StoredFile, WrittenBlob, algorithmOf, isNotFound } from './blob-store';
import { readDirectory, removeFilesOlderThan, requireDigest, writeHashed } from './staging';

/**
 * Content-addressed files under one root. Writes are hashed on the way in, fsynced, and renamed into
 * place only once verified, so a crash never leaves a partial blob at a digest's path.
 */
export class FilesystemBlobStore implements BlobStore {
  /**
   * `beforeCommit` runs just before a file is renamed to a digest's path. A removal under way does not
   * matter here: the collector moves files aside and puts back what its re-check keeps (removeGarbage).
   */
  constructor(
    readonly root: string,
    private readonly beforeCommit: CommitHook = async () => false,
  ) {}

  get location(): string {
    return this.root;
  }

  get stagingDirectory(): string {
    return incomingDirectory(this.root);
  }

  path(digest: string): string {
    return blobPath(this.root, digest);
  }

  localPath(digest: string): string | null {
    return this.path(digest);
  }

  async redirectUrl(): Promise<null> {
    return null;
  }

  /** Its directory is probed by readiness.ts, with the others (a probe file, free space). */
  async probe(): Promise<string> {
    return 'ok';
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
    try {
      const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
      // flush: fsync before close, so what gets renamed into place is on disk.
      const { digest, size } = await writeHashed(input, temporary, { algorithm, maxSize: options.maxSize, flush: true });
      requireDigest(digest, options.expectedDigest);
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

  /** Every file under <root>/blobs/<algorithm>/<xx>/<hex>, with the digest its path names. */
  async *list(): AsyncIterable<StoredFile> {
    const blobs = path.join(this.root, 'blobs');
    for (const algorithm of await readDirectory(blobs)) {
      for (const prefix of await readDirectory(path.join(blobs, algorithm))) {
        for (const hex of await readDirectory(path.join(blobs, algorithm, prefix))) {
          const digest = `${algorithm}:${hex}`;
          if (parseDigest(digest) === null || this.path(digest) !== path.join(blobs, algorithm, prefix, hex)) continue;
          const stat = await fsp.stat(this.path(digest)).catch(() => null);
          if (stat?.isFile()) yield { digest, size: stat.size, mtimeMs: stat.mtimeMs };
        }
      }
    }
  }

  /**
   * Moves each file to a trash name, re-checks, moves back what came back, deletes the rest. A writer's
   * index update precedes its rename, which precedes our move of that file, which precedes the re-check:
   * a blob re-pushed while this runs is put back, whether the writer is this process or another one.
   */
  async removeGarbage(
    selected: StoredFile[],
    recheck: (digests: string[]) => Promise<Set<string>>,
    removed: (digest: string) => Promise<void> = async () => undefined,
  ): Promise<StoredFile[]> {
    const trash = trashDirectory(this.root);
    await fsp.mkdir(trash, { recursive: true });
    const moved: Array<StoredFile & { trashed: string }> = [];
    for (const file of selected) {
      // Named after the digest, so that files a crash leaves here can be judged again (recoverRemovals).
      const trashed = path.join(trash, `${file.digest.replace(':', '-')}.${randomUUID()}`);
      try {
        await fsp.rename(this.path(file.digest), trashed);
        moved.push({ ...file, trashed });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    const garbage = await recheck(moved.map((file) => file.digest));
    const doomed = moved.filter((file) => garbage.has(file.digest));
    for (const file of moved.filter((file) => !garbage.has(file.digest))) {
      // Gone already when another process's recoverRemovals judged it first (the same way).
      await fsp.rename(file.trashed, this.path(file.digest)).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    }
    for (const file of doomed) {
      await fsp.rm(file.trashed, { force: true });
      await removed(file.digest);
    }
    return doomed.map(({ digest, size, mtimeMs }) => ({ digest, size, mtimeMs }));
  }

  /**
   * Files a collection moved to .trash and never re-checked, because the process died in between: each is
   * put back when it is not garbage (what the re-check would have decided), and deleted otherwise.
   */
  async recoverRemovals(isGarbage: (digest: string) => Promise<boolean>): Promise<{ restored: number; deleted: number }> {
    let restored = 0;
    let deleted = 0;
    const trash = trashDirectory(this.root);
    for (const entry of await readDirectory(trash)) {
      const file = path.join(trash, entry);
      const stat = await fsp.stat(file).catch(() => null);
      if (!stat?.isFile()) continue;
      // Older sweeps named files by a random id only: their content says what they are.
      const candidates = digestOfTrashName(entry) ?? (await Promise.all([hashFile(file, 'sha256'), hashFile(file, 'sha512')]));
      let kept: string | undefined;
      for (const digest of candidates) {
        if (!(await isGarbage(digest))) {
          kept = digest;
          break;
        }
      }
      if (kept === undefined) {
        await fsp.rm(file, { force: true });
        deleted++;
        continue;
      }
      if ((await this.size(kept)) !== null) {
        await fsp.rm(file, { force: true });
      } else {
        await fsp.mkdir(path.dirname(this.path(kept)), { recursive: true });
        await fsp.rename(file, this.path(kept));
      }
      restored++;
    }
    return { restored, deleted };
  }

  async removeLeftovers(before: number): Promise<number> {
    return removeFilesOlderThan(this.stagingDirectory, before);
  }

  async quarantine(digest: string): Promise<void> {
    const directory = quarantineDirectory(this.root);
    await fsp.mkdir(directory, { recursive: true });
    await fsp.rename(this.path(digest), path.join(directory, `${digest.replace(':', '-')}-${Date.now()}`));
  }

  private async moveIntoPlace(file: string, digest: string, size: number): Promise<void> {
    const target = this.path(digest);
    await this.beforeCommit(digest, size);
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


/** `<algorithm>-<hex>.<random id>`, as sweeps name what they move aside: [digest]; null for any other name. */
function digestOfTrashName(name: string): string[] | null {
  const match = /^(sha256|sha512)-([0-9a-f]+)\.[0-9a-f-]{36}$/.exec(name);
  const digest = match ? `${match[1]}:${match[2]}` : null;
  return digest !== null && parseDigest(digest) !== null ? [digest] : null;
}

async function hashFile(file: string, algorithm: DigestAlgorithm): Promise<string> {
  const hash = createDigester(algorithm);
  await pipeline(fs.createReadStream(file), hash);
  return `${algorithm}:${hash.digest('hex')}`;
}

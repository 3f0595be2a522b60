import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestAlgorithm, createDigester } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { WRITE_BUFFER, WrittenBlob, isNotFound } from './blob-store';

/*
 * Local files on their way into a store (either backend's .incoming/ directory): written while hashed,
 * and what interrupted writes leave behind.
 */

/**
 * Streams `source` into `file` while hashing it with `algorithm`; past `maxSize` bytes, SIZE_INVALID.
 * `flush`: fsync before close (a file that will be renamed into place). The caller removes the file when
 * this throws.
 */
export async function writeHashed(
  source: Readable,
  file: string,
  options: { algorithm: DigestAlgorithm; maxSize?: number; flush: boolean },
): Promise<WrittenBlob> {
  const hash = createDigester(options.algorithm);
  let size = 0;
  await pipeline(
    source,
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
    // A large buffer lets the next socket chunk be read while the last one is written.
    fs.createWriteStream(file, { flush: options.flush, highWaterMark: WRITE_BUFFER }),
  );
  return { digest: `${options.algorithm}:${hash.digest('hex')}`, size };
}

/** DIGEST_INVALID unless `actual` is the digest `expected` (when one is). */
export function requireDigest(actual: string, expected: string | undefined): void {
  if (expected !== undefined && actual !== expected) {
    throw new RegistryError('DIGEST_INVALID', { detail: { expected, actual } });
  }
}

/** The entries of `directory`; none when it does not exist. */
export async function readDirectory(directory: string): Promise<string[]> {
  try {
    return await fsp.readdir(directory);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** The bytes of the files in `directory` (not recursive); 0 if it does not exist. */
export async function directoryBytes(directory: string): Promise<number> {
  let total = 0;
  for (const entry of await readDirectory(directory)) {
    const stat = await fsp.stat(path.join(directory, entry)).catch(() => null);
    if (stat?.isFile()) total += stat.size;
  }
  return total;
}

/** Files in `directory` (not recursive) not modified since `before`, removed; how many. */
export async function removeFilesOlderThan(directory: string, before: number): Promise<number> {
  let removed = 0;
  for (const entry of await readDirectory(directory)) {
    const file = path.join(directory, entry);
    const stat = await fsp.stat(file).catch(() => null);
    if (stat?.isFile() && stat.mtimeMs < before) {
      await fsp.rm(file, { force: true });
      removed++;
    }
  }
  return removed;
}

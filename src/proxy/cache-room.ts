import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FreeSpace } from '../config/load-config';
import { createDigester, parseDigest } from '../oci/digest';
import type { ByteRange } from '../storage/blob-store';

/** Free and total bytes of the file system holding `directory`, as an unprivileged writer sees them. */
export async function fileSystemSpace(directory: string): Promise<{ free: number; total: number }> {
  const stats = await fsp.statfs(directory);
  return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
}

/**
 * `[proxy] min_free`: whether a cache fill of `bytes` still leaves min_free on the cache's file system,
 * once least-recently-used cached content has been evicted to make it so where it would not (`makeRoom`,
 * which never touches pins or hosted content).
 */
export class CacheRoom {
  /** Bytes of fills under way, counted at their full size: the file system shows only what they wrote yet. */
  private reserved = 0;

  constructor(
    private readonly root: string,
    private readonly minFree: FreeSpace,
    /** Evicts and sweeps until about this many bytes are free again. */
    private readonly makeRoom: (bytes: number) => Promise<unknown>,
    private readonly space: (directory: string) => Promise<{ free: number; total: number }> = fileSystemSpace,
  ) {}

  /**
   * Room for a fill of `bytes`, held until the returned function is called (when the fill has ended), so
   * that fills running together are counted together; null when there is none even after eviction.
   */
  async reserve(bytes: number): Promise<(() => void) | null> {
    if (!('bytes' in this.minFree ? this.minFree.bytes === 0 : this.minFree.fraction === 0)) {
      const short = await this.shortBy(bytes);
      if (short > 0) {
        await this.makeRoom(short);
        if ((await this.shortBy(bytes)) > 0) return null;
      }
    }
    this.reserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
    };
  }

  /** Whether a fill of `bytes` fits, without holding room for it. */
  async allows(bytes: number): Promise<boolean> {
    const release = await this.reserve(bytes);
    release?.();
    return release !== null;
  }

  private async shortBy(bytes: number): Promise<number> {
    const { free, total } = await this.space(this.root);
    const keep = 'bytes' in this.minFree ? this.minFree.bytes : Math.ceil(this.minFree.fraction * total);
    return keep + this.reserved + bytes - free;
  }
}

/** How long an upstream answer found no room for waits for a client to stream it. */
const UNCLAIMED_BODY_MS = 30_000;

/**
 * A blob the cache has no room for even after eviction: its upstream answer, handed to one client to stream
 * through without keeping it (`claim`); others who joined the same transfer ask the upstream themselves.
 */
export class NoRoomToCache extends Error {
  private body: ReadableStream<Uint8Array> | undefined;

  constructor(
    readonly digest: string,
    readonly size: number,
    body: ReadableStream<Uint8Array>,
  ) {
    super(`no room in the cache for ${digest} (${size} bytes), even after eviction`);
    this.name = 'NoRoomToCache';
    this.body = body;
    // An answer no client claims (the request ended first: an unsatisfiable range, a client gone) lets
    // its upstream connection go rather than hold it until the upstream gives up.
    setTimeout(() => void this.claim()?.cancel().catch(() => undefined), UNCLAIMED_BODY_MS).unref();
  }

  /** The upstream's body, to the first caller only. */
  claim(): ReadableStream<Uint8Array> | undefined {
    const body = this.body;
    this.body = undefined;
    return body;
  }
}

/**
 * The upstream's bytes passed on to the client, bounded by `size`. A whole blob is hashed on the way and its
 * last piece held back until the digest is checked, so content with the wrong digest ends in a cut response,
 * as a cached transfer does; a range is passed on as it comes (there is nothing whole to check).
 */
export function streamThrough(body: ReadableStream<Uint8Array>, digest: string, size: number, range?: ByteRange): Readable {
  return Readable.from(passOn(body, digest, size, range), { objectMode: false });
}

async function* passOn(body: ReadableStream<Uint8Array>, digest: string, size: number, range?: ByteRange): AsyncGenerator<Buffer> {
  const algorithm = parseDigest(digest)!.algorithm;
  const hash = range ? undefined : createDigester(algorithm);
  const start = range?.start ?? 0;
  const end = range ? range.end + 1 : size;
  let position = 0;
  let held: Buffer | undefined;
  for await (const value of body as unknown as AsyncIterable<Uint8Array>) {
    const chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    if (position + chunk.length > size) throw new Error(`upstream sent more than the ${size} bytes of ${digest}`);
    hash?.update(chunk);
    const from = Math.max(start - position, 0);
    const to = Math.min(end - position, chunk.length);
    position += chunk.length;
    if (to > from) {
      if (held) yield held;
      held = chunk.subarray(from, to);
    }
    if (range && position >= end) break;
  }
  if (position < end) throw new Error(`upstream sent ${position} of the ${size} bytes of ${digest}`);
  if (hash) {
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (actual !== digest) throw new Error(`upstream sent content with digest ${actual} for ${digest}`);
  }
  if (held) yield held;
}

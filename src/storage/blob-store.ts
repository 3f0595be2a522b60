import type { Readable } from 'node:stream';
import type { DigestAlgorithm } from '../oci/digest';

/*
 * Where blobs and manifests are kept: a content-addressed store, one per kind of content (hosted, cached).
 * Two implementations: files under a directory (filesystem-blob-store.ts, the default) and objects in an
 * S3-compatible bucket (s3-blob-store.ts). Everything above the storage layer sees only this interface;
 * what only a file can do (nginx sending it, export) asks for `localPath` and copes with null.
 */

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

/** A blob as the store lists it: the digest its name says, its size, and when it was last written. */
export interface StoredFile {
  digest: string;
  size: number;
  mtimeMs: number;
}

/**
 * Called just before content becomes visible at a digest (a rename, an object PUT). The index records the
 * write there, so the garbage collector's re-check sees every blob that appeared under its feet (gc.ts).
 * Returns true while a collection is removing that digest (a row in `blob_removals`): a store whose
 * removal cannot be undone by the writer (an object DELETE racing a PUT) waits until it is over.
 */
export type CommitHook = (digest: string, size: number) => Promise<boolean>;

export interface BlobStore {
  /** For logs and errors: the directory, or the bucket and prefix. */
  readonly location: string;
  /**
   * A local directory for files on their way into the store (transfers from upstreams, content being
   * hashed); whatever is there after a crash is a leftover (the collector removes it).
   */
  readonly stagingDirectory: string;

  /** The blob's file when it is one (nginx can send it, export can link it); null when the store has no files. */
  localPath(digest: string): string | null;
  /**
   * A URL the client may fetch the blob from for a while (a presigned GET), when the store serves blobs
   * that way; null otherwise.
   */
  redirectUrl(digest: string): Promise<string | null>;

  /**
   * Whether the store answers (a readiness probe): "ok", or why not. The filesystem store's directory is
   * probed with the other directories (readiness.ts); an object store is asked over the network.
   */
  probe(): Promise<string>;

  /** The blob's size, or null when it is not there. */
  size(digest: string): Promise<number | null>;
  /** Whether the blob is there with the size the index recorded (anything else is not this blob). */
  holds(digest: string, size: number): Promise<boolean>;
  /**
   * The blob's bytes (or a range of them). Throws an error with code ENOENT when it is not there, before
   * any byte, so a missing blob is a clean 404 rather than a broken 200. `size`: when the caller knows it.
   */
  open(digest: string, range?: ByteRange, size?: number): Promise<Readable>;
  /** A small blob whole (a manifest). */
  readAll(digest: string): Promise<Buffer>;
  /**
   * Streams `source` into the store, hashing it on the way. With `expectedDigest`, content that hashes
   * otherwise is discarded and DIGEST_INVALID thrown; `maxSize` bounds what is read (SIZE_INVALID past it).
   * Nothing is visible at the digest until it is verified.
   */
  write(
    source: Readable | Buffer,
    options?: { expectedDigest?: string; algorithm?: DigestAlgorithm; maxSize?: number },
  ): Promise<WrittenBlob>;
  /** Stores small content the caller has hashed already (a manifest whose digest it checked). */
  writeVerified(content: Buffer, digest: string): Promise<WrittenBlob>;
  /**
   * Takes a finished, verified local file (an upload's data, a transfer) into the store: the file is gone
   * after, or still there when this throws (an upload session keeps it for the client's retry).
   */
  adopt(file: string, digest: string, size: number): Promise<void>;
  delete(digest: string): Promise<void>;

  /** Every blob in the store (a collection's and verify's view), page by page where the store pages. */
  list(): AsyncIterable<StoredFile>;
  /**
   * Removes `selected` blobs safely against writers (steps 3–4 of gc.ts): `recheck` runs in one index
   * transaction, once or per batch, at the point after which a writer of one of its digests either was
   * seen by it or sees the removal (`CommitHook`); it returns the digests still garbage, which are removed.
   * The rest stay. `removed` is told of each blob as soon as it is gone. Returns what was removed.
   */
  removeGarbage(selected: StoredFile[], recheck: (digests: string[]) => Promise<Set<string>>, removed?: (digest: string) => Promise<void>): Promise<StoredFile[]>;
  /**
   * What an interrupted `removeGarbage` left half done (the filesystem's .trash): put back what is not
   * garbage, delete what is. Run at start and before every collection.
   */
  recoverRemovals(isGarbage: (digest: string) => Promise<boolean>): Promise<{ restored: number; deleted: number }>;
  /** A corrupt blob is never served again: moved out of the store, kept for inspection. */
  quarantine(digest: string): Promise<void>;
  /**
   * What interrupted writes left behind, begun before `before`: staging files, and an object store's
   * unfinished multipart uploads (whose parts are billed and invisible). Run by every collection.
   */
  removeLeftovers(before: number): Promise<number>;
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** An error that `isNotFound` recognises: what a store throws for a blob that is not there. */
export function notFound(digest: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`blob ${digest} is not in the store`), { code: 'ENOENT' });
}

export function algorithmOf(digest: string | undefined): DigestAlgorithm | undefined {
  if (digest?.startsWith('sha512:')) return 'sha512';
  if (digest?.startsWith('sha256:')) return 'sha256';
  return undefined;
}

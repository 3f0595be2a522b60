import path from 'node:path';
import { parseDigest } from '../oci/digest';

/*
 * On-disk layout. Every path is derived from a validated digest or a server-made upload id,
 * never from a client's string, so nothing outside these roots can be named.
 *
 *   <registry_storage>/                  hosted content (blobs and manifests alike)
 *     blobs/sha256/ab/abcdef…            one file per digest, shared by every repository
 *     blobs/sha512/…
 *     .incoming/<random>                 being written and hashed; renamed into blobs/ when verified
 *     .trash/<algorithm>-<hex>.<random>  moved aside by garbage collection, deleted or put back (gc.ts);
 *                                      judged again at start when a crash left it there
 *     quarantine/<algorithm>-<hex>-<t>   corrupt files found by verify, never served
 *   <proxy_storage>/                     cached upstream content, same shape as above
 *   <temporary_registry_storage>/
 *     uploads/<uploadId>                 data of an open upload session (its state is in SQLite)
 *   <database>                           SQLite index: repositories, tags, manifests, references, uploads
 *
 * With `[storage] backend = "s3"` (s3-blob-store.ts), the same relative paths are object keys:
 *
 *   s3://<bucket>/<prefix>registry/blobs/sha256/ab/abcdef…   hosted content
 *   s3://<bucket>/<prefix>proxy/blobs/…                      cached upstream content
 *   s3://<bucket>/<prefix>{registry,proxy}/quarantine/…      corrupt objects found by verify
 *   s3://<bucket>/<prefix>registry/uploads/<uploadId>/…      open upload sessions (bucket-upload-data.ts),
 *                                                            instead of temporary_registry_storage/uploads/
 *   <registry_storage>/.incoming/, <proxy_storage>/.incoming/  content hashed locally before it goes up
 *   (no .trash: a sweep re-checks, then deletes; see gc.ts and blob_removals)
 */

export function blobPath(root: string, digest: string): string {
  return path.join(root, blobRelativePath(digest));
}

/** `blobs/<algorithm>/<first two hex>/<hex>`, '/'-separated: where a blob lies under its store's root. */
export function blobRelativePath(digest: string): string {
  const parsed = parseDigest(digest);
  if (!parsed) throw new Error(`not a valid digest: ${JSON.stringify(digest)}`);
  return ['blobs', parsed.algorithm, parsed.hex.slice(0, 2), parsed.hex].join('/');
}

export function incomingDirectory(root: string): string {
  return path.join(root, '.incoming');
}

export function trashDirectory(root: string): string {
  return path.join(root, '.trash');
}

export function quarantineDirectory(root: string): string {
  return path.join(root, 'quarantine');
}

const UPLOAD_ID = /^[a-f0-9-]{36}$/;

export function isUploadId(value: string): boolean {
  return UPLOAD_ID.test(value);
}

export function uploadDataPath(temporaryRoot: string, uploadId: string): string {
  if (!isUploadId(uploadId)) throw new Error(`not an upload id: ${JSON.stringify(uploadId)}`);
  return path.join(temporaryRoot, 'uploads', uploadId);
}

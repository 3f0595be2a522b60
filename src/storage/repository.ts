import { Readable } from 'node:stream';
import { RegistryError } from '../oci/errors';
import { Digest, digestAlgorithm, digestOf, isDigestReference, ManifestReference } from '../oci/digest';
import { Descriptor, ManifestParseError, ParsedManifest, parseManifest } from '../oci/manifest';
import { isValidTag } from '../oci/names';
import { AccessLog } from './access-log';
import { BlobStore, ByteRange, WrittenBlob, isNotFound } from './blob-store';
import { blobRelativePath } from './paths';
import { RecentManifests } from './recent-manifests';
import { ManifestRecord, NewManifest, Page, RegistryIndex, UploadRecord } from './registry-index';
import { ChunkRange, UploadSessions } from './uploads';

export interface BlobContent {
  digest: string;
  size: number;
  /** Present when the blob is opened for reading; the range's bytes only, when a range was asked. */
  stream: Readable;
}

/**
 * A blob found by one index lookup and one stat of its file: its size for HEAD and for a Range, and how
 * to read it. `open` throws BLOB_UNKNOWN when the file has gone since (a collection or an eviction).
 */
export interface FoundBlob {
  digest: string;
  size: number;
  open(range?: ByteRange): Promise<BlobContent>;
  /**
   * Present when the blob is a complete file on disk: which store holds it and where, for a front end that
   * sends files itself (nginx's X-Accel-Redirect). Calling it counts a read, as `open` does. Absent for a
   * blob still coming from its upstream: `open` serves that.
   */
  file?(): BlobFile;
  /**
   * Present when the blob is stored whole: a URL the client may fetch it from itself (an object store's
   * presigned GET), or null when its store serves no such URLs. Counts a read when it gives one.
   */
  redirect?(): Promise<string | null>;
}

/** A blob stored whole as a file: which store holds it, and where under that store's root (paths.ts). */
export interface BlobFile {
  digest: string;
  size: number;
  /** `registry`: under registry_storage (hosted); `proxy`: under proxy_storage (cached). */
  store: 'registry' | 'proxy';
  /** `blobs/<algorithm>/<xx>/<hex>`, '/'-separated, built from the digest alone. */
  relativePath: string;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  size: number;
  content: Buffer;
  /**
   * Pull-through cache, for an upstream with several URLs: the origin of the one it was just fetched from;
   * absent when served from storage.
   */
  servedBy?: string;
}

export interface PutManifestResult {
  digest: string;
  subject?: string;
}

export interface Pagination {
  n?: number;
  last?: string;
}

/**
 * One repository's content, as the HTTP routes see it. Hosted repositories and (later) proxied ones
 * implement the same interface, so routes never branch on where content comes from.
 */
export interface Repository {
  readonly name: string;
  /** The blob (BLOB_UNKNOWN when the repository does not hold it): what HEAD answers and GET reads. */
  /**
   * The blob's size and an opener, in one lookup; BLOB_UNKNOWN when the repository has none. `purpose`: a GET
   * will open it (a cold cached repository then learns the size from the upstream's GET itself, not from a
   * HEAD first), a HEAD will not.
   */
  findBlob(digest: Digest, purpose?: 'head' | 'get'): Promise<FoundBlob>;
  deleteBlob(digest: Digest): Promise<void>;
  /** Links a blob readable in `from` into this repository; false when it cannot be mounted. */
  mountBlob(digest: Digest, from: string): Promise<boolean>;
  writeBlob(body: Readable, digest: Digest): Promise<WrittenBlob>;

  startUpload(): Promise<UploadRecord>;
  uploadStatus(uploadId: string): Promise<UploadRecord>;
  appendUpload(uploadId: string, body: Readable, range?: ChunkRange): Promise<UploadRecord>;
  finishUpload(uploadId: string, digest: Digest, body?: Readable, range?: ChunkRange): Promise<WrittenBlob>;
  cancelUpload(uploadId: string): Promise<void>;

  getManifest(reference: ManifestReference): Promise<StoredManifest>;
  putManifest(reference: ManifestReference, content: Buffer, contentType: string | undefined): Promise<PutManifestResult>;
  deleteManifest(reference: ManifestReference): Promise<void>;
  listTags(page: Pagination): Promise<Page<string>>;
  /**
   * The manifests whose subject is `digest`. `artifactType` is a hint a repository may pass on (an
   * upstream's referrers API filters with it); the caller filters the answer itself either way.
   */
  listReferrers(digest: Digest, artifactType?: string): Promise<Descriptor[]>;
}

export interface HostedContent {
  index: RegistryIndex;
  store: BlobStore;
  manifests: RecentManifests;
  uploads: UploadSessions;
  accessLog: AccessLog;
}

/** A repository whose content is pushed to this registry. */
export class HostedRepository implements Repository {
  constructor(
    readonly name: string,
    private readonly content: HostedContent,
  ) {}

  async findBlob(digest: Digest): Promise<FoundBlob> {
    const size = await this.content.index.linkedBlobSize(this.name, digest);
    // The index alone is not enough: after verify quarantined the file, or a crash lost it, a HEAD answering
    // 200 makes clients skip the upload that would repair the image.
    if (size === null || !(await this.content.store.holds(digest, size))) {
      throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    }
    return {
      digest,
      size,
      file: () => {
        this.content.accessLog.blobRead(digest);
        return { digest, size, store: 'registry', relativePath: blobRelativePath(digest) };
      },
      redirect: async () => {
        const url = await this.content.store.redirectUrl(digest);
        if (url !== null) this.content.accessLog.blobRead(digest);
        return url;
      },
      open: async (range) => {
        let stream: Readable;
        try {
          stream = await this.content.store.open(digest, range, size);
        } catch (error) {
          if (isNotFound(error)) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
          throw error;
        }
        this.content.accessLog.blobRead(digest);
        return { digest, size, stream };
      },
    };
  }

  async deleteBlob(digest: Digest): Promise<void> {
    // The file stays until garbage collection: other repositories may share it.
    if (!(await this.content.index.unlinkBlob(this.name, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    }
  }

  async mountBlob(digest: Digest, from: string): Promise<boolean> {
    const size = await this.content.index.linkedBlobSize(from, digest);
    if (size === null || !(await this.content.store.holds(digest, size))) return false;
    await this.content.index.linkBlob(this.name, digest, size);
    return true;
  }

  async writeBlob(body: Readable, digest: Digest): Promise<WrittenBlob> {
    const written = await this.content.store.write(body, { expectedDigest: digest });
    await this.content.index.linkBlob(this.name, written.digest, written.size);
    return written;
  }

  startUpload(): Promise<UploadRecord> {
    return this.content.uploads.start(this.name);
  }

  uploadStatus(uploadId: string): Promise<UploadRecord> {
    return this.content.uploads.status(this.name, uploadId);
  }

  appendUpload(uploadId: string, body: Readable, range?: ChunkRange): Promise<UploadRecord> {
    return this.content.uploads.append(this.name, uploadId, body, range);
  }

  finishUpload(uploadId: string, digest: Digest, body?: Readable, range?: ChunkRange): Promise<WrittenBlob> {
    return this.content.uploads.finish(this.name, uploadId, digest, body, range);
  }

  cancelUpload(uploadId: string): Promise<void> {
    return this.content.uploads.cancel(this.name, uploadId);
  }

  async getManifest(reference: ManifestReference): Promise<StoredManifest> {
    const digest = await this.resolve(reference);
    const record = digest === null ? null : await this.content.index.manifest(this.name, digest);
    if (!record) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });
    const content = await readManifest(this.content.manifests, this.content.store, record.digest);
    if (!content) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });
    this.content.accessLog.manifestPulled(this.name, record.digest);
    return { digest: record.digest, mediaType: record.mediaType, size: record.size, content };
  }

  async putManifest(reference: ManifestReference, content: Buffer, contentType: string | undefined): Promise<PutManifestResult> {
    const byDigest = isDigestReference(reference);
    if (!byDigest && !isValidTag(reference)) throw new RegistryError('TAG_INVALID', { detail: { tag: reference } });

    const digest = byDigest ? digestOf(content, digestAlgorithm(reference)) : digestOf(content);
    if (byDigest && digest !== reference) {
      throw new RegistryError('DIGEST_INVALID', { detail: { expected: reference, actual: digest } });
    }
    let parsed;
    try {
      parsed = parseManifest(content, contentType);
    } catch (error) {
      if (error instanceof ManifestParseError) throw new RegistryError('MANIFEST_INVALID', { detail: error.message });
      throw error;
    }
    const record = newManifest(this.name, digest, content, parsed, byDigest ? undefined : reference);
    const index = this.content.index;
    // Checked before the file is written, so a refused manifest stores nothing; and again by
    // putManifest in its transaction, so a collection in between cannot leave it incomplete.
    await index.requireChildren(record);
    await this.requireChildFiles(record);
    await this.content.store.writeVerified(content, digest);
    await index.putManifest(record, Date.now(), { requireChildren: true });
    this.content.manifests.remember(digest, content);
    return { digest, subject: parsed.subject?.digest };
  }

  async deleteManifest(reference: ManifestReference): Promise<void> {
    const index = this.content.index;
    if (isDigestReference(reference)) {
      if (!(await index.deleteManifest(this.name, reference))) {
        throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });
      }
      return;
    }
    if (!isValidTag(reference) || !(await index.deleteTag(this.name, reference))) {
      throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });
    }
  }

  async listTags(page: Pagination): Promise<Page<string>> {
    if (!(await this.content.index.repositoryExists(this.name))) {
      throw new RegistryError('NAME_UNKNOWN', { detail: { name: this.name } });
    }
    return this.content.index.listTags(this.name, page.n, page.last);
  }

  async listReferrers(digest: Digest): Promise<Descriptor[]> {
    return (await this.content.index.referrers(this.name, digest)).map(toDescriptor);
  }

  /**
   * MANIFEST_BLOB_UNKNOWN when a blob or child manifest the index lists has no file (lost in a crash, or
   * quarantined): accepting the manifest would publish an image that cannot be pulled.
   */
  private async requireChildFiles(record: NewManifest): Promise<void> {
    const children = [...new Set([...record.blobDigests, ...record.manifestDigests])];
    const sizes = await Promise.all(children.map((digest) => this.content.store.size(digest)));
    const missing = children.filter((_, index) => sizes[index] === null);
    if (missing.length > 0) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { detail: { digests: missing } });
  }

  /** The digest a reference names, or null when a tag is not set. */
  private async resolve(reference: ManifestReference): Promise<string | null> {
    if (isDigestReference(reference)) return reference;
    if (!isValidTag(reference)) return null;
    return this.content.index.resolveTag(this.name, reference);
  }
}

/** A stored manifest's bytes, verified against its digest; undefined when the file is gone or corrupt. */
export async function readManifest(cache: RecentManifests, store: BlobStore, digest: string): Promise<Buffer | undefined> {
  try {
    return await cache.get(digest, () => store.readAll(digest));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** The index record of a parsed manifest, as hosted and cached repositories store it. */
export function newManifest(repository: string, digest: string, content: Buffer, parsed: ParsedManifest, tag?: string): NewManifest {
  return {
    repository,
    digest,
    mediaType: parsed.mediaType,
    size: content.length,
    subjectDigest: parsed.subject?.digest ?? null,
    artifactType: parsed.artifactType ?? null,
    annotations: parsed.annotations ?? null,
    blobDigests: parsed.blobs.map((blob) => blob.digest),
    manifestDigests: parsed.manifests.map((child) => child.digest),
    tag,
  };
}

/** A referrer as the referrers API lists it. */
export function toDescriptor(record: ManifestRecord): Descriptor {
  const descriptor: Descriptor = { mediaType: record.mediaType, digest: record.digest, size: record.size };
  if (record.artifactType) descriptor.artifactType = record.artifactType;
  if (record.annotations) descriptor.annotations = record.annotations;
  return descriptor;
}

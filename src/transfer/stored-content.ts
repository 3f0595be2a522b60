import fs from 'node:fs';
import { Config } from '../config/config';
import { digestOf, parseDigest } from '../oci/digest';
import { Descriptor, ManifestParseError, ParsedManifest, parseManifest } from '../oci/manifest';
import { isNotFound } from '../storage/blob-store';
import { FilesystemBlobStore } from '../storage/filesystem-blob-store';
import { RegistryIndex } from '../storage/registry-index';
import { toDescriptor } from '../storage/repository';

// Cached repositories are named proxy/<upstream>/<name> (the pull-through cache's prefix; storage/ decides the same way).
const PROXY_PREFIX = 'proxy/';

/** A stored manifest, verified against its digest, as export reads it. */
export interface ExportManifest {
  digest: string;
  mediaType: string;
  content: Buffer;
  parsed: ParsedManifest;
  /** The store file holding its bytes (hard-linked or copied by exports). */
  file: string;
}

/**
 * The registry's stored content opened for export and import: the same index (SQLite in WAL mode, or
 * PostgreSQL, so beside a running server, as `gc` does) and the same blob stores the server writes through.
 */
export class StoredContent {
  constructor(
    readonly index: RegistryIndex,
    readonly hosted: FilesystemBlobStore,
    readonly proxy: FilesystemBlobStore,
    readonly maxManifestSize: number,
  ) {}

  static async open(config: Config): Promise<StoredContent> {
    const index = await RegistryIndex.open(config.database);
    // Every write records itself in the index before its rename, as the server's stores do (gc.ts relies on it).
    const recordWrite = (digest: string, size: number) => index.recordBlobWrite(digest, size);
    return new StoredContent(
      index,
      new FilesystemBlobStore(config.registry_storage, recordWrite),
      new FilesystemBlobStore(config.proxy_storage, recordWrite),
      config.max_manifest_size,
    );
  }

  /** Cached repositories (proxy/<upstream>/…) live in the cache's store, the rest in the hosted one. */
  storeFor(repository: string): FilesystemBlobStore {
    return repository.startsWith(PROXY_PREFIX) ? this.proxy : this.hosted;
  }

  async repositories(): Promise<string[]> {
    return (await this.index.listRepositories(undefined, undefined)).items;
  }

  /** Tag → digest, sorted by tag. */
  async tags(repository: string): Promise<Map<string, string>> {
    const tags = new Map<string, string>();
    for (const tag of (await this.index.listTags(repository, undefined, undefined)).items) {
      const digest = await this.index.resolveTag(repository, tag);
      if (digest !== null) tags.set(tag, digest);
    }
    return tags;
  }

  /** The manifest as stored in `repository`, or null when the index or the store lacks it (or it is corrupt). */
  async manifest(repository: string, digest: string): Promise<ExportManifest | null> {
    const record = await this.index.manifest(repository, digest);
    if (!record) return null;
    const store = this.storeFor(repository);
    const file = store.path(digest);
    let content: Buffer;
    try {
      const size = (await fs.promises.stat(file)).size;
      if (size > Math.max(this.maxManifestSize, record.size)) return null;
      content = await fs.promises.readFile(file);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
    if (digestOf(content, parseDigest(digest)!.algorithm) !== digest) return null;
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(content, record.mediaType);
    } catch (error) {
      if (error instanceof ManifestParseError) return null;
      throw error;
    }
    return { digest, mediaType: record.mediaType, content, parsed, file };
  }

  async referrers(repository: string, digest: string): Promise<Descriptor[]> {
    return (await this.index.referrers(repository, digest)).map(toDescriptor);
  }

  close(): Promise<void> {
    return this.index.close();
  }
}

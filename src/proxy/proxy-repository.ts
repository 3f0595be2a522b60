import { RegistryError } from '../oci/errors';
import { readAtMost } from '../streams';
import { Logger } from '../log';
import type { CacheResult } from '../metrics/registry-metrics';
import { digestOf, looksLikeDigest, parseDigest } from '../oci/digest';
import { Descriptor, ManifestParseError, parseManifest } from '../oci/manifest';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types';
import { isValidTag } from '../oci/names';
import { AccessLog } from '../storage/access-log';
import { ManifestCache } from '../storage/manifest-cache';
import { BlobStore, ByteRange, WrittenBlob } from '../storage/blob-store';
import { Page, RegistryIndex, UploadRecord } from '../storage/registry-index';
import { blobRelativePath } from '../storage/paths';
import {
  BlobContent,
  BlobFile,
  Pagination,
  PutManifestResult,
  Repository,
  StoredManifest,
  newManifest,
  readManifest,
  requireDigest,
  toDescriptor,
} from '../storage/repository';
import { BlobDownloads } from './blob-downloads';
import { ProxiedName } from './upstreams';
import { UpstreamUnavailableError } from './upstream-client';

/** What every cached repository shares: the proxy store, the index, in-flight transfers. */
export interface ProxyCache {
  index: RegistryIndex;
  store: BlobStore;
  manifests: ManifestCache;
  accessLog: AccessLog;
  downloads: BlobDownloads;
  /** In-flight manifest fetches by `<name>@<reference>`, shared by concurrent pulls. */
  manifestFetches: Map<string, Promise<StoredManifest>>;
  tagTtlMs: number;
  maxManifestSize: number;
  /**
   * Another source of a repository's tags when its upstream's tags/list cannot be had (GitHub's REST API
   * for ghcr.io); null when it knows nothing of this repository.
   */
  alternativeTagList?: (target: ProxiedName) => Promise<string[] | null>;
  log: Logger;
  /** Counts what was served from the cache, fetched, or served stale (metrics). */
  metrics?: { cacheServed(upstream: string, kind: 'manifest' | 'blob', result: CacheResult): void };
  now: () => number;
}

// Everything a pull may get: indexes first, as docker and containerd ask.
const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');
const MAX_TAG_PAGES = 100;

/**
 * A read-only repository backed by an upstream registry: what is not cached is fetched, stored and
 * served; what is cached is served without the upstream, also while the upstream is down.
 */
export class ProxyRepository implements Repository {
  readonly name: string;

  constructor(
    private readonly target: ProxiedName,
    private readonly cache: ProxyCache,
  ) {
    this.name = target.name;
  }

  // --- blobs ---------------------------------------------------------------------------------

  async blobSize(digest: string): Promise<number> {
    requireDigest(digest);
    const cached = await this.cachedBlobSize(digest);
    if (cached !== null) return cached;
    // A transfer already under way for this repository knows the size: no upstream HEAD per joining client.
    const running = await this.cache.downloads.running(this.name, digest)?.catch(() => undefined);
    if (running?.size !== undefined) return running.size;
    const response = await this.upstream('HEAD', `blobs/${digest}`);
    if (response.status === 200) return Number(response.headers.get('content-length') ?? 0);
    throw this.upstreamFailure(response, 'BLOB_UNKNOWN', { digest });
  }

  async openBlob(digest: string, range?: ByteRange): Promise<BlobContent> {
    requireDigest(digest);
    const cached = await this.openCachedBlob(digest, range);
    if (cached) {
      this.served('blob', 'hit');
      return cached;
    }
    const download = await this.cache.downloads.join(
      this.name,
      digest,
      async () => {
        const response = await this.upstream('GET', `blobs/${digest}`);
        if (response.status !== 200 || !response.body) throw this.upstreamFailure(response, 'BLOB_UNKNOWN', { digest });
        const length = response.headers.get('content-length');
        return { body: response.body, size: length === null ? undefined : Number(length) };
      },
      (size) => this.cache.index.linkBlob(this.name, digest, size),
    );
    // A client joining a transfer under way is a miss too: what it gets is coming from the upstream.
    this.served('blob', 'miss');
    download.done.catch((error: Error) =>
      this.cache.log.warn('upstream blob transfer failed; nothing cached', { repository: this.name, digest, error: error.message }),
    );
    if (download.size === undefined) {
      // Without a size the response cannot announce one, nor serve a range, before the end.
      await download.done;
      return (await this.openCachedBlob(digest, range)) ?? this.openBlob(digest, range);
    }
    return { digest, size: download.size, stream: download.read(range) };
  }

  async blobFile(digest: string): Promise<BlobFile | null> {
    requireDigest(digest);
    const size = await this.cachedBlobSize(digest);
    if (size === null) return null;
    this.served('blob', 'hit');
    this.cache.accessLog.blobRead(digest);
    return { digest, size, store: 'proxy', relativePath: blobRelativePath(digest) };
  }

  private async openCachedBlob(digest: string, range?: ByteRange): Promise<BlobContent | null> {
    const size = await this.cachedBlobSize(digest);
    if (size === null) return null;
    const stream = await this.cache.store.open(digest, range);
    this.cache.accessLog.blobRead(digest);
    return { digest, size, stream };
  }

  /** The size if this repository has the blob cached. */
  private async cachedBlobSize(digest: string): Promise<number | null> {
    const linked = this.cache.index.linkedBlobSize(this.name, digest);
    if (linked !== null && (await this.cache.store.size(digest)) !== null) return linked;
    return null;
  }

  // --- manifests -----------------------------------------------------------------------------

  async getManifest(reference: string): Promise<StoredManifest> {
    const byDigest = looksLikeDigest(reference);
    if (byDigest) requireDigest(reference);
    else if (!isValidTag(reference)) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });

    if (byDigest) {
      // Content-addressed: once cached, never asked upstream again.
      const cached = await this.readCached(reference);
      if (cached) return this.served('manifest', 'hit', cached);
      return this.served('manifest', 'miss', await this.fetchManifestOnce(reference, undefined));
    }

    const tag = this.cache.index.checkedTag(this.name, reference);
    const cached = tag ? await this.readCached(tag.digest) : null;
    if (tag && cached && this.cache.now() - tag.checkedAt < this.cache.tagTtlMs) return this.served('manifest', 'hit', cached);
    try {
      if (tag && cached) {
        // Revalidate with a HEAD: Docker Hub does not count it against the pull limit.
        const head = await this.upstream('HEAD', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
        if (head.status === 200 && head.headers.get('docker-content-digest') === tag.digest) {
          this.cache.index.markTagChecked(this.name, reference, this.cache.now());
          return this.served('manifest', 'hit', cached);
        }
        if (head.status !== 200) throw this.upstreamFailure(head, 'MANIFEST_UNKNOWN', { reference });
      }
      return this.served('manifest', 'miss', await this.fetchManifestOnce(reference, reference));
    } catch (error) {
      if (cached && isUpstreamTrouble(error)) {
        this.cache.log.warn('upstream unusable; serving the cached manifest', {
          repository: this.name,
          reference,
          error: (error as Error).message,
        });
        return this.served('manifest', 'stale', cached);
      }
      throw error;
    }
  }

  /** Counts a manifest or blob served (metrics); returns `content` for the caller to return. */
  private served<T>(kind: 'manifest' | 'blob', result: CacheResult, content?: T): T {
    this.cache.metrics?.cacheServed(this.target.upstream.name, kind, result);
    return content as T;
  }

  private async readCached(digest: string): Promise<StoredManifest | null> {
    const record = this.cache.index.manifest(this.name, digest);
    if (!record) return null;
    // Gone or corrupt on disk: fetched again from the upstream, as if never cached.
    const content = await readManifest(this.cache.manifests, this.cache.store, digest);
    if (!content) return null;
    this.cache.accessLog.manifestPulled(this.name, digest);
    return { digest, mediaType: record.mediaType, size: record.size, content };
  }

  private fetchManifestOnce(reference: string, tag: string | undefined): Promise<StoredManifest> {
    const key = `${this.name}@${reference}`;
    const running = this.cache.manifestFetches.get(key);
    if (running) return running;
    const fetching = this.fetchManifest(reference, tag).finally(() => this.cache.manifestFetches.delete(key));
    this.cache.manifestFetches.set(key, fetching);
    return fetching;
  }

  private async fetchManifest(reference: string, tag: string | undefined): Promise<StoredManifest> {
    const response = await this.upstream('GET', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
    if (response.status !== 200) throw this.upstreamFailure(response, 'MANIFEST_UNKNOWN', { reference });
    const content = await readCapped(response, this.cache.maxManifestSize);
    const algorithm = tag === undefined ? parseDigest(reference)!.algorithm : 'sha256';
    const digest = digestOf(content, algorithm);
    const announced = response.headers.get('docker-content-digest');
    if ((tag === undefined && digest !== reference) || (announced?.startsWith(`${algorithm}:`) && announced !== digest)) {
      throw new RegistryError('UNAVAILABLE', {
        message: `upstream ${this.target.upstream.name} sent a manifest that does not match its digest`,
        detail: { reference, expected: tag === undefined ? reference : announced, actual: digest },
      });
    }
    let parsed;
    try {
      parsed = parseManifest(content, response.headers.get('content-type') ?? undefined);
    } catch (error) {
      if (error instanceof ManifestParseError) {
        throw new RegistryError('MANIFEST_INVALID', { message: `upstream manifest not usable: ${error.message}`, detail: { reference } });
      }
      throw error;
    }
    await this.cache.store.write(content, { expectedDigest: digest });
    this.cache.index.putManifest(newManifest(this.name, digest, content, parsed, tag), this.cache.now());
    this.cache.accessLog.manifestPulled(this.name, digest);
    return { digest, mediaType: parsed.mediaType, size: content.length, content };
  }

  // --- tags and referrers --------------------------------------------------------------------

  async listTags(page: Pagination): Promise<Page<string>> {
    let tags: string[];
    try {
      tags = await this.fetchTagList();
      this.cache.index.storeUpstreamTagList(this.name, tags, this.cache.now());
    } catch (error) {
      tags = await this.tagsWithoutUpstream(error);
    }
    const after = page.last === undefined ? tags : tags.filter((tag) => tag > page.last!);
    if (page.n === undefined || after.length <= page.n) return { items: after };
    const items = after.slice(0, page.n);
    return { items, next: items[items.length - 1] };
  }

  /** When the upstream's list cannot be had: the alternative source, else the last list fetched, else the error. */
  private async tagsWithoutUpstream(error: unknown): Promise<string[]> {
    const reason = (error as Error).message;
    const alternative = await this.cache.alternativeTagList?.(this.target).catch(() => null);
    if (alternative) {
      this.cache.log.info('upstream tag list unusable; serving the alternative list', { repository: this.name, error: reason });
      return alternative;
    }
    const stored = this.cache.index.upstreamTagList(this.name);
    if (!stored || !isUpstreamTrouble(error)) throw error;
    this.cache.log.warn('upstream unusable; serving the cached tag list', { repository: this.name, error: reason });
    return stored.tags;
  }

  /** The upstream's whole list, sorted, following its Link pages. */
  private async fetchTagList(): Promise<string[]> {
    const tags: string[] = [];
    let path: string | null = 'tags/list';
    for (let pages = 0; path !== null && pages < MAX_TAG_PAGES; pages++) {
      const response = await this.upstream('GET', path);
      if (response.status === 404) throw new RegistryError('NAME_UNKNOWN', { detail: { name: this.name } });
      if (response.status !== 200) throw this.upstreamFailure(response, 'NAME_UNKNOWN', { name: this.name });
      const body = (await response.json()) as { tags?: string[] | null };
      tags.push(...(body.tags ?? []));
      path = nextPagePath(response.headers.get('link'), this.target.remoteName);
    }
    return [...new Set(tags)].sort();
  }

  async listReferrers(digest: string): Promise<Descriptor[]> {
    requireDigest(digest);
    // Referrers of what is cached here; the upstream's own list is not consulted.
    return this.cache.index.referrers(this.name, digest).map(toDescriptor);
  }

  // --- writes are refused ------------------------------------------------------------------

  deleteBlob(): Promise<void> {
    return this.refuse();
  }
  async mountBlob(): Promise<boolean> {
    return false;
  }
  writeBlob(): Promise<WrittenBlob> {
    return this.refuse();
  }
  startUpload(): Promise<UploadRecord> {
    return this.refuse();
  }
  uploadStatus(): Promise<UploadRecord> {
    return this.refuse();
  }
  appendUpload(): Promise<UploadRecord> {
    return this.refuse();
  }
  finishUpload(): Promise<WrittenBlob> {
    return this.refuse();
  }
  cancelUpload(): Promise<void> {
    return this.refuse();
  }
  putManifest(): Promise<PutManifestResult> {
    return this.refuse();
  }
  deleteManifest(): Promise<void> {
    return this.refuse();
  }

  private async refuse(): Promise<never> {
    throw new RegistryError('UNSUPPORTED', {
      message: `${this.name} is a read-only cache of ${this.target.upstream.name}; push to a repository outside proxy/`,
    });
  }

  // --- upstream ------------------------------------------------------------------------------

  private async upstream(method: 'GET' | 'HEAD', path: string, headers: Record<string, string> = {}): Promise<Response> {
    try {
      return await this.target.upstream.client.request(method, `${this.target.remoteName}/${path}`, {
        repository: this.target.remoteName,
        headers,
      });
    } catch (error) {
      if (error instanceof UpstreamUnavailableError) {
        throw new RegistryError('UNAVAILABLE', {
          message: `upstream ${this.target.upstream.name} is unreachable`,
          detail: { upstream: this.target.upstream.name },
        });
      }
      throw error;
    }
  }

  /** The client-facing error for an upstream answer other than 200; 404 passes on as `notFound`. */
  private upstreamFailure(response: Response, notFound: 'BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN' | 'NAME_UNKNOWN', detail: object): RegistryError {
    void response.body?.cancel().catch(() => undefined);
    const upstream = this.target.upstream.name;
    if (response.status === 404) return new RegistryError(notFound, { detail });
    if (response.status === 429) {
      return new RegistryError('TOOMANYREQUESTS', { message: `upstream ${upstream} is rate-limiting`, detail });
    }
    if (response.status === 401 || response.status === 403) {
      return new RegistryError('DENIED', { message: `upstream ${upstream} refused access (${response.status})`, detail });
    }
    return new RegistryError('UNAVAILABLE', { message: `upstream ${upstream} answered ${response.status}`, detail });
  }
}

/** Unreachable, rate-limiting, refusing or failing upstreams: cases where cached content is served instead. */
function isUpstreamTrouble(error: unknown): boolean {
  return error instanceof RegistryError && ['UNAVAILABLE', 'TOOMANYREQUESTS', 'DENIED'].includes(error.code);
}

async function readCapped(response: Response, maxBytes: number): Promise<Buffer> {
  const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, maxBytes);
  if (content === undefined) {
    throw new RegistryError('MANIFEST_INVALID', { status: 413, message: `upstream manifest exceeds ${maxBytes} bytes` });
  }
  return content;
}

/** The next page of an upstream tags/list, as a path under /v2/<name>/, from `Link: </v2/<name>/tags/list?…>; rel="next"`. */
function nextPagePath(link: string | null, remoteName: string): string | null {
  const match = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  if (!match) return null;
  const url = new URL(match[1], 'http://upstream.invalid');
  const prefix = `/v2/${remoteName}/`;
  return url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) + url.search : null;
}


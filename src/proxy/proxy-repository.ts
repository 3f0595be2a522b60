import { RegistryError } from '../oci/errors';
import { readAtMost } from '../streams';
import { Logger } from '../log';
import type { CacheResult } from '../metrics/registry-metrics';
import { digestOf, looksLikeDigest, parseDigest } from '../oci/digest';
import { Descriptor, ManifestParseError, parseManifest } from '../oci/manifest';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types';
import { isValidTag } from '../oci/names';
import { AccessLog } from '../storage/access-log';
import { blobRelativePath } from '../storage/paths';
import { RecentManifests } from '../storage/recent-manifests';
import { BlobStore, ByteRange, WrittenBlob, isNotFound } from '../storage/blob-store';
import { Page, pageOf, RegistryIndex, UploadRecord } from '../storage/registry-index';
import {
  BlobContent,
  FoundBlob,
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
import type { RateLimits } from './rate-limits';
import { ProxiedName } from './upstreams';
import { UpstreamAnswerError, UpstreamRefusedError, UpstreamUnavailableError } from './upstream-client';

/** What every cached repository shares: the proxy store, the index, in-flight transfers. */
export interface CachedContent {
  index: RegistryIndex;
  store: BlobStore;
  manifests: RecentManifests;
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
  /**
   * `[proxy] serve_deleted`: whether a cached manifest is served when its reachable upstream says the tag is gone
   * (404): `pinned` when `isPinned` says a pin protects it, `all` always, `none` never.
   */
  serveDeleted: 'pinned' | 'all' | 'none';
  isPinned: (repository: string, digest: string) => boolean;
  /** Upstream pull budgets (Docker Hub's ratelimit-* headers, 429): while one is low, cached tags are not revalidated. */
  rateLimits?: RateLimits;
  log: Logger;
  /** Counts what was served from the cache, fetched, or served stale (metrics). */
  metrics?: { cacheServed(upstream: string, kind: 'manifest' | 'blob', result: CacheResult): void };
  now: () => number;
}

// Everything a pull may get: indexes first, as docker and containerd ask.
const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');
/** An upstream tags/list page is read up to this size (distribution answers all tags in one page). */
export const MAX_TAG_PAGE_BYTES = 4 * 1024 * 1024;
/** Link pages followed and tags gathered at most, whatever the upstream keeps sending. */
const MAX_TAG_PAGES = 100;
export const MAX_UPSTREAM_TAGS = 100_000;

/**
 * A read-only repository backed by an upstream registry: what is not cached is fetched, stored and
 * served; what is cached is served without the upstream, also while the upstream is down.
 */
export class ProxyRepository implements Repository {
  readonly name: string;

  constructor(
    private readonly target: ProxiedName,
    private readonly content: CachedContent,
  ) {
    this.name = target.name;
  }

  // --- blobs ---------------------------------------------------------------------------------

  async findBlob(digest: string, purpose: 'head' | 'get' = 'head'): Promise<FoundBlob> {
    requireDigest(digest);
    const cached = await this.cachedBlobSize(digest);
    if (cached !== null) {
      return {
        digest,
        size: cached,
        // The lookup above stands: opening does not repeat it (an eviction since then is a miss, refetched).
        open: (range) => this.openBlob(digest, range, cached),
        file: () => {
          this.served('blob', 'hit');
          this.content.accessLog.blobRead(digest);
          return { digest, size: cached, store: 'proxy', relativePath: blobRelativePath(digest) };
        },
      };
    }
    if (purpose === 'head') return { digest, size: await this.upstreamBlobSize(digest), open: (range) => this.openBlob(digest, range) };
    // A GET: the transfer starts now and its answer gives the size; opening joins that same transfer.
    const download = await this.joinDownload(digest);
    if (download.size === undefined) await download.done;
    const size = download.size ?? (await this.cachedBlobSize(digest));
    if (size === null) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    return { digest, size, open: (range) => this.openBlob(digest, range) };
  }

  private async upstreamBlobSize(digest: string): Promise<number> {
    // A transfer already under way for this repository knows the size: no upstream HEAD per joining client.
    const running = await this.content.downloads.running(this.name, digest)?.catch(() => undefined);
    if (running?.size !== undefined) return running.size;
    const response = await this.upstream('HEAD', `blobs/${digest}`);
    if (response.status === 200) return Number(response.headers.get('content-length') ?? 0);
    throw this.upstreamFailure(response, 'BLOB_UNKNOWN', { digest });
  }

  /** `cachedSize`: the size a lookup just found cached, so that opening need not look it up again. */
  private async openBlob(digest: string, range?: ByteRange, cachedSize?: number): Promise<BlobContent> {
    const cached = await this.openCachedBlob(digest, range, cachedSize);
    if (cached) {
      this.served('blob', 'hit');
      return cached;
    }
    const download = await this.joinDownload(digest);
    // A client joining a transfer under way is a miss too: what it gets is coming from the upstream.
    this.served('blob', 'miss');
    download.done.catch((error: Error) =>
      this.content.log.warn('upstream blob transfer failed; nothing cached', { repository: this.name, digest, error: error.message }),
    );
    if (download.size === undefined) {
      // Without a size the response cannot announce one, nor serve a range, before the end.
      await download.done;
      return (await this.openCachedBlob(digest, range)) ?? this.openBlob(digest, range);
    }
    return { digest, size: download.size, stream: download.read(range) };
  }

  /** The upstream transfer of `digest`: the one under way for this repository, or a new one. */
  private async joinDownload(digest: string) {
    const download = await this.content.downloads.join(
      this.name,
      digest,
      async () => {
        const response = await this.upstream('GET', `blobs/${digest}`);
        if (response.status !== 200 || !response.body) throw this.upstreamFailure(response, 'BLOB_UNKNOWN', { digest });
        const length = response.headers.get('content-length');
        const size = length === null ? undefined : Number(length);
        // A transfer is bounded by what was announced: its Content-Length, else what a manifest declares.
        const declared = await this.declaredSize(digest);
        if ((size === undefined && declared === undefined) || (size !== undefined && declared !== undefined && size !== declared)) {
          void response.body.cancel().catch(() => undefined);
          throw this.unusableAnswer(
            size === undefined
              ? `upstream ${this.target.upstream.name} sent a blob without Content-Length that no cached manifest declares`
              : `upstream ${this.target.upstream.name} sent a blob of ${size} bytes that a manifest declares as ${declared}`,
            { digest },
          );
        }
        return { body: response.body, size, bound: declared };
      },
      (size) => this.content.index.linkBlob(this.name, digest, size),
    );
    return download;
  }

  /** The blob's size as a cached manifest of this repository declares it, if one does. */
  private async declaredSize(digest: string): Promise<number | undefined> {
    for (const manifestDigest of this.content.index.manifestsReferencingBlob(this.name, digest)) {
      const content = await readManifest(this.content.manifests, this.content.store, manifestDigest);
      if (!content) continue;
      try {
        const descriptor = parseManifest(content).blobs.find((blob) => blob.digest === digest);
        if (descriptor) return descriptor.size;
      } catch {
        // Was valid when it was cached; unreadable now is the same as absent.
      }
    }
    return undefined;
  }

  private async openCachedBlob(digest: string, range?: ByteRange, knownSize?: number): Promise<BlobContent | null> {
    const size = knownSize ?? (await this.cachedBlobSize(digest));
    if (size === null) return null;
    let stream;
    try {
      stream = await this.content.store.open(digest, range, size);
    } catch (error) {
      // Evicted between the lookup and the open: not cached any more, so fetched again like any miss.
      if (isNotFound(error)) return null;
      throw error;
    }
    this.content.accessLog.blobRead(digest);
    return { digest, size, stream };
  }

  /** The size if this repository has the blob cached. */
  private async cachedBlobSize(digest: string): Promise<number | null> {
    const linked = this.content.index.linkedBlobSize(this.name, digest);
    if (linked !== null && (await this.content.store.holds(digest, linked))) return linked;
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

    const tag = this.content.index.checkedTag(this.name, reference);
    const cached = tag ? await this.readCached(tag.digest) : null;
    if (tag && cached && (this.content.now() - tag.checkedAt < this.content.tagTtlMs || this.rateLimited())) {
      return this.served('manifest', 'hit', cached);
    }
    try {
      if (tag && cached) {
        // Revalidate with a HEAD: Docker Hub does not count it against the pull limit.
        const head = await this.upstream('HEAD', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
        if (head.status === 200 && head.headers.get('docker-content-digest') === tag.digest) {
          this.content.index.markTagChecked(this.name, reference, this.content.now());
          return this.served('manifest', 'hit', cached);
        }
        if (head.status !== 200) throw this.upstreamFailure(head, 'MANIFEST_UNKNOWN', { reference });
      }
      return this.served('manifest', 'miss', await this.fetchManifestOnce(reference, reference));
    } catch (error) {
      if (cached && isUpstreamTrouble(error)) {
        this.content.log.warn('upstream unusable; serving the cached manifest', {
          repository: this.name,
          reference,
          error: (error as Error).message,
        });
        return this.served('manifest', 'stale', cached);
      }
      if (tag && cached && isUpstreamDeletion(error) && this.keepsDeleted(tag.digest)) {
        this.content.log.warn('upstream no longer has this tag; serving the cached manifest (serve_deleted)', {
          repository: this.name,
          reference,
          digest: tag.digest,
          serveDeleted: this.content.serveDeleted,
        });
        // Asked just now: the next pulls within tag_ttl are served without asking again (and logging again).
        this.content.index.markTagChecked(this.name, reference, this.content.now());
        return this.served('manifest', 'stale', cached);
      }
      throw error;
    }
  }

  /** `[proxy] serve_deleted`: whether a cached manifest the upstream deleted is still served. */
  private keepsDeleted(digest: string): boolean {
    const policy = this.content.serveDeleted;
    return policy === 'all' || (policy === 'pinned' && this.content.isPinned(this.name, digest));
  }

  /** Counts a manifest or blob served (metrics); returns `content` for the caller to return. */
  private served<T>(kind: 'manifest' | 'blob', result: CacheResult, content?: T): T {
    this.content.metrics?.cacheServed(this.target.upstream.name, kind, result);
    return content as T;
  }

  private async readCached(digest: string): Promise<StoredManifest | null> {
    const record = this.content.index.manifest(this.name, digest);
    if (!record) return null;
    // Gone or corrupt on disk: fetched again from the upstream, as if never cached.
    const content = await readManifest(this.content.manifests, this.content.store, digest);
    if (!content) return null;
    this.content.accessLog.manifestPulled(this.name, digest);
    return { digest, mediaType: record.mediaType, size: record.size, content };
  }

  private fetchManifestOnce(reference: string, tag: string | undefined): Promise<StoredManifest> {
    const key = `${this.name}@${reference}`;
    const running = this.content.manifestFetches.get(key);
    if (running) return running;
    const fetching = this.fetchManifest(reference, tag).finally(() => this.content.manifestFetches.delete(key));
    this.content.manifestFetches.set(key, fetching);
    return fetching;
  }

  private async fetchManifest(reference: string, tag: string | undefined): Promise<StoredManifest> {
    const response = await this.upstream('GET', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
    if (response.status !== 200) throw this.upstreamFailure(response, 'MANIFEST_UNKNOWN', { reference });
    const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, this.content.maxManifestSize);
    if (content === undefined) {
      throw this.unusableAnswer(`upstream ${this.target.upstream.name} sent a manifest over ${this.content.maxManifestSize} bytes`, {
        reference,
      });
    }
    const algorithm = tag === undefined ? parseDigest(reference)!.algorithm : 'sha256';
    const digest = digestOf(content, algorithm);
    const announced = response.headers.get('docker-content-digest');
    if ((tag === undefined && digest !== reference) || (announced?.startsWith(`${algorithm}:`) && announced !== digest)) {
      throw this.unusableAnswer(`upstream ${this.target.upstream.name} sent a manifest that does not match its digest`, {
        reference,
        expected: tag === undefined ? reference : announced,
        actual: digest,
      });
    }
    let parsed;
    try {
      parsed = parseManifest(content, response.headers.get('content-type') ?? undefined);
    } catch (error) {
      if (error instanceof ManifestParseError) {
        throw this.unusableAnswer(`upstream ${this.target.upstream.name} sent a manifest that is not usable: ${error.message}`, {
          reference,
        });
      }
      throw error;
    }
    await this.content.store.write(content, { expectedDigest: digest });
    this.content.index.putManifest(newManifest(this.name, digest, content, parsed, tag), this.content.now());
    this.content.accessLog.manifestPulled(this.name, digest);
    return { digest, mediaType: parsed.mediaType, size: content.length, content };
  }

  // --- tags and referrers --------------------------------------------------------------------

  async listTags(page: Pagination): Promise<Page<string>> {
    let tags: string[];
    try {
      tags = await this.fetchTagList();
      this.content.index.storeUpstreamTagList(this.name, tags, this.content.now());
    } catch (error) {
      tags = await this.tagsWithoutUpstream(error);
    }
    const after = page.last === undefined ? tags : tags.filter((tag) => tag > page.last!);
    return pageOf(after, page.n);
  }

  /** When the upstream's list cannot be had: the alternative source, else the last list fetched, else the error. */
  private async tagsWithoutUpstream(error: unknown): Promise<string[]> {
    const reason = (error as Error).message;
    const alternative = await this.content.alternativeTagList?.(this.target).catch(() => null);
    if (alternative) {
      this.content.log.info('upstream tag list unusable; serving the alternative list', { repository: this.name, error: reason });
      return alternative;
    }
    const stored = this.content.index.upstreamTagList(this.name);
    if (!stored || !isUpstreamTrouble(error)) throw error;
    this.content.log.warn('upstream unusable; serving the cached tag list', { repository: this.name, error: reason });
    return stored.tags;
  }

  /**
   * The upstream's whole list, sorted, following its Link pages: each page read up to
   * MAX_TAG_PAGE_BYTES, at most MAX_TAG_PAGES pages and MAX_UPSTREAM_TAGS tags (the rest is left out).
   */
  private async fetchTagList(): Promise<string[]> {
    const tags = new Set<string>();
    let path: string | null = 'tags/list';
    for (let pages = 0; path !== null && pages < MAX_TAG_PAGES && tags.size < MAX_UPSTREAM_TAGS; pages++) {
      const response = await this.upstream('GET', path);
      if (response.status === 404) throw new RegistryError('NAME_UNKNOWN', { detail: { name: this.name } });
      if (response.status !== 200) throw this.upstreamFailure(response, 'NAME_UNKNOWN', { name: this.name });
      const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, MAX_TAG_PAGE_BYTES);
      const upstream = this.target.upstream.name;
      if (content === undefined) throw this.unusableAnswer(`upstream ${upstream} sent a tag list page over ${MAX_TAG_PAGE_BYTES} bytes`);
      const page = parseTagPage(content);
      if (page === undefined) throw this.unusableAnswer(`upstream ${upstream} sent a tag list that is not {"tags":[…]}`);
      for (const tag of page) {
        if (tags.size >= MAX_UPSTREAM_TAGS) break;
        tags.add(tag);
      }
      path = nextPagePath(response.headers.get('link'), this.target.remoteName);
    }
    return [...tags].sort();
  }

  async listReferrers(digest: string): Promise<Descriptor[]> {
    requireDigest(digest);
    // Referrers of what is cached here; the upstream's own list is not consulted.
    return this.content.index.referrers(this.name, digest).map(toDescriptor);
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
      const response = await this.target.upstream.client.request(method, `${this.target.remoteName}/${path}`, {
        repository: this.target.remoteName,
        headers,
      });
      this.content.rateLimits?.observe(this.target.upstream.name, this.target.upstream.client.username, response);
      return response;
    } catch (error) {
      const upstream = this.target.upstream.name;
      if (error instanceof UpstreamUnavailableError) {
        throw new RegistryError('UNAVAILABLE', { message: `upstream ${upstream} is unreachable`, detail: { upstream } });
      }
      if (error instanceof UpstreamRefusedError) {
        // The same answer whether anything listens there or not, and no connection was attempted.
        this.content.log.warn('upstream destination refused', { repository: this.name, upstream, error: error.message });
        throw new RegistryError('DENIED', { message: error.message, detail: { upstream } });
      }
      if (error instanceof UpstreamAnswerError) throw this.unusableAnswer(error.message);
      throw error;
    }
  }

  /** The upstream's pull budget is low or spent (rate-limits.ts): cached tags are served as they are. */
  private rateLimited(): boolean {
    return this.content.rateLimits?.limited(this.target.upstream.name, this.target.upstream.client.username) ?? false;
  }

  /** The upstream answered something it should not have (over a cap, malformed): 503, logged with its name. */
  private unusableAnswer(message: string, detail: object = {}): RegistryError {
    const upstream = this.target.upstream.name;
    this.content.log.warn('upstream answer unusable', { repository: this.name, upstream, error: message });
    return new RegistryError('UNAVAILABLE', { message, detail: { upstream, ...detail } });
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

/** The upstream, reachable, says the tag (or the whole repository) does not exist (404). */
function isUpstreamDeletion(error: unknown): boolean {
  return error instanceof RegistryError && ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'].includes(error.code);
}

/**
 * The tags of one tags/list page (dist-spec: `{"name":…,"tags":[…]}`), or undefined if it is not one.
 * `"tags": null` is an empty list (distribution answers so for a repository without tags); names that
 * are not valid tags are left out, as they could never be pulled.
 */
function parseTagPage(content: Buffer): string[] | undefined {
  let body: unknown;
  try {
    body = JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const tags = (body as { tags?: unknown }).tags;
  if (tags === null || tags === undefined) return [];
  if (!Array.isArray(tags) || !tags.every((tag) => typeof tag === 'string')) return undefined;
  return (tags as string[]).filter(isValidTag);
}

/** The next page of an upstream tags/list, as a path under /v2/<name>/, from `Link: </v2/<name>/tags/list?…>; rel="next"`. */
function nextPagePath(link: string | null, remoteName: string): string | null {
  const match = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  if (!match) return null;
  const url = new URL(match[1], 'http://upstream.invalid');
  const prefix = `/v2/${remoteName}/`;
  return url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) + url.search : null;
}


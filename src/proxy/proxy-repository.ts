import { RegistryError } from '../oci/errors';
import { readAtMost } from '../streams';
import { Logger } from '../log';
import type { CachedKind, CacheResult } from '../metrics/registry-metrics';
import { Digest, digestAlgorithm, digestOf, isDigestReference, ManifestReference } from '../oci/digest';
import { Descriptor, ManifestParseError, parseManifest } from '../oci/manifest';
import { isIndexMediaType, MANIFEST_MEDIA_TYPES, MediaType } from '../oci/media-types';
import { isValidTag } from '../oci/names';
import { AccessLog } from '../storage/access-log';
import type { Leases } from '../storage/leases';
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
  toDescriptor,
} from '../storage/repository';
import { BlobDownload, BlobDownloads, UpstreamBlobBody } from './blob-downloads';
import { CacheRoom, NoRoomToCache, streamThrough } from './cache-room';
import { NotFoundCache } from './not-found-cache';
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
  /** Who is fetching which blob, among the processes sharing the index (one upstream download each). */
  leases: Leases;
  /** In-flight manifest fetches by `<name>@<reference>`, shared by concurrent pulls. */
  manifestFetches: Map<string, Promise<StoredManifest>>;
  tagTtlMs: number;
  /** Manifests the upstream just answered 404 for (`[proxy] not_found_ttl`). */
  notFound: NotFoundCache;
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
  isPinned: (repository: string, digest: string) => Promise<boolean>;
  /** Upstream pull budgets (Docker Hub's ratelimit-* headers, 429): while one is low, cached tags are not revalidated. */
  rateLimits?: RateLimits;
  /** `[proxy] min_free`: whether a fill of so many bytes fits, once eviction has made what room it can. */
  room?: CacheRoom;
  log: Logger;
  /** Counts what was served from the cache, fetched, or served stale (metrics). */
  metrics?: {
    cacheServed(upstream: string, kind: CachedKind, result: CacheResult): void;
    /** One of an upstream's URLs failed, and the next was asked. */
    upstreamFallback(upstream: string, reason: FallbackReason): void;
  };
  now: () => number;
}

// Everything a pull may get: indexes first, as docker and containerd ask.
const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

/**
 * A blob download's lease (renewed while it runs): what a replica killed mid-transfer costs the clients
 * that waited for it on other replicas, at most, before one of those fetches the blob itself.
 */
const DOWNLOAD_LEASE_TTL_MS = 30_000;
/** How often a process waiting for another's download looks whether the blob is cached yet. */
const DOWNLOAD_LEASE_POLL_MS = 250;

/** Another process sharing the index fetched the blob while this one waited for its lease. */
class CachedMeanwhile extends Error {}
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

  async findBlob(digest: Digest, purpose: 'head' | 'get' = 'head'): Promise<FoundBlob> {
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
        redirect: async () => {
          const url = await this.content.store.redirectUrl(digest);
          if (url !== null) {
            this.served('blob', 'hit');
            this.content.accessLog.blobRead(digest);
          }
          return url;
        },
      };
    }
    if (purpose === 'head') return { digest, size: await this.upstreamBlobSize(digest), open: (range) => this.openBlob(digest, range) };
    // A GET: the transfer starts now and its answer gives the size; opening joins that same transfer.
    let download;
    try {
      download = await this.joinDownload(digest);
    } catch (error) {
      if (!(error instanceof NoRoomToCache)) throw error;
      return { digest, size: error.size, open: (range) => this.passThrough(error, range) };
    }
    // Another process sharing the index fetched it meanwhile: it is cached now.
    if (download === null) return this.findBlob(digest, purpose);
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
    let download;
    try {
      download = await this.joinDownload(digest);
    } catch (error) {
      if (!(error instanceof NoRoomToCache)) throw error;
      return this.passThrough(error, range);
    }
    if (download === null) return this.openBlob(digest, range);
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

  /**
   * A blob the cache has no room for (`[proxy] min_free`, after eviction): streamed from the upstream to the
   * client and not kept. The first client takes the answer that found no room; others ask the upstream again.
   */
  private async passThrough(noRoom: NoRoomToCache, range?: ByteRange): Promise<BlobContent> {
    this.served('blob', 'miss');
    let body = noRoom.claim();
    if (!body) {
      const response = await this.upstream('GET', `blobs/${noRoom.digest}`);
      if (response.status !== 200 || !response.body) throw this.upstreamFailure(response, 'BLOB_UNKNOWN', { digest: noRoom.digest });
      body = response.body;
    }
    this.content.log.warn('no room in the cache even after eviction (proxy.min_free): blob streamed to the client, not kept', {
      repository: this.name,
      digest: noRoom.digest,
      size: noRoom.size,
    });
    return { digest: noRoom.digest, size: noRoom.size, stream: streamThrough(body, noRoom.digest, noRoom.size, range) };
  }

  /**
   * Makes the blob cached without a client reading it (pre-warming): 'cached' when it already was, else it
   * goes through the one transfer per blob that pulls share and settles once that is verified and stored.
   */
  async prefetchBlob(digest: Digest): Promise<{ result: 'cached' | 'fetched'; size: number }> {
    const cached = await this.cachedBlobSize(digest);
    if (cached !== null) return { result: 'cached', size: cached };
    let download;
    try {
      download = await this.joinDownload(digest);
    } catch (error) {
      if (!(error instanceof NoRoomToCache)) throw error;
      await error.claim()?.cancel().catch(() => undefined);
      throw error;
    }
    if (download === null) return { result: 'cached', size: (await this.cachedBlobSize(digest)) ?? 0 };
    await download.done;
    const size = await this.cachedBlobSize(digest);
    if (size === null) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    return { result: 'fetched', size };
  }

  /** Whether the manifest is cached in this repository (its index record; the file is checked when read). */
  async holdsManifest(digest: Digest): Promise<boolean> {
    return (await this.content.index.manifest(this.name, digest)) !== null;
  }

  /** The digest this cache holds for `tag`, whether or not it is still fresh; undefined when none. */
  async cachedTagDigest(tag: string): Promise<string | undefined> {
    return (await this.content.index.checkedTag(this.name, tag))?.digest;
  }

  /**
   * The upstream transfer of `digest`: the one under way for this repository in this process, or a new one
   * once no other process sharing the index is fetching it (the download lease); null when another process
   * fetched it meanwhile, so that it is cached now.
   */
  private async joinDownload(digest: string): Promise<BlobDownload | null> {
    try {
      return await this.startOrJoinDownload(digest);
    } catch (error) {
      if (error instanceof CachedMeanwhile) return null;
      throw error;
    }
  }

  private async startOrJoinDownload(digest: string): Promise<BlobDownload> {
    let releaseLease: () => Promise<void> = async () => undefined;
    const download = await this.content.downloads.join(
      this.name,
      digest,
      async () => {
        try {
          // Held on success until the transfer ends (the body's `ended`).
          return await this.upstreamBody(digest, await this.upstream('GET', `blobs/${digest}`), releaseLease);
        } catch (error) {
          await releaseLease();
          throw error;
        }
      },
      (size) => this.content.index.linkBlob(this.name, digest, size),
      // Taken before a transfer slot: waiting for another replica's download of the blob holds none.
      async () => (releaseLease = await this.downloadLease(digest)),
    );
    return download;
  }

  /**
   * Takes the lease on fetching `digest` for this repository, held (and renewed) until the transfer ends:
   * while another process sharing the index holds it, waits for it to finish (CachedMeanwhile, the blob is
   * cached) or to give up or die (its lease lapses within DOWNLOAD_LEASE_TTL_MS; then this one fetches).
   */
  private async downloadLease(digest: string): Promise<() => Promise<void>> {
    const name = `download:${this.name}@${digest}`;
    for (;;) {
      const release = await this.content.leases.hold(name, DOWNLOAD_LEASE_TTL_MS);
      if (release) {
        // Fetched and released between our lookup and the lease: nothing to fetch.
        if ((await this.cachedBlobSize(digest)) === null) return release;
        await release();
        throw new CachedMeanwhile();
      }
      await new Promise((resolve) => setTimeout(resolve, DOWNLOAD_LEASE_POLL_MS));
      if ((await this.cachedBlobSize(digest)) !== null) throw new CachedMeanwhile();
    }
  }

  /** The upstream's answer to a blob GET, checked against what was announced, as a transfer's body. */
  private async upstreamBody(digest: string, response: Response, releaseLease: () => Promise<void>): Promise<UpstreamBlobBody> {
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
    // size or declared is known here (checked above): the fill must leave min_free.
    const bytes = (size ?? declared)!;
    const roomEnded = this.content.room ? await this.content.room.reserve(bytes) : undefined;
    if (roomEnded === null) throw new NoRoomToCache(digest, bytes, response.body);
    const ended = () => {
      roomEnded?.();
      void releaseLease();
    };
    return { body: response.body, size, bound: declared, ended };
  }

  /** The blob's size as a cached manifest of this repository declares it, if one does. */
  private async declaredSize(digest: string): Promise<number | undefined> {
    for (const manifestDigest of await this.content.index.manifestsReferencingBlob(this.name, digest)) {
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
    const linked = await this.content.index.linkedBlobSize(this.name, digest);
    if (linked !== null && (await this.content.store.holds(digest, linked))) return linked;
    return null;
  }

  // --- manifests -----------------------------------------------------------------------------

  async getManifest(reference: ManifestReference): Promise<StoredManifest> {
    const byDigest = isDigestReference(reference);
    if (!byDigest && !isValidTag(reference)) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });

    if (byDigest) {
      // Content-addressed: once cached, never asked upstream again.
      const cached = await this.readCached(reference);
      if (cached) return this.served('manifest', 'hit', cached);
      this.requireNotRecentlyMissing(reference);
      return this.served('manifest', 'miss', await this.fetchManifestOnce(reference, undefined));
    }

    const tag = await this.content.index.checkedTag(this.name, reference);
    const cached = tag ? await this.readCached(tag.digest) : null;
    if (tag && cached && (this.content.now() - tag.checkedAt < this.content.tagTtlMs || this.rateLimited())) {
      return this.served('manifest', 'hit', cached);
    }
    if (!(tag && cached)) this.requireNotRecentlyMissing(reference);
    try {
      if (tag && cached) {
        // Revalidate with a HEAD: Docker Hub does not count it against the pull limit.
        const head = await this.upstream('HEAD', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
        if (head.status === 200 && head.headers.get('docker-content-digest') === tag.digest) {
          await this.content.index.markTagChecked(this.name, reference, this.content.now());
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
      if (tag && cached && isUpstreamDeletion(error) && (await this.keepsDeleted(tag.digest))) {
        this.content.log.warn('upstream no longer has this tag; serving the cached manifest (serve_deleted)', {
          repository: this.name,
          reference,
          digest: tag.digest,
          serveDeleted: this.content.serveDeleted,
        });
        // Asked just now: the next pulls within tag_ttl are served without asking again (and logging again).
        await this.content.index.markTagChecked(this.name, reference, this.content.now());
        return this.served('manifest', 'stale', cached);
      }
      throw error;
    }
  }

  /** `[proxy] serve_deleted`: whether a cached manifest the upstream deleted is still served. */
  private async keepsDeleted(digest: string): Promise<boolean> {
    const policy = this.content.serveDeleted;
    return policy === 'all' || (policy === 'pinned' && (await this.content.isPinned(this.name, digest)));
  }

  /** MANIFEST_UNKNOWN, without asking, for a manifest nothing of which is cached and the upstream just answered 404 for. */
  private requireNotRecentlyMissing(reference: string): void {
    if (!this.content.notFound.has(`${this.name}@${reference}`, this.content.now())) return;
    this.served('manifest', 'not_found');
    throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference } });
  }

  /** Counts a manifest, blob or referrers list served (metrics); returns `content` for the caller to return. */
  private served<T>(kind: CachedKind, result: CacheResult, content?: T): T {
    this.content.metrics?.cacheServed(this.target.upstream.name, kind, result);
    return content as T;
  }

  private async readCached(digest: string): Promise<StoredManifest | null> {
    const record = await this.content.index.manifest(this.name, digest);
    if (!record) return null;
    // Gone or corrupt on disk: fetched again from the upstream, as if never cached.
    const content = await readManifest(this.content.manifests, this.content.store, digest);
    if (!content) return null;
    this.content.accessLog.manifestPulled(this.name, digest);
    return { digest, mediaType: record.mediaType, size: record.size, content };
  }

  private fetchManifestOnce(reference: ManifestReference, tag: string | undefined): Promise<StoredManifest> {
    const key = `${this.name}@${reference}`;
    const running = this.content.manifestFetches.get(key);
    if (running) return running;
    const fetching = this.fetchManifest(reference, tag).finally(() => this.content.manifestFetches.delete(key));
    this.content.manifestFetches.set(key, fetching);
    return fetching;
  }

  private async fetchManifest(reference: ManifestReference, tag: string | undefined): Promise<StoredManifest> {
    const { response, url } = await this.upstreamAnswer('GET', `manifests/${reference}`, { Accept: MANIFEST_ACCEPT });
    if (response.status === 404) this.content.notFound.remember(`${this.name}@${reference}`, this.content.now());
    if (response.status !== 200) throw this.upstreamFailure(response, 'MANIFEST_UNKNOWN', { reference });
    const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, this.content.maxManifestSize);
    if (content === undefined) {
      throw this.unusableAnswer(`upstream ${this.target.upstream.name} sent a manifest over ${this.content.maxManifestSize} bytes`, {
        reference,
      });
    }
    const algorithm = isDigestReference(reference) ? digestAlgorithm(reference) : 'sha256';
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
    await this.content.index.putManifest(newManifest(this.name, digest, content, parsed, tag), this.content.now());
    this.content.accessLog.manifestPulled(this.name, digest);
    // Said only where there is a choice: the address of an upstream with one URL is nobody's business.
    const servedBy = this.target.upstream.clients.length > 1 ? new URL(url).origin : undefined;
    return { digest, mediaType: parsed.mediaType, size: content.length, content, servedBy };
  }

  // --- tags and referrers --------------------------------------------------------------------

  async listTags(page: Pagination): Promise<Page<string>> {
    let tags: string[];
    try {
      tags = await this.fetchTagList();
      await this.content.index.storeUpstreamTagList(this.name, tags, this.content.now());
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
    const stored = await this.content.index.upstreamTagList(this.name);
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

  /**
   * The upstream's referrers of `digest`: kept for tag_ttl when the subject is cached here, and served
   * from there (or, never fetched, from the referrers cached here, if any) whenever the upstream fails.
   */
  async listReferrers(digest: Digest, artifactType?: string): Promise<Descriptor[]> {
    const kept = await this.content.index.upstreamReferrers(this.name, digest);
    if (kept && this.content.now() - kept.fetchedAt < this.content.tagTtlMs) {
      return this.served('referrers', 'hit', kept.descriptors as Descriptor[]);
    }
    try {
      const answer = await this.fetchReferrers(digest, artifactType);
      // Only the whole list is kept: a filtered one would answer the next, differently filtered, request wrongly.
      if (!answer.filtered) await this.content.index.storeUpstreamReferrers(this.name, digest, answer.descriptors, this.content.now());
      return this.served('referrers', 'miss', answer.descriptors);
    } catch (error) {
      // Without a kept list, the referrers cached here are all we know; none at all is not "there are none".
      const known = (kept?.descriptors as Descriptor[] | undefined) ?? (await this.content.index.referrers(this.name, digest)).map(toDescriptor);
      if (!isUpstreamTrouble(error) || (!kept && known.length === 0)) throw error;
      this.content.log.warn('upstream unusable; serving the cached referrers', {
        repository: this.name,
        digest,
        error: (error as Error).message,
      });
      return this.served('referrers', 'stale', known);
    }
  }

  /**
   * dist-spec 1.1: the referrers API (`artifactType` passed on; OCI-Filters-Applied says whether it was
   * applied); an upstream without one answers 404, and then the referrers tag scheme: an index under the
   * tag `<alg>-<ref>`, kept by the clients that push referrers (cosign, notation, oras), none when absent.
   */
  private async fetchReferrers(digest: string, artifactType?: string): Promise<{ descriptors: Descriptor[]; filtered: boolean }> {
    const query = artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(artifactType)}`;
    const response = await this.upstream('GET', `referrers/${digest}${query}`, { Accept: MediaType.OciIndex });
    if (response.status === 200) {
      const filtered = artifactType !== undefined && /\bartifactType\b/.test(response.headers.get('oci-filters-applied') ?? '');
      return { descriptors: await this.readReferrersIndex(response, 'referrers list', digest), filtered };
    }
    if (response.status !== 404) throw this.upstreamFailure(response, 'MANIFEST_UNKNOWN', { digest });
    void response.body?.cancel().catch(() => undefined);

    const tag = referrersTag(digest);
    const tagged = await this.upstream('GET', `manifests/${tag}`, { Accept: MediaType.OciIndex });
    if (tagged.status === 404) {
      void tagged.body?.cancel().catch(() => undefined);
      return { descriptors: [], filtered: false };
    }
    if (tagged.status !== 200) throw this.upstreamFailure(tagged, 'MANIFEST_UNKNOWN', { reference: tag });
    return { descriptors: await this.readReferrersIndex(tagged, `referrers tag ${tag}`, digest), filtered: false };
  }

  /** The descriptors of an OCI index the upstream sent as a referrers list, read up to max_manifest_size. */
  private async readReferrersIndex(response: Response, what: string, digest: string): Promise<Descriptor[]> {
    const upstream = this.target.upstream.name;
    const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, this.content.maxManifestSize);
    if (content === undefined) {
      throw this.unusableAnswer(`upstream ${upstream} sent a ${what} over ${this.content.maxManifestSize} bytes`, { digest });
    }
    let parsed;
    try {
      parsed = parseManifest(content);
    } catch (error) {
      if (!(error instanceof ManifestParseError)) throw error;
      throw this.unusableAnswer(`upstream ${upstream} sent a ${what} that is not an OCI index: ${error.message}`, { digest });
    }
    if (!isIndexMediaType(parsed.mediaType)) {
      throw this.unusableAnswer(`upstream ${upstream} sent a ${what} that is not an OCI index`, { digest });
    }
    return parsed.manifests.map(referrerDescriptor);
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
    return (await this.upstreamAnswer(method, path, headers)).response;
  }

  /**
   * The upstream's answer and the URL that gave it. Its URLs (`[[proxy.upstreams]] urls`) are asked in
   * order: an error status (404 above all: a mirror that lacks the image) or no usable answer moves on to
   * the next, and the last one's answer stands, whatever it is.
   */
  private async upstreamAnswer(
    method: 'GET' | 'HEAD',
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ response: Response; url: string }> {
    const clients = this.target.upstream.clients;
    for (const [index, client] of clients.entries()) {
      const last = index === clients.length - 1;
      let response: Response;
      try {
        response = await client.request(method, `${this.target.remoteName}/${path}`, { repository: this.target.remoteName, headers });
        this.content.rateLimits?.observe(this.target.upstream.name, client.username, response);
      } catch (error) {
        if (last || !isUpstreamClientError(error)) throw this.upstreamError(error);
        const reason = error instanceof UpstreamUnavailableError ? 'unreachable' : 'unusable';
        this.fallBack(client.url, reason, path, (error as Error).message);
        continue;
      }
      if (last || response.status < 400) {
        if (index > 0) {
          const upstream = this.target.upstream.name;
          this.content.log.info('upstream answered from a fallback URL', { repository: this.name, upstream, url: client.url, path, status: response.status });
        }
        return { response, url: client.url };
      }
      void response.body?.cancel().catch(() => undefined);
      this.fallBack(client.url, fallbackReason(response.status), path, `answered ${response.status}`);
    }
    throw new Error('an upstream has at least one URL');
  }

  private fallBack(url: string, reason: FallbackReason, path: string, why: string): void {
    const upstream = this.target.upstream.name;
    this.content.log.info('upstream URL failed; trying the next', { repository: this.name, upstream, url, path, reason: why });
    this.content.metrics?.upstreamFallback(upstream, reason);
  }

  /** What a client sees of an upstream request that got no usable answer. */
  private upstreamError(error: unknown): unknown {
    const upstream = this.target.upstream.name;
    if (error instanceof UpstreamUnavailableError) {
      return new RegistryError('UNAVAILABLE', { message: `upstream ${upstream} is unreachable`, detail: { upstream } });
    }
    if (error instanceof UpstreamRefusedError) {
      // The same answer whether anything listens there or not, and no connection was attempted.
      this.content.log.warn('upstream destination refused', { repository: this.name, upstream, error: error.message });
      return new RegistryError('DENIED', { message: error.message, detail: { upstream } });
    }
    if (error instanceof UpstreamAnswerError) return this.unusableAnswer(error.message);
    return error;
  }

  /** The upstream's pull budget is low or spent (rate-limits.ts): cached tags are served as they are. */
  private rateLimited(): boolean {
    return this.content.rateLimits?.limited(this.target.upstream.name, this.target.upstream.clients[0].username) ?? false;
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

/** Why the next of an upstream's URLs was asked (a metric label: a fixed set). */
export type FallbackReason = 'not_found' | 'rate_limited' | 'denied' | 'server_error' | 'other_status' | 'unreachable' | 'unusable';

function fallbackReason(status: number): FallbackReason {
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limited';
  if (status === 401 || status === 403) return 'denied';
  return status >= 500 ? 'server_error' : 'other_status';
}

/** What UpstreamClient throws for an upstream that gave no usable answer (anything else is our own failure). */
function isUpstreamClientError(error: unknown): boolean {
  return error instanceof UpstreamUnavailableError || error instanceof UpstreamRefusedError || error instanceof UpstreamAnswerError;
}

/** Unreachable, rate-limiting, refusing or failing upstreams: cases where cached content is served instead. */
function isUpstreamTrouble(error: unknown): boolean {
  return error instanceof RegistryError && ['UNAVAILABLE', 'TOOMANYREQUESTS', 'DENIED'].includes(error.code);
}

/** dist-spec 1.1 referrers tag scheme: `<alg>-<ref>`, the algorithm cut to 32 characters and the encoded digest to 64. */
export function referrersTag(digest: string): string {
  const [algorithm, encoded] = digest.split(':');
  return `${algorithm.slice(0, 32)}-${encoded.slice(0, 64)}`;
}

/** What a referrers list says of each referrer (dist-spec 1.1): nothing else the upstream put there. */
function referrerDescriptor(descriptor: Descriptor): Descriptor {
  const { mediaType, digest, size, artifactType, annotations } = descriptor;
  return { mediaType, digest, size, ...(artifactType !== undefined && { artifactType }), ...(annotations !== undefined && { annotations }) };
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


import { Config } from '../config/config';
import { Action } from '../auth/policy';
import { isDigestReference, toManifestReference } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { isValidName, isValidTag } from '../oci/names';
import type { RepositorySummary } from '../storage/content-inventory';
import type { GcReport } from '../storage/gc';
import type { GcRunRecord, StorageSample } from '../storage/storage-history';
import type { UpstreamActivitySnapshot } from '../metrics/upstream-activity';
import type { UiContent } from './content';
import type { RateLimitState } from '../proxy/rate-limits';
import type { Pin } from '../storage/pins';
import { ImageDetails, ImageReader, TagDetails } from './image-details';
import type { Viewer } from './viewer';

const PROXY_PREFIX = 'proxy/';
/** The last collections the storage page and /api/storage list. */
const GC_RUNS_SHOWN = 10;

export interface StorageView {
  stores: Awaited<ReturnType<UiContent['inventory']['storedBytes']>>;
  /** Samples of the stores' sizes, oldest first: hourly while the server runs, and after each collection. */
  history: StorageSample[];
  /** The last collections that ran (the server's and the gc command's), newest first. */
  garbageCollections: GcRunRecord[];
  /** The last collection this process ran, with everything it removed; null before the first. */
  lastGarbageCollection: NonNullable<UiContent['lastGarbageCollection']> | null;
}

/** A repository as listed: the index's summary, or a GHCR package from `[github]` that nothing is cached of yet. */
export type RepositoryListing =
  | RepositorySummary
  | { name: string; kind: 'ghcr'; upstream: 'ghcr.io'; tags: null; manifests: 0; size: 0; lastPush: null; lastPull: null };

export interface RepositoryView {
  repository: RepositoryListing;
  tags: PinnedTag[];
  mayDelete: boolean;
}

/** The pull-through cache per upstream, over the cached repositories the viewer may pull. */
export interface UpstreamView {
  upstream: string;
  /** Where it is reached, when `[[proxy.upstreams]]` configures it. */
  url?: string;
  repositories: RepositorySummary[];
  manifests: number;
  /** Bytes of its repositories; a blob two of them share counts in each. */
  bytes: number;
  lastPull: number | null;
  /**
   * Since the server started: manifests and blobs served from the cache (hit), fetched (miss), or served
   * from the cache because the upstream failed (stale); and the upstream's last success and last error.
   * Null for a viewer who may pull none of its cached repositories (the figures cover all of them).
   */
  activity: UpstreamActivitySnapshot | null;
  /** Its pull budget per credential, where its answers announced one (Docker Hub); shown with `activity`. */
  rateLimits: RateLimitState[];
  /** Pins on its repositories the viewer may pull, configured and set through the API. */
  pins: Pin[];
}

/** A tag as the repository page lists it, with the pin that names it, if any. */
export interface PinnedTag extends TagDetails {
  pin: Pin | null;
}

/**
 * What the web UI and /api/ show and do, for one viewer at a time: only what the viewer may pull is listed
 * or shown, and every action needs the right the registry API would ask for.
 */
export class UiCatalog {
  readonly images: ImageReader;

  constructor(
    private readonly content: UiContent,
    private readonly config: Config,
  ) {
    this.images = new ImageReader(content, config.max_manifest_size);
  }

  /** Repositories the viewer may pull, hosted, cached and GHCR's; with `query`, those whose name contains it. */
  async repositories(viewer: Viewer, query = ''): Promise<RepositoryListing[]> {
    requireLogin(viewer);
    const stored = await this.content.inventory.repositories();
    const storedNames = new Set(stored.map((repository) => repository.name));
    // GHCR packages come from `[github]` through the catalog; the rest of the catalog is what the index holds.
    const listed: RepositoryListing[] = [...stored];
    if (this.config.github.users.length + this.config.github.orgs.length > 0) {
      const catalog = await this.content.listRepositories({});
      for (const name of catalog.items) {
        if (!storedNames.has(name) && name.startsWith(`${PROXY_PREFIX}ghcr.io/`)) {
          listed.push({ name, kind: 'ghcr', upstream: 'ghcr.io', tags: null, manifests: 0, size: 0, lastPush: null, lastPull: null });
        }
      }
      listed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    const needle = query.trim().toLowerCase();
    return listed.filter((repository) => viewer.may('pull', repository.name) && (needle === '' || repository.name.includes(needle)));
  }

  async repository(viewer: Viewer, name: string): Promise<RepositoryView> {
    this.require(viewer, 'pull', name);
    const repository = (await this.repositories(viewer)).find((listed) => listed.name === name);
    if (!repository) throw new RegistryError('NAME_UNKNOWN', { detail: { name } });
    const pins = repository.kind === 'cached' ? await this.content.pins.list() : [];
    const tags = (await this.images.tags(name)).map((tag) => ({ ...tag, pin: pins.find((pin) => pinNames(pin, name, tag.tag, tag.digest)) ?? null }));
    return { repository, tags, mayDelete: viewer.may('delete', name) };
  }

  /** Pins a cached tag, as PUT /api/pins/<name>:<tag> does (the delete right on the name). */
  async pin(viewer: Viewer, name: string, tag: string): Promise<{ created: boolean }> {
    this.require(viewer, 'delete', name);
    if (!name.startsWith(PROXY_PREFIX)) throw new RegistryError('UNSUPPORTED', { status: 400, message: `${name} is not a cached repository: only cached content is pinned` });
    if (!isValidTag(tag)) throw new RegistryError('TAG_INVALID', { detail: { tag } });
    return this.content.pins.add({ repository: name, reference: tag }, viewer.user ?? null);
  }

  /** Removes a pin set through the API or the UI; configured pins stay (they are the configuration's). */
  async unpin(viewer: Viewer, name: string, reference: string): Promise<void> {
    this.require(viewer, 'delete', name);
    if (!(await this.content.pins.remove({ repository: name, reference }))) {
      throw new RegistryError('MANIFEST_UNKNOWN', {
        message: `${name}:${reference} is not pinned through the API (configured pins are removed from the configuration)`,
        detail: { name, reference },
      });
    }
  }

  async image(viewer: Viewer, name: string, reference: string): Promise<ImageDetails> {
    this.require(viewer, 'pull', name);
    return this.images.image(name, reference);
  }

  /**
   * Deletes a tag, or a manifest by digest, as DELETE /v2/<name>/manifests/<reference> does; in a cached
   * repository (read-only through the API) it evicts the manifest the reference names instead.
   */
  async delete(viewer: Viewer, name: string, reference: string): Promise<void> {
    this.require(viewer, 'delete', name);
    const parsed = toManifestReference(reference);
    if (!name.startsWith(PROXY_PREFIX)) return this.content.repository(name).deleteManifest(parsed);
    const digest = isDigestReference(parsed) ? parsed : (await this.content.inventory.tags(name)).find((tag) => tag.tag === reference)?.digest;
    if (digest === undefined || (await this.content.inventory.evict(name, digest)) === 0) {
      throw new RegistryError('MANIFEST_UNKNOWN', { detail: { name, reference } });
    }
  }

  /** Evicts everything cached of a repository under proxy/; its files go at the next garbage collection. */
  async evict(viewer: Viewer, name: string): Promise<number> {
    this.require(viewer, 'delete', name);
    if (!name.startsWith(PROXY_PREFIX)) {
      throw new RegistryError('UNSUPPORTED', { status: 400, message: `${name} is not a cached repository; delete its tags instead` });
    }
    const evicted = await this.content.inventory.evict(name);
    if (evicted === 0) throw new RegistryError('NAME_UNKNOWN', { detail: { name } });
    return evicted;
  }

  /**
   * The cache per upstream: what it holds of the repositories the viewer may pull, and what it did. Upstreams
   * with nothing cached (configured ones, or ones asked and failed) are listed to viewers who may collect
   * garbage (the administrators), who see everything anyway.
   */
  async cache(viewer: Viewer): Promise<UpstreamView[]> {
    const cached = (await this.repositories(viewer)).filter((r): r is RepositorySummary => r.kind === 'cached');
    const activity = this.content.upstreamActivity();
    const byUpstream = new Map<string, UpstreamView>();
    const viewOf = (upstream: string): UpstreamView => {
      let view = byUpstream.get(upstream);
      if (!view) {
        const configured = this.config.proxy.upstreams.find((u) => u.host === upstream || u.aliases.includes(upstream));
        view = { upstream, url: configured?.url, repositories: [], manifests: 0, bytes: 0, lastPull: null, activity: null, rateLimits: [], pins: [] };
        byUpstream.set(upstream, view);
      }
      return view;
    };
    if (viewer.mayCollect) {
      for (const configured of this.config.proxy.upstreams) viewOf(configured.host);
      for (const upstream of Object.keys(activity)) viewOf(upstream);
    }
    for (const repository of cached) {
      const view = viewOf(repository.upstream!);
      view.repositories.push(repository);
      view.manifests += repository.manifests;
      view.bytes += repository.size;
      if (repository.lastPull !== null && (view.lastPull === null || repository.lastPull > view.lastPull)) view.lastPull = repository.lastPull;
    }
    const rateLimits = this.content.upstreamRateLimits();
    const pins = (await this.content.pins.list()).filter((pin) => viewer.may('pull', pin.repository));
    for (const view of byUpstream.values()) {
      if (viewer.mayCollect || view.repositories.length > 0) {
        view.activity = activity[view.upstream] ?? null;
        view.rateLimits = rateLimits.filter((state) => state.upstream === view.upstream);
      }
      const prefix = `${PROXY_PREFIX}${view.upstream}`;
      view.pins = pins.filter((pin) => pin.repository === prefix || pin.repository.startsWith(`${prefix}/`));
    }
    return [...byUpstream.values()].sort((a, b) => (a.upstream < b.upstream ? -1 : 1));
  }

  /**
   * Bytes and files per store now and over time (the retained samples, oldest first), the last collection
   * this process ran (its whole report), and the last collections that ran at all (the index keeps them).
   */
  async storage(viewer: Viewer): Promise<StorageView> {
    requireLogin(viewer);
    return {
      stores: await this.content.inventory.storedBytes(),
      history: await this.content.storageHistory.samples(),
      garbageCollections: await this.content.storageHistory.gcRuns(GC_RUNS_SHOWN),
      lastGarbageCollection: this.content.lastGarbageCollection ?? null,
    };
  }

  /** What a garbage collection would remove now, without removing it. */
  gcDryRun(viewer: Viewer): Promise<GcReport> {
    this.requireCollect(viewer);
    return this.content.collectGarbage({ dryRun: true });
  }

  /** Runs a garbage collection now, or joins the one under way (scheduled, or asked for by someone else). */
  collectGarbage(viewer: Viewer): Promise<GcReport> {
    this.requireCollect(viewer);
    return this.content.collectGarbage({});
  }

  private requireCollect(viewer: Viewer): void {
    requireLogin(viewer);
    if (viewer.mayCollect) return;
    if (viewer.user === undefined && viewer.via !== 'header') throw new RegistryError('UNAUTHORIZED', { message: 'log in first' });
    throw new RegistryError('DENIED', { message: 'garbage collection needs the delete right on the "" prefix' });
  }

  private require(viewer: Viewer, action: Action, name: string): void {
    requireLogin(viewer);
    if (!isValidName(name)) throw new RegistryError('NAME_INVALID', { detail: { name } });
    if (viewer.may(action, name)) return;
    if (viewer.user === undefined && viewer.via !== 'header') {
      throw new RegistryError('UNAUTHORIZED', { message: `${action} access to ${name} needs a login` });
    }
    throw new RegistryError('DENIED', { message: `${viewer.user ?? 'anonymous'} may not ${action} ${name}`, detail: { name, action } });
  }
}

/** Whether `pin` names the tag `tag` (at `digest`) of `name`: by tag or digest, or by a prefix and its tag pattern. */
function pinNames(pin: Pin, name: string, tag: string, digest: string): boolean {
  if (!pin.isPrefix) return pin.repository === name && (pin.reference === tag || pin.reference === digest);
  if (name !== pin.repository && !name.startsWith(`${pin.repository}/`)) return false;
  return pin.tagPattern === null || new RegExp(`^(?:${pin.tagPattern})$`).test(tag);
}

function requireLogin(viewer: Viewer): void {
  if (viewer.mustLogIn) throw new RegistryError('UNAUTHORIZED', { message: 'log in first' });
}

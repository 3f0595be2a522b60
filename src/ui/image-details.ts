import { RegistryError } from '../oci/errors';
import { looksLikeDigest } from '../oci/digest';
import { isIndexMediaType } from '../oci/media-types';
import { isValidTag } from '../oci/names';
import type { TagRecord } from '../storage/content-inventory';
import type { UiContent } from './content';

/** Config blobs larger than this are not read (a config with a long history is some KiB; 4 MiB is generous). */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Summaries are of content-addressed bytes, so they never change: keep the recent ones (per repository and digest). */
const SUMMARY_CACHE_MAX = 5000;

// image-spec: the media types of an image's config (OCI and Docker's); other configs belong to artifacts.
const IMAGE_CONFIG_TYPES = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);

export interface Platform {
  os?: string;
  architecture?: string;
  variant?: string;
  /** The platform's own manifest, for an index. */
  digest?: string;
}

/** What a tag list shows of one manifest. */
export interface ImageSummary {
  digest: string;
  mediaType: string;
  /** Compressed bytes a pull downloads: config and layers; for an index, its stored children's together. */
  size: number;
  /** The config's `created` (for an index, the newest child's); absent when unknown. */
  created?: string;
  labels: Record<string, string>;
  platforms: Platform[];
  artifactType?: string;
}

export interface TagDetails extends ImageSummary {
  tag: string;
  /** When the tag was last set, ms since the epoch. */
  updatedAt: number;
  lastPull: number | null;
}

export interface Layer {
  digest: string;
  mediaType: string;
  size: number;
}

export interface HistoryEntry {
  created?: string;
  createdBy?: string;
  comment?: string;
  emptyLayer: boolean;
}

/** What the image page shows. */
export interface ImageDetails extends ImageSummary {
  name: string;
  reference: string;
  annotations: Record<string, string>;
  /** Absent for an index. */
  config?: {
    digest: string;
    mediaType: string;
    size: number;
    entrypoint?: string[];
    cmd?: string[];
    workingDir?: string;
    user?: string;
    env?: string[];
    exposedPorts?: string[];
    history: HistoryEntry[];
  };
  layers: Layer[];
  /** Signatures, SBOMs and other manifests whose subject this is. */
  referrers: Array<{ digest: string; mediaType: string; artifactType: string | null; size: number }>;
}

interface ManifestJson {
  mediaType?: string;
  artifactType?: string;
  config?: Layer;
  layers?: Layer[];
  manifests?: Array<Layer & { platform?: Platform }>;
  annotations?: Record<string, string>;
}

interface ConfigJson {
  created?: string;
  os?: string;
  architecture?: string;
  variant?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Env?: string[] | null;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
  };
  history?: Array<{ created?: string; created_by?: string; comment?: string; empty_layer?: boolean }>;
}

/**
 * Reads what people want to know about images out of stored manifests and configs. Reads leave no trace:
 * nothing counts as a pull, and a cached repository never asks its upstream (only what is stored is shown).
 */
export class ImageReader {
  private readonly summaries = new Map<string, ImageSummary>();

  constructor(
    private readonly content: UiContent,
    private readonly maxManifestBytes: number,
  ) {}

  async tags(name: string): Promise<TagDetails[]> {
    const details: TagDetails[] = [];
    for (const record of await this.content.inventory.tags(name)) details.push({ ...(await this.summaryOf(name, record)), ...tagFields(record) });
    return details;
  }

  async image(name: string, reference: string): Promise<ImageDetails> {
    const digest = await this.resolve(name, reference);
    const manifest = await this.manifest(name, digest);
    if (!manifest) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { name, reference } });
    const summary = await this.summarize(name, digest, manifest);
    const details: ImageDetails = {
      ...summary,
      name,
      reference,
      annotations: manifest.annotations ?? {},
      layers: (manifest.layers ?? []).map(({ digest: layerDigest, mediaType, size }) => ({ digest: layerDigest, mediaType, size })),
      referrers: (await this.content.inventory.referrers(name, digest)).map((r) => ({ digest: r.digest, mediaType: r.mediaType, artifactType: r.artifactType, size: r.size })),
    };
    if (manifest.config) {
      const config = IMAGE_CONFIG_TYPES.has(manifest.config.mediaType) ? await this.config(name, manifest.config.digest) : undefined;
      const runtime = config?.config ?? {};
      details.config = {
        digest: manifest.config.digest,
        mediaType: manifest.config.mediaType,
        size: manifest.config.size,
        entrypoint: runtime.Entrypoint ?? undefined,
        cmd: runtime.Cmd ?? undefined,
        workingDir: runtime.WorkingDir || undefined,
        user: runtime.User || undefined,
        env: runtime.Env ?? undefined,
        exposedPorts: runtime.ExposedPorts ? Object.keys(runtime.ExposedPorts) : undefined,
        history: (config?.history ?? []).map((entry) => ({
          created: entry.created,
          createdBy: entry.created_by,
          comment: entry.comment,
          emptyLayer: entry.empty_layer === true,
        })),
      };
    }
    return details;
  }

  /** The digest a tag or digest names in the repository; MANIFEST_UNKNOWN when none. */
  private async resolve(name: string, reference: string): Promise<string> {
    if (looksLikeDigest(reference)) return reference;
    const tag = isValidTag(reference) ? (await this.content.inventory.tags(name)).find((record) => record.tag === reference) : undefined;
    if (!tag) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { name, reference } });
    return tag.digest;
  }

  private async summaryOf(name: string, record: TagRecord): Promise<ImageSummary> {
    // Keyed by repository too: an index's size counts the children stored in that repository.
    const key = `${name}@${record.digest}`;
    const known = this.summaries.get(key);
    if (known) return known;
    const manifest = await this.manifest(name, record.digest);
    const summary = manifest
      ? await this.summarize(name, record.digest, manifest)
      : { digest: record.digest, mediaType: record.mediaType, size: record.manifestSize, labels: {}, platforms: [] };
    if (this.summaries.size >= SUMMARY_CACHE_MAX) this.summaries.clear();
    this.summaries.set(key, summary);
    return summary;
  }

  private async summarize(name: string, digest: string, manifest: ManifestJson): Promise<ImageSummary> {
    const mediaType = manifest.mediaType ?? (manifest.manifests ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json');
    if (isIndexMediaType(mediaType) || Array.isArray(manifest.manifests)) {
      const children = manifest.manifests ?? [];
      let size = 0;
      let created: string | undefined;
      const labels: Record<string, string> = {};
      const platforms: Platform[] = [];
      for (const child of children) {
        const platform = child.platform ?? {};
        // Attestation manifests (BuildKit's, platform unknown/unknown) are not platforms anyone pulls.
        if (platform.os === 'unknown') continue;
        platforms.push({ os: platform.os, architecture: platform.architecture, variant: platform.variant, digest: child.digest });
        const childManifest = await this.manifest(name, child.digest);
        if (!childManifest?.config) continue;
        size += imageSize(childManifest);
        const config = IMAGE_CONFIG_TYPES.has(childManifest.config.mediaType)
          ? await this.config(name, childManifest.config.digest)
          : undefined;
        if (config?.created && (created === undefined || config.created > created)) created = config.created;
        Object.assign(labels, config?.config?.Labels ?? {});
      }
      return { digest, mediaType, size, created, labels, platforms, artifactType: manifest.artifactType };
    }
    const configDescriptor = manifest.config;
    const config =
      configDescriptor && IMAGE_CONFIG_TYPES.has(configDescriptor.mediaType) ? await this.config(name, configDescriptor.digest) : undefined;
    const platforms: Platform[] = config && (config.os || config.architecture) ? [{ os: config.os, architecture: config.architecture, variant: config.variant }] : [];
    return {
      digest,
      mediaType,
      size: imageSize(manifest),
      created: typeof config?.created === 'string' ? config.created : undefined,
      labels: config?.config?.Labels ?? {},
      platforms,
      artifactType: manifest.artifactType ?? (configDescriptor && !IMAGE_CONFIG_TYPES.has(configDescriptor.mediaType) ? configDescriptor.mediaType : undefined),
    };
  }

  private async manifest(name: string, digest: string): Promise<ManifestJson | undefined> {
    return parseJson<ManifestJson>(await this.content.inventory.readManifest(name, digest, this.maxManifestBytes));
  }

  private async config(name: string, digest: string): Promise<ConfigJson | undefined> {
    return parseJson<ConfigJson>(await this.content.inventory.readBlob(name, digest, MAX_CONFIG_BYTES));
  }
}

function tagFields(record: TagRecord): Pick<TagDetails, 'tag' | 'updatedAt' | 'lastPull'> {
  return { tag: record.tag, updatedAt: record.updatedAt, lastPull: record.lastPull };
}

/** Compressed bytes of an image: its config and layers, as its manifest declares them. */
function imageSize(manifest: ManifestJson): number {
  return (manifest.config?.size ?? 0) + (manifest.layers ?? []).reduce((sum, layer) => sum + (Number.isSafeInteger(layer.size) ? layer.size : 0), 0);
}

/** Stored JSON was validated when pushed (manifests) or is the image's own (configs): a bad one shows as unknown. */
function parseJson<T>(bytes: Buffer | undefined): T | undefined {
  if (!bytes) return undefined;
  try {
    const value = JSON.parse(bytes.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}

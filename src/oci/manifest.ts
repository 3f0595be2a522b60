import { parseDigest } from './digest';
import { MediaType, bareMediaType, isIndexMediaType, isManifestMediaType } from './media-types';

/** The content descriptor of the OCI image spec, as it appears inside manifests. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: Record<string, unknown>;
}

/** What the registry needs to know about a manifest to store, index and serve it. */
export interface ParsedManifest {
  mediaType: string;
  /** Blobs (config and layers) that must be present in the repository. */
  blobs: Descriptor[];
  /** Child manifests of an index that must be present in the repository. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** dist-spec referrers: `artifactType`, or an image manifest's config media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

export class ManifestParseError extends Error {}

// Docker's foreign layers (Windows base images) live elsewhere and are never pushed.
const FOREIGN_LAYER_TYPES = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

export function isForeignLayer(descriptor: Descriptor): boolean {
  return FOREIGN_LAYER_TYPES.has(descriptor.mediaType) && Array.isArray(descriptor.urls) && descriptor.urls.length > 0;
}

/**
 * Parses and validates manifest bytes. `contentType` is the request's Content-Type, if any.
 * Throws ManifestParseError with a message fit for a client.
 */
export function parseManifest(content: Buffer, contentType?: string): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    throw new ManifestParseError('manifest is not valid JSON');
  }
  if (!isObject(json)) throw new ManifestParseError('manifest is not a JSON object');

  if (json.mediaType !== undefined && typeof json.mediaType !== 'string') {
    throw new ManifestParseError('mediaType must be a string');
  }
  const declared = json.mediaType as string | undefined;
  const header = contentType ? bareMediaType(contentType) : undefined;
  const headerNamesManifest = header !== undefined && isManifestMediaType(header);
  if (declared !== undefined && headerNamesManifest && declared !== header) {
    throw new ManifestParseError(`mediaType ${declared} does not match Content-Type ${header}`);
  }
  const mediaType = declared ?? (headerNamesManifest || isSchema1(header) ? header! : inferMediaType(json));
  if (isSchema1(mediaType)) {
    throw new ManifestParseError('Docker schema 1 manifests are deprecated and not accepted');
  }
  if (!isManifestMediaType(mediaType)) throw new ManifestParseError(`unsupported manifest media type ${mediaType}`);
  if (json.schemaVersion !== 2) throw new ManifestParseError('schemaVersion must be 2');

  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject');
  const annotations = stringMap(json.annotations, 'annotations');
  const artifactType = optionalString(json.artifactType, 'artifactType');

  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(json.manifests)) throw new ManifestParseError('an index must have a manifests array');
    const manifests = json.manifests.map((entry, i) => descriptor(entry, `manifests[${i}]`));
    return { mediaType, blobs: [], manifests, subject, artifactType, annotations };
  }

  const config = descriptor(json.config, 'config');
  if (!Array.isArray(json.layers)) throw new ManifestParseError('a manifest must have a layers array');
  const layers = json.layers.map((entry, i) => descriptor(entry, `layers[${i}]`));
  return {
    mediaType,
    blobs: [config, ...layers.filter((layer) => !isForeignLayer(layer))],
    manifests: [],
    subject,
    // image-spec: without artifactType, the config's media type is the artifact type.
    artifactType: artifactType ?? config.mediaType,
    annotations,
  };
}

function isSchema1(mediaType: string | undefined): boolean {
  return mediaType === MediaType.DockerManifestV1 || mediaType === MediaType.DockerManifestV1Signed;
}

function inferMediaType(json: Record<string, unknown>): string {
  if (Array.isArray(json.manifests)) return MediaType.OciIndex;
  if (json.config !== undefined) return MediaType.OciManifest;
  throw new ManifestParseError('manifest has no mediaType and its shape is not an OCI manifest or index');
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new ManifestParseError(`${where} is not a descriptor`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw new ManifestParseError(`${where}.mediaType is missing`);
  if (typeof digest !== 'string' || parseDigest(digest) === null) {
    throw new ManifestParseError(`${where}.digest is not a valid digest`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestParseError(`${where}.size is not a non-negative integer`);
  }
  const result: Descriptor = { mediaType, digest, size };
  const artifactType = optionalString(value.artifactType, `${where}.artifactType`);
  if (artifactType !== undefined) result.artifactType = artifactType;
  const annotations = stringMap(value.annotations, `${where}.annotations`);
  if (annotations !== undefined) result.annotations = annotations;
  if (Array.isArray(value.urls)) result.urls = value.urls.filter((u): u is string => typeof u === 'string');
  if (isObject(value.platform)) result.platform = value.platform;
  return result;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new ManifestParseError(`${where} must be a string`);
  return value;
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new ManifestParseError(`${where} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Builds test images as OCI image layouts on disk, the form `skopeo copy oci:<dir>:<tag> docker://…` reads:
 *
 *   <dir>/
 *     oci-layout              {"imageLayoutVersion":"1.0.0"}
 *     index.json              one descriptor per tag (annotation org.opencontainers.image.ref.name)
 *     blobs/sha256/<hex>      manifests, indexes, configs and gzip'd tar layers
 *
 * Contents are deterministic: the same options give the same digests on the same machine (the seed
 * drives the pseudo-random file contents; timestamps are fixed). Layers are generated and written as
 * streams, so multi-gigabyte layers cost no memory.
 *
 * Media types are OCI only: skopeo 1.9's oci: transport finds no tag whose index.json entry has a
 * Docker media type. For Docker schema 2 in a registry, convert while pushing:
 * `skopeoCopy(image.reference, dest, ['--format', 'v2s2', '--digestfile', file])`.
 * Building into one `dir` is not safe concurrently (index.json is read, changed and rewritten).
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { parseDigest } from '../../src/oci/digest';
import type { Descriptor } from '../../src/oci/manifest';
import { MediaType } from '../../src/oci/media-types';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageOptions {
  tag: string;
  /** Number of layers (0 is allowed). */
  layers: number;
  /** Bytes of pseudo-random payload in each layer; the gzip'd blob is slightly larger (random data does not compress). */
  layerSize: number;
  /** Varies the contents, and so every digest. Defaults to the tag. */
  seed?: string;
  /** Defaults to linux/amd64. */
  platform?: Platform;
}

export interface BuiltImage {
  dir: string;
  tag: string;
  /** `oci:<dir>:<tag>`, for skopeo. */
  reference: string;
  mediaType: string;
  manifestDigest: string;
  manifestSize: number;
  /** The manifest's exact bytes, as stored in the layout. */
  manifest: Buffer;
  platform: Platform;
  configDigest: string;
  /** Digests of the compressed layer blobs, in manifest order. */
  layerDigests: string[];
  /** Sizes of the compressed layer blobs, in manifest order. */
  layerSizes: number[];
  /** sha256 of each uncompressed tar, as in the config's rootfs.diff_ids. */
  diffIds: string[];
}

export interface MultiArchOptions {
  tag: string;
  platforms: Platform[];
  layers: number;
  layerSize: number;
  /** Defaults to the tag; each platform's image gets `<seed>/<os>/<architecture>[/<variant>]`. */
  seed?: string;
}

export interface BuiltMultiArchImage {
  dir: string;
  tag: string;
  reference: string;
  mediaType: string;
  /** Digest of the image index the tag points at. */
  manifestDigest: string;
  manifestSize: number;
  manifest: Buffer;
  /** One image per platform, in `platforms` order; their `tag` and `reference` name the index. */
  images: BuiltImage[];
}

export interface ArtifactOptions {
  tag: string;
  artifactType: string;
  /** Each file becomes one layer blob with its own media type. */
  files: { mediaType: string; content: Buffer | string; annotations?: Record<string, string> }[];
  /** Makes the artifact a referrer of this manifest (dist-spec referrers API). */
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface BuiltArtifact {
  dir: string;
  tag: string;
  reference: string;
  mediaType: string;
  manifestDigest: string;
  manifestSize: number;
  manifest: Buffer;
  layerDigests: string[];
}

export interface ImageLayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

const REF_NAME = 'org.opencontainers.image.ref.name';
// Fixed, so that the same options give the same bytes.
const CREATED = '2024-01-01T00:00:00Z';
const TAR_MTIME = Date.parse(CREATED) / 1000;

const CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Writes a single-platform image into the layout at `dir` (created if needed) and tags it. */
export async function buildImageLayout(dir: string, options: ImageOptions): Promise<BuiltImage> {
  await initLayout(dir);
  const image = await writeImage(dir, options);
  await tagInIndex(dir, options.tag, descriptorOf(image.mediaType, image.manifest, image.platform));
  return image;
}

/** Writes one image per platform and an image index over them, and tags the index. */
export async function buildMultiArchLayout(dir: string, options: MultiArchOptions): Promise<BuiltMultiArchImage> {
  if (options.platforms.length === 0) throw new Error('buildMultiArchLayout needs at least one platform');
  const seed = options.seed ?? options.tag;
  await initLayout(dir);
  const images: BuiltImage[] = [];
  for (const platform of options.platforms) {
    const platformPath = [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
    images.push(await writeImage(dir, { ...options, platform, seed: `${seed}/${platformPath}` }));
  }
  const mediaType = MediaType.OciIndex;
  const manifest = json({
    schemaVersion: 2,
    mediaType,
    manifests: images.map((image) => descriptorOf(image.mediaType, image.manifest, image.platform)),
  });
  const manifestDigest = await writeBlob(dir, manifest);
  await tagInIndex(dir, options.tag, descriptorOf(mediaType, manifest));
  return {
    dir,
    tag: options.tag,
    reference: `oci:${dir}:${options.tag}`,
    mediaType,
    manifestDigest,
    manifestSize: manifest.length,
    manifest,
    images,
  };
}

/** Writes an OCI artifact: empty config, `artifactType`, one layer per file, optional subject. */
export async function buildArtifactLayout(dir: string, options: ArtifactOptions): Promise<BuiltArtifact> {
  await initLayout(dir);
  const emptyConfig = Buffer.from('{}');
  const config = descriptorOf(MediaType.OciEmpty, emptyConfig);
  await writeBlob(dir, emptyConfig);
  const layers: Descriptor[] = [];
  for (const file of options.files) {
    const content = Buffer.from(file.content);
    await writeBlob(dir, content);
    layers.push({ ...descriptorOf(file.mediaType, content), ...(file.annotations && { annotations: file.annotations }) });
  }
  const manifest = json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: options.artifactType,
    config,
    layers,
    ...(options.subject && { subject: options.subject }),
    ...(options.annotations && { annotations: options.annotations }),
  });
  const manifestDigest = await writeBlob(dir, manifest);
  await tagInIndex(dir, options.tag, descriptorOf(MediaType.OciManifest, manifest));
  return {
    dir,
    tag: options.tag,
    reference: `oci:${dir}:${options.tag}`,
    mediaType: MediaType.OciManifest,
    manifestDigest,
    manifestSize: manifest.length,
    manifest,
    layerDigests: layers.map((layer) => layer.digest),
  };
}

export async function readLayoutIndex(dir: string): Promise<ImageLayoutIndex> {
  return JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as ImageLayoutIndex;
}

/** Path of a blob in the layout, for streaming large ones. Refuses anything that is not a sha256 digest. */
export function layoutBlobPath(dir: string, digest: string): string {
  const parsed = parseDigest(digest);
  if (parsed === null || parsed.algorithm !== 'sha256') throw new Error(`not a sha256 digest: ${digest}`);
  return path.join(dir, 'blobs', 'sha256', parsed.hex);
}

export async function readBlob(dir: string, digest: string): Promise<Buffer> {
  return readFile(layoutBlobPath(dir, digest));
}

/** The descriptor index.json holds for `tag`, or undefined. */
export async function findTag(dir: string, tag: string): Promise<Descriptor | undefined> {
  return (await readLayoutIndex(dir)).manifests.find((entry) => entry.annotations?.[REF_NAME] === tag);
}

async function initLayout(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), json({ imageLayoutVersion: '1.0.0' }));
}

/** Adds `descriptor` to index.json under `tag`, replacing what the tag named before. */
async function tagInIndex(dir: string, tag: string, descriptor: Descriptor): Promise<void> {
  let index: ImageLayoutIndex;
  try {
    index = await readLayoutIndex(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  }
  index.manifests = index.manifests.filter((entry) => entry.annotations?.[REF_NAME] !== tag);
  index.manifests.push({ ...descriptor, annotations: { [REF_NAME]: tag } });
  await writeFile(path.join(dir, 'index.json'), json(index));
}

async function writeImage(dir: string, options: ImageOptions): Promise<BuiltImage> {
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const seed = options.seed ?? options.tag;
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < options.layers; i++) {
    const layer = await writeLayer(dir, `${seed}/layer-${i}`, i, options.layerSize);
    layers.push({ mediaType: LAYER_MEDIA_TYPE, digest: layer.digest, size: layer.size });
    diffIds.push(layer.diffId);
  }
  const configBytes = json({
    created: CREATED,
    architecture: platform.architecture,
    ...(platform.variant && { variant: platform.variant }),
    os: platform.os,
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Labels: { seed } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    // Docker checks that non-empty history entries match the layers one to one.
    history: diffIds.map((_, i) => ({ created: CREATED, created_by: `oci-image test helper: layer ${i}` })),
  });
  const configDigest = await writeBlob(dir, configBytes);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: descriptorOf(CONFIG_MEDIA_TYPE, configBytes),
    layers,
  });
  const manifestDigest = await writeBlob(dir, manifest);
  return {
    dir,
    tag: options.tag,
    reference: `oci:${dir}:${options.tag}`,
    mediaType: MediaType.OciManifest,
    manifestDigest,
    manifestSize: manifest.length,
    manifest,
    platform,
    configDigest,
    layerDigests: layers.map((layer) => layer.digest),
    layerSizes: layers.map((layer) => layer.size),
    diffIds,
  };
}

/** Streams tar → (diff_id hash) → gzip → (blob hash) → temp file, then renames it to its digest. */
async function writeLayer(
  dir: string,
  seed: string,
  index: number,
  payloadSize: number,
): Promise<{ digest: string; size: number; diffId: string }> {
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  let size = 0;
  const temp = path.join(dir, 'blobs', `.tmp-${randomBytes(8).toString('hex')}`);
  const folder = `layer-${index}/`;
  const entries: TarEntry[] = [
    { name: folder, type: 'directory' },
    { name: `${folder}seed.txt`, type: 'file', size: Buffer.byteLength(seed) + 1, content: [Buffer.from(`${seed}\n`)] },
    { name: `${folder}payload.bin`, type: 'file', size: payloadSize, content: pseudoRandom(seed, payloadSize) },
  ];
  try {
    await pipeline(
      Readable.from(tar(entries)),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          diffHash.update(chunk);
          yield chunk;
        }
      },
      // Random data does not compress: stored deflate blocks are valid gzip and six times faster.
      createGzip({ level: 0 }),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          blobHash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(temp),
    );
    const digest = `sha256:${blobHash.digest('hex')}`;
    await rename(temp, layoutBlobPath(dir, digest));
    return { digest, size, diffId: `sha256:${diffHash.digest('hex')}` };
  } finally {
    await rm(temp, { force: true });
  }
}

async function writeBlob(dir: string, content: Buffer): Promise<string> {
  const digest = sha256(content);
  await writeFile(layoutBlobPath(dir, digest), content);
  return digest;
}

/** Deterministic bytes from a seed: AES-256-CTR over zeros, keyed by sha256(seed). Fast, and streamed. */
function* pseudoRandom(seed: string, size: number): Generator<Buffer> {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(64 * 1024);
  for (let left = size; left > 0; left -= zeros.length) {
    yield cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
  }
}

interface TarEntry {
  name: string;
  type: 'file' | 'directory';
  size?: number;
  content?: Iterable<Buffer>;
}

// POSIX ustar: a 512-byte header per entry, contents padded to 512, two zero blocks at the end.
function* tar(entries: TarEntry[]): Generator<Buffer> {
  for (const entry of entries) {
    const size = entry.size ?? 0;
    yield tarHeader(entry.name, entry.type, size);
    let written = 0;
    for (const chunk of entry.content ?? []) {
      written += chunk.length;
      yield chunk;
    }
    if (written !== size) throw new Error(`tar entry ${entry.name}: wrote ${written} bytes, header says ${size}`);
    if (size % 512 !== 0) yield Buffer.alloc(512 - (size % 512));
  }
  yield Buffer.alloc(1024);
}

function tarHeader(name: string, type: 'file' | 'directory', size: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name longer than 100 bytes: ${name}`);
  if (size >= 8 ** 11) throw new Error(`tar entry larger than ustar's 8 GiB limit: ${name}`);
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => header.write(value, offset, length, 'ascii');
  // Numeric fields: zero-padded octal, NUL-terminated.
  const octal = (offset: number, length: number, value: number) =>
    field(offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
  header.write(name, 0, 100, 'utf8');
  octal(100, 8, type === 'directory' ? 0o755 : 0o644); // mode
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, TAR_MTIME);
  field(148, 8, ' '.repeat(8)); // checksum is computed with its own field as spaces
  field(156, 1, type === 'directory' ? '5' : '0');
  field(257, 6, 'ustar\0');
  field(263, 2, '00');
  field(265, 32, 'root');
  field(297, 32, 'root');
  let checksum = 0;
  for (const byte of header) checksum += byte;
  field(148, 8, checksum.toString(8).padStart(6, '0') + '\0 ');
  return header;
}

function descriptorOf(mediaType: string, content: Buffer, platform?: Platform): Descriptor {
  return { mediaType, digest: sha256(content), size: content.length, ...(platform && { platform: { ...platform } }) };
}

function sha256(content: Buffer): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

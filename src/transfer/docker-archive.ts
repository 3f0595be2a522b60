import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { createDigester, parseDigest } from '../oci/digest';
import { isIndexMediaType } from '../oci/media-types';
import { TransferError } from './errors';
import { SelectedRepository, Selection, selectRepositories } from './image-set';
import { ExportReport } from './oci-layout';
import { ExportManifest, StoredContent } from './stored-content';
import { writeTarFile } from './tar';

/*
 * `docker save`'s format, as `docker load` and skopeo's docker-archive: read it:
 *
 *   manifest.json             [{"Config":"<hex>.json","RepoTags":["name:tag"],"Layers":["<diff-id hex>/layer.tar",…]}]
 *   <config hex>.json         the image configuration, byte for byte
 *   <diff-id hex>/layer.tar   each layer uncompressed: its sha256 is the configuration's diff_id
 *
 * One platform per image: a multi-arch tag contributes the image for `platform`.
 */

export interface DockerArchiveOptions extends Selection {
  file: string;
  /** `os/architecture[/variant]`; linux/amd64 by default. */
  platform?: string;
}

interface ArchiveImage {
  repoTag: string;
  manifest: ExportManifest;
}

export async function exportDockerArchive(content: StoredContent, options: DockerArchiveOptions): Promise<ExportReport> {
  const platform = parsePlatform(options.platform ?? 'linux/amd64');
  const repositories = await selectRepositories(content, options);
  const images: ArchiveImage[] = [];
  for (const repository of repositories) {
    for (const [tag, digest] of repository.tags) {
      images.push({ repoTag: `${repository.name}:${tag}`, manifest: imageFor(repository, digest, platform, `${repository.name}:${tag}`) });
    }
  }
  const target = path.resolve(options.file);
  let bytes = 0;
  await writeTarFile(target, async (tar, temporary) => {
    // Layers are gunzipped here on their way into the archive, beside it, and removed after.
    const layersDir = `${temporary}.layers`;
    await fsp.mkdir(layersDir);
    try {
      const written = new Set<string>();
      const entries: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
      for (const image of images) {
        const repository = repositories.find((candidate) => image.repoTag.startsWith(`${candidate.name}:`))!;
        const configDescriptor = image.manifest.parsed.blobs[0];
        const config = repository.blobs.get(configDescriptor.digest);
        if (!config) throw new TransferError(`${image.repoTag}: its configuration ${configDescriptor.digest} is not in this registry`);
        const configJson = JSON.parse(await fsp.readFile(config.file, 'utf8')) as { rootfs?: { diff_ids?: string[] } };
        const diffIds = configJson.rootfs?.diff_ids ?? [];
        const layers = image.manifest.parsed.blobs.slice(1);
        if (diffIds.length !== layers.length) throw new TransferError(`${image.repoTag}: the configuration lists ${diffIds.length} diff_ids for ${layers.length} layers`);
        const configName = `${parseDigest(configDescriptor.digest)!.hex}.json`;
        if (!written.has(configName)) {
          await tar.addFile(configName, config.file, config.size);
          written.add(configName);
          bytes += config.size;
        }
        const layerNames: string[] = [];
        for (const [n, layer] of layers.entries()) {
          const diffId = diffIds[n];
          const name = `${parseDigest(diffId)?.hex ?? ''}/layer.tar`;
          if (parseDigest(diffId) === null) throw new TransferError(`${image.repoTag}: diff_ids[${n}] is not a digest`);
          layerNames.push(name);
          if (written.has(name)) continue;
          const stored = repository.blobs.get(layer.digest);
          if (!stored) throw new TransferError(`${image.repoTag}: layer ${layer.digest} is not in this registry`);
          const uncompressed = await uncompressedLayer(stored.file, layer.mediaType, diffId, layersDir, `${image.repoTag} layer ${layer.digest}`);
          await tar.addFile(name, uncompressed.file, uncompressed.size);
          if (uncompressed.file !== stored.file) await fsp.rm(uncompressed.file, { force: true });
          written.add(name);
          bytes += uncompressed.size;
        }
        const existing = entries.find((entry) => entry.Config === configName && entry.Layers.join() === layerNames.join());
        if (existing) existing.RepoTags.push(image.repoTag);
        else entries.push({ Config: configName, RepoTags: [image.repoTag], Layers: layerNames });
      }
      const manifestJson = Buffer.from(JSON.stringify(entries));
      await tar.addFile('manifest.json', manifestJson, manifestJson.length);
    } finally {
      await fsp.rm(layersDir, { recursive: true, force: true });
    }
  });
  return {
    target,
    repositories: repositories.map((repository) => repository.name),
    tags: images.length,
    manifests: images.length,
    blobs: new Set(images.flatMap((image) => image.manifest.parsed.blobs.map((blob) => blob.digest))).size,
    bytes,
  };
}

function parsePlatform(value: string): { os: string; architecture: string; variant?: string } {
  const [os, architecture, variant] = value.split('/');
  if (!os || !architecture) throw new TransferError(`--platform ${value}: expected OS/ARCH[/VARIANT], e.g. linux/amd64`);
  return { os, architecture, variant };
}

/** The single-platform image a tag stands for: itself, or its index's entry for `platform`. */
function imageFor(
  repository: SelectedRepository,
  digest: string,
  platform: { os: string; architecture: string; variant?: string },
  reference: string,
): ExportManifest {
  const manifest = repository.manifests.get(digest);
  if (!manifest) throw new TransferError(`${reference}: manifest ${digest} is not in this registry`);
  if (!isIndexMediaType(manifest.mediaType)) return manifest;
  const matching = manifest.parsed.manifests.filter((child) => {
    const childPlatform = (child.platform ?? {}) as { os?: string; architecture?: string; variant?: string };
    return (
      childPlatform.os === platform.os &&
      childPlatform.architecture === platform.architecture &&
      (platform.variant === undefined || childPlatform.variant === platform.variant)
    );
  });
  if (matching.length === 0) throw new TransferError(`${reference}: no image for ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''} in its index (--platform chooses another)`);
  return imageFor(repository, matching[0].digest, platform, reference);
}

/**
 * The layer as an uncompressed tar whose sha256 is `diffId`: the stored file itself when it is one, or
 * a gunzipped copy in `scratch` (streamed and hashed on the way; the tar header needs its size first).
 */
async function uncompressedLayer(file: string, mediaType: string, diffId: string, scratch: string, what: string): Promise<{ file: string; size: number }> {
  const gzip = /gzip$/.test(mediaType);
  if (!gzip && /(zstd|bzip2|xz)$/.test(mediaType)) throw new TransferError(`${what}: ${mediaType} layers cannot go into a docker save archive here (only gzip or uncompressed)`);
  const target = gzip ? path.join(scratch, randomUUID()) : file;
  const hash = createDigester('sha256');
  let size = 0;
  const source = fs.createReadStream(file, { highWaterMark: 1024 * 1024 });
  const count = async function* (chunks: AsyncIterable<Buffer>) {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
      if (gzip) yield chunk;
    }
  };
  if (gzip) await pipeline(source, createGunzip(), count, fs.createWriteStream(target));
  else await pipeline(source, count, async function* (chunks: AsyncIterable<Buffer>) { for await (const chunk of chunks) void chunk; });
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== diffId) throw new TransferError(`${what}: uncompressed it hashes to ${actual}, not to its diff_id ${diffId}`);
  return { file: target, size };
}

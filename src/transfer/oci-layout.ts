import path from 'node:path';
import { parseDigest } from '../oci/digest';
import { Descriptor } from '../oci/manifest';
import { MediaType } from '../oci/media-types';
import { TransferError } from './errors';
import { placeContent, placeStoreFile } from './files';
import { SelectedRepository, Selection, describeMissing, selectRepositories } from './image-set';
import { StoredContent } from './stored-content';
import { writeTarFile } from './tar';

/** image-spec annotations: the tag (or a whole reference), and the full name containerd and Docker use. */
export const REF_NAME = 'org.opencontainers.image.ref.name';
export const IMAGE_NAME = 'io.containerd.image.name';
export const LAYOUT_VERSION = JSON.stringify({ imageLayoutVersion: '1.0.0' });

export interface ExportReport {
  target: string;
  repositories: string[];
  tags: number;
  manifests: number;
  blobs: number;
  bytes: number;
}

export function describeExport(report: ExportReport): string {
  return (
    `exported ${report.repositories.length} repositories, ${report.tags} tags, ${report.manifests} manifests, ` +
    `${report.blobs} blobs (${report.bytes} bytes) to ${report.target}\n`
  );
}

/** Everything selected must be here: an archive with a hole cannot be imported on the other side. */
export function requireComplete(repositories: SelectedRepository[]): void {
  const incomplete = repositories.filter((repository) => repository.missing.length > 0);
  if (incomplete.length > 0) {
    throw new TransferError(`the registry does not hold everything these images need:\n${incomplete.map(describeMissing).join('\n')}`);
  }
}

/** `<alg>/<hex>` under blobs/, as the image layout names content. */
export function layoutBlobPath(digest: string): string {
  const parsed = parseDigest(digest)!;
  return `blobs/${parsed.algorithm}/${parsed.hex}`;
}

/**
 * One OCI image layout with the selected tags of every selected repository: index.json has one entry
 * per tag (ref.name is the tag when one repository is exported, `<name>:<tag>` otherwise; io.containerd.image.name
 * is always `<name>:<tag>`), multi-arch indexes whole, and referrers as unnamed entries (their `subject`
 * says what they belong to). A target ending in .tar is a tar of the layout, anything else a directory.
 */
export async function exportOciLayout(content: StoredContent, options: Selection & { target: string }): Promise<ExportReport> {
  const repositories = await selectRepositories(content, options);
  requireComplete(repositories);
  const files = new Map<string, { file: string; size: number }>();
  const entries: Descriptor[] = [];
  const single = repositories.length === 1;
  for (const repository of repositories) {
    for (const manifest of repository.manifests.values()) {
      files.set(layoutBlobPath(manifest.digest), { file: manifest.file, size: manifest.content.length });
    }
    for (const [digest, blob] of repository.blobs) files.set(layoutBlobPath(digest), blob);
    for (const [tag, digest] of repository.tags) {
      const manifest = repository.manifests.get(digest)!;
      entries.push({
        mediaType: manifest.mediaType,
        digest,
        size: manifest.content.length,
        annotations: { [IMAGE_NAME]: `${repository.name}:${tag}`, [REF_NAME]: single ? tag : `${repository.name}:${tag}` },
      });
    }
    const tagged = new Set(repository.tags.values());
    for (const manifest of repository.manifests.values()) {
      if (manifest.parsed.subject && !tagged.has(manifest.digest)) {
        entries.push({ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.content.length });
      }
    }
  }
  const index = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries });
  const target = path.resolve(options.target);
  if (target.endsWith('.tar')) {
    await writeTarFile(target, async (tar) => {
      await tar.addFile('oci-layout', Buffer.from(LAYOUT_VERSION), Buffer.byteLength(LAYOUT_VERSION));
      await tar.addFile('index.json', Buffer.from(index), Buffer.byteLength(index));
      for (const [name, { file, size }] of files) await tar.addFile(name, file, size);
    });
  } else {
    for (const [name, { file }] of files) await placeStoreFile(file, path.join(target, name), true);
    await placeContent(path.join(target, 'oci-layout'), LAYOUT_VERSION);
    await placeContent(path.join(target, 'index.json'), index);
  }
  return {
    target,
    repositories: repositories.map((repository) => repository.name),
    tags: entries.filter((entry) => entry.annotations).length,
    manifests: repositories.reduce((sum, repository) => sum + repository.manifests.size, 0),
    blobs: files.size,
    bytes: [...files.values()].reduce((sum, file) => sum + file.size, 0),
  };
}

import { Descriptor } from '../oci/manifest';
import { isValidName } from '../oci/names';
import type { FilesystemBlobStore } from '../storage/filesystem-blob-store';
import { TransferError } from './errors';
import { ExportManifest, StoredContent } from './stored-content';

/** What an export takes: repositories by name (all by default) and tags by glob pattern (all by default). */
export interface Selection {
  repositories?: string[];
  /** Globs over tag names: `*` any run of characters, `?` one character. */
  tagPatterns?: string[];
}

/** One repository's selected tags and everything they need: child manifests, blobs, referrers. */
export interface SelectedRepository {
  name: string;
  store: FilesystemBlobStore;
  /** Tag → manifest digest, sorted by tag. */
  tags: Map<string, string>;
  /** Every manifest to export by digest: tagged ones, their children, and referrers of any of them. */
  manifests: Map<string, ExportManifest>;
  /** Config and layer blobs by digest, with their size and store file. */
  blobs: Map<string, { size: number; file: string }>;
  /** Referrers (dist-spec `subject`) of each exported manifest that has any. */
  referrers: Map<string, Descriptor[]>;
  /** Content named by an exported manifest that this registry does not hold (a cache not pulled in full). */
  missing: Array<{ digest: string; neededBy: string; what: 'manifest' | 'blob' }>;
}


export function tagMatcher(patterns: string[] | undefined): (tag: string) => boolean {
  if (!patterns || patterns.length === 0) return () => true;
  const expressions = patterns.map(
    (pattern) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`),
  );
  return (tag) => expressions.some((expression) => expression.test(tag));
}

/** Resolves a selection against the index and walks each tag's manifests, blobs and referrers. */
export async function selectRepositories(content: StoredContent, selection: Selection): Promise<SelectedRepository[]> {
  const stored = await content.repositories();
  const names = selection.repositories && selection.repositories.length > 0 ? [...new Set(selection.repositories)].sort() : stored;
  for (const name of names) {
    if (!isValidName(name)) throw new TransferError(`not a repository name: ${JSON.stringify(name)}`);
    if (!stored.includes(name)) throw new TransferError(`no repository ${name} in this registry`);
  }
  const matches = tagMatcher(selection.tagPatterns);
  const selected: SelectedRepository[] = [];
  for (const name of names) {
    const tags = new Map([...(await content.tags(name))].filter(([tag]) => matches(tag)));
    if (tags.size === 0 && selection.tagPatterns && selection.tagPatterns.length > 0) continue;
    selected.push(await walkRepository(content, name, tags));
  }
  if (selected.every((repository) => repository.tags.size === 0)) {
    throw new TransferError(`no tag matches ${(selection.tagPatterns ?? ['*']).join(', ')} in ${names.join(', ') || 'this registry'}`);
  }
  return selected;
}

async function walkRepository(content: StoredContent, name: string, tags: Map<string, string>): Promise<SelectedRepository> {
  const store = content.storeFor(name);
  const repository: SelectedRepository = {
    name,
    store,
    tags,
    manifests: new Map(),
    blobs: new Map(),
    referrers: new Map(),
    missing: [],
  };
  const pending: Array<{ digest: string; neededBy: string }> = [...new Set(tags.values())].map((digest) => ({ digest, neededBy: name }));
  while (pending.length > 0) {
    const { digest, neededBy } = pending.pop()!;
    if (repository.manifests.has(digest)) continue;
    const manifest = await content.manifest(name, digest);
    if (!manifest) {
      repository.missing.push({ digest, neededBy, what: 'manifest' });
      continue;
    }
    repository.manifests.set(digest, manifest);
    for (const child of manifest.parsed.manifests) pending.push({ digest: child.digest, neededBy: digest });
    for (const blob of manifest.parsed.blobs) {
      if (repository.blobs.has(blob.digest)) continue;
      const size = await store.size(blob.digest);
      if (size === null || size !== blob.size) repository.missing.push({ digest: blob.digest, neededBy: digest, what: 'blob' });
      else repository.blobs.set(blob.digest, { size, file: store.path(blob.digest) });
    }
    const referrers = await content.referrers(name, digest);
    if (referrers.length > 0) repository.referrers.set(digest, referrers);
    for (const referrer of referrers) pending.push({ digest: referrer.digest, neededBy: digest });
  }
  return repository;
}

export function describeMissing(repository: SelectedRepository): string {
  return repository.missing.map((entry) => `${repository.name}: ${entry.what} ${entry.digest} (needed by ${entry.neededBy})`).join('\n');
}

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createDigester, digestOf, parseDigest } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { Descriptor, ManifestParseError, ParsedManifest, parseManifest } from '../oci/manifest';
import { MediaType } from '../oci/media-types';
import { isValidName, isValidTag } from '../oci/names';
import { readAtMost } from '../streams';
import { newManifest } from '../storage/repository';
import { TransferError } from './errors';
import { IMAGE_NAME, REF_NAME, layoutBlobPath } from './oci-layout';
import { StoredContent } from './stored-content';
import { TarEntry, readTar } from './tar';

/*
 * Import, in two phases, so that bad input leaves nothing half-imported in the index:
 *  1. Stage: every file of the archive (or directory) streams into the hosted blob store, hashed on the
 *     way; a file named blobs/<alg>/<hex> must hash to that digest. Content already stored is hashed
 *     and not rewritten. The small metadata files (index.json, manifest.json) are kept in memory.
 *  2. Plan, then commit: manifests are read back, parsed and checked (every blob and child present,
 *     sizes as the descriptors say), and only then one SQLite transaction links the blobs, stores the
 *     manifests children first (with the same requireChildren check as a push) and sets the tags.
 * A failure before the transaction leaves only store files no repository uses, which garbage collection
 * removes after its grace period, as it does for an abandoned push. Blob writes record themselves in
 * the index before their rename, and the transaction checks every file is still there: safe beside a
 * running server and its garbage collection.
 */

export interface ImportOptions {
  /** An OCI image layout (directory or tar), or a `docker save` archive. */
  source: string;
  /** `NAME` or `NAME:TAG`: the repository (and tag) to store the images under. */
  to?: string;
}

export interface ImportReport {
  format: 'oci-layout' | 'docker-archive';
  images: Array<{ repository: string; tag: string | null; digest: string }>;
  /** Manifests, blob links and tags this import added or changed (0 when it was all there already). */
  changes: number;
}

export function describeImport(report: ImportReport): string {
  const lines = report.images.map((image) => `  ${image.repository}${image.tag === null ? '' : `:${image.tag}`} ${image.digest}`);
  return `imported ${report.images.length} images from a${report.format === 'oci-layout' ? 'n OCI image layout' : ' docker save archive'} (${report.changes === 0 ? 'all already present, nothing changed' : `${report.changes} changes`}):\n${lines.join('\n')}\n`;
}

const METADATA_FILES = new Set(['index.json', 'oci-layout', 'manifest.json', 'repositories']);
const MAX_METADATA = 64 * 1024 * 1024;
const MAX_LINK_HOPS = 40;

interface StagedFile {
  digest: string;
  size: number;
}

/** What phase 1 leaves: the archive's files by path (in the store now), links, and its metadata. */
interface Staged {
  files: Map<string, StagedFile>;
  links: Map<string, string>;
  metadata: Map<string, Buffer>;
}

/** A manifest to store: its bytes are in the hosted store already. */
interface PlannedManifest {
  digest: string;
  content: Buffer;
  parsed: ParsedManifest;
}

interface PlannedRepository {
  blobs: Map<string, number>;
  /** Children before parents. */
  manifests: Map<string, PlannedManifest>;
  tags: Map<string, string>;
}

export async function importImages(content: StoredContent, options: ImportOptions): Promise<ImportReport> {
  const target = parseTarget(options.to);
  const staged = await stage(content, options.source);
  const format = staged.metadata.has('index.json') ? 'oci-layout' : staged.metadata.has('manifest.json') ? 'docker-archive' : null;
  if (format === null) {
    throw new TransferError(`${options.source} is neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)`);
  }
  const plan = new Map<string, PlannedRepository>();
  const images: ImportReport['images'] = [];
  if (format === 'oci-layout') await planOciLayout(content, staged, target, plan, images);
  else await planDockerArchive(content, staged, target, plan, images);
  return { format, images, changes: await commit(content, plan) };
}

function parseTarget(to: string | undefined): { name: string; tag?: string } | undefined {
  if (to === undefined) return undefined;
  const colon = to.lastIndexOf(':');
  const [name, tag] = colon > to.lastIndexOf('/') ? [to.slice(0, colon), to.slice(colon + 1)] : [to, undefined];
  if (!isValidName(name)) throw new TransferError(`--to ${to}: not a repository name`);
  if (tag !== undefined && !isValidTag(tag)) throw new TransferError(`--to ${to}: not a tag`);
  return { name, tag };
}

// --- phase 1: staging --------------------------------------------------------------------------

async function stage(content: StoredContent, source: string): Promise<Staged> {
  let stat: fs.Stats;
  try {
    stat = await fsp.stat(source);
  } catch {
    throw new TransferError(`${source}: no such file or directory`);
  }
  const staged: Staged = { files: new Map(), links: new Map(), metadata: new Map() };
  const entries = stat.isDirectory() ? walkDirectory(source) : readTar(fs.createReadStream(source, { highWaterMark: 1024 * 1024 }));
  for await (const entry of entries) {
    const name = insideRoot(entry.name, entry.name);
    if (entry.type === 'symlink') {
      if (entry.linkName.startsWith('/')) throw new TransferError(`${entry.name}: a symbolic link to ${entry.linkName}, outside the archive`);
      staged.links.set(name, insideRoot(path.posix.join(path.posix.dirname(name), entry.linkName), entry.name));
    } else if (entry.type === 'hardlink') {
      staged.links.set(name, insideRoot(entry.linkName, entry.name));
    } else if (entry.type === 'file') {
      if (METADATA_FILES.has(name)) {
        const bytes = await readAtMost(entry.body, MAX_METADATA);
        if (!bytes) throw new TransferError(`${name}: larger than ${MAX_METADATA} bytes`);
        staged.metadata.set(name, bytes);
      } else {
        staged.files.set(name, await stageFile(content, name, entry.body));
      }
    }
  }
  return staged;
}

/** The entry's path relative to the archive's root; a TransferError when it would leave the root. */
function insideRoot(name: string, entry: string): string {
  const normalized = path.posix.normalize(name).replace(/\/+$/, '');
  if (name.startsWith('/') || normalized === '..' || normalized.startsWith('../')) {
    throw new TransferError(`${entry}: a path outside the archive's root (${name})`);
  }
  return normalized;
}

/** Streams one file into the hosted store; blobs/<alg>/<hex> must hash to its name. */
async function stageFile(content: StoredContent, name: string, body: AsyncIterable<Buffer>): Promise<StagedFile> {
  const match = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
  const expected = match ? `${match[1]}:${match[2]}` : undefined;
  if (expected !== undefined && parseDigest(expected) === null) throw new TransferError(`${name}: not a valid digest in a blob's name`);
  const store = content.hosted;
  const existing = expected === undefined ? null : await store.size(expected);
  try {
    if (expected !== undefined && existing !== null) {
      // Already stored: hash without rewriting (a static export's hard links stay the same files).
      const hash = createDigester(parseDigest(expected)!.algorithm);
      let size = 0;
      for await (const chunk of body) {
        hash.update(chunk);
        size += chunk.length;
      }
      const actual = `${parseDigest(expected)!.algorithm}:${hash.digest('hex')}`;
      if (actual !== expected) throw new RegistryError('DIGEST_INVALID', { detail: { expected, actual } });
      // Tells a running garbage collection that this file is wanted again (gc.ts: written since the cutoff).
      await content.index.recordBlobWrite(expected, size);
      return { digest: expected, size };
    }
    return await store.write(Readable.from(body), { expectedDigest: expected });
  } catch (error) {
    if (error instanceof RegistryError && error.code === 'DIGEST_INVALID') {
      const detail = error.detail as { actual: string };
      throw new TransferError(`${name}: its content hashes to ${detail.actual}, not to the digest its name says`);
    }
    throw error;
  }
}

/** A directory's files as tar entries would list them (symbolic links as links, not followed). */
async function* walkDirectory(root: string, relative = ''): AsyncGenerator<TarEntry> {
  for (const entry of await fsp.readdir(path.join(root, relative), { withFileTypes: true })) {
    const name = relative === '' ? entry.name : `${relative}/${entry.name}`;
    const full = path.join(root, name);
    if (entry.isDirectory()) yield* walkDirectory(root, name);
    else if (entry.isSymbolicLink()) yield { name, type: 'symlink', size: 0, linkName: await fsp.readlink(full), body: emptyBody() };
    else if (entry.isFile()) {
      const { size } = await fsp.stat(full);
      yield { name, type: 'file', size, linkName: '', body: fs.createReadStream(full, { highWaterMark: 1024 * 1024 }) };
    }
  }
}

async function* emptyBody(): AsyncGenerator<Buffer> {}

/** The staged file at an archive path, following links; undefined when the archive has none there. */
function lookup(staged: Staged, name: string): StagedFile | undefined {
  let current = path.posix.normalize(name);
  for (let hop = 0; hop < MAX_LINK_HOPS; hop++) {
    const file = staged.files.get(current);
    if (file) return file;
    const next = staged.links.get(current);
    if (next === undefined) return undefined;
    current = next;
  }
  throw new TransferError(`${name}: too many levels of links`);
}

function metadataJson(staged: Staged, name: string): unknown {
  try {
    return JSON.parse(staged.metadata.get(name)!.toString('utf8'));
  } catch {
    throw new TransferError(`${name} is not valid JSON`);
  }
}

// --- phase 2: plans --------------------------------------------------------------------------

function repositoryPlan(plan: Map<string, PlannedRepository>, name: string): PlannedRepository {
  let repository = plan.get(name);
  if (!repository) plan.set(name, (repository = { blobs: new Map(), manifests: new Map(), tags: new Map() }));
  return repository;
}

/** A manifest the archive holds, read back from the store and checked against its descriptor. */
async function readStagedManifest(content: StoredContent, staged: Staged, descriptor: Descriptor, neededBy: string): Promise<PlannedManifest> {
  const file = lookup(staged, layoutBlobPath(descriptor.digest));
  if (!file) throw new TransferError(`${neededBy} references manifest ${descriptor.digest}, which the archive does not contain`);
  if (file.size !== descriptor.size) {
    throw new TransferError(`${layoutBlobPath(descriptor.digest)}: ${file.size} bytes, but ${neededBy} says ${descriptor.size}`);
  }
  if (file.size > content.maxManifestSize) throw new TransferError(`${layoutBlobPath(descriptor.digest)}: a manifest larger than max_manifest_size`);
  const bytes = await content.hosted.readAll(descriptor.digest);
  if (digestOf(bytes, parseDigest(descriptor.digest)!.algorithm) !== descriptor.digest) {
    throw new TransferError(`${layoutBlobPath(descriptor.digest)}: changed in the store while importing`);
  }
  try {
    return { digest: descriptor.digest, content: bytes, parsed: parseManifest(bytes, descriptor.mediaType) };
  } catch (error) {
    if (error instanceof ManifestParseError) throw new TransferError(`${layoutBlobPath(descriptor.digest)}: not a manifest this registry stores: ${error.message}`);
    throw error;
  }
}

/** Adds a manifest and everything under it (children first) to a repository's plan. */
async function planManifest(
  content: StoredContent,
  staged: Staged,
  repository: PlannedRepository,
  descriptor: Descriptor,
  neededBy: string,
): Promise<PlannedManifest> {
  const existing = repository.manifests.get(descriptor.digest);
  if (existing) return existing;
  const manifest = await readStagedManifest(content, staged, descriptor, neededBy);
  const where = layoutBlobPath(descriptor.digest);
  for (const child of manifest.parsed.manifests) await planManifest(content, staged, repository, child, where);
  for (const blob of manifest.parsed.blobs) {
    const file = lookup(staged, layoutBlobPath(blob.digest));
    if (!file) throw new TransferError(`${where} references blob ${blob.digest}, which the archive does not contain`);
    if (file.size !== blob.size) throw new TransferError(`${layoutBlobPath(blob.digest)}: ${file.size} bytes, but ${where} says ${blob.size}`);
    repository.blobs.set(blob.digest, file.size);
  }
  repository.manifests.set(manifest.digest, manifest);
  return manifest;
}

/** `registry.example.com:5000/team/app:1` → team/app and 1; a bare tag → only the tag. */
function parseReference(reference: string): { name?: string; tag?: string } {
  const withoutDigest = reference.split('@')[0];
  const colon = withoutDigest.lastIndexOf(':');
  const hasTag = colon > withoutDigest.lastIndexOf('/');
  const name = hasTag ? withoutDigest.slice(0, colon) : withoutDigest;
  const tag = hasTag ? withoutDigest.slice(colon + 1) : undefined;
  if (!name.includes('/') && !hasTag) return isValidTag(name) ? { tag: name } : {};
  const components = name.split('/');
  // As Docker reads references: a first component with a dot or a port, or localhost, is a registry host.
  if (components.length > 1 && (/[.:]/.test(components[0]) || components[0] === 'localhost')) components.shift();
  const repository = components.join('/');
  return { name: isValidName(repository) ? repository : undefined, tag: tag !== undefined && isValidTag(tag) ? tag : undefined };
}

async function planOciLayout(
  content: StoredContent,
  staged: Staged,
  target: { name: string; tag?: string } | undefined,
  plan: Map<string, PlannedRepository>,
  images: ImportReport['images'],
): Promise<void> {
  const index = metadataJson(staged, 'index.json') as { manifests?: unknown };
  if (!Array.isArray(index.manifests)) throw new TransferError('index.json has no manifests array');
  let parsedIndex: ParsedManifest;
  try {
    parsedIndex = parseManifest(staged.metadata.get('index.json')!, MediaType.OciIndex);
  } catch (error) {
    throw new TransferError(`index.json: ${(error as Error).message}`);
  }
  const named = parsedIndex.manifests.map((descriptor) => {
    const annotations = descriptor.annotations ?? {};
    const fromImageName = annotations[IMAGE_NAME] ? parseReference(annotations[IMAGE_NAME]) : {};
    const fromRefName = annotations[REF_NAME] ? parseReference(annotations[REF_NAME]) : {};
    return { descriptor, name: fromImageName.name ?? fromRefName.name, tag: fromRefName.tag ?? fromImageName.tag };
  });
  const tagged = named.filter((entry) => entry.tag !== undefined || entry.name !== undefined);
  if (target?.tag !== undefined && tagged.length > 1) {
    throw new TransferError(`--to ${target.name}:${target.tag} names one image, but index.json has ${tagged.length}: give --to ${target.name}`);
  }
  const unnamed: Descriptor[] = [];
  for (const entry of named) {
    const name = target?.name ?? entry.name;
    if (entry.tag === undefined && entry.name === undefined) {
      unnamed.push(entry.descriptor);
      continue;
    }
    if (name === undefined) {
      throw new TransferError(`index.json entry ${entry.descriptor.digest} (${entry.tag ?? 'untagged'}) names no repository: give --to NAME`);
    }
    const repository = repositoryPlan(plan, name);
    await planManifest(content, staged, repository, entry.descriptor, 'index.json');
    const tag = target?.tag ?? entry.tag;
    if (tag !== undefined) repository.tags.set(tag, entry.descriptor.digest);
    images.push({ repository: name, tag: tag ?? null, digest: entry.descriptor.digest });
  }
  // Entries without a name: referrers go where their subject goes; anything else needs --to.
  for (const descriptor of unnamed) {
    const manifest = await readStagedManifest(content, staged, descriptor, 'index.json');
    const subject = manifest.parsed.subject?.digest;
    const holders = [...plan.entries()].filter(([, repository]) => subject !== undefined && repository.manifests.has(subject));
    if (holders.length === 0 && target === undefined) {
      throw new TransferError(`index.json entry ${descriptor.digest} has no name (org.opencontainers.image.ref.name): give --to NAME`);
    }
    const names = holders.length > 0 ? holders.map(([name]) => name) : [target!.name];
    for (const name of names) {
      await planManifest(content, staged, repositoryPlan(plan, name), descriptor, 'index.json');
      images.push({ repository: name, tag: null, digest: descriptor.digest });
    }
  }
  if (images.length === 0) throw new TransferError('index.json lists no images');
}

/** docker save's manifest.json: one entry per image, with its config file, layer files and names. */
interface DockerArchiveEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

async function planDockerArchive(
  content: StoredContent,
  staged: Staged,
  target: { name: string; tag?: string } | undefined,
  plan: Map<string, PlannedRepository>,
  images: ImportReport['images'],
): Promise<void> {
  const entries = metadataJson(staged, 'manifest.json');
  if (!Array.isArray(entries) || entries.length === 0) throw new TransferError('manifest.json lists no images');
  if (target?.tag !== undefined && entries.length > 1) {
    throw new TransferError(`--to ${target.name}:${target.tag} names one image, but manifest.json has ${entries.length}: give --to ${target.name}`);
  }
  for (const [i, raw] of (entries as DockerArchiveEntry[]).entries()) {
    const where = `manifest.json[${i}]`;
    if (typeof raw?.Config !== 'string' || !Array.isArray(raw.Layers) || !raw.Layers.every((layer) => typeof layer === 'string')) {
      throw new TransferError(`${where}: needs Config and Layers`);
    }
    const config = lookup(staged, insideRoot(raw.Config, where));
    if (!config) throw new TransferError(`${where}: its config ${raw.Config} is not in the archive`);
    if (config.size > content.maxManifestSize * 16) throw new TransferError(`${raw.Config}: an image configuration of ${config.size} bytes`);
    let diffIds: unknown;
    try {
      diffIds = (JSON.parse((await content.hosted.readAll(config.digest)).toString('utf8')) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
    } catch {
      throw new TransferError(`${raw.Config}: not a JSON image configuration`);
    }
    if (!Array.isArray(diffIds) || diffIds.length !== raw.Layers.length) {
      throw new TransferError(`${raw.Config}: rootfs.diff_ids does not list the ${raw.Layers.length} layers manifest.json names`);
    }
    const layers: Descriptor[] = raw.Layers.map((layerPath, n) => {
      const layer = lookup(staged, insideRoot(layerPath, where));
      if (!layer) throw new TransferError(`${where}: layer ${layerPath} is not in the archive`);
      // docker save writes layers uncompressed: each one's sha256 is its diff_id in the configuration.
      if (layer.digest !== diffIds[n]) {
        throw new TransferError(`${layerPath}: hashes to ${layer.digest}, but the configuration's diff_ids[${n}] is ${String(diffIds[n])}`);
      }
      return { mediaType: DOCKER_UNCOMPRESSED_LAYER, digest: layer.digest, size: layer.size };
    });
    const manifestBytes = Buffer.from(
      JSON.stringify(
        {
          schemaVersion: 2,
          mediaType: MediaType.DockerManifest,
          config: { mediaType: DOCKER_CONFIG, size: config.size, digest: config.digest },
          layers,
        },
        null,
        3,
      ),
    );
    const written = await content.hosted.write(manifestBytes);
    const parsed = parseManifest(manifestBytes, MediaType.DockerManifest);
    const references = (raw.RepoTags ?? []).map(parseReference).filter((reference) => reference.name !== undefined);
    const names = target ? [{ name: target.name, tag: target.tag ?? references[0]?.tag }] : references;
    if (names.length === 0) throw new TransferError(`${where} has no RepoTags: give --to NAME[:TAG]`);
    for (const { name, tag } of names) {
      const repository = repositoryPlan(plan, name!);
      repository.blobs.set(config.digest, config.size);
      for (const layer of layers) repository.blobs.set(layer.digest, layer.size);
      repository.manifests.set(written.digest, { digest: written.digest, content: manifestBytes, parsed });
      if (tag !== undefined) repository.tags.set(tag, written.digest);
      images.push({ repository: name!, tag: tag ?? null, digest: written.digest });
    }
  }
}

const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_UNCOMPRESSED_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';

// --- phase 2: the commit ------------------------------------------------------------------------

/** One transaction: blob links, manifests (children first), tags. Returns how many rows it changed. */
function commit(content: StoredContent, plan: Map<string, PlannedRepository>): Promise<number> {
  const { hosted } = content;
  const now = Date.now();
  // Counted inside: the work runs again when PostgreSQL retries the transaction.
  return content.index.transaction(async (index) => {
    let changes = 0;
    for (const [name, repository] of plan) {
      for (const [digest, size] of repository.blobs) {
        requireFile(hosted.path(digest), digest);
        if ((await index.linkedBlobSize(name, digest)) !== null) continue;
        await index.linkBlob(name, digest, size, now);
        changes++;
      }
      for (const manifest of repository.manifests.values()) {
        requireFile(hosted.path(manifest.digest), manifest.digest);
        if (await index.manifest(name, manifest.digest)) continue;
        await index.putManifest(newManifest(name, manifest.digest, manifest.content, manifest.parsed), now, { requireChildren: true });
        changes++;
      }
      for (const [tag, digest] of repository.tags) {
        if ((await index.resolveTag(name, tag)) === digest) continue;
        const manifest = repository.manifests.get(digest)!;
        await index.putManifest(newManifest(name, digest, manifest.content, manifest.parsed, tag), now, { requireChildren: true });
        changes++;
      }
    }
    return changes;
  });
}

/**
 * Inside the transaction: a garbage collection that ran between staging and now may have moved the
 * file away (gc.ts re-checks in a transaction of its own after this one and puts back what is used).
 */
function requireFile(file: string, digest: string): void {
  if (!fs.existsSync(file)) {
    throw new TransferError(`${digest} left the store while importing (a garbage collection ran meanwhile): run the import again`);
  }
}


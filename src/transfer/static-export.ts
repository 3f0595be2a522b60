import path from 'node:path';
import { ERROR_CODES, ErrorCode } from '../oci/errors';
import { MediaType } from '../oci/media-types';
import { Placement, placeContent, placeStoreFile, removeOthers } from './files';
import { Selection, describeMissing, selectRepositories } from './image-set';
import { StoredContent } from './stored-content';

/*
 * A static tree that answers the read-only Distribution API (dist-spec "pull" and content discovery):
 *
 *   <DIR>/v2/_base.json                         GET /v2/ (the API version check): {}
 *   <DIR>/v2/_catalog                           GET /v2/_catalog
 *   <DIR>/v2/<name>/tags/list                   GET /v2/<name>/tags/list
 *   <DIR>/v2/<name>/manifests/<tag>             GET|HEAD by tag     } hard links to the store's files
 *   <DIR>/v2/<name>/manifests/<digest>          GET|HEAD by digest  } (copies across filesystems)
 *   <DIR>/v2/<name>/blobs/<digest>              GET|HEAD a blob     }
 *   <DIR>/v2/<name>/referrers/<digest>          GET the referrers API's image index
 * beside it:
 *   <DIR>.nginx.conf                            maps (URI → Content-Type, Docker-Content-Digest) and a server block
 *   <DIR>.s3-upload.sh                          the same tree to an S3-compatible bucket with per-object Content-Type
 *
 * Names that are not repository names (`_base.json`, `_catalog`) cannot collide: a name component starts
 * with [a-z0-9].
 */

export const API_VERSION = 'registry/2.0';
const BASE_FILE = 'v2/_base.json';

export interface StaticExportOptions extends Selection {
  dir: string;
}

export interface StaticExportReport {
  dir: string;
  nginxConfig: string;
  s3Script: string;
  repositories: string[];
  tags: number;
  manifests: number;
  blobs: number;
  placements: Record<Placement, number>;
  removed: string[];
  /** Content the exported manifests name that this registry does not hold (left out, with a warning). */
  missing: string;
}

/** One file of the tree: a store file (manifest or blob) or generated JSON. */
type TreeFile =
  | { kind: 'store'; source: string; digestNamed: boolean }
  | { kind: 'content'; content: string; contentType: string };

/** A manifest URI and what the static server must answer it with. */
interface ManifestRoute {
  uri: string;
  mediaType: string;
  digest: string;
}

export async function exportStatic(content: StoredContent, options: StaticExportOptions): Promise<StaticExportReport> {
  const dir = path.resolve(options.dir);
  const repositories = await selectRepositories(content, options);
  const files = new Map<string, TreeFile>();
  const routes: ManifestRoute[] = [];
  const json = (value: unknown, contentType = 'application/json'): TreeFile => ({
    kind: 'content',
    content: JSON.stringify(value),
    contentType,
  });

  files.set(BASE_FILE, json({}));
  files.set('v2/_catalog', json({ repositories: repositories.map((repository) => repository.name) }));
  for (const repository of repositories) {
    const root = `v2/${repository.name}`;
    files.set(`${root}/tags/list`, json({ name: repository.name, tags: [...repository.tags.keys()] }));
    for (const [tag, digest] of repository.tags) {
      const manifest = repository.manifests.get(digest);
      if (!manifest) continue;
      files.set(`${root}/manifests/${tag}`, { kind: 'store', source: manifest.file, digestNamed: false });
      routes.push({ uri: `/${root}/manifests/${tag}`, mediaType: manifest.mediaType, digest });
    }
    for (const manifest of repository.manifests.values()) {
      files.set(`${root}/manifests/${manifest.digest}`, { kind: 'store', source: manifest.file, digestNamed: true });
      routes.push({ uri: `/${root}/manifests/${manifest.digest}`, mediaType: manifest.mediaType, digest: manifest.digest });
      // dist-spec: the referrers API answers an image index, empty when nothing refers to the digest.
      const referrers = repository.referrers.get(manifest.digest) ?? [];
      files.set(
        `${root}/referrers/${manifest.digest}`,
        json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: referrers }, MediaType.OciIndex),
      );
    }
    for (const [digest, blob] of repository.blobs) {
      files.set(`${root}/blobs/${digest}`, { kind: 'store', source: blob.file, digestNamed: true });
    }
  }

  const placements: Record<Placement, number> = { linked: 0, copied: 0, written: 0, unchanged: 0 };
  for (const [relative, file] of files) {
    const target = path.join(dir, relative);
    const placement =
      file.kind === 'store' ? await placeStoreFile(file.source, target, file.digestNamed) : await placeContent(target, file.content);
    placements[placement]++;
  }
  const removed = await removeOthers(path.join(dir, 'v2'), new Set([...files.keys()].map((relative) => relative.slice('v2/'.length))));

  const nginxConfig = `${dir}.nginx.conf`;
  const s3Script = `${dir}.s3-upload.sh`;
  await placeContent(nginxConfig, nginxConfiguration(dir, routes));
  await placeContent(s3Script, s3UploadScript(dir, files, routes));
  return {
    dir,
    nginxConfig,
    s3Script,
    repositories: repositories.map((repository) => repository.name),
    tags: repositories.reduce((sum, repository) => sum + repository.tags.size, 0),
    manifests: repositories.reduce((sum, repository) => sum + repository.manifests.size, 0),
    blobs: repositories.reduce((sum, repository) => sum + repository.blobs.size, 0),
    placements,
    removed,
    missing: repositories.filter((repository) => repository.missing.length > 0).map(describeMissing).join('\n'),
  };
}

export function describeStaticExport(report: StaticExportReport): string {
  const { linked, copied, written, unchanged } = report.placements;
  const lines = [
    `exported ${report.repositories.length} repositories, ${report.tags} tags, ${report.manifests} manifests, ${report.blobs} blobs to ${report.dir}`,
    `  files: ${linked} hard-linked, ${copied} copied, ${written} written, ${unchanged} unchanged, ${report.removed.length} removed`,
    `  nginx configuration: ${report.nginxConfig}`,
    `  S3 upload script: ${report.s3Script}`,
  ];
  if (report.missing !== '') lines.push(`warning: not in this registry, so not exported:\n${report.missing}`);
  return `${lines.join('\n')}\n`;
}

// --- nginx -------------------------------------------------------------------------------------

function errorBody(code: ErrorCode): string {
  return JSON.stringify({ errors: [{ code, message: ERROR_CODES[code].message }] });
}

/** nginx string literal: single-quoted, with ' and \ escaped. */
function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * The nginx configuration for the tree: two maps generated from the export (manifest URI → the internal
 * location that serves it with its media type, and → its digest), then one server block.
 * `default_type` takes no variables, so each media type gets an internal location of its own.
 */
export function nginxConfiguration(dir: string, routes: ManifestRoute[]): string {
  const mediaTypes = [...new Set(routes.map((route) => route.mediaType))].sort();
  const typeLocation = (mediaType: string) => `/_manifest/${mediaTypes.indexOf(mediaType)}`;
  const common = [
    `        add_header Docker-Distribution-Api-Version ${API_VERSION} always;`,
  ];
  const errorLocation = (name: string, code: ErrorCode) =>
    [
      `    location @${name} {`,
      '        default_type application/json;',
      ...common,
      `        return 404 ${quote(errorBody(code))};`,
      '    }',
    ].join('\n');
  const lines = [
    `# Generated by \`registry export --static ${dir}\`; a re-run rewrites it. For nginx's http {} context`,
    '# (Debian: /etc/nginx/conf.d/). It serves the read-only Distribution API from the exported tree: set',
    '# `listen` (and TLS, server_name) to yours; docs/export-import.md has the recipe.',
    '',
    '# Manifest URIs are long: the map hash needs larger buckets than the default 64 bytes. (If your http {}',
    '# already sets these, keep the larger values and delete these two lines.)',
    'map_hash_bucket_size 256;',
    `map_hash_max_size ${Math.max(2048, routes.length * 2)};`,
    '',
    '# Manifest URI → the internal location serving it with its media type as Content-Type.',
    'map $uri $registry_static_manifest_location {',
    "    default '';",
    ...routes.map((route) => `    ${quote(route.uri)} ${quote(typeLocation(route.mediaType))};`),
    '}',
    '',
    '# Manifest URI → Docker-Content-Digest.',
    'map $uri $registry_static_manifest_digest {',
    "    default '';",
    ...routes.map((route) => `    ${quote(route.uri)} ${quote(route.digest)};`),
    '}',
    '',
    'server {',
    '    listen 80;',
    `    root ${quote(dir)};`,
    '    # ETag is the digest, as the registry sends it; nginx would make one of mtime and size.',
    '    etag off;',
    ...common.map((line) => line.slice(4)),
    '',
    '    # A read-only registry: pushes and deletes are refused as the spec says (405 UNSUPPORTED).',
    '    if ($request_method !~ ^(GET|HEAD)$) {',
    `        return 405 ${quote(errorBody('UNSUPPORTED'))};`,
    '    }',
    '',
    '    location = /v2/ {',
    '        default_type application/json;',
    ...common,
    `        try_files /${BASE_FILE} =404;`,
    '    }',
    '    location = /v2/_catalog {',
    '        types { }',
    '        default_type application/json;',
    ...common,
    '    }',
    '    location ~ ^/v2/.+/tags/list$ {',
    '        types { }',
    '        default_type application/json;',
    ...common,
    '        error_page 404 = @name_unknown;',
    '    }',
    '    location ~ ^/v2/.+/referrers/[^/]+$ {',
    '        types { }',
    `        default_type ${MediaType.OciIndex};`,
    ...common,
    '        error_page 404 = @manifest_unknown;',
    '    }',
    '    location ~ ^/v2/.+/blobs/(?<registry_static_blob_digest>[a-z0-9]+:[a-f0-9]+)$ {',
    '        types { }',
    '        default_type application/octet-stream;',
    ...common,
    '        add_header Docker-Content-Digest $registry_static_blob_digest always;',
    '        add_header ETag \'"$registry_static_blob_digest"\';',
    '        # Content-addressed: a digest\'s bytes never change.',
    "        add_header Cache-Control 'max-age=31536000';",
    '        error_page 404 = @blob_unknown;',
    '    }',
    '    location ~ ^/v2/.+/manifests/[^/]+$ {',
    '        # Looked up on the URI as requested, before the rewrite below changes $uri.',
    '        set $registry_static_digest $registry_static_manifest_digest;',
    '        default_type application/json;',
    ...common,
    "        if ($registry_static_manifest_location = '') {",
    `            return 404 ${quote(errorBody('MANIFEST_UNKNOWN'))};`,
    '        }',
    '        rewrite ^ $registry_static_manifest_location$uri last;',
    '    }',
    ...mediaTypes.flatMap((mediaType) => [
      `    location ^~ ${typeLocation(mediaType)}/ {`,
      '        internal;',
      `        alias ${quote(`${dir}/`)};`,
      '        types { }',
      `        default_type ${mediaType};`,
      ...common,
      '        add_header Docker-Content-Digest $registry_static_digest always;',
      '        add_header ETag \'"$registry_static_digest"\';',
      '        error_page 404 = @manifest_unknown;',
      '    }',
    ]),
    '    location / {',
    '        default_type application/json;',
    ...common,
    `        return 404 ${quote(errorBody('NAME_UNKNOWN'))};`,
    '    }',
    errorLocation('manifest_unknown', 'MANIFEST_UNKNOWN'),
    errorLocation('blob_unknown', 'BLOB_UNKNOWN'),
    errorLocation('name_unknown', 'NAME_UNKNOWN'),
    '}',
    '',
  ];
  return lines.join('\n');
}

// --- S3 ----------------------------------------------------------------------------------------

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * A shell script that uploads the tree to an S3-compatible bucket with the AWS CLI: every manifest and
 * JSON answer with its Content-Type and its digest as metadata, blobs by `sync` (only new ones travel),
 * then a `sync --delete` that removes what the export removed. S3 serves `x-amz-meta-docker-content-digest`,
 * not `Docker-Content-Digest`, and its 404s are XML: docs/export-import.md says what that means for clients.
 */
export function s3UploadScript(dir: string, files: Map<string, TreeFile>, routes: ManifestRoute[]): string {
  const byPath = new Map(routes.map((route) => [route.uri.slice(1), route]));
  const lines = [
    '#!/bin/sh',
    `# Generated by \`registry export --static ${dir}\`; a re-run rewrites it.`,
    '# Uploads the exported tree to an S3-compatible bucket so that it answers the read-only Distribution API.',
    '#   BUCKET=my-bucket [PREFIX=some/path/] [AWS_ENDPOINT_URL=https://s3.example.com] sh <this file>',
    'set -eu',
    ': "${BUCKET:?set BUCKET to the bucket name}"',
    'PREFIX="${PREFIX:-}"',
    `cd ${shellQuote(dir)}`,
    'DEST="s3://$BUCKET/$PREFIX"',
    '',
    '# Blobs first (what manifests name must be there before them); only new or resized ones are sent.',
    `aws s3 sync v2 "\${DEST}v2" --size-only --exclude '*' --include '*/blobs/*' --content-type application/octet-stream`,
    '# Manifests and JSON answers, each with its Content-Type; manifests with their digest as metadata.',
  ];
  for (const [relative, file] of files) {
    if (relative === BASE_FILE || relative.includes('/blobs/')) continue;
    const route = byPath.get(relative);
    const contentType = route ? route.mediaType : file.kind === 'content' ? file.contentType : 'application/json';
    const metadata = route ? ` --metadata docker-content-digest=${route.digest}` : '';
    lines.push(`aws s3 cp ${shellQuote(relative)} "\${DEST}"${shellQuote(relative)} --content-type ${shellQuote(contentType)}${metadata}`);
  }
  lines.push(
    '# GET /v2/ is the object whose key ends in the slash.',
    `aws s3api put-object --bucket "$BUCKET" --key "\${PREFIX}v2/" --body ${shellQuote(BASE_FILE)} --content-type application/json`,
    '# What the export removed (tags, manifests, blobs no longer exported).',
    'aws s3 sync v2 "${DEST}v2" --size-only --delete --exclude \'*\' --include \'*/blobs/*\' --include \'*/manifests/*\' --include \'*/tags/list\' --include \'*/referrers/*\'',
    '',
  );
  return lines.join('\n');
}

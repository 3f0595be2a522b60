/**
 * Pre-warming (`[[proxy.sync]]`) against Debian's docker-registry as the upstream: the server runs each
 * entry at its start, `sync --once` runs them by hand; what they fetched is then pulled by skopeo with the
 * upstream stopped. Only the platforms and tags an entry names are fetched, each blob from the upstream once.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MediaType } from '../../src/oci/media-types';
import { buildImageLayout, buildMultiArchLayout, BuiltMultiArchImage } from '../helpers/oci-image';
import { digestOf, json, RegistryClient } from '../helpers/registry-client';
import { MAIN, ServerProcess, startServerProcess } from '../helpers/server-process';
import { skopeo, skopeoCopy } from '../helpers/skopeo';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const execFileAsync = promisify(execFile);
const KiB = 1024;

describe('[[proxy.sync]] pre-warms the cache', () => {
  let work: string;
  let upstream: UpstreamRegistry;
  let server: ServerProcess | undefined;
  let multi: BuiltMultiArchImage;
  /** A signature of the amd64 image, as cosign pushes one to a registry without the referrers API. */
  let signature: { digest: string; blobs: string[] };

  const syncOnce = () =>
    execFileAsync(process.execPath, [MAIN, 'sync', '--once', '--log_level', 'silent'], { cwd: work }).catch(
      (error: { stdout: string; stderr: string; code: number }) => ({ ...error, failedWith: error.code }),
    );
  const upstreamBlobGets = async () =>
    (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && /\/blobs\/sha256:/.test(entry.uri)).map((entry) => entry.uri);
  const metric = async (name: string) =>
    (await (await fetch(`${server!.url}/metrics`)).text()).split('\n').filter((line) => line.startsWith(name));

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-sync-'));
    upstream = await startUpstreamRegistry();
    multi = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: 'v1',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
        { os: 'linux', architecture: 's390x' },
      ],
      layers: 2,
      layerSize: 64 * KiB,
      seed: 'cache-sync-multi',
    });
    await skopeoCopy(multi.reference, `docker://${upstream.host}/team/multi:v1`, ['--all']);
    signature = await pushSignature(upstream, 'team/multi', multi.images[0].manifestDigest, multi.images[0].manifest.length);
    for (const tag of ['1.1', '1.2', '1.10', '2.0']) {
      const image = await buildImageLayout(path.join(work, `single-${tag}`), { tag, layers: 1, layerSize: 16 * KiB, seed: `cache-sync-${tag}` });
      await skopeoCopy(image.reference, `docker://${upstream.host}/team/single:${tag}`);
    }
    fs.writeFileSync(
      path.join(work, 'configuration.toml'),
      [
        '[proxy]',
        'sync_concurrency = 3',
        '[[proxy.upstreams]]',
        'host = "upstream.test"',
        `url = "${upstream.url}"`,
        '[[proxy.sync]]',
        'image = "proxy/upstream.test/team/multi"',
        'tags = ["v1"]',
        'platforms = ["linux/amd64", "linux/arm64"]',
        'interval = "1h"',
        '[[proxy.sync]]',
        'image = "proxy/upstream.test/team/single"',
        'tag_pattern = \'^1\\.\\d+$\'',
        'max_tags = 2',
        'interval = "1h"',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await server?.stop();
    await upstream?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the server runs each entry at its start: the metrics count the runs and what they fetched', async () => {
    server = await startServerProcess(work, ['--gc.interval', '0']);
    const deadline = Date.now() + 60_000;
    let runs: string[] = [];
    while (Date.now() < deadline) {
      runs = await metric('registry_proxy_sync_runs_total{');
      if (runs.filter((line) => / [1-9]/.test(line)).length > 0 && runs.reduce((sum, line) => sum + Number(line.split(' ').pop()), 0) >= 2) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(runs).toEqual(['registry_proxy_sync_runs_total{upstream="upstream.test",result="success"} 2']);
    const fetched = await metric('registry_proxy_sync_items_total{upstream="upstream.test",kind="blob",result="fetched"}');
    // amd64 and arm64: a config and two layers each, amd64's signature a config and a layer; 1.2 and 1.10 (the last
    // two of ^1\.\d+$ in sort order: 1.1, 1.10, 1.2): a config and a layer each.
    expect(fetched).toEqual(['registry_proxy_sync_items_total{upstream="upstream.test",kind="blob",result="fetched"} 12']);
    await server.stop();
    server = undefined;
  });

  test('sync --once then finds everything cached, and asks the upstream for no blob', async () => {
    const blobGetsBefore = await upstreamBlobGets();
    const run = await syncOnce();
    expect(run.stderr).toBe('');
    expect('failedWith' in run).toBe(false);
    expect(run.stdout).toContain('proxy/upstream.test/team/multi: 1 tag(s) [v1]; manifests 0 fetched, 4 already cached; blobs 0 fetched (0 bytes), 8 already cached; 0 failed');
    expect(run.stdout).toContain('proxy/upstream.test/team/single: 2 tag(s) [1.10, 1.2]; manifests 0 fetched, 2 already cached; blobs 0 fetched (0 bytes), 4 already cached; 0 failed');
    expect(run.stdout).toContain('note: 3 tags match; the last 2 in sort order were fetched (max_tags)');
    expect(await upstreamBlobGets()).toEqual(blobGetsBefore);
    // Each blob came from the upstream once, across both runs.
    expect(new Set(blobGetsBefore).size).toBe(blobGetsBefore.length);
  });

  test('with the upstream stopped, skopeo pulls the synced platforms and tags; the others were never fetched', async () => {
    await upstream.stop();
    server = await startServerProcess(work, ['--gc.interval', '0', '--proxy.tag_ttl', '0']);
    const host = new URL(server.url).host;
    const pulled = path.join(work, 'pulled');
    for (const arch of ['amd64', 'arm64']) {
      await skopeo(['--override-os', 'linux', '--override-arch', arch, 'copy', '--src-tls-verify=false',
        `docker://${host}/proxy/upstream.test/team/multi:v1`, `oci:${pulled}:multi-${arch}`]);
    }
    await expect(
      skopeo(['--override-os', 'linux', '--override-arch', 's390x', 'copy', '--src-tls-verify=false',
        `docker://${host}/proxy/upstream.test/team/multi:v1`, `oci:${pulled}:multi-s390x`]),
    ).rejects.toThrow(/unreachable|UNAVAILABLE|503/i);
    // The signature came along: listed as a referrer of the amd64 image, and its manifest and blobs are here.
    const referrers = await fetch(`${server.url}/v2/proxy/upstream.test/team/multi/referrers/${multi.images[0].manifestDigest}`);
    expect(referrers.status).toBe(200);
    expect(((await referrers.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([signature.digest]);
    for (const uri of [`manifests/${signature.digest}`, ...signature.blobs.map((digest) => `blobs/${digest}`)]) {
      expect((await fetch(`${server.url}/v2/proxy/upstream.test/team/multi/${uri}`)).status).toBe(200);
    }
    for (const tag of ['1.2', '1.10']) await skopeoCopy(`docker://${host}/proxy/upstream.test/team/single:${tag}`, `oci:${pulled}:single-${tag}`);
    for (const tag of ['1.1', '2.0']) {
      await expect(skopeoCopy(`docker://${host}/proxy/upstream.test/team/single:${tag}`, `oci:${pulled}:single-${tag}`)).rejects.toThrow();
    }
    await server.stop();
    server = undefined;
    // The same run with the upstream down: what is cached stands (tags within tag_ttl, the last tag list).
    const offline = await syncOnce();
    expect('failedWith' in offline).toBe(false);
    expect(offline.stdout).toContain('proxy/upstream.test/team/single: 2 tag(s) [1.10, 1.2]; manifests 0 fetched, 2 already cached; blobs 0 fetched (0 bytes), 4 already cached; 0 failed');
    await upstream.start();
  });

  test('what cannot be fetched is named in the report and the exit status is 1', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-sync-missing-'));
    try {
      fs.writeFileSync(
        path.join(other, 'configuration.toml'),
        `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n` +
          '[[proxy.sync]]\nimage = "proxy/upstream.test/team/multi"\ntags = ["v1", "nope"]\nplatforms = ["linux/s390x"]\n',
      );
      const run = await execFileAsync(process.execPath, [MAIN, 'sync', '--once', '--log_level', 'silent'], { cwd: other }).catch(
        (error: { stdout: string; code: number }) => error,
      );
      expect((run as { code?: number }).code).toBe(1);
      expect(run.stdout).toContain('proxy/upstream.test/team/multi: 2 tag(s) [v1, nope]; manifests 2 fetched, 0 already cached; blobs 3 fetched');
      expect(run.stdout).toContain('failed: proxy/upstream.test/team/multi:nope: manifest unknown');
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('a sync entry the cache cannot serve stops the start, naming it', async () => {
    const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-sync-bad-'));
    try {
      fs.writeFileSync(path.join(bad, 'configuration.toml'), '[[proxy.sync]]\nimage = "team/hosted"\ntags = ["v1"]\n');
      const run = await execFileAsync(process.execPath, [MAIN, 'sync', '--once'], { cwd: bad }).catch((error: { stderr: string; code: number }) => error);
      expect((run as { code: number }).code).not.toBe(0);
      expect(run.stderr).toContain('proxy.sync[0].image: expected a cached repository as pulled, such as "proxy/docker.io/library/alpine", got "team/hosted"');
    } finally {
      fs.rmSync(bad, { recursive: true, force: true });
    }
  });
});

/**
 * An artifact with a subject (as cosign and notation push them) and, since docker-registry 2.8 has no
 * referrers API, the referrers tag `sha256-<hex>` holding an index of it (dist-spec 1.1 tag schema).
 */
async function pushSignature(upstream: UpstreamRegistry, name: string, subjectDigest: string, subjectSize: number) {
  const pusher = new RegistryClient({ url: upstream.url });
  // distribution 2.8 has no monolithic POST: POST opens the session, PUT ?digest= with the bytes closes it.
  const pushBlob = async (content: Buffer, mediaType: string) => {
    const opened = await fetch(`${upstream.url}/v2/${name}/blobs/uploads/`, { method: 'POST' });
    const location = new URL(opened.headers.get('location')!, upstream.url);
    location.searchParams.set('digest', digestOf(content));
    const closed = await fetch(location, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: content });
    expect(closed.status).toBe(201);
    return { mediaType, digest: digestOf(content), size: content.length };
  };
  const config = await pushBlob(Buffer.from('{}'), MediaType.OciEmpty);
  const layer = await pushBlob(json({ signature: 'cache-sync' }), 'application/octet-stream');
  const artifactType = 'application/vnd.dev.cosign.artifact.sig.v1+json';
  const manifest = json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType,
    config,
    layers: [layer],
    subject: { mediaType: MediaType.OciManifest, digest: subjectDigest, size: subjectSize },
  });
  const pushed = await pusher.putManifest(name, digestOf(manifest), manifest);
  await pusher.putManifest(name, subjectDigest.replace(':', '-'), {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ ...pushed.descriptor, artifactType }],
  });
  return { digest: pushed.digest, blobs: [config.digest, layer.digest] };
}

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MediaType } from '../../src/oci/media-types';
import { Containerd, startContainerd } from '../helpers/containerd';
import { StaticNginx, startStaticNginx } from '../helpers/nginx';
import { buildArtifactLayout, buildImageLayout, buildMultiArchLayout, BuiltImage, BuiltMultiArchImage, findTag } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { MAIN } from '../helpers/server-process';
import { skopeoCopy, skopeoInspect, skopeoListTags } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const execFileAsync = promisify(execFile);

/**
 * `registry export --static`: a hosted multi-arch image (with a referrer) and an image cached from an
 * upstream, written as a tree that the generated nginx configuration serves; real clients pull from nginx.
 */
describe('export --static served by nginx', () => {
  let work: string;
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let multiArch: BuiltMultiArchImage;
  let cached: BuiltImage;
  let exportDir: string;
  let nginx: StaticNginx;

  const exportStatic = (...args: string[]) =>
    execFileAsync(process.execPath, [MAIN, 'export', '--static', exportDir, ...args, '--log_level', 'silent'], { cwd: app.storageDir });

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'export-static-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createTestApp({ configuration: `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n` });

    multiArch = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: '1.0',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      layers: 2,
      layerSize: 40_000,
    });
    await skopeoCopy(multiArch.reference, `docker://${app.host}/team/app:1.0`, ['--all']);
    await skopeoCopy(multiArch.reference, `docker://${app.host}/team/app:old`, ['--all']);
    const signature = await buildArtifactLayout(path.join(work, 'signature'), {
      tag: 'sig',
      artifactType: 'application/vnd.example.signature',
      files: [{ mediaType: 'application/vnd.example.signature.v1', content: 'signed' }],
      subject: { mediaType: multiArch.mediaType, digest: multiArch.manifestDigest, size: multiArch.manifestSize },
    });
    await skopeoCopy(signature.reference, `docker://${app.host}/team/app@${signature.manifestDigest}`);

    cached = await buildImageLayout(path.join(work, 'cached'), { tag: '3', layers: 2, layerSize: 30_000, seed: 'cached' });
    await skopeoCopy(cached.reference, `docker://${upstream.host}/library/tool:3`);
    // Pulled through the cache in full, so every blob is stored here.
    await skopeoCopy(`docker://${app.host}/proxy/upstream.test/library/tool:3`, `oci:${path.join(work, 'pulled')}:3`);

    exportDir = path.join(work, 'mirror');
    // The server keeps running: export reads the same index and stores beside it.
    await exportStatic();
    nginx = await startStaticNginx(`${exportDir}.nginx.conf`);
  });
  afterAll(async () => {
    await nginx?.close();
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('skopeo reads tags, manifests by tag and by digest, and copies the whole index with --all', async () => {
    expect(await skopeoListTags(`docker://${nginx.host}/team/app`)).toEqual(['1.0', 'old']);
    expect(await skopeoInspect(`docker://${nginx.host}/team/app:1.0`, { raw: true })).toBe(multiArch.manifest.toString());
    const arm = multiArch.images[1];
    expect(await skopeoInspect(`docker://${nginx.host}/team/app@${arm.manifestDigest}`, { raw: true })).toBe(arm.manifest.toString());

    const copy = path.join(work, 'copy-all');
    await skopeoCopy(`docker://${nginx.host}/team/app:1.0`, `oci:${copy}:1.0`, ['--all']);
    expect((await findTag(copy, '1.0'))?.digest).toBe(multiArch.manifestDigest);
    const cachedCopy = path.join(work, 'copy-cached');
    await skopeoCopy(`docker://${nginx.host}/proxy/upstream.test/library/tool:3`, `oci:${cachedCopy}:3`);
    expect((await findTag(cachedCopy, '3'))?.digest).toBe(cached.manifestDigest);
  });

  test('podman pulls by tag and by digest', async () => {
    const podman: Podman = createPodman();
    try {
      await podman.run(['pull', `${nginx.host}/team/app:1.0`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc', `${nginx.host}/team/app:1.0`])).toBe(multiArch.images[0].configDigest);
      await podman.run(['pull', `${nginx.host}/proxy/upstream.test/library/tool@${cached.manifestDigest}`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc'])).toContain(cached.configDigest);
    } finally {
      await podman.cleanup();
    }
  });

  test('containerd pulls by tag, over plain http from hosts.toml', async () => {
    const containerd: Containerd = await startContainerd();
    try {
      const hostsDir = path.join(work, 'certs.d');
      fs.mkdirSync(path.join(hostsDir, nginx.host), { recursive: true });
      fs.writeFileSync(
        path.join(hostsDir, nginx.host, 'hosts.toml'),
        `server = "http://${nginx.host}"\n[host."http://${nginx.host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
      expect(await containerd.pull(`${nginx.host}/team/app:1.0`, hostsDir)).toContain(multiArch.manifestDigest);
      expect(await containerd.pull(`${nginx.host}/proxy/upstream.test/library/tool:3`, hostsDir)).toContain(cached.manifestDigest);
    } finally {
      await containerd.stop();
    }
  });

  test('nginx answers with the headers the registry sends for the same requests', async () => {
    const arm = multiArch.images[1];
    const requests: Array<{ method: string; path: string; accept?: string }> = [
      { method: 'GET', path: '/v2/' },
      { method: 'GET', path: '/v2/team/app/manifests/1.0' },
      { method: 'HEAD', path: '/v2/team/app/manifests/1.0' },
      { method: 'HEAD', path: `/v2/team/app/manifests/${arm.manifestDigest}` },
      { method: 'GET', path: `/v2/team/app/manifests/${arm.manifestDigest}` },
      { method: 'HEAD', path: `/v2/team/app/blobs/${arm.layerDigests[0]}` },
      { method: 'GET', path: `/v2/team/app/blobs/${arm.configDigest}` },
      { method: 'GET', path: '/v2/proxy/upstream.test/library/tool/manifests/3' },
      { method: 'GET', path: '/v2/team/app/tags/list' },
      { method: 'GET', path: `/v2/team/app/referrers/${multiArch.manifestDigest}` },
    ];
    const compared = ['content-type', 'content-length', 'docker-content-digest', 'docker-distribution-api-version', 'etag'];
    for (const request of requests) {
      const headers = { Accept: [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifest, MediaType.DockerManifestList].join(', ') };
      const fromRegistry = await fetch(`${app.url}${request.path}`, { method: request.method, headers });
      const fromNginx = await nginx.request(request.path, { method: request.method, headers });
      const pick = (get: (name: string) => string | undefined) =>
        Object.fromEntries(compared.map((name) => [name, get(name)?.split(';')[0]]).filter(([, value]) => value !== undefined));
      const registryHeaders = pick((name) => fromRegistry.headers.get(name) ?? undefined);
      // The registry's JSON answers are bodies it makes (content-length may differ by whitespace); compare their meaning.
      const generated = request.path.endsWith('/tags/list') || request.path.includes('/referrers/');
      expect({ request, status: fromNginx.status }).toEqual({ request, status: fromRegistry.status });
      if (generated) {
        delete registryHeaders['content-length'];
        expect(JSON.parse(fromNginx.body)).toEqual(await fromRegistry.json());
      } else if (request.method === 'GET') {
        expect(fromNginx.body).toBe(await fromRegistry.text());
      }
      const nginxHeaders = pick((name) => {
        const value = fromNginx.headers[name];
        return Array.isArray(value) ? value.join(', ') : value;
      });
      if (generated) delete nginxHeaders['content-length'];
      expect({ request, headers: nginxHeaders }).toEqual({ request, headers: registryHeaders });
    }
  });

  test('unknown manifests, blobs and repositories are 404s in the spec\'s JSON, pushes are refused', async () => {
    const cases = [
      { path: '/v2/team/app/manifests/nope', code: 'MANIFEST_UNKNOWN' },
      { path: `/v2/team/app/manifests/sha256:${'0'.repeat(64)}`, code: 'MANIFEST_UNKNOWN' },
      { path: `/v2/team/app/blobs/sha256:${'0'.repeat(64)}`, code: 'BLOB_UNKNOWN' },
      { path: '/v2/nobody/tags/list', code: 'NAME_UNKNOWN' },
    ];
    for (const { path: requestPath, code } of cases) {
      const response = await nginx.request(requestPath);
      expect({ requestPath, status: response.status, type: response.headers['content-type'] }).toEqual({
        requestPath,
        status: 404,
        type: 'application/json',
      });
      expect(response.headers['docker-distribution-api-version']).toBe('registry/2.0');
      expect((JSON.parse(response.body) as { errors: Array<{ code: string }> }).errors[0].code).toBe(code);
    }
    const push = await nginx.request('/v2/team/app/blobs/uploads/', { method: 'POST' });
    expect(push.status).toBe(405);
    expect((JSON.parse(push.body) as { errors: Array<{ code: string }> }).errors[0].code).toBe('UNSUPPORTED');
  });

  test('a re-run leaves unchanged blobs untouched and removes a deleted tag', async () => {
    const blob = path.join(exportDir, 'v2/team/app/blobs', multiArch.images[0].layerDigests[0]);
    const before = fs.statSync(blob);
    // Same filesystem as the store: a hard link, no bytes copied.
    const digest = multiArch.images[0].layerDigests[0];
    expect(before.ino).toBe(fs.statSync(path.join(app.config.registry_storage, 'blobs/sha256', digest.slice(7, 9), digest.slice(7))).ino);
    const deleted = await fetch(`${app.url}/v2/team/app/manifests/old`, { method: 'DELETE' });
    expect(deleted.status).toBe(202);

    const { stdout } = await exportStatic();
    expect(stdout).toMatch(/1 removed/);
    const after = fs.statSync(blob);
    expect({ ino: after.ino, mtimeMs: after.mtimeMs }).toEqual({ ino: before.ino, mtimeMs: before.mtimeMs });
    expect(fs.existsSync(path.join(exportDir, 'v2/team/app/manifests/old'))).toBe(false);
    // nginx reads the map at start: a reload picks up the new one.
    await nginx.close();
    nginx = await startStaticNginx(`${exportDir}.nginx.conf`);
    expect((await nginx.request('/v2/team/app/manifests/old')).status).toBe(404);
    expect(await skopeoListTags(`docker://${nginx.host}/team/app`)).toEqual(['1.0']);
  });

  test('the S3 upload script is valid sh and gives each manifest its media type and digest', async () => {
    const script = fs.readFileSync(`${exportDir}.s3-upload.sh`, 'utf8');
    await execFileAsync('sh', ['-n', `${exportDir}.s3-upload.sh`]);
    expect(script).toContain(
      `aws s3 cp 'v2/team/app/manifests/1.0' "\${DEST}"'v2/team/app/manifests/1.0' --content-type '${multiArch.mediaType}' --metadata docker-content-digest=${multiArch.manifestDigest}`,
    );
  });

  test('--repo and --tag choose what is exported', async () => {
    const only = path.join(work, 'only');
    const { stdout } = await execFileAsync(
      process.execPath,
      [MAIN, 'export', '--static', only, '--repo', 'team/app', '--tag', '1.*', '--log_level', 'silent'],
      { cwd: app.storageDir },
    );
    expect(stdout).toMatch(/exported 1 repositories, 1 tags/);
    expect(JSON.parse(fs.readFileSync(path.join(only, 'v2/_catalog'), 'utf8'))).toEqual({ repositories: ['team/app'] });
    const unknown = execFileAsync(process.execPath, [MAIN, 'export', '--static', only, '--repo', 'team/none'], { cwd: app.storageDir });
    await expect(unknown).rejects.toMatchObject({ stderr: expect.stringContaining('no repository team/none') });
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Containerd, startContainerd } from '../helpers/containerd';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { expectErrorCode } from '../helpers/registry-client';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * The README's mirror recipes with real clients and no change to image names: containerd with a hosts.toml
 * host at the mirror port (no override_path) or at the main port (?ns= routing), podman with a registries.conf
 * mirror at the mirror port. A docker-registry on loopback stands in for Docker Hub. Each client gets a
 * registry of its own, so its first pull really goes upstream; its second is served with the upstream stopped.
 */
describe('real clients pulling docker.io/library/app:1 through mirror endpoints', () => {
  let upstream: UpstreamRegistry;
  let image: BuiltImage;
  let work: string;

  const startRegistry = () =>
    createTestApp({
      configuration: [
        '[[proxy.upstreams]]',
        'host = "registry-1.docker.io"',
        `url = "${upstream.url}"`,
        '[[mirror]]',
        'upstream = "docker.io"',
        'listen = "127.0.0.1:0"',
        '',
      ].join('\n'),
    });

  /** Upstream GETs of library/app's manifest so far: a pull that reached the upstream adds one. */
  const upstreamManifestGets = async () =>
    (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri.startsWith('/v2/library/app/manifests/')).length;

  /** Pulls, then pulls again with the client's copy removed and the upstream stopped. */
  async function pullTwice(pull: () => Promise<void>, removeLocalCopy: () => Promise<void>): Promise<void> {
    const before = await upstreamManifestGets();
    await pull();
    expect(await upstreamManifestGets()).toBeGreaterThan(before);

    await removeLocalCopy();
    await upstream.stop();
    try {
      await pull();
    } finally {
      await upstream.start();
    }
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'mirror-clients-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    image = await buildImageLayout(path.join(work, 'app'), { tag: '1', layers: 2, layerSize: 30_000, seed: 'mirror-clients' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/library/app:1`);
  });
  afterAll(async () => {
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('containerd with hosts.toml', () => {
    let containerd: Containerd;
    let app: TestApp;
    beforeAll(async () => {
      containerd = await startContainerd();
    });
    afterEach(async () => {
      await containerd.remove('docker.io/library/app:1').catch(() => undefined);
      await app?.close();
    });
    afterAll(() => containerd?.stop());

    /** certs.d/docker.io/hosts.toml with one mirror host and no override_path: containerd adds /v2/ and ?ns=docker.io. */
    function hostsDir(name: string, hostUrl: string): string {
      const dir = path.join(work, name);
      fs.mkdirSync(path.join(dir, 'docker.io'), { recursive: true });
      fs.writeFileSync(
        path.join(dir, 'docker.io', 'hosts.toml'),
        ['server = "https://registry-1.docker.io"', `[host."${hostUrl}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
      );
      return dir;
    }

    test('host = the mirror port: pulls, and pulls again from the cache with the upstream stopped', async () => {
      app = await startRegistry();
      const hosts = hostsDir('certs.d-mirror', app.mirrorUrl(0));
      await pullTwice(
        async () => expect(await containerd.pull('docker.io/library/app:1', hosts)).toContain(image.manifestDigest),
        () => containerd.remove('docker.io/library/app:1'),
      );
    });

    test('host = the main port (?ns=docker.io): the cached image, though a hosted library/app:1 exists', async () => {
      app = await startRegistry();
      const other = await buildImageLayout(path.join(work, 'hosted'), { tag: '1', layers: 1, layerSize: 1000, seed: 'hosted-app' });
      await skopeoCopy(other.reference, `docker://${app.host}/library/app:1`);

      const hosts = hostsDir('certs.d-main', app.url);
      await pullTwice(
        async () => expect(await containerd.pull('docker.io/library/app:1', hosts)).toContain(image.manifestDigest),
        () => containerd.remove('docker.io/library/app:1'),
      );
      // Without ns the name is the hosted repository's, as before.
      expect((await skopeoInspect(`docker://${app.host}/library/app:1`)).Digest).toBe(other.manifestDigest);
    });
  });

  describe('podman with a registries.conf mirror at the mirror port', () => {
    let app: TestApp;
    let podman: Podman;
    beforeAll(async () => {
      app = await startRegistry();
      podman = createPodman({
        registriesConf: [
          'unqualified-search-registries = []',
          '[[registry]]',
          'prefix = "docker.io"',
          'location = "docker.io"',
          '[[registry.mirror]]',
          `location = "${app.mirrorHost(0)}"`,
          'insecure = true',
          '',
        ].join('\n'),
      });
    });
    afterAll(async () => {
      await podman?.cleanup();
      await app?.close();
    });

    test('pulls, and pulls again from the cache with the upstream stopped', async () => {
      await pullTwice(
        async () => {
          await podman.run(['pull', 'docker.io/library/app:1']);
          expect(await podman.run(['images', '--quiet', '--no-trunc', 'docker.io/library/app:1'])).toBe(image.configDigest);
        },
        async () => {
          await podman.run(['rmi', '--all', '--force']);
        },
      );
    });
  });

  describe('pushing to the mirror endpoint', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startRegistry();
    });
    afterAll(() => app?.close());

    test('skopeo copy to the mirror fails with the refusal; nothing is stored', async () => {
      await expect(skopeoCopy(image.reference, `docker://${app.mirrorHost(0)}/library/app:1`)).rejects.toThrow(
        /read-only mirror of docker\.io; push to 127\.0\.0\.1:\d+\/library\/app/,
      );
      expect((await app.registry.index.listRepositories(undefined, undefined)).items).toEqual([]);
    });

    test('POST /v2/<name>/blobs/uploads/ answers 405 UNSUPPORTED', async () => {
      const response = await fetch(`${app.mirrorUrl(0)}/v2/library/app/blobs/uploads/`, { method: 'POST' });
      await expectErrorCode(response, 405, 'UNSUPPORTED');
    });
  });
});

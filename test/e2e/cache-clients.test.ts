import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { Containerd, startContainerd } from '../helpers/containerd';
import { createPodman, Podman } from '../helpers/podman';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * The README's recipes for pulling Docker Hub images through the cache with no change to image names:
 * a podman registries.conf mirror and a containerd hosts.toml with override_path. A docker-registry
 * on loopback stands in for Docker Hub.
 */
describe('real clients pulling docker.io/library/app:1 through the cache', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let image: BuiltImage;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-clients-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createTestApp({
      configuration: `[[proxy.upstreams]]\nhost = "registry-1.docker.io"\nurl = "${upstream.url}"\n`,
    });
    image = await buildImageLayout(path.join(work, 'app'), { tag: '1', layers: 2, layerSize: 30_000, seed: 'clients' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/library/app:1`);
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('podman with a registries.conf mirror at <registry>/proxy/docker.io', () => {
    let podman: Podman;
    beforeAll(() => {
      podman = createPodman({
        registriesConf: [
          'unqualified-search-registries = []',
          '[[registry]]',
          'prefix = "docker.io"',
          'location = "docker.io"',
          '[[registry.mirror]]',
          `location = "${app.host}/proxy/docker.io"`,
          'insecure = true',
          '',
        ].join('\n'),
      });
    });
    afterAll(() => podman.cleanup());

    test('pulls, and pulls again from the cache with the upstream stopped', async () => {
      await podman.run(['pull', 'docker.io/library/app:1']);
      expect(await podman.run(['images', '--quiet', '--no-trunc', 'docker.io/library/app:1'])).toBe(image.configDigest);

      await podman.run(['rmi', '--all', '--force']);
      await upstream.stop();
      try {
        await podman.run(['pull', 'docker.io/library/app:1']);
        expect(await podman.run(['images', '--quiet', '--no-trunc', 'docker.io/library/app:1'])).toBe(image.configDigest);
      } finally {
        await upstream.start();
      }
    });
  });

  describe('containerd with hosts.toml and override_path = true', () => {
    let containerd: Containerd;
    let hostsDir: string;
    beforeAll(async () => {
      containerd = await startContainerd();
      hostsDir = path.join(work, 'certs.d');
      fs.mkdirSync(path.join(hostsDir, 'docker.io'), { recursive: true });
      fs.writeFileSync(
        path.join(hostsDir, 'docker.io', 'hosts.toml'),
        [
          'server = "https://registry-1.docker.io"',
          `[host."http://${app.host}/v2/proxy/docker.io"]`,
          '  capabilities = ["pull", "resolve"]',
          '  override_path = true',
          '',
        ].join('\n'),
      );
    });
    afterAll(() => containerd.stop());

    test('pulls, and pulls again from the cache with the upstream stopped', async () => {
      const output = await containerd.pull('docker.io/library/app:1', hostsDir);
      expect(output).toContain(image.manifestDigest);

      await containerd.remove('docker.io/library/app:1');
      await upstream.stop();
      try {
        expect(await containerd.pull('docker.io/library/app:1', hostsDir)).toContain(image.manifestDigest);
      } finally {
        await upstream.start();
      }
    });
  });
});

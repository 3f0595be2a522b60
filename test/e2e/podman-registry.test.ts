import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';

describe('podman against the registry', () => {
  let app: TestApp;
  let podman: Podman;
  let work: string;

  beforeAll(async () => {
    app = await createTestApp();
    podman = createPodman();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'podman-e2e-'));
  });
  afterAll(async () => {
    await podman.cleanup();
    await app.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('podman pull, push, and pull again into empty storage give back the same image', async () => {
    const image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 50_000 });
    await skopeoCopy(image.reference, `docker://${app.host}/home/source:v1`);
    await podman.run(['pull', `${app.host}/home/source:v1`]);
    const imageId = await podman.run(['images', '--quiet', '--no-trunc', `${app.host}/home/source:v1`]);
    // The image ID is the config digest.
    expect(imageId).toBe(image.configDigest);

    const reference = `${app.host}/home/podman-app:v1`;
    await podman.run(['tag', imageId, reference]);
    await podman.run(['push', reference]);
    const pushed = await skopeoInspect(`docker://${reference}`);
    expect(pushed.Layers).toHaveLength(2);

    await podman.run(['rmi', '--all', '--force']);
    await podman.run(['pull', reference]);
    expect(await podman.run(['images', '--quiet', '--no-trunc', reference])).toBe(imageId);
  });
});

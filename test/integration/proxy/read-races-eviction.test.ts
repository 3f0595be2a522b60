import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { digestOf, expectErrorCode, RegistryClient } from '../../helpers/registry-client';
import { createTestApp, TestApp } from '../../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../../helpers/upstream-registry';

/**
 * The file of a blob vanishes between the index lookup and the open (an eviction or a collection, in this
 * process or in `registry gc`): the next open of that file is preceded by its removal, once.
 */
function removeBeforeNextOpen(file: string): jest.SpyInstance {
  const open = fsp.open;
  return jest.spyOn(fsp, 'open').mockImplementation(async (target, ...rest) => {
    if (target === file) {
      await fsp.rm(file);
      jest.mocked(fsp.open).mockRestore();
    }
    return open(target, ...rest);
  });
}

function blobFile(root: string, digest: string): string {
  return path.join(root, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
}

describe('GET /v2/<name>/blobs/<digest> while the file is removed under it', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let client: RegistryClient;
  const blob = randomBytes(50_000);
  const digest = digestOf(blob);

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'none' });
    const pusher = new RegistryClient(upstream);
    await pusher.finishUpload('team/app', await pusher.startUpload('team/app'), digest, blob);
    app = await createTestApp({
      configuration: `[gc]\ninterval = "0"\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n`,
    });
    client = new RegistryClient(app);
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
  });
  afterEach(() => jest.restoreAllMocks());

  test('a cached blob evicted between lookup and open is fetched again from the upstream, never a 500', async () => {
    const name = 'proxy/upstream.test/team/app';
    expect(digestOf((await client.getBlob(name, digest)).body)).toBe(digest);
    // The transfer links the blob once it is complete, just after the body has been sent.
    while ((await app.registry.index.linkedBlobSize(name, digest)) === null) await new Promise((resolve) => setTimeout(resolve, 10));

    removeBeforeNextOpen(blobFile(app.config.proxy_storage, digest));
    const { response, body } = await client.getBlob(name, digest);
    expect(response.status).toBe(200);
    expect(digestOf(body)).toBe(digest);
  });

  test('a hosted blob removed between lookup and open is BLOB_UNKNOWN', async () => {
    await client.pushBlob('hosted/app', blob);
    removeBeforeNextOpen(blobFile(app.config.registry_storage, digest));
    await expectErrorCode((await client.getBlob('hosted/app', digest)).response, 404, 'BLOB_UNKNOWN');
  });
});

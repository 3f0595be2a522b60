import { randomBytes } from 'node:crypto';
import { FilesystemBlobStore } from '../../../src/storage/filesystem-blob-store';
import { Leases } from '../../../src/storage/leases';
import { digestOf, RegistryClient } from '../../helpers/registry-client';
import { createTestApp, TestApp } from '../../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../../helpers/upstream-registry';

/**
 * One upstream download per blob among the processes sharing the index (replicas on PostgreSQL, a `sync`
 * command beside the server): the download lease. "Another process" here is a Leases holder of its own on
 * the same index, doing what a replica's transfer does: holding the lease, then storing and linking the blob.
 */
describe('GET /v2/proxy/<upstream>/<name>/blobs/<digest> while another process is fetching that blob', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let client: RegistryClient;
  const name = 'proxy/upstream.test/team/app';

  beforeAll(async () => {
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createTestApp({ configuration: `[gc]\ninterval = "0"\n[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "${upstream.url}"\n` });
    client = new RegistryClient(app);
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
  });

  async function upstreamBlob(): Promise<{ blob: Buffer; digest: string }> {
    const blob = randomBytes(40_000);
    const digest = digestOf(blob);
    const pusher = new RegistryClient(upstream);
    await pusher.finishUpload('team/app', await pusher.startUpload('team/app'), digest, blob);
    return { blob, digest };
  }

  const upstreamGets = async (digest: string) =>
    (await upstream.accessLog()).filter((entry) => entry.method === 'GET' && entry.uri === `/v2/team/app/blobs/${digest}`).length;

  test('waits for the other process instead of asking the upstream, then serves what it stored', async () => {
    const { blob, digest } = await upstreamBlob();
    const elsewhere = new Leases(app.registry.index.sql);
    expect(await elsewhere.acquire(`download:${name}@${digest}`, 60_000)).toBe(true);
    let answered = false;
    const pull = client.getBlob(name, digest).finally(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(answered).toBe(false);
    // The other process finishes: the blob is in the store and linked, and its lease goes.
    await new FilesystemBlobStore(app.config.proxy_storage).writeVerified(blob, digest);
    await app.registry.index.linkBlob(name, digest, blob.length);
    await elsewhere.release(`download:${name}@${digest}`);
    const { response, body } = await pull;
    expect(response.status).toBe(200);
    expect(digestOf(body)).toBe(digest);
    expect(await upstreamGets(digest)).toBe(0);
  });

  test('fetches the blob itself once the other process\'s lease lapses (it died mid-transfer)', async () => {
    const { digest } = await upstreamBlob();
    const elsewhere = new Leases(app.registry.index.sql);
    // Taken and never renewed: what a replica killed with SIGKILL leaves.
    expect(await elsewhere.acquire(`download:${name}@${digest}`, 800)).toBe(true);
    const started = Date.now();
    const { response, body } = await client.getBlob(name, digest);
    expect(response.status).toBe(200);
    expect(digestOf(body)).toBe(digest);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(await upstreamGets(digest)).toBe(1);
  });

  test('holds the lease while it fetches, and gives it back once the blob is stored', async () => {
    const { digest } = await upstreamBlob();
    expect(digestOf((await client.getBlob(name, digest)).body)).toBe(digest);
    while ((await app.registry.index.linkedBlobSize(name, digest)) === null) await new Promise((resolve) => setTimeout(resolve, 10));
    const elsewhere = new Leases(app.registry.index.sql);
    // Released (a renewed lease would still be ours for 30 s): another process could take it now.
    for (let attempt = 0; !(await elsewhere.acquire(`download:${name}@${digest}`, 60_000)); attempt++) {
      expect(attempt).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await upstreamGets(digest)).toBe(1);
  });
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Descriptor } from '../../src/oci/manifest';
import { MediaType } from '../../src/oci/media-types';
import { digestOf, expectErrorCode, expectStatus, OCI_CONFIG, OCI_LAYER, RegistryClient } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

/** The file a hosted blob is stored in (paths.ts). */
function hostedBlobFile(app: TestApp, digest: string): string {
  return path.join(app.storageDir, 'storage', 'registry', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
}

function imageManifest(config: Descriptor, layers: Descriptor[]): object {
  return { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
}

describe('a blob the index lists but the disk lacks is absent', () => {
  let app: TestApp;
  let client: RegistryClient;
  const layer = randomBytes(2000);
  let config: Descriptor;
  let layerDescriptor: Descriptor;

  beforeEach(async () => {
    app = await createTestApp({ overrides: { 'gc.interval': '0' } });
    client = new RegistryClient(app);
    config = await client.pushBlob('disk/app', Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' })), OCI_CONFIG);
    layerDescriptor = await client.pushBlob('disk/app', layer, OCI_LAYER);
    await client.putManifest('disk/app', 'v1', imageManifest(config, [layerDescriptor]));
  });

  afterEach(() => app.close());

  test('verify quarantines a corrupt blob: HEAD and GET /v2/<name>/blobs/<digest> say BLOB_UNKNOWN; a re-push repairs the image', async () => {
    const file = hostedBlobFile(app, layerDescriptor.digest);
    const bytes = fs.readFileSync(file);
    bytes[10] ^= 0xff;
    fs.writeFileSync(file, bytes);

    const report = await app.registry.verify();
    expect(report.corrupt.map((entry) => entry.digest)).toEqual([layerDescriptor.digest]);
    // The image still names the layer: it is reported missing until pushed again.
    expect((await app.registry.verify()).missing).toEqual([{ store: 'hosted', digest: layerDescriptor.digest }]);

    expect((await client.headBlob('disk/app', layerDescriptor.digest)).status).toBe(404);
    await expectErrorCode((await client.getBlob('disk/app', layerDescriptor.digest)).response, 404, 'BLOB_UNKNOWN');
    // A manifest naming it is refused, as for any blob the repository does not hold.
    const other = imageManifest(config, [layerDescriptor]);
    await expectErrorCode(await client.pushManifest('disk/app', 'v2', { ...other, annotations: { v: '2' } }), 400, 'MANIFEST_BLOB_UNKNOWN');

    // What a client does after the HEAD's 404: uploads the layer again, then the manifest.
    await client.pushBlob('disk/app', layer, OCI_LAYER);
    await client.putManifest('disk/app', 'v2', { ...other, annotations: { v: '2' } });
    const pulled = await client.getBlob('disk/app', layerDescriptor.digest);
    expect(pulled.response.status).toBe(200);
    expect(pulled.body.equals(layer)).toBe(true);
    expect((await app.registry.verify())).toEqual({ missing: [], corrupt: [], unindexed: [] });
  });

  test('a file lost in a crash: HEAD says BLOB_UNKNOWN, mount and manifest push refuse it, a re-push repairs it', async () => {
    fs.rmSync(hostedBlobFile(app, layerDescriptor.digest));

    const head = await client.headBlob('disk/app', layerDescriptor.digest);
    expect(head.status).toBe(404);
    await expectErrorCode((await client.getBlob('disk/app', layerDescriptor.digest)).response, 404, 'BLOB_UNKNOWN');

    // dist-spec: a mount that cannot be done opens an upload session (202) instead of 201.
    const mount = await client.fetch(`/v2/disk/other/blobs/uploads/?mount=${layerDescriptor.digest}&from=disk/app`, { method: 'POST' });
    await expectStatus(mount, 202);
    await expectErrorCode(await client.pushManifest('disk/app', 'v3', imageManifest(config, [layerDescriptor])), 400, 'MANIFEST_BLOB_UNKNOWN');

    await client.pushBlob('disk/app', layer, OCI_LAYER);
    expect((await client.headBlob('disk/app', layerDescriptor.digest)).status).toBe(200);
    await client.putManifest('disk/app', 'v3', imageManifest(config, [layerDescriptor]));
    expect(digestOf((await client.getBlob('disk/app', layerDescriptor.digest)).body)).toBe(layerDescriptor.digest);
  });
});

import { MediaType } from '../../src/oci/media-types';
import { json, OCI_CONFIG, RegistryClient } from './registry-client';

/**
 * Pushes `count` small images, one per repository `many/repo-0000`…, through the registry API: one config
 * blob (the same bytes each time, stored once) and a manifest without layers. A few at a time.
 */
export async function pushManyRepositories(client: RegistryClient, count: number, concurrency = 8): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `many/repo-${String(i).padStart(4, '0')}`);
  const config = json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } });
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++];
      const descriptor = await client.pushBlob(name, config, OCI_CONFIG);
      await client.putManifest(name, 'v1', { schemaVersion: 2, mediaType: MediaType.OciManifest, config: descriptor, layers: [] });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return names;
}

import { randomBytes } from 'node:crypto';
import { digestOf } from '../../../src/oci/digest';
import { RecentManifests } from '../../../src/storage/recent-manifests';

describe('RecentManifests', () => {
  // Entries up to an eighth of the budget are kept: eight of these fill it exactly.
  const maxBytes = 800;
  const manifests = Array.from({ length: 8 }, () => randomBytes(100));
  const digests = manifests.map((content) => digestOf(content));

  test('two requests that miss the same manifest together count it once, and read it once', async () => {
    const cache = new RecentManifests(maxBytes);
    let reads = 0;
    const read = (index: number) => async () => {
      reads++;
      await new Promise((resolve) => setImmediate(resolve));
      return manifests[index];
    };
    const [first, second] = await Promise.all([cache.get(digests[0], read(0)), cache.get(digests[0], read(0))]);
    expect(first?.equals(manifests[0])).toBe(true);
    expect(second?.equals(manifests[0])).toBe(true);
    expect(reads).toBe(1);

    // Seven more fill the budget exactly: nothing is evicted, so the first is still served from memory.
    for (let i = 1; i < manifests.length; i++) await cache.get(digests[i], read(i));
    reads = 0;
    await cache.get(digests[0], read(0));
    expect(reads).toBe(0);
  });

  test('a read that fails is not kept: the next request reads again', async () => {
    const cache = new RecentManifests(maxBytes);
    await expect(cache.get(digests[0], () => Promise.reject(new Error('gone')))).rejects.toThrow('gone');
    expect((await cache.get(digests[0], async () => manifests[0]))?.equals(manifests[0])).toBe(true);
  });
});

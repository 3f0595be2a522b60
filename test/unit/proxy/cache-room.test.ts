import { createHash, randomBytes } from 'node:crypto';
import { CacheRoom, streamThrough } from '../../../src/proxy/cache-room';

const MiB = 1024 * 1024;

/** An upstream body of `content` in pieces of `piece` bytes. */
function body(content: Buffer, piece = 1000): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= content.length) return controller.close();
      controller.enqueue(content.subarray(offset, offset + piece));
      offset += piece;
    },
  });
}

async function read(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('streamThrough (a blob the cache has no room for)', () => {
  const content = randomBytes(10_000);
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;

  test('passes a whole blob on, byte for byte', async () => {
    expect((await read(streamThrough(body(content), digest, content.length))).equals(content)).toBe(true);
  });

  test('passes a range on', async () => {
    const range = { start: 1234, end: 5678 };
    expect((await read(streamThrough(body(content), digest, content.length, range))).equals(content.subarray(1234, 5679))).toBe(true);
  });

  // The client must never get a complete response with the wrong bytes: the last piece waits for the check.
  test('content with another digest ends in an error before its last byte', async () => {
    const other = Buffer.from(content);
    other[0] ^= 1;
    const received: Buffer[] = [];
    const stream = streamThrough(body(other), digest, content.length);
    await expect(
      (async () => {
        for await (const chunk of stream) received.push(chunk as Buffer);
      })(),
    ).rejects.toThrow('upstream sent content with digest');
    expect(Buffer.concat(received).length).toBeLessThan(content.length);
  });

  test('more bytes than announced, or fewer, is an error', async () => {
    await expect(read(streamThrough(body(Buffer.concat([content, Buffer.alloc(1)])), digest, content.length))).rejects.toThrow('more than');
    await expect(read(streamThrough(body(content.subarray(0, 9000)), digest, content.length))).rejects.toThrow('9000 of the 10000');
  });
});

describe('CacheRoom ([proxy] min_free)', () => {
  // The file system's figures are the test's: 100 MiB in all, `free` of it free.
  const roomWith = (free: { value: number }, minFree: { bytes: number } | { fraction: number }, freed: number[]) =>
    new CacheRoom('/cache', minFree, async (bytes) => {
      freed.push(bytes);
      free.value += bytes;
    }, async () => ({ free: free.value, total: 100 * MiB }));

  test('a fill that leaves min_free needs no eviction', async () => {
    const freed: number[] = [];
    expect(await roomWith({ value: 50 * MiB }, { bytes: 10 * MiB }, freed).allows(30 * MiB)).toBe(true);
    expect(freed).toEqual([]);
  });

  test('a fill that would not asks for exactly the shortfall, and fits once it is freed', async () => {
    const freed: number[] = [];
    expect(await roomWith({ value: 20 * MiB }, { fraction: 0.1 }, freed).allows(15 * MiB)).toBe(true);
    expect(freed).toEqual([5 * MiB]);
  });

  test('when eviction cannot free enough, the fill does not fit', async () => {
    const free = { value: 5 * MiB };
    const room = new CacheRoom('/cache', { bytes: 10 * MiB }, async () => undefined, async () => ({ free: free.value, total: 100 * MiB }));
    expect(await room.allows(MiB)).toBe(false);
  });

  test('"0" turns it off', async () => {
    const freed: number[] = [];
    expect(await roomWith({ value: 0 }, { bytes: 0 }, freed).allows(MiB)).toBe(true);
    expect(freed).toEqual([]);
  });
});

describe('CacheRoom: fills under way count together', () => {
  // The file system shows only what a fill wrote yet: a second fill started meanwhile must count the first at its full size.
  test('a second fill is refused room the first one holds, and gets it once the first has ended', async () => {
    const free = { value: 50 * MiB };
    const room = new CacheRoom('/cache', { bytes: 10 * MiB }, async () => undefined, async () => ({ free: free.value, total: 100 * MiB }));
    const first = await room.reserve(30 * MiB);
    expect(first).not.toBeNull();
    expect(await room.reserve(30 * MiB)).toBeNull();
    first!();
    first!(); // giving it back twice gives back once
    expect(await room.allows(30 * MiB)).toBe(true);
    expect(await room.allows(41 * MiB)).toBe(false);
  });
});

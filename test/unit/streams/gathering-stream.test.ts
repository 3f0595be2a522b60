import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { GatheringStream } from '../../../src/streams';

/** Keeps the bytes of every write (the sender reuses its buffers) and the size of each. */
function recorder() {
  const hash = createHash('sha256');
  const writes: number[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writes.push(chunk.length);
      hash.update(chunk);
      setImmediate(callback);
    },
  });
  return { destination, writes, digest: () => hash.digest('hex') };
}

describe('GatheringStream (an object store response sent from the send buffers)', () => {
  test('sends every byte in order, in writes far larger than the source chunks', async () => {
    const content = randomBytes(9 * 1024 * 1024 + 123);
    const chunks = [];
    for (let at = 0; at < content.length; at += 16 * 1024) chunks.push(content.subarray(at, at + 16 * 1024));
    const { destination, writes, digest } = recorder();
    await new GatheringStream(Readable.from(chunks)).sendTo(destination);
    expect(digest()).toBe(createHash('sha256').update(content).digest('hex'));
    expect(writes.length).toBeLessThan(10);
  });

  test('does not hold back what arrived while the source is slow', async () => {
    const source = new PassThrough();
    const { destination, writes } = recorder();
    const sending = new GatheringStream(source).sendTo(destination);
    source.write(Buffer.alloc(1000, 1));
    // Sent although the buffer is far from full and the source has not ended.
    for (let waited = 0; writes.length === 0 && waited < 2000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(writes).toEqual([1000]);
    source.end(Buffer.alloc(10, 2));
    await sending;
    expect(writes.reduce((sum, size) => sum + size, 0)).toBe(1010);
  });

  test('as a Readable, and an empty source ends at once', async () => {
    const parts: Buffer[] = [];
    for await (const chunk of new GatheringStream(Readable.from([Buffer.from('ab'), Buffer.from('cd')]))) parts.push(chunk as Buffer);
    expect(Buffer.concat(parts).toString()).toBe('abcd');
    const { destination, writes } = recorder();
    await new GatheringStream(Readable.from([])).sendTo(destination);
    expect(writes).toEqual([]);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { FileRangeStream, SendableStream } from '../../../src/streams';

/** A destination that acknowledges each write a little later, as a socket does, and keeps a copy of the bytes. */
function slowDestination() {
  const hash = createHash('sha256');
  let largestWrite = 0;
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      largestWrite = Math.max(largestWrite, chunk.length);
      hash.update(chunk); // the sender reuses its buffers: hash what was handed over before acknowledging it
      setTimeout(callback, 1);
    },
  });
  return { destination, digest: () => hash.digest('hex'), largestWrite: () => largestWrite };
}

describe('send buffers of many responses at once', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'send-buffers-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  // 20 responses of 6 MiB at once: past 32 MiB of full-size buffers (8 responses), the others send from
  // 256 KiB buffers; every one of them still gets every byte in order.
  test('past the budget, responses send from small buffers, each still whole', async () => {
    const content = randomBytes(6 * 1024 * 1024);
    const file = path.join(dir, 'blob');
    await fsp.writeFile(file, content);
    const expected = createHash('sha256').update(content).digest('hex');
    const sends = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const handle = await fsp.open(file, 'r');
        const target = slowDestination();
        await new FileRangeStream(handle, 0, content.length - 1, 1024 * 1024).sendTo(target.destination);
        return target;
      }),
    );
    for (const send of sends) expect(send.digest()).toBe(expected);
    const largest = sends.map((send) => send.largestWrite());
    expect(largest.filter((size) => size === SendableStream.SEND_BUFFER).length).toBe(8);
    expect(largest.filter((size) => size === 256 * 1024).length).toBe(12);

    // Once they are done, the budget is free again: a new response sends from full-size buffers.
    const handle = await fsp.open(file, 'r');
    const after = slowDestination();
    await new FileRangeStream(handle, 0, content.length - 1, 1024 * 1024).sendTo(after.destination);
    expect(after.largestWrite()).toBe(SendableStream.SEND_BUFFER);
  });
});

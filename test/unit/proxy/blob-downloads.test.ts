import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { BlobDownloads } from '../../../src/proxy/blob-downloads';
import { FilesystemBlobStore } from '../../../src/storage/filesystem-blob-store';
import { incomingDirectory } from '../../../src/storage/paths';

const content = Buffer.alloc(64 * 1024, 7);
const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;

/** An upstream body: the first half of `content`, then (unless `stall`) the rest. */
function upstreamBody(stall: boolean): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === 0) {
        controller.enqueue(content.subarray(0, content.length / 2));
        sent = 1;
      } else if (!stall) {
        controller.enqueue(content.subarray(content.length / 2));
        controller.close();
      } else {
        return new Promise<void>(() => undefined); // the upstream goes quiet
      }
    },
  });
}

describe('BlobDownloads.abortAll (a shutdown)', () => {
  let root: string;
  let store: FilesystemBlobStore;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'blob-downloads-'));
    store = new FilesystemBlobStore(root);
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  test('drops a transfer under way: no temporary file, nothing stored, readers see it fail', async () => {
    const downloads = new BlobDownloads(store);
    const stored = jest.fn(async () => undefined);
    const download = await downloads.join('library/app', digest, async () => ({ body: upstreamBody(true), size: content.length }), stored);
    const reader = download.read()[Symbol.asyncIterator]();
    expect((await reader.next()).done).toBe(false);

    await downloads.abortAll();
    await expect(download.done).rejects.toThrow('the server is shutting down');
    await expect(reader.next()).rejects.toThrow('the server is shutting down');
    expect(stored).not.toHaveBeenCalled();
    expect(await store.size(digest)).toBeNull();
    expect(fs.readdirSync(incomingDirectory(root))).toEqual([]);
    expect(downloads.running('library/app', digest)).toBeUndefined();
    // Joining after the shutdown began starts nothing.
    await expect(downloads.join('library/app', digest, async () => ({ body: upstreamBody(false), size: content.length }), stored)).rejects.toThrow(
      'the server is shutting down',
    );

    // After a restart the blob is downloaded again, whole.
    const restarted = new BlobDownloads(store);
    const again = await restarted.join('library/app', digest, async () => ({ body: upstreamBody(false), size: content.length }), stored);
    await again.done;
    expect(stored).toHaveBeenCalledWith(content.length);
    expect(await store.readAll(digest)).toEqual(content);
  });

  test('settles at once with nothing under way', async () => {
    await new BlobDownloads(store).abortAll();
  });
});

/** A body that sends `chunk` again and again, forever, as fast as it is read. */
function endlessBody(chunk: Buffer): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(chunk);
    },
  });
}

describe('BlobDownloads bounds: what an upstream may take', () => {
  let root: string;
  let store: FilesystemBlobStore;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'blob-downloads-'));
    store = new FilesystemBlobStore(root);
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  test('no more than maxConcurrent transfers at once: the next asks its upstream only when one ends', async () => {
    const downloads = new BlobDownloads(store, 2);
    const asked: string[] = [];
    const start = (name: string, stall: boolean) =>
      downloads.join(name, digest, async () => {
        asked.push(name);
        return { body: upstreamBody(stall), size: content.length };
      }, async () => undefined);
    const first = await start('a/one', true);
    await start('a/two', true);
    const third = start('a/three', false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(asked).toEqual(['a/one', 'a/two']);
    expect(downloads.transfers).toBe(2);

    await first.abort(new Error('gone'));
    await (await third).done;
    expect(asked).toEqual(['a/one', 'a/two', 'a/three']);
    await downloads.abortAll();
    expect(downloads.transfers).toBe(0);
  });

  test('a claim (the download lease) is taken before a slot, so waiting for it holds none; one given up before its fetch is undone', async () => {
    const downloads = new BlobDownloads(store, 1);
    const events: string[] = [];
    let grant!: () => void;
    const granted = new Promise<void>((resolve) => (grant = resolve));
    const claimed = downloads.join(
      'a/claimed',
      digest,
      async () => {
        events.push('fetch a/claimed');
        return { body: upstreamBody(false), size: content.length };
      },
      async () => undefined,
      async () => {
        events.push('claim');
        await granted;
        events.push('claimed');
        return async () => void events.push('unclaimed');
      },
    );
    // While the claim waits (for another replica's download), the one slot goes to another transfer.
    await downloads.join('a/other', digest, async () => {
      events.push('fetch a/other');
      return { body: upstreamBody(true), size: content.length };
    }, async () => undefined);
    expect(events).toEqual(['claim', 'fetch a/other']);
    expect(downloads.transfers).toBe(1);

    // Claimed, it waits for that slot; a shutdown meanwhile gives the claim back without fetching.
    grant();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(events).toEqual(['claim', 'fetch a/other', 'claimed']);
    await downloads.abortAll();
    await expect(claimed).rejects.toThrow(/shutting down/);
    expect(events).toEqual(['claim', 'fetch a/other', 'claimed', 'unclaimed']);
    expect(downloads.transfers).toBe(0);
  });

  test.each([
    ['a Content-Length', { size: 1024 }],
    ['no Content-Length but a declared size', { size: undefined, bound: 1024 }],
  ])('an endless body with %s stops at that size: the transfer fails and its file is removed', async (_case, sizes) => {
    const downloads = new BlobDownloads(store);
    const download = await downloads.join('a/b', digest, async () => ({ body: endlessBody(Buffer.alloc(4096)), ...sizes }), async () => undefined);
    await expect(download.done).rejects.toThrow(/upstream sent more than the 1024 bytes/);
    expect(fs.readdirSync(incomingDirectory(root))).toEqual([]);
    expect(await store.size(digest)).toBeNull();
    expect(downloads.transfers).toBe(0);
  });
});

describe('a transfer arriving in many small chunks', () => {
  let root: string;
  beforeEach(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'blob-downloads-'))));
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  // 3 MiB + 5 in 16 KiB chunks, read out by two clients, one as a Readable and one through sendTo: both get
  // every byte in order, whatever the batching of the writes and the reads from the growing file.
  test('reaches every following client whole, through a Readable and through sendTo', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 12)) & 0xff;
    const bigDigest = `sha256:${createHash('sha256').update(big).digest('hex')}`;
    let offset = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setImmediate(resolve));
        if (offset >= big.length) return controller.close();
        controller.enqueue(big.subarray(offset, offset + 16 * 1024));
        offset += 16 * 1024;
      },
    });
    const store = new FilesystemBlobStore(root);
    const download = await new BlobDownloads(store).join('library/app', bigDigest, async () => ({ body, size: big.length }), async () => undefined);

    const asReadable = (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of download.read()) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    })();
    const sent: Buffer[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        sent.push(Buffer.from(chunk)); // the sender reuses its buffers: copy what was acknowledged
        callback();
      },
    });
    await download.read({ start: 5, end: big.length - 1 }).sendTo(destination);
    await download.done;
    expect((await asReadable).equals(big)).toBe(true);
    expect(Buffer.concat(sent).equals(big.subarray(5))).toBe(true);
    expect(await store.readAll(bigDigest)).toEqual(big);
  });
});

describe('the last byte of a transfer', () => {
  let root: string;
  beforeEach(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'blob-downloads-'))));
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  /** A store whose move of a verified transfer into it waits until `release` is called (a slow disk's fsync and rename). */
  class SlowStore extends FilesystemBlobStore {
    release: () => void = () => undefined;
    private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
    override async adopt(file: string, blobDigest: string, size: number): Promise<void> {
      await this.gate;
      return super.adopt(file, blobDigest, size);
    }
  }

  test('goes out once the digest verifies, before the blob is in the store; a client asking meanwhile joins the same transfer', async () => {
    const store = new SlowStore(root);
    const downloads = new BlobDownloads(store);
    const fetchBody = jest.fn(async () => ({ body: upstreamBody(false), size: content.length }));
    const stored = jest.fn(async () => undefined);
    const download = await downloads.join('library/app', digest, fetchBody, stored);
    // The whole blob reaches the client while the store cannot take it yet (held until `release`).
    const chunks: Buffer[] = [];
    for await (const chunk of download.read()) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(content)).toBe(true);
    expect(stored).not.toHaveBeenCalled();

    // Not stored yet: a second client reads the same transfer, the upstream is not asked again.
    const again = await downloads.join('library/app', digest, fetchBody, stored);
    expect(again).toBe(download);
    store.release();
    const second: Buffer[] = [];
    for await (const chunk of again.read()) second.push(chunk as Buffer);
    expect(Buffer.concat(second).equals(content)).toBe(true);
    await download.done;
    expect(stored).toHaveBeenCalledWith(content.length);
    expect(fetchBody).toHaveBeenCalledTimes(1);
    expect(await store.readAll(digest)).toEqual(content);
  });

  test('reaches a reader that joined before the blob was stored and reads after, from a store that keeps no files', async () => {
    /** As an object store: its blobs are no files to open (S3BlobStore), only `open` reads them. */
    class FilelessStore extends FilesystemBlobStore {
      override localPath(): null {
        return null;
      }
    }
    const store = new FilelessStore(root);
    const downloads = new BlobDownloads(store);
    const download = await downloads.join('library/app', digest, async () => ({ body: upstreamBody(false), size: content.length }), async () => undefined);
    // Joined while running, read only once the transfer's file has gone into the store.
    const whole = download.read();
    const part = download.read({ start: 10, end: 40_009 });
    await download.done;
    expect(fs.readdirSync(incomingDirectory(root))).toEqual([]);
    const read = async (stream: AsyncIterable<unknown>) => {
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    };
    expect((await read(whole)).equals(content)).toBe(true);
    expect((await read(part)).equals(content.subarray(10, 40_010))).toBe(true);
  });

  test('of content with another digest never goes out', async () => {
    const downloads = new BlobDownloads(new FilesystemBlobStore(root));
    const wrong = `sha256:${'0'.repeat(64)}`;
    const download = await downloads.join('library/app', wrong, async () => ({ body: upstreamBody(false), size: content.length }), async () => undefined);
    const chunks: Buffer[] = [];
    await expect(
      (async () => {
        for await (const chunk of download.read()) chunks.push(chunk as Buffer);
      })(),
    ).rejects.toThrow(/digest/);
    expect(Buffer.concat(chunks).length).toBe(content.length - 1);
  });
});

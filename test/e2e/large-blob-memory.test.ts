import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { startServerProcess, ServerProcess } from '../helpers/server-process';

const BLOB_SIZE = 2 * 1024 ** 3; // 2 GiB
const CHUNK = 1024 * 1024;
const RSS_LIMIT = 150 * 1024 * 1024;

const NOISE = randomBytes(CHUNK);

/** The same 2 GiB of incompressible bytes each time it is called, made on the fly: 1 MiB of noise, stamped per chunk. */
function* blobChunks(): Generator<Buffer> {
  for (let offset = 0; offset < BLOB_SIZE; offset += CHUNK) {
    const chunk = Buffer.from(NOISE);
    chunk.writeDoubleLE(offset, 0);
    yield chunk;
  }
}

describe('a 2 GiB blob', () => {
  let work: string;
  let server: ServerProcess;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-large-'));
    server = await startServerProcess(work);
  });
  afterAll(async () => {
    await server?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('PUT /v2/<name>/blobs/uploads/<id> and GET /v2/<name>/blobs/<digest> stream it with the server under 150 MiB RSS', async () => {
    const hash = createHash('sha256');
    for (const chunk of blobChunks()) hash.update(chunk);
    const digest = `sha256:${hash.digest('hex')}`;

    const session = await fetch(`${server.url}/v2/large/blob/blobs/uploads/`, { method: 'POST' });
    expect(session.status).toBe(202);
    const location = session.headers.get('location')!;
    const put = await fetch(`${server.url}${location}?digest=${digest}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(BLOB_SIZE) },
      body: Readable.toWeb(Readable.from(blobChunks())) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    expect(put.status).toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(digest);

    const get = await fetch(`${server.url}/v2/large/blob/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(get.headers.get('content-length')).toBe(String(BLOB_SIZE));
    const pulled = createHash('sha256');
    let received = 0;
    for await (const chunk of get.body as unknown as AsyncIterable<Uint8Array>) {
      pulled.update(chunk);
      received += chunk.length;
    }
    expect(received).toBe(BLOB_SIZE);
    expect(`sha256:${pulled.digest('hex')}`).toBe(digest);

    const peak = server.peakRss();
    process.stdout.write(`large-blob-memory: server peak RSS ${(peak / 1024 / 1024).toFixed(1)} MiB\n`);
    expect(peak).toBeLessThan(RSS_LIMIT);
  }, 240_000);
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { RegistryClient, digestOf, uniqueName } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

/** Files this process has open: a blob read that is never closed shows here. */
const openFiles = () => fs.readdirSync('/proc/self/fd').length;

/**
 * GET /v2/<name>/blobs/<digest> of a file on disk is written with reused buffers (FileRangeStream.sendTo),
 * not piped: every byte and range as before, counted in the request log, and the file closed however the
 * response ends.
 */
describe('GET /v2/<name>/blobs/<digest> from disk', () => {
  let app: TestApp;
  let client: RegistryClient;
  const name = uniqueName('serving');
  // Larger than the two send buffers together (2 × 2 MiB), and not a multiple of them.
  const content = randomBytes(5 * 1024 * 1024 + 12345);
  const digest = digestOf(content);

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
    expect((await client.pushBlobMonolithic(name, content)).status).toBe(201);
  });
  afterAll(() => app.close());

  test('the whole blob, byte for byte, and ranges across the buffers', async () => {
    const whole = await fetch(`${app.url}/v2/${name}/blobs/${digest}`);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(content)).toBe(true);
    for (const [start, end] of [[0, 0], [2 * 1024 * 1024 - 1, 2 * 1024 * 1024], [4 * 1024 * 1024 + 7, content.length - 1]]) {
      const partial = await fetch(`${app.url}/v2/${name}/blobs/${digest}`, { headers: { Range: `bytes=${start}-${end}` } });
      expect(partial.status).toBe(206);
      expect(Buffer.from(await partial.arrayBuffer()).equals(content.subarray(start, end + 1))).toBe(true);
    }
  });

  test('clients that go away mid-blob leave no file open', async () => {
    const before = openFiles();
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve, reject) => {
        const request = http.get(`${app.url}/v2/${name}/blobs/${digest}`, (response) => {
          response.once('data', () => {
            request.destroy();
            resolve();
          });
        });
        request.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
      });
    }
    // The server notices each close asynchronously; give it a moment, bounded.
    for (let wait = 0; wait < 50 && openFiles() > before; wait++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(openFiles()).toBeLessThanOrEqual(before);
  });
});

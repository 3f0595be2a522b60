import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { digestOf } from '../../../src/oci/digest';
import { createTestApp, TestApp } from '../../helpers/test-app';

type Mode = 'healthy' | 'wrong-bytes' | 'cut-midway' | 'cut-at-start';

/**
 * A registry that stands in for a broken upstream: it serves one blob correctly, with wrong bytes of
 * the right length, or cuts the connection halfway or after its headers. Only this cannot be a real registry.
 */
function startFlakyUpstream(blob: Buffer) {
  const digest = digestOf(blob);
  const state = { mode: 'healthy' as Mode, blobGets: 0 };
  const server = http.createServer((request, response) => {
    if (request.url === '/v2/') return response.end('{}');
    if (!request.url?.startsWith('/v2/team/') || !request.url.endsWith(`/blobs/${digest}`)) {
      response.statusCode = 404;
      return response.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
    }
    if (request.method === 'GET') state.blobGets++;
    response.setHeader('Content-Length', blob.length);
    response.setHeader('Docker-Content-Digest', digest);
    if (request.method === 'HEAD') return response.end();
    if (state.mode === 'healthy') return response.end(blob);
    if (state.mode === 'wrong-bytes') return response.end(randomBytes(blob.length));
    if (state.mode === 'cut-at-start') {
      response.flushHeaders();
      return void setTimeout(() => response.destroy(), 100);
    }
    response.write(blob.subarray(0, blob.length / 2), () => response.destroy());
  });
  return new Promise<{ url: string; state: typeof state; close: () => Promise<void> }>((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        state,
        close: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    );
  });
}

/** Reads a response body whole; rejects when the connection breaks before the end. */
async function bodyDigest(response: Response): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * A pull of a transfer that fails: the spec's error when it failed before the client's first byte (so
 * always when the upstream cuts before sending any), else a body that breaks off.
 */
async function expectFailedPull(url: string, mode: Mode): Promise<void> {
  const response = await fetch(url);
  if (response.status === 200 && mode !== 'cut-at-start') return void (await expect(bodyDigest(response)).rejects.toThrow());
  expect(response.status).toBe(503);
  const { errors } = (await response.json()) as { errors: Array<{ code: string; message: string }> };
  expect(errors[0].code).toBe('UNAVAILABLE');
  expect(errors[0].message).toMatch(/^fetching sha256:[0-9a-f]{64} failed: /);
}

describe('GET /v2/proxy/<upstream>/<name>/blobs/<digest> from a broken upstream', () => {
  const blob = randomBytes(3 * 1024 * 1024);
  const digest = digestOf(blob);
  let upstream: Awaited<ReturnType<typeof startFlakyUpstream>>;
  let app: TestApp;
  // One repository per case: a blob cached in one is not cached in the next.
  const blobUrl = (mode: Mode) => `${app.url}/v2/proxy/flaky.test/team/${mode}/blobs/${digest}`;

  beforeAll(async () => {
    upstream = await startFlakyUpstream(blob);
    app = await createTestApp({
      configuration: `[[proxy.upstreams]]\nhost = "flaky.test"\nurl = "${upstream.url}"\n`,
    });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
  });

  test.each(['wrong-bytes', 'cut-midway', 'cut-at-start'] as const)('%s: the client sees a failed transfer, nothing is cached, the next pull succeeds', async (mode) => {
    upstream.state.mode = mode;
    const gets = upstream.state.blobGets;
    await expectFailedPull(blobUrl(mode), mode);
    expect(await app.registry.index.linkedBlobSize(`proxy/flaky.test/team/${mode}`, digest)).toBeNull();

    upstream.state.mode = 'healthy';
    const healthy = await fetch(blobUrl(mode));
    expect(healthy.status).toBe(200);
    expect(await bodyDigest(healthy)).toBe(digest);
    // Nothing was cached from the broken transfer: the good bytes came from the upstream again.
    expect(upstream.state.blobGets).toBe(gets + 2);

    // And now it is cached (linked before the last byte was released): no further upstream request.
    expect(await bodyDigest(await fetch(blobUrl(mode)))).toBe(digest);
    expect(upstream.state.blobGets).toBe(gets + 2);
  });
});

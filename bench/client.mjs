// A small registry client over node:http with keep-alive: uploads (monolithic and chunked),
// manifests, paginated listings. Bodies are streamed from generators, never built whole.
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pieces, PIECE } from './content.mjs';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MANIFEST_ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST, 'application/vnd.oci.image.index.v1+json'].join(', ');

const REQUEST_TIMEOUT_MS = 300_000;

export function keepAliveAgent(maxSockets = 16) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

/**
 * One request. `body` is a string, a Buffer or an iterable of Buffers (streamed with backpressure).
 * Resolves with status, headers and the whole response body (only small bodies are read this way).
 */
export function send(url, { method = 'GET', headers = {}, body, agent, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method, headers, agent },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      },
    );
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`${method} ${url}: no progress for ${timeoutMs} ms`)));
    request.on('error', reject);
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) request.end(body);
    else pipeline(Readable.from(body, { objectMode: false }), request).catch(reject);
  });
}

export function expectStatus(response, expected, what) {
  if (response.status !== expected) {
    const text = response.body?.toString('utf8', 0, 500) ?? '';
    throw new Error(`${what}: expected ${expected}, got ${response.status} ${text}`);
  }
  return response;
}

/** A registry at `baseUrl`; `prefix` is prepended to repository names (proxy/<upstream>/ for our cache). */
export class RegistryClient {
  constructor(baseUrl, { maxSockets = 16 } = {}) {
    this.baseUrl = baseUrl;
    this.agent = keepAliveAgent(maxSockets);
  }

  url(pathOrLocation) {
    return new URL(pathOrLocation, this.baseUrl).toString();
  }

  send(pathOrLocation, options = {}) {
    return send(this.url(pathOrLocation), { agent: this.agent, ...options });
  }

  close() {
    this.agent.destroy();
  }

  async startUpload(name) {
    const response = expectStatus(await this.send(`/v2/${name}/blobs/uploads/`, { method: 'POST', headers: { 'Content-Length': '0' } }), 202, `POST /v2/${name}/blobs/uploads/`);
    return response.headers.location;
  }

  /** POST, then one PUT ?digest= with the whole blob as body (what docker does for a layer). */
  async pushMonolithic(name, { seed, size, digest }) {
    const location = await this.startUpload(name);
    const response = await this.send(withDigest(this.url(location), digest), {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) },
      body: pieces(seed, size),
    });
    expectStatus(response, 201, `PUT upload of ${digest}`);
  }

  /** POST, PATCH chunks of `chunkSize` with Content-Range, then PUT ?digest= without a body. */
  async pushChunked(name, { seed, size, digest }, chunkSize) {
    if (chunkSize % PIECE !== 0) throw new Error(`chunk size must be a multiple of ${PIECE}`);
    let location = await this.startUpload(name);
    for (let start = 0; start < size; start += chunkSize) {
      const end = Math.min(size, start + chunkSize);
      const response = await this.send(location, {
        method: 'PATCH',
        headers: {
          'Content-Type': 'application/octet-stream',
          'Content-Length': String(end - start),
          'Content-Range': `${start}-${end - 1}`,
        },
        body: pieces(seed, size, start, end),
      });
      expectStatus(response, 202, `PATCH chunk ${start}-${end - 1}`);
      location = response.headers.location;
    }
    const response = await this.send(withDigest(this.url(location), digest), { method: 'PUT', headers: { 'Content-Length': '0' } });
    expectStatus(response, 201, `PUT closing upload of ${digest}`);
  }

  /** A small blob in one POST + PUT. */
  async pushSmallBlob(name, buffer, digest) {
    const location = await this.startUpload(name);
    const response = await this.send(withDigest(this.url(location), digest), {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(buffer.length) },
      body: buffer,
    });
    expectStatus(response, 201, `PUT small blob ${digest}`);
  }

  /** POST ?mount=&from=: 201 when mounted. */
  async mountBlob(name, digest, from) {
    const response = await this.send(`/v2/${name}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, {
      method: 'POST',
      headers: { 'Content-Length': '0' },
    });
    expectStatus(response, 201, `mount ${digest} into ${name}`);
  }

  putManifest(name, reference, body, mediaType) {
    return this.send(`/v2/${name}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'Content-Type': mediaType, 'Content-Length': String(body.length) },
      body,
    });
  }

  getManifest(name, reference, method = 'GET') {
    return this.send(`/v2/${name}/manifests/${reference}`, { method, headers: { Accept: MANIFEST_ACCEPT } });
  }

  /** Follows `Link: <…>; rel="next"` from `firstPath` to the end; returns the items and the number of pages. */
  async listAll(firstPath, field) {
    const items = [];
    let pages = 0;
    let next = firstPath;
    while (next) {
      const response = expectStatus(await this.send(next), 200, `GET ${next}`);
      pages++;
      items.push(...(JSON.parse(response.body.toString('utf8'))[field] ?? []));
      const link = response.headers.link;
      next = link ? /<([^>]+)>;\s*rel="?next"?/.exec(link)?.[1] : undefined;
    }
    return { items, pages };
  }
}

function withDigest(location, digest) {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  return url.toString();
}

/** Runs `operation(i)` for i in [0, count) with `concurrency` in flight; returns each call's latency in ms. */
export async function timedFanOut(count, concurrency, operation) {
  const latencies = new Array(count);
  let nextIndex = 0;
  const started = process.hrtime.bigint();
  async function lane() {
    while (nextIndex < count) {
      const index = nextIndex++;
      const t0 = process.hrtime.bigint();
      await operation(index);
      latencies[index] = Number(process.hrtime.bigint() - t0) / 1e6;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, latencies, opsPerSecond: count / seconds };
}

/**
 * Protocol helpers for the integration tests, in the reference registry's style (`pushChunk`,
 * `finishUpload`, `checkBodyHasErrorCodes`): each is one step of the dist-spec, over Node's fetch,
 * asserting what the spec promises for that step so that the tests read as protocol scripts.
 */
import { randomBytes } from 'node:crypto';
import type { Descriptor } from '../../src/oci/manifest';
import { digestOf } from '../../src/oci/digest';
import { MediaType } from '../../src/oci/media-types';

export { digestOf };

export const API_VERSION = 'registry/2.0';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

/** The dist-spec error body. */
export interface ErrorBody {
  errors: Array<{ code: string; message: string; detail?: unknown }>;
}

/** An open upload session: where to send the next request, and how many bytes it holds. */
export interface UploadSession {
  location: string;
  uploadId: string;
  /** Bytes the registry says it holds (from `Range: 0-<end>`). */
  offset: number;
}

// Node's fetch streams a request body only when told it is half duplex.
type StreamingRequestInit = RequestInit & { duplex?: 'half' };

/**
 * A client bound to a test server. It reads `app.url` on every request, so it keeps working
 * across `app.restart()`.
 */
export class RegistryClient {
  /** `headers` go with every request (e.g. an Authorization header); a request's own headers win. */
  constructor(
    private readonly app: { url: string },
    private readonly headers: Record<string, string> = {},
  ) {}

  url(pathOrLocation: string): string {
    return new URL(pathOrLocation, this.app.url).toString();
  }

  fetch(pathOrLocation: string, init: StreamingRequestInit = {}): Promise<Response> {
    return fetch(this.url(pathOrLocation), { ...init, headers: { ...this.headers, ...(init.headers as Record<string, string>) } });
  }

  // --- blob uploads -------------------------------------------------------------------------

  /** POST /v2/<name>/blobs/uploads/ → 202 with Location, Docker-Upload-UUID and `Range: 0-0`. */
  async startUpload(name: string): Promise<UploadSession> {
    const response = await this.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' });
    await expectStatus(response, 202);
    const location = requireHeader(response, 'Location');
    const uploadId = requireHeader(response, 'Docker-Upload-UUID');
    expect(location).toContain(uploadId);
    expect(response.headers.get('Range')).toBe('0-0');
    return { location, uploadId, offset: 0 };
  }

  /** PATCH <location> with one chunk. With `contentRange` (default) it says where the chunk goes. */
  patchChunk(session: UploadSession, chunk: Buffer, options: { contentRange?: boolean; start?: number } = {}) {
    const start = options.start ?? session.offset;
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    if (options.contentRange ?? true) headers['Content-Range'] = `${start}-${start + chunk.length - 1}`;
    return this.fetch(session.location, { method: 'PATCH', headers, body: chunk });
  }

  /** PATCH a chunk that must be accepted: 202, `Range: 0-<end>`, and the session moves on. */
  async pushChunk(session: UploadSession, chunk: Buffer, options: { contentRange?: boolean } = {}): Promise<UploadSession> {
    const response = await this.patchChunk(session, chunk, options);
    await expectStatus(response, 202);
    const offset = session.offset + chunk.length;
    expect(response.headers.get('Range')).toBe(`0-${offset - 1}`);
    expect(response.headers.get('Docker-Upload-UUID')).toBe(session.uploadId);
    return { location: requireHeader(response, 'Location'), uploadId: session.uploadId, offset };
  }

  /** PUT <location>?digest=<digest>, optionally with the last chunk as body. */
  closeUpload(session: UploadSession, digest: string, lastChunk?: Buffer): Promise<Response> {
    const url = new URL(this.url(session.location));
    url.searchParams.set('digest', digest);
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    if (lastChunk && lastChunk.length > 0) {
      headers['Content-Range'] = `${session.offset}-${session.offset + lastChunk.length - 1}`;
    }
    return this.fetch(url.toString(), { method: 'PUT', headers, body: lastChunk ?? new Uint8Array(0) });
  }

  /** Closes an upload that must succeed: 201, Location of the blob and its Docker-Content-Digest. */
  async finishUpload(name: string, session: UploadSession, digest: string, lastChunk?: Buffer): Promise<Response> {
    const response = await this.closeUpload(session, digest, lastChunk);
    await expectStatus(response, 201);
    expect(new URL(requireHeader(response, 'Location'), this.app.url).pathname).toBe(`/v2/${name}/blobs/${digest}`);
    expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
    return response;
  }

  /** POST /v2/<name>/blobs/uploads/?digest= with the whole blob as body. */
  pushBlobMonolithic(name: string, content: Buffer, digest = digestOf(content)): Promise<Response> {
    const url = new URL(this.url(`/v2/${name}/blobs/uploads/`));
    url.searchParams.set('digest', digest);
    return this.fetch(url.toString(), { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: content });
  }

  /** Pushes a blob that must be accepted (monolithic POST, 201) and returns its descriptor. */
  async pushBlob(name: string, content: Buffer, mediaType = 'application/octet-stream'): Promise<Descriptor> {
    const digest = digestOf(content);
    const response = await this.pushBlobMonolithic(name, content, digest);
    await expectStatus(response, 201);
    expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
    return { mediaType, digest, size: content.length };
  }

  /** GET /v2/<name>/blobs/<digest>, the body read whole (the response's own body stays unread). */
  async getBlob(name: string, digest: string, headers: Record<string, string> = {}): Promise<{ response: Response; body: Buffer }> {
    const response = await this.fetch(`/v2/${name}/blobs/${digest}`, { headers });
    // A clone is read, so that the response itself can still go to expectErrorCode.
    return { response, body: Buffer.from(await response.clone().arrayBuffer()) };
  }

  headBlob(name: string, digest: string): Promise<Response> {
    return this.fetch(`/v2/${name}/blobs/${digest}`, { method: 'HEAD' });
  }

  // --- manifests ----------------------------------------------------------------------------

  /** PUT /v2/<name>/manifests/<reference> with the manifest's own media type as Content-Type. */
  pushManifest(name: string, reference: string, manifest: Buffer | object, contentType?: string): Promise<Response> {
    const body = Buffer.isBuffer(manifest) ? manifest : json(manifest);
    const type = contentType ?? mediaTypeOf(body) ?? MediaType.OciManifest;
    return this.fetch(`/v2/${name}/manifests/${reference}`, { method: 'PUT', headers: { 'Content-Type': type }, body });
  }

  /** Pushes a manifest that must be accepted: 201, Location by digest, Docker-Content-Digest. */
  async putManifest(name: string, reference: string, manifest: Buffer | object, contentType?: string): Promise<PushedManifest> {
    const content = Buffer.isBuffer(manifest) ? manifest : json(manifest);
    const digest = reference.includes(':') ? reference : digestOf(content);
    const response = await this.pushManifest(name, reference, content, contentType);
    await expectStatus(response, 201);
    expect(response.headers.get('Docker-Content-Digest')).toBe(digest);
    expect(new URL(requireHeader(response, 'Location'), this.app.url).pathname).toBe(`/v2/${name}/manifests/${digest}`);
    const mediaType = contentType ?? mediaTypeOf(content) ?? MediaType.OciManifest;
    return { response, content, digest, mediaType, descriptor: { mediaType, digest, size: content.length } };
  }

  /** GET (or HEAD) /v2/<name>/manifests/<reference>; no Accept header unless given. */
  async getManifest(
    name: string,
    reference: string,
    options: { accept?: string; method?: 'GET' | 'HEAD' } = {},
  ): Promise<{ response: Response; body: Buffer }> {
    const headers: Record<string, string> = options.accept === undefined ? {} : { Accept: options.accept };
    const response = await this.fetch(`/v2/${name}/manifests/${reference}`, { method: options.method ?? 'GET', headers });
    return { response, body: Buffer.from(await response.clone().arrayBuffer()) };
  }

  /**
   * Pushes fresh random config and layer blobs and an image manifest over them (OCI by default,
   * or Docker schema 2), optionally tagged. `extra` is merged into the manifest (subject, annotations…).
   */
  async pushImage(name: string, options: ImageOptions = {}): Promise<PushedImage> {
    const docker = options.mediaType === MediaType.DockerManifest;
    const configContent = json({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') });
    const config = await this.pushBlob(name, configContent, options.configMediaType ?? (docker ? DOCKER_CONFIG : OCI_CONFIG));
    const layers: Descriptor[] = [];
    for (let i = 0; i < (options.layers ?? 1); i++) {
      layers.push(await this.pushBlob(name, randomBytes(64 + i), docker ? DOCKER_LAYER : OCI_LAYER));
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: options.mediaType ?? MediaType.OciManifest,
      config,
      layers,
      ...options.extra,
    };
    const pushed = await this.putManifest(name, options.tag ?? digestOf(json(manifest)), manifest);
    return { ...pushed, config, layers };
  }

  // --- listings -----------------------------------------------------------------------------

  /** GET /v2/<name>/tags/list that must succeed; its tags. */
  async listTags(name: string): Promise<string[]> {
    const response = await this.fetch(`/v2/${name}/tags/list`);
    await expectStatus(response, 200);
    const body = (await response.json()) as { name: string; tags: string[] };
    expect(body.name).toBe(name);
    return body.tags;
  }
}

export interface ImageOptions {
  tag?: string;
  mediaType?: typeof MediaType.OciManifest | typeof MediaType.DockerManifest;
  layers?: number;
  configMediaType?: string;
  extra?: Record<string, unknown>;
}

export interface PushedManifest {
  response: Response;
  content: Buffer;
  digest: string;
  mediaType: string;
  descriptor: Descriptor;
}

export interface PushedImage extends PushedManifest {
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * Asserts a dist-spec error: the status, the API version header, a JSON body of exactly
 * `{"errors":[{"code","message"[,"detail"]}]}`, and `code` among the codes. Returns the body.
 */
export async function expectErrorCode(response: Response, status: number, code: string): Promise<ErrorBody> {
  const text = await response.text();
  if (response.status !== status) {
    throw new Error(`expected ${status} ${code}, got ${response.status}: ${text}`);
  }
  expect(response.headers.get('Docker-Distribution-API-Version')).toBe(API_VERSION);
  expect(response.headers.get('Content-Type')).toMatch(/^application\/json/);
  let body: ErrorBody;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    throw new Error(`expected a JSON error body with ${code}, got: ${text}`);
  }
  expect(Object.keys(body)).toEqual(['errors']);
  expect(Array.isArray(body.errors)).toBe(true);
  expect(body.errors.length).toBeGreaterThan(0);
  for (const entry of body.errors) {
    expect(typeof entry.code).toBe('string');
    expect(typeof entry.message).toBe('string');
    expect(entry.message).not.toBe('');
    for (const key of Object.keys(entry)) expect(['code', 'message', 'detail']).toContain(key);
  }
  expect(body.errors.map((entry) => entry.code)).toContain(code);
  return body;
}

/** Asserts a status, showing the body when it is not the one expected. */
export async function expectStatus(response: Response, status: number): Promise<void> {
  if (response.status !== status) {
    const text = await response.clone().text();
    throw new Error(`expected ${status}, got ${response.status} for ${response.url}: ${text}`);
  }
}

export function requireHeader(response: Response, name: string): string {
  const value = response.headers.get(name);
  if (value === null) throw new Error(`response to ${response.url} has no ${name} header`);
  return value;
}

/** Compact JSON bytes, as a client would push them. */
export function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function descriptorOf(mediaType: string, content: Buffer): Descriptor {
  return { mediaType, digest: digestOf(content), size: content.length };
}

/** A unique repository name per test, so tests in one file do not see each other's content. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

function mediaTypeOf(content: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(content.toString('utf8')) as { mediaType?: unknown };
    return typeof parsed.mediaType === 'string' ? parsed.mediaType : undefined;
  } catch {
    return undefined;
  }
}

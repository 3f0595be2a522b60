import { Context } from 'koa';
import { toDigest } from '../../oci/digest';
import { RegistryError } from '../../oci/errors';
import type { BlobFile } from '../../storage/repository';
import { SendableStream } from '../../streams';
import { parseByteRange, respondEmpty } from '../request';
import { RegistryRouter, RouteDependencies } from './context';
import { requireAccess } from '../middleware/authorize';

/** GET, HEAD and DELETE /v2/<name>/blobs/<digest> */
export function blobRoutes(router: RegistryRouter, { registry, config }: RouteDependencies): void {
  const accelRedirect = config.accel_redirect;

  router.head('/v2/*name/blobs/:digest', requireAccess('pull'), async (ctx) => {
    const digest = toDigest(ctx.params.digest);
    const { size } = await registry.repository(ctx.params.name).findBlob(digest);
    ctx.status = 200;
    ctx.set(blobHeaders(digest, size));
  });

  router.get('/v2/*name/blobs/:digest', requireAccess('pull'), async (ctx) => {
    const digest = toDigest(ctx.params.digest);
    const found = await registry.repository(ctx.params.name).findBlob(digest, 'get');
    if (accelRedirect && found.file) return answerWithAccelRedirect(ctx, accelRedirect, found.file());
    const redirect = await found.redirect?.();
    if (redirect) return answerWithRedirect(ctx, digest, redirect);
    const { size } = found;
    const range = parseByteRange(ctx.get('Range'), size);
    if (range === 'unsatisfiable') throw rangeNotSatisfiable(ctx.get('Range'), size);
    const blob = await found.open(range);
    ctx.set(blobHeaders(digest, blob.size));
    if (range) {
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
    }
    ctx.body = blob.stream;
    ctx.length = range ? range.end - range.start + 1 : blob.size;
    if (blob.stream instanceof SendableStream) {
      // A file on disk: written with two reused buffers rather than piped (see SendableStream), once the
      // middleware above has set its headers; the body stays in ctx.body for the request log to count.
      // Its first bytes are read here, so that one failing before them (an upstream's transfer cut early)
      // is answered with the spec's error (the body stream is destroyed with the response).
      const { stream } = blob;
      await stream.readFirst();
      ctx.respond = false;
      setImmediate(() => void stream.sendTo(ctx.res));
    }
  });

  router.delete('/v2/*name/blobs/:digest', requireAccess('delete'), async (ctx) => {
    const digest = toDigest(ctx.params.digest);
    await registry.repository(ctx.params.name).deleteBlob(digest);
    respondEmpty(ctx, 202, { 'Docker-Content-Digest': digest });
  });
}

/**
 * nginx swaps this empty answer for the file at the internal URI it names (X-Accel-Redirect) and sends
 * it with sendfile, handling Range itself. The URI is built from the digest (validated), never from the
 * request. An unsatisfiable range still gets the spec's error from here.
 */
function answerWithAccelRedirect(ctx: Context, prefix: string, file: BlobFile): void {
  if (parseByteRange(ctx.get('Range'), file.size) === 'unsatisfiable') throw rangeNotSatisfiable(ctx.get('Range'), file.size);
  // Content-Length: 0 is this answer's own (empty) body; nginx sends the file's length with the file.
  // No Accept-Ranges: nginx passes this answer's on and adds its own, and clients would see it twice.
  const { 'Accept-Ranges': _, ...headers } = blobHeaders(file.digest, 0);
  ctx.set({ ...headers, 'X-Accel-Redirect': `${prefix}${file.store}/${file.relativePath}` });
  ctx.status = 200;
  // '' rather than null: Koa drops Content-Type from a null body.
  ctx.body = '';
}

/**
 * 307 to where the blob's bytes are (an object store's presigned URL, `[storage.s3] redirect`): the client
 * sends its GET, with its Range, there. Clients follow it without their registry credentials (the URL
 * carries its own signature), as they do with the reference registry's s3 redirects.
 */
function answerWithRedirect(ctx: Context, digest: string, url: string): void {
  ctx.status = 307;
  ctx.set({ Location: url, 'Docker-Content-Digest': digest, 'Cache-Control': 'no-store' });
  ctx.body = '';
}

function rangeNotSatisfiable(range: string, size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', {
    message: `range ${range} is outside the blob's ${size} bytes`,
    headers: { 'Content-Range': `bytes */${size}` },
  });
}

function blobHeaders(digest: string, size: number): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(size),
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    'Accept-Ranges': 'bytes',
    // Content-addressed: a digest's bytes never change.
    'Cache-Control': 'max-age=31536000',
  };
}

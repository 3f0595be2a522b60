import { Context } from 'koa';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const gzipAsync = promisify(gzip);

/**
 * Smaller answers go as they are: gzip's header, the CPU and the latency buy nothing under a few packets.
 * A list of thousands of repositories is some hundred KiB of repetitive markup or JSON and shrinks ~10×.
 */
export const COMPRESS_FROM_BYTES = 8 * 1024;

/**
 * Sets `text` as the body, gzip-compressed (on libuv's thread pool, off the event loop) when it is large
 * and the client takes gzip (RFC 9110 §12.5.3 Accept-Encoding). Vary tells caches the answer depends on it.
 */
export async function sendText(ctx: Context, text: string, type: string): Promise<void> {
  ctx.set('Vary', 'Accept-Encoding');
  ctx.type = type;
  if (text.length >= COMPRESS_FROM_BYTES && ctx.acceptsEncodings('gzip', 'identity') === 'gzip') {
    ctx.set('Content-Encoding', 'gzip');
    ctx.body = await gzipAsync(text, { level: 6 });
    return;
  }
  ctx.body = text;
}

/** A JSON body a route set (an object) becomes its text, compressed as `sendText` does. */
export async function compressJsonBody(ctx: Context): Promise<void> {
  const body: unknown = ctx.body;
  if (body === null || typeof body !== 'object' || Buffer.isBuffer(body) || typeof (body as { pipe?: unknown }).pipe === 'function') return;
  const status = ctx.status;
  await sendText(ctx, JSON.stringify(body), 'application/json; charset=utf-8');
  ctx.status = status;
}

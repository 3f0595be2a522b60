import { Context } from 'koa';
import { Readable } from 'node:stream';
import { readAtMost } from '../streams';
import { RegistryError } from '../oci/errors';
import { ByteRange } from '../storage/blob-store';
import { ChunkRange } from '../storage/uploads';
import { Pagination } from '../storage/repository';

/** A path component as @koa/router decodes parameters: a malformed escape stays as written. */
export function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `n` and `last` of tags/list and _catalog. */
export function pagination(ctx: Context): Pagination {
  const n = single(ctx.query.n);
  const last = single(ctx.query.last);
  if (n !== undefined && !/^\d{1,9}$/.test(n)) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { n } });
  }
  return { n: n === undefined ? undefined : Number(n), last: last || undefined };
}

/** dist-spec: `Link: <url>; rel="next"` when more results follow. */
export function setNextLink(ctx: Context, path: string, n: number | undefined, next: string | undefined): void {
  if (next === undefined || n === undefined) return;
  ctx.set('Link', `<${path}?n=${n}&last=${encodeURIComponent(next)}>; rel="next"`);
}

export function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * A blob GET's `Range: bytes=…` against a blob of `size` bytes: the range to send, 'unsatisfiable',
 * or undefined to send everything (no header, or a form we do not serve, such as several ranges).
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(size - suffix, 0), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** A PATCH's `Content-Range: <start>-<end>` (inclusive; a `bytes ` prefix and `/total` are tolerated). */
export function parseContentRange(header: string | undefined): ChunkRange | undefined {
  if (header === undefined) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match || Number(match[2]) < Number(match[1])) {
    throw new RegistryError('RANGE_INVALID', { message: `malformed Content-Range ${JSON.stringify(header)}` });
  }
  return { start: Number(match[1]), end: Number(match[2]) };
}

/** Reads a small request body whole, refusing more than `maxBytes` (the manifest size cap) with 413. */
export async function readBody(ctx: Context, maxBytes: number): Promise<Buffer> {
  const tooLarge = () =>
    new RegistryError('MANIFEST_INVALID', { status: 413, message: `manifest exceeds the ${maxBytes}-byte limit` });
  if (Number(ctx.get('Content-Length') || 0) > maxBytes) throw tooLarge();
  const body = await readAtMost(ctx.req, maxBytes);
  if (body === undefined) throw tooLarge();
  return body;
}

/** The request body as a stream, or undefined when the request announces none. */
export function optionalBody(ctx: Context): Readable | undefined {
  const length = ctx.get('Content-Length');
  const chunked = ctx.get('Transfer-Encoding').toLowerCase().includes('chunked');
  if (!chunked && (length === '' || length === '0')) return undefined;
  return ctx.req;
}

/** Koa answers 204 when a body is null unless the status is set afterwards: one place does it right. */
export function respondEmpty(ctx: Context, status: number, headers: Record<string, string> = {}): void {
  ctx.body = null;
  ctx.status = status;
  ctx.set(headers);
}

import http from 'node:http';
import net from 'node:net';
import Koa, { Context } from 'koa';
import { RegistryError } from '../../../src/oci/errors';
import {
  optionalBody,
  pagination,
  parseByteRange,
  parseContentRange,
  readBody,
  respondEmpty,
  setNextLink,
  single,
} from '../../../src/http/request';

/** A real Koa context over an unconnected socket; `body` chunks are queued on the request stream. */
function contextOf(options: { query?: string; headers?: Record<string, string>; body?: Buffer[] } = {}): Context {
  const req = new http.IncomingMessage(new net.Socket());
  req.method = 'PUT';
  req.url = `/v2/x/manifests/y${options.query ?? ''}`;
  req.headers = Object.fromEntries(Object.entries(options.headers ?? {}).map(([key, value]) => [key.toLowerCase(), value]));
  for (const chunk of options.body ?? []) req.push(chunk);
  if (options.body) req.push(null);
  const res = new http.ServerResponse(req);
  return new Koa().createContext(req, res) as Context;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof RegistryError) return error.code;
    throw error;
  }
  return undefined;
}

describe('parseByteRange (blob GET Range)', () => {
  test.each([
    ['bytes=0-3', 10, { start: 0, end: 3 }],
    ['bytes=5-', 10, { start: 5, end: 9 }],
    ['bytes=-3', 10, { start: 7, end: 9 }],
    ['bytes=9-9', 10, { start: 9, end: 9 }],
    ['bytes=0-0', 1, { start: 0, end: 0 }],
    ['bytes=8-100', 10, { start: 8, end: 9 }],
    ['bytes=-20', 10, { start: 0, end: 9 }],
    [' bytes=2-4 ', 10, { start: 2, end: 4 }],
  ])('%s of %i bytes is %j', (header, size, expected) => {
    expect(parseByteRange(header, size)).toEqual(expected);
  });

  test.each([
    ['bytes=10-', 10],
    ['bytes=10-20', 10],
    ['bytes=5-2', 10],
    ['bytes=-0', 10],
    ['bytes=0-', 0],
    ['bytes=-5', 0],
  ])('%s of %i bytes is unsatisfiable', (header, size) => {
    expect(parseByteRange(header, size)).toBe('unsatisfiable');
  });

  test.each([undefined, '', 'bytes=-', 'bytes=0-1,3-4', 'items=0-3', 'bytes=a-b', 'bytes 0-3'])(
    '%j is ignored: the whole blob is sent',
    (header) => {
      expect(parseByteRange(header, 10)).toBeUndefined();
    },
  );
});

describe('parseContentRange (PATCH Content-Range)', () => {
  test('absent is undefined', () => {
    expect(parseContentRange(undefined)).toBeUndefined();
  });

  test.each([
    ['0-99', { start: 0, end: 99 }],
    ['100-100', { start: 100, end: 100 }],
    ['bytes 0-99/100', { start: 0, end: 99 }],
    ['bytes=5-9', { start: 5, end: 9 }],
    ['0-99/*', { start: 0, end: 99 }],
    [' 10-19 ', { start: 10, end: 19 }],
  ])('%j is %j (inclusive)', (header, expected) => {
    expect(parseContentRange(header)).toEqual(expected);
  });

  test.each(['', '5-2', 'abc', '0-', '-5', '0-99/abc', 'bytes 0-99/100/1', '1.5-2'])('%j is 416 RANGE_INVALID', (header) => {
    expect(codeOf(() => parseContentRange(header))).toBe('RANGE_INVALID');
    try {
      parseContentRange(header);
    } catch (error) {
      expect((error as RegistryError).status).toBe(416);
    }
  });
});

describe('pagination (n and last)', () => {
  test('neither: no limit, no start', () => {
    expect(pagination(contextOf())).toEqual({ n: undefined, last: undefined });
  });

  test.each([
    ['?n=2', { n: 2, last: undefined }],
    ['?n=0', { n: 0, last: undefined }],
    ['?n=100&last=v1', { n: 100, last: 'v1' }],
    ['?last=a%2Fb', { n: undefined, last: 'a/b' }],
    ['?last=', { n: undefined, last: undefined }],
    ['?n=3&n=5', { n: 3, last: undefined }],
    ['?n=999999999', { n: 999999999, last: undefined }],
  ])('%s is %j', (query, expected) => {
    expect(pagination(contextOf({ query }))).toEqual(expected);
  });

  test.each(['?n=-1', '?n=abc', '?n=1.5', '?n=', '?n=1e3', '?n=1234567890', '?n=%201'])('%s is 400 PAGINATION_NUMBER_INVALID', (query) => {
    expect(codeOf(() => pagination(contextOf({ query })))).toBe('PAGINATION_NUMBER_INVALID');
  });
});

describe('setNextLink', () => {
  test('sets Link: <path?n=&last=>; rel="next" with last encoded', () => {
    const ctx = contextOf();
    setNextLink(ctx, '/v2/_catalog', 2, 'library/alpine');
    expect(ctx.response.get('Link')).toBe('</v2/_catalog?n=2&last=library%2Falpine>; rel="next"');
  });

  test('no Link on the last page or without n', () => {
    const last = contextOf();
    setNextLink(last, '/v2/a/tags/list', 2, undefined);
    expect(last.response.headers.link).toBeUndefined();
    const unbounded = contextOf();
    setNextLink(unbounded, '/v2/a/tags/list', undefined, 'v1');
    expect(unbounded.response.headers.link).toBeUndefined();
  });
});

describe('single', () => {
  test('the first of repeated query values, or the value, or undefined', () => {
    expect(single(['a', 'b'])).toBe('a');
    expect(single('a')).toBe('a');
    expect(single(undefined)).toBeUndefined();
  });
});

describe('readBody (manifest size cap)', () => {
  test('returns the whole body when it fits', async () => {
    const ctx = contextOf({ headers: { 'Content-Length': '6' }, body: [Buffer.from('abc'), Buffer.from('def')] });
    expect((await readBody(ctx, 6)).toString()).toBe('abcdef');
  });

  test('a Content-Length over the cap is 413 before anything is read', async () => {
    const ctx = contextOf({ headers: { 'Content-Length': '7' }, body: [Buffer.from('abcdefg')] });
    await expect(readBody(ctx, 6)).rejects.toMatchObject({ code: 'MANIFEST_INVALID', status: 413 });
  });

  test('a body without Content-Length that grows over the cap is 413', async () => {
    const ctx = contextOf({ headers: { 'Transfer-Encoding': 'chunked' }, body: [Buffer.from('abcd'), Buffer.from('efg')] });
    await expect(readBody(ctx, 6)).rejects.toMatchObject({ code: 'MANIFEST_INVALID', status: 413 });
  });
});

describe('optionalBody', () => {
  test.each([
    ['no Content-Length', false, {}],
    ['Content-Length: 0', false, { 'Content-Length': '0' }],
    ['Content-Length: 5', true, { 'Content-Length': '5' }],
    ['Transfer-Encoding: chunked', true, { 'Transfer-Encoding': 'chunked' }],
  ])('%s: a body is %s', (_, present, headers) => {
    const ctx = contextOf({ headers });
    expect(optionalBody(ctx) === ctx.req).toBe(present);
  });
});

describe('respondEmpty', () => {
  // Koa answers 204 when the body is set to null after the status: the helper must not fall into it.
  test.each([201, 202, 204])('keeps status %i with an empty body and the headers', (status) => {
    const ctx = contextOf();
    respondEmpty(ctx, status, { Location: '/v2/a/blobs/sha256:x' });
    expect(ctx.status).toBe(status);
    expect(ctx.body).toBeNull();
    expect(ctx.response.get('Location')).toBe('/v2/a/blobs/sha256:x');
  });
});

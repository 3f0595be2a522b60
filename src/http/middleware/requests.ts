import Router from '@koa/router';
import { Context, Middleware } from 'koa';
import { Logger } from '../../log';
import { RegistryMetrics, UNMATCHED_ROUTE } from '../../metrics/registry-metrics';
import { callerName } from './authorize';

/**
 * The outermost middleware: each request, once its response is done or abandoned, becomes one log line
 * and its metrics, from the same figures: method, route template, status, body bytes each way, duration,
 * client and user.
 */
export function requestAccounting(log: Logger, metrics: RegistryMetrics, router: Router): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    metrics.requestStarted();
    // Read now: by 'close' the socket may already be detached (a 413 sent before the body was read),
    // and ctx.ip would throw inside an event handler, taking the process down.
    const client = ctx.ip;
    const path = ctx.originalUrl.split('?')[0]; // what the client asked, before a mirror's mapping; no query
    let bytesIn = 0;
    let bytesOut = 0;
    // prependListener, unlike on('data'), leaves the stream paused: a route that streams the body still gets
    // every byte, and this sees each chunk as it is read (pipe and async iteration both emit 'data').
    ctx.req.prependListener('data', (chunk: Buffer) => (bytesIn += chunk.length));
    countWrites(ctx, (bytes) => (bytesOut += bytes));
    ctx.res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const request = { method: ctx.method, route: routeTemplate(router, ctx) };
      metrics.requestFinished({ ...request, status: ctx.status, seconds });
      metrics.bodyBytes('received', request, bytesIn);
      metrics.bodyBytes('sent', request, bytesOut);

      const fields: Record<string, unknown> = { ...request, path, status: ctx.status, bytesIn, bytesOut, ms: Math.round(seconds * 1e6) / 1e3, client };
      const user = callerName(ctx);
      if (user !== undefined) fields.user = user;
      // The client went away before the whole response was written (a cancelled pull, a cut upload).
      if (!ctx.res.writableFinished) fields.aborted = true;
      log.info('request', fields);
    });
    await next();
  };
}

/**
 * The template of the route that matched (`/v2/*name/blobs/:digest`), never the path: names and digests
 * would make a metric series per image. A request refused before routing (a 401) gets the template its
 * path would have matched; one no route knows, UNMATCHED_ROUTE.
 */
export function routeTemplate(router: Router, ctx: Context): string {
  // @koa/router sets it when a route's middleware runs.
  const matched = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
  if (matched !== undefined) return String(matched);
  const layer = router
    .match(ctx.path, ctx.method)
    .path.filter((candidate) => candidate.methods.length > 0)
    .pop();
  return layer ? String(layer.path) : UNMATCHED_ROUTE;
}

/** Adds up the body bytes written to the response, however Koa writes them (end with a buffer, or a pipe). */
function countWrites(ctx: Context, count: (bytes: number) => void): void {
  const response = ctx.res;
  const size = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    return (chunk as Uint8Array | null | undefined)?.length ?? 0;
  };
  const write = response.write;
  const end = response.end;
  response.write = function (this: typeof response, chunk: unknown, ...rest: unknown[]) {
    count(size(chunk, rest[0]));
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof response.write;
  response.end = function (this: typeof response, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') count(size(chunk, rest[0]));
    return (end as (...args: unknown[]) => typeof response).call(this, chunk, ...rest);
  } as typeof response.end;
}

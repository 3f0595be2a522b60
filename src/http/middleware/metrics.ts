import Router from '@koa/router';
import { Context, Middleware } from 'koa';
import { RegistryMetrics, UNMATCHED_ROUTE } from '../../metrics/registry-metrics';

/**
 * Counts each request once its response is done or abandoned: method, route template, status, duration,
 * and the body bytes that went each way. First in the chain, so it sees the status renderErrors settled on.
 */
export function httpMetrics(metrics: RegistryMetrics, router: Router): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    metrics.requestStarted();
    // The route is known only after routing; bytes are added up here and counted under it at the end.
    let received = 0;
    let sent = 0;
    // prependListener, unlike on('data'), leaves the stream paused: a route that streams the body still gets
    // every byte, and this sees each chunk as it reads it (pipe and async iteration both emit 'data').
    ctx.req.prependListener('data', (chunk: Buffer) => (received += chunk.length));
    countWrites(ctx, (bytes) => (sent += bytes));
    ctx.res.once('close', () => {
      const request = { method: ctx.method, route: routeTemplate(router, ctx) };
      metrics.requestFinished({ ...request, status: ctx.status, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
      metrics.bodyBytes('received', request, received);
      metrics.bodyBytes('sent', request, sent);
    });
    await next();
  };
}

/**
 * The template of the route that matched (`/v2/*name/blobs/:digest`), never the path: names and digests
 * would make a series per image. A request refused before routing (a 401) gets the template its path
 * would have matched; one no route knows, UNMATCHED_ROUTE.
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

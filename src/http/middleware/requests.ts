import Router from '@koa/router';
import { Context, Middleware } from 'koa';
import { Stream } from 'node:stream';
import { Logger } from '../../log';
import { RegistryMetrics, UNMATCHED_ROUTE } from '../../metrics/registry-metrics';
import { callerName } from './authorize';
import { repositoryName } from './namespace';

/**
 * The outermost middleware: each request, once its response is done or abandoned, becomes one log line
 * and its metrics, from the same figures: method, route template, status, body bytes each way, duration,
 * client and user. Cheap on purpose: it runs for every manifest HEAD.
 */
export function requestAccounting(log: Logger, metrics: RegistryMetrics, router: Router): Middleware {
  const logging = log.isLevelEnabled('info');
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    metrics.requestStarted();
    // Read now: by 'close' the socket may already be detached (a 413 sent before the body was read),
    // and ctx.ip would throw inside an event handler, taking the process down.
    const client = logging ? ctx.ip : '';
    let bytesIn = 0;
    let streamedOut = 0;
    // prependListener, unlike on('data'), leaves a stream paused: a route that streams the body still gets
    // every byte, and this sees each chunk as it is read or sent (pipe and async iteration emit 'data').
    ctx.req.prependListener('data', (chunk: Buffer) => (bytesIn += chunk.length));
    ctx.res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const finished = ctx.res.writableFinished;
      // A streamed body (a blob) counts what went out, also when cut; any other was written whole or not at all.
      const bytesOut = ctx.body instanceof Stream ? streamedOut : finished && ctx.method !== 'HEAD' ? (ctx.response.length ?? 0) : 0;
      const method = ctx.method;
      const route = routeTemplate(router, ctx);
      metrics.requestFinished(method, route, ctx.status, seconds, bytesIn, bytesOut);
      if (!logging) return;
      const fields: Record<string, unknown> = {
        method,
        route,
        path: ctx.originalUrl.split('?')[0], // what the client asked, before a mirror's mapping; no query
        // The repository as stored and ruled, whatever spelling the path used (proxy/index.docker.io/…, a
        // mirror's alpine); absent on other routes.
        name: repositoryName(ctx),
        status: ctx.status,
        bytesIn,
        bytesOut,
        ms: Math.round(seconds * 1e6) / 1e3,
        client,
      };
      const user = callerName(ctx);
      if (user !== undefined) fields.user = user;
      // The client went away before the whole response was written (a cancelled pull, a cut upload).
      if (!finished) fields.aborted = true;
      log.info('request', fields);
    });
    await next();
    if (ctx.body instanceof Stream) ctx.body.prependListener('data', (chunk: Buffer) => (streamedOut += chunk.length));
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

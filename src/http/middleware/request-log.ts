import { Context, Middleware } from 'koa';
import { Logger } from '../../log';
import { callerName } from './authorize';

/**
 * One line per request when its response is done or cut: method, the route template it matched (which
 * groups requests whatever the name or digest), path, status, bytes each way, duration, client and user.
 */
export function requestLog(log: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    // Read now: by 'close' the socket may already be detached (a 413 sent before the body was read),
    // and ctx.ip would throw inside an event handler, taking the process down.
    const client = ctx.ip;
    const socket = ctx.req.socket;
    // Socket counters, so streamed bodies count as they cross the wire (a keep-alive socket serves one
    // request at a time: clients do not pipeline). Written bytes include the response headers.
    const readBefore = socket.bytesRead;
    const writtenBefore = socket.bytesWritten;
    ctx.res.once('close', () => {
      const fields: Record<string, unknown> = {
        method: ctx.method,
        route: matchedRoute(ctx),
        path: ctx.originalUrl.split('?')[0],
        status: ctx.status,
        bytesIn: socket.bytesRead - readBefore,
        bytesOut: socket.bytesWritten - writtenBefore,
        ms: Math.round(Number(process.hrtime.bigint() - started) / 1e3) / 1e3,
        client,
      };
      const user = callerName(ctx);
      if (user !== undefined) fields.user = user;
      // The client went away before the whole response was written (a cancelled pull, a cut upload).
      if (!ctx.res.writableFinished) fields.aborted = true;
      log.info('request', fields);
    });
    await next();
  };
}

/** @koa/router's template for the route that answered (`/v2/*name/blobs/:digest`); undefined when none did. */
function matchedRoute(ctx: Context): string | undefined {
  const route: unknown = (ctx as Context & { _matchedRoute?: unknown })._matchedRoute;
  return typeof route === 'string' ? route : undefined;
}

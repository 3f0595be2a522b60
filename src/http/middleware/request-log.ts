import { Middleware } from 'koa';
import { Logger } from '../../log';

/** One line per request, written when the response is done. */
export function requestLog(log: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    // Read now: by 'finish' the socket may already be detached (a 413 sent before the body was read),
    // and ctx.ip would throw inside an event handler, taking the process down.
    const client = ctx.ip;
    ctx.res.once('finish', () => {
      log.info('request', {
        method: ctx.method,
        path: ctx.path,
        status: ctx.status,
        bytes: ctx.response.length,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        client,
      });
    });
    await next();
  };
}

import { Middleware } from 'koa';
import { Logger } from '../../log';

/** One line per request, written when the response is done. */
export function requestLog(log: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    ctx.res.once('finish', () => {
      log.info('request', {
        method: ctx.method,
        path: ctx.path,
        status: ctx.status,
        bytes: ctx.response.length,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        client: ctx.ip,
      });
    });
    await next();
  };
}

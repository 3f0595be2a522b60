import { Middleware } from 'koa';
import { Logger } from '../../log';
import { RegistryError } from '../errors';

/**
 * Renders every failure as the dist-spec's {"errors":[…]} body. Replaces Koa's default handler,
 * which drops headers such as WWW-Authenticate and answers in plain text.
 */
export function renderErrors(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body == null) {
        throw new RegistryError('UNSUPPORTED', { status: 404, message: `no route for ${ctx.method} ${ctx.path}` });
      }
    } catch (caught) {
      const error = toRegistryError(caught);
      if (error.status >= 500) log.error('request failed', { method: ctx.method, path: ctx.path, error: describe(caught) });
      if (ctx.headerSent || !ctx.writable) return;
      for (const name of ctx.res.getHeaderNames()) ctx.res.removeHeader(name);
      ctx.set(API_VERSION_HEADER, API_VERSION);
      ctx.set(error.headers);
      ctx.status = error.status;
      ctx.type = 'application/json';
      ctx.body = error.toBody();
    }
  };
}

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
export const API_VERSION = 'registry/2.0';

/** dist-spec: every response says which API it speaks. */
export const apiVersion: Middleware = async (ctx, next) => {
  ctx.set(API_VERSION_HEADER, API_VERSION);
  await next();
};

function toRegistryError(caught: unknown): RegistryError {
  if (caught instanceof RegistryError) return caught;
  const status = (caught as { status?: number })?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new RegistryError('UNSUPPORTED', { status, message: (caught as Error).message });
  }
  return new RegistryError('UNKNOWN');
}

function describe(caught: unknown): string {
  return caught instanceof Error ? (caught.stack ?? caught.message) : String(caught);
}

import { Context, Middleware } from 'koa';
import { Logger } from '../../log';
import { RegistryError } from '../../oci/errors';

/**
 * Renders every failure as the dist-spec's {"errors":[…]} body. Replaces Koa's default handler,
 * which drops headers such as WWW-Authenticate and answers in plain text. `domainError` names what the
 * lower layers throw as plain errors (a full disk) in the spec's vocabulary.
 */
export function renderErrors(log: Logger, domainError: (caught: unknown) => RegistryError | undefined = () => undefined): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.body == null) unanswered(ctx);
    } catch (caught) {
      // A failure the lower layers know how to name (a full disk), reported by them: not logged again here.
      const known = caught instanceof RegistryError ? undefined : domainError(caught);
      const error = known ?? toRegistryError(caught);
      if (error.status >= 500 && !known) log.error('request failed', { method: ctx.method, path: ctx.path, error: describe(caught) });
      if (ctx.headerSent || !ctx.writable) return;
      await readAwayBody(ctx);
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

/**
 * What the router left without an answer: no route (404), a path known under other methods (405),
 * or a method no route has (501). RFC 9110: 405 and 501 name the allowed methods in Allow.
 */
function unanswered(ctx: Context): void {
  if (ctx.status === 404) {
    throw new RegistryError('UNSUPPORTED', { status: 404, message: `no route for ${ctx.method} ${ctx.path}` });
  }
  if (ctx.status === 405 || ctx.status === 501) {
    const allow = ctx.response.get('Allow');
    throw new RegistryError('UNSUPPORTED', {
      status: ctx.status,
      message: `${ctx.method} is not allowed on ${ctx.path}`,
      headers: allow ? { Allow: allow } : {},
    });
  }
}

/** The most of a refused request's body read away before answering; past it the connection is closed. */
const MAX_READ_AWAY_BYTES = 1024 * 1024 * 1024;

/**
 * A request refused while its body was still arriving (a chunk the disk has no room for, a push without
 * the right): the rest of the body is read and dropped before the answer goes out. Answering first lets
 * the server close the connection under a client still sending, which then sees a reset instead of the
 * error, or reuses the connection for its next request and sees that fail.
 */
async function readAwayBody(ctx: Context): Promise<void> {
  const request = ctx.req;
  if (request.readableEnded || request.destroyed) return;
  let read = 0;
  try {
    for await (const chunk of request) {
      read += (chunk as Buffer).length;
      if (read > MAX_READ_AWAY_BYTES) {
        request.destroy();
        return;
      }
    }
  } catch {
    // The client went away: nothing to answer.
  }
}

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

import { Middleware } from 'koa';

/**
 * Locations are written as paths; with `public_url` set (behind a reverse proxy that rewrites
 * nothing) they are made absolute on the way out.
 */
export function absoluteLocation(publicUrl: string): Middleware {
  return async (ctx, next) => {
    await next();
    const location = ctx.response.get('Location');
    if (publicUrl && location.startsWith('/')) ctx.set('Location', publicUrl + location);
  };
}

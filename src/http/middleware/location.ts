import { Middleware } from 'koa';

/**
 * Locations are written as paths; with `public_url` set (behind a reverse proxy that rewrites
 * nothing) they are made absolute on the way out.
 */
export function absoluteLocation(publicUrl: string): Middleware {
  return async (ctx, next) => {
    await next();
    // Koa 3's response.get is the raw header: undefined when there is none.
    const location: unknown = ctx.response.get('Location');
    if (publicUrl && typeof location === 'string' && location.startsWith('/')) ctx.set('Location', publicUrl + location);
  };
}

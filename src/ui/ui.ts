import Router from '@koa/router';
import { Middleware } from 'koa';
import { AccessControl } from '../auth/access-control';
import { Config } from '../config/config';
import { Logger } from '../log';
import { RegistryError } from '../oci/errors';
import { PINS_PATH } from '../http/routes/pins';
import { API_PREFIX, apiRoutes } from './api-routes';
import { compressJsonBody } from './compression';
import type { UiContent } from './content';
import { pageRoutes } from './page-routes';
import { Sessions } from './sessions';
import { UiCatalog } from './ui-catalog';

/**
 * Pages take nothing from anywhere else: no inline script, no other origin, no framing (clickjacking a
 * delete button). Forms post only to us.
 */
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

export interface UiOptions {
  config: Config;
  registry: UiContent;
  access: AccessControl | null;
  log: Logger;
}

/**
 * The web UI (`[ui]`, docs/ui.md): pages under `[ui] path` and the JSON API under /api/, on the main listener.
 * It runs before the registry API's authorize(): a browser proves who it is with the session cookie, which
 * /v2/ does not know; scripts send the same Authorization header as to /v2/. Both end in the same AccessControl.
 * Anything else goes on to the registry API untouched.
 */
export function ui({ config, registry, access, log }: UiOptions): Middleware {
  const base = config.ui.path;
  const router = new Router();
  const dependencies = { catalog: new UiCatalog(registry, config), access, sessions: new Sessions(), config, log };
  apiRoutes(router, dependencies);
  pageRoutes(router, dependencies);
  const routes = router.routes() as unknown as Middleware;
  const allowedMethods = router.allowedMethods() as unknown as Middleware;

  return async (ctx, next) => {
    const path = ctx.path;
    // A person who opens the registry's address finds the UI; clients never ask / for HTML.
    if ((path === '/' && (ctx.method === 'GET' || ctx.method === 'HEAD') && /\btext\/html\b/.test(ctx.get('Accept'))) || path === base.slice(0, -1)) {
      ctx.redirect(base);
      return;
    }
    const isPage = path.startsWith(base);
    if (!isPage && path !== API_PREFIX && !path.startsWith(`${API_PREFIX}/`)) return next();
    // /api/pins is the registry's (src/http/routes/pins.ts): authenticated and ruled like /v2/.
    if (path === PINS_PATH || path.startsWith(`${PINS_PATH}/`)) return next();
    if (isPage) ctx.set(PAGE_HEADERS);
    try {
      // Unmatched paths stay unanswered: renderErrors turns that into 404 (or 405 with Allow) in the registry's shape.
      await allowedMethods(ctx, () => routes(ctx, async () => undefined));
      if (!isPage) await compressJsonBody(ctx);
    } catch (error) {
      // RFC 9110: a 401 names how to authenticate. Scripts log in to /api/ with Basic, as to /v2/.
      if (!isPage && access && error instanceof RegistryError && error.status === 401 && !error.headers['WWW-Authenticate']) {
        throw new RegistryError(error.code, {
          message: error.message,
          detail: error.detail,
          headers: { ...error.headers, 'WWW-Authenticate': `Basic realm="${access.config.realm.replace(/["\\\r\n]/g, '')}"` },
        });
      }
      throw error;
    }
  };
}

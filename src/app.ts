import Router from '@koa/router';
import Koa from 'koa';
import { Config } from './config/config';
import { Logger } from './log';
import { apiVersion, renderErrors } from './http/middleware/errors';
import { absoluteLocation } from './http/middleware/location';
import { requestLog } from './http/middleware/request-log';
import { baseRoutes } from './http/routes/base';
import { blobRoutes } from './http/routes/blobs';
import { blobUploadRoutes } from './http/routes/blob-uploads';
import { catalogRoutes } from './http/routes/catalog';
import { manifestRoutes } from './http/routes/manifests';
import { referrerRoutes } from './http/routes/referrers';
import { tagRoutes } from './http/routes/tags';
import { Registry } from './storage/registry';

export interface AppDependencies {
  config: Config;
  registry: Registry;
  log: Logger;
}

/** Builds the Koa application: middleware order and routes. It never listens. */
export function createApp({ config, registry, log }: AppDependencies): Koa {
  const app = new Koa();
  // Errors are rendered by renderErrors; what still reaches Koa is a client gone mid-stream.
  app.on('error', (error: Error) => log.debug('response stream ended early', { error: error.message }));

  const router = new Router();
  const dependencies = { config, registry };
  baseRoutes(router);
  catalogRoutes(router, dependencies);
  blobUploadRoutes(router, dependencies);
  blobRoutes(router, dependencies);
  manifestRoutes(router, dependencies);
  tagRoutes(router, dependencies);
  referrerRoutes(router, dependencies);

  app.use(requestLog(log));
  app.use(apiVersion);
  app.use(absoluteLocation(config.public_url));
  app.use(renderErrors(log));
  // Before the routes: it looks at what they left, and marks a path known under another method 405 with
  // Allow (or an unknown method 501); renderErrors writes the body. Throwing would lose Allow.
  app.use(router.allowedMethods());
  app.use(router.routes());
  return app;
}

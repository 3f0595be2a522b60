import Router from '@koa/router';
import Koa from 'koa';
import { AccessControl } from './auth/access-control';
import { Config } from './config/config';
import { ServerLifecycle } from './lifecycle';
import { Logger } from './log';
import { RegistryMetrics } from './metrics/registry-metrics';
import { apiVersion, renderErrors } from './http/middleware/errors';
import { assertRoutesDeclareAccess, authenticate } from './http/middleware/authorize';
import { absoluteLocation } from './http/middleware/location';
import { Endpoint, namespace } from './http/middleware/namespace';
import { requestAccounting } from './http/middleware/requests';
import { baseRoutes } from './http/routes/base';
import { blobRoutes } from './http/routes/blobs';
import { blobUploadRoutes } from './http/routes/blob-uploads';
import { catalogRoutes } from './http/routes/catalog';
import { healthRoutes } from './http/routes/health';
import { manifestRoutes } from './http/routes/manifests';
import { metricsRoutes } from './http/routes/metrics';
import { pinRoutes } from './http/routes/pins';
import { referrerRoutes } from './http/routes/referrers';
import { searchRoutes } from './http/routes/search';
import { tagRoutes } from './http/routes/tags';
import { tokenRoutes } from './http/routes/token';
import { Registry } from './registry';
import { ui } from './ui/ui';

export interface AppDependencies {
  config: Config;
  registry: Registry;
  log: Logger;
  /** What this listener serves; the main endpoint unless it is a `[[mirror]] listen`. */
  endpoint?: Endpoint;
  /** Authentication and rules, shared by every listener; built from `[auth]` when not given; null: open. */
  access?: AccessControl | null;
  /** Shared by every listener; a fresh one (never draining) when not given. */
  lifecycle?: ServerLifecycle;
  /** Counted into by every listener and served at /metrics; the registry's own when not given. */
  metrics?: RegistryMetrics;
}

/** Builds the Koa application: middleware order and routes. It never listens. */
export function createApp({
  config,
  registry,
  log,
  endpoint = { kind: 'main' },
  lifecycle = new ServerLifecycle(),
  metrics = registry.metrics,
  ...rest
}: AppDependencies): Koa {
  const access = rest.access !== undefined ? rest.access : AccessControl.fromConfig(config.auth, log, registry.uploadOwners);
  const app = new Koa();
  // Koa reads X-Forwarded-Host (host mirrors), -For and -Proto only when told the proxy is trusted.
  app.proxy = config.trust_proxy;
  // The client's address is the one our reverse proxy appended last to X-Forwarded-For: anything left
  // of it came from the client and would let it dodge the failed-login slow-down and fake the log.
  app.maxIpsCount = 1;
  // Errors are rendered by renderErrors; what still reaches Koa is a client gone mid-stream.
  app.on('error', (error: Error) => log.debug('response stream ended early', { error: error.message }));

  const router = new Router();
  const dependencies = { config, registry, access };
  baseRoutes(router);
  healthRoutes(router, registry, lifecycle);
  catalogRoutes(router, dependencies);
  blobUploadRoutes(router, dependencies);
  blobRoutes(router, dependencies);
  manifestRoutes(router, dependencies);
  tagRoutes(router, dependencies);
  referrerRoutes(router, dependencies);
  searchRoutes(router, dependencies);
  if (endpoint.kind === 'main') pinRoutes(router, dependencies);
  if (access) tokenRoutes(router, access);
  // With `[metrics] listen` set, /metrics has a listener of its own (metrics-listener.ts); mirrors serve the cache only.
  if (config.metrics.enabled && config.metrics.listen === '' && endpoint.kind === 'main') metricsRoutes(router, metrics);
  // A route that names a repository and forgets its requireAccess stops the start here.
  assertRoutesDeclareAccess(router);

  app.use(requestAccounting(log, metrics, router));
  app.use(apiVersion);
  app.use(absoluteLocation(config.public_url));
  app.use(renderErrors(log, (error) => registry.diskFull.toRegistryError(error)));
  // Rewrites every spelling of a name (mirror, ?ns=, Docker Hub's host names, aliases) to the name it is
  // stored under, before anything routes on the path or rules on it.
  app.use(namespace(config, endpoint, router));
  // The web UI and /api/ (`[ui]`): before authenticate(), since browsers log in with a session cookie; it
  // decides through the same AccessControl. Mirrors serve the cache only.
  if (config.ui.enabled && endpoint.kind === 'main') app.use(ui({ config, registry, access, log }));
  // Who is asking; each repository route then declares the access it needs (requireAccess), ruled on the
  // stored name the router matched.
  app.use(authenticate(access, config.public_url));
  // Before the routes: it looks at what they left, and marks a path known under another method 405 with
  // Allow (or an unknown method 501); renderErrors writes the body. Throwing would lose Allow.
  app.use(router.allowedMethods());
  app.use(router.routes());
  return app;
}

import Router from '@koa/router';
import Koa from 'koa';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Config } from '../config/config';
import { parseListen } from '../config/mirrors';
import { apiVersion, renderErrors } from '../http/middleware/errors';
import { metricsRoutes } from '../http/routes/metrics';
import { createLogger, Logger } from '../log';
import { RegistryMetrics } from '../metrics/registry-metrics';

/** The `[metrics] listen` listener once started; `port` is the one it got. */
export interface MetricsListener {
  host: string;
  port: number;
  server: Server;
  /** Stops it, ending open connections (a scrape is short, and retried at the next interval). */
  close(): Promise<void>;
}

/**
 * Serves /metrics on `[metrics] listen`, a listener of its own like the reference registry's debug
 * address: a small Koa app of the main app's pieces, open to whoever reaches it (bind it to a private
 * address), no [auth].
 * Null when `[metrics]` is disabled or `listen` is "" (then the main listener serves /metrics).
 */
export async function startMetricsListener(config: Config, metrics: RegistryMetrics, log?: Logger): Promise<MetricsListener | null> {
  if (!config.metrics.enabled || config.metrics.listen === '') return null;
  const address = parseListen(config.metrics.listen);
  // load-config validates it; a Config built by hand may not be.
  if (!address) throw new Error(`metrics.listen: expected host:port, got ${JSON.stringify(config.metrics.listen)}`);

  // The main app's pieces, so errors and methods answer as on every other port: one vocabulary.
  const router = new Router();
  metricsRoutes(router, metrics);
  const app = new Koa();
  app.use(apiVersion);
  app.use(renderErrors(log ?? createLogger('silent')));
  app.use(router.allowedMethods());
  app.use(router.routes());
  const server = createServer(app.callback());
  const listening = new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  server.listen(address.port, address.host);
  await listening.catch((error: Error) => {
    throw new Error(`cannot listen on ${config.metrics.listen} for metrics: ${error.message}`);
  });
  return {
    host: address.host,
    port: (server.address() as AddressInfo).port,
    server,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      return closed;
    },
  };
}

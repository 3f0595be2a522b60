import { RegistryMetrics } from '../../metrics/registry-metrics';
import { RegistryRouter } from './context';

/** Prometheus scrapes it on the main listener when `[metrics] listen` is "" (see metrics-listener.ts otherwise). */
export const METRICS_PATH = '/metrics';

/** GET /metrics: the exposition text, current at each scrape. [auth] applies like any path outside /v2/. */
export function metricsRoutes(router: RegistryRouter, metrics: RegistryMetrics): void {
  router.get(METRICS_PATH, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.type = metrics.contentType;
    ctx.body = await metrics.metrics();
  });
}

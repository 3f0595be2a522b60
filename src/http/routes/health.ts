import { ServerLifecycle } from '../../lifecycle';
import { RegistryError } from '../../oci/errors';
import { RegistryContent, RegistryRouter } from './context';

/** Probes for orchestrators and the Dockerfile's HEALTHCHECK; open without credentials on every listener. */
export const HEALTH_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/**
 * `/healthz` (liveness): the process answers, so there is nothing a restart would fix.
 * `/readyz` (readiness): it can take pushes and pulls now: storage writable, index open, not shutting
 * down. Unready is 503 in the registry's error shape, each check's outcome in `detail.checks`.
 */
export function healthRoutes(router: RegistryRouter, registry: RegistryContent, lifecycle: ServerLifecycle): void {
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (lifecycle.draining) throw new RegistryError('UNAVAILABLE', { message: 'shutting down', headers: { 'Cache-Control': 'no-store' } });
    const { ready, checks } = await registry.readiness();
    if (!ready) throw new RegistryError('UNAVAILABLE', { message: 'not ready', detail: { checks }, headers: { 'Cache-Control': 'no-store' } });
    ctx.body = { status: 'ready', checks };
  });
}

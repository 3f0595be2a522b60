import { Context, Next } from 'koa';
import { pinnedName, splitReference } from '../../config/pins';
import { RegistryError } from '../../oci/errors';
import type { Pin } from '../../storage/pins';
import { callerUser, pullFilter, requireAccess } from '../middleware/authorize';
import { respondEmpty } from '../request';
import { RegistryRouter, RouteDependencies } from './context';

/** Where pins are managed (docs/api.md); the web UI's middleware passes these paths on to the registry's routes. */
export const PINS_PATH = '/api/pins';

/**
 * Pins: cached content that eviction never removes (docs/cache.md).
 * PUT    /api/pins/<name>:<tag> or /api/pins/<name>@<digest>   pin (delete right on the stored name): 201, 200 if pinned already
 * DELETE /api/pins/<name>:<tag> or …@<digest>                  unpin a pin set here (delete right): 204
 * GET    /api/pins                                             the pins, API and configured, on names the caller may pull
 * <name> as after /v2/proxy/ (docker.io/library/alpine) or with proxy/; any spelling the cache accepts.
 */
export function pinRoutes(router: RegistryRouter, { registry, config, access }: RouteDependencies): void {
  // Sets the stored name as the route's `name`, which requireAccess rules on, as it does for /v2/<name>/….
  const target = async (ctx: Context, next: Next) => {
    const written = (ctx.params as { pin: string }).pin;
    const parts = splitReference(written);
    if (!parts) {
      throw new RegistryError('NAME_INVALID', {
        message: 'a pin names <name>:<tag> or <name>@<digest>, such as docker.io/library/alpine:3.20',
        detail: { pin: written },
      });
    }
    (ctx.params as { name: string }).name = pinnedName(config.proxy, parts.name);
    (ctx.state as { pinReference?: string }).pinReference = parts.reference;
    await next();
  };
  const pinOf = (ctx: Context) => ({
    repository: (ctx.params as { name: string }).name,
    reference: (ctx.state as { pinReference: string }).pinReference,
  });

  router.put(`${PINS_PATH}/*pin`, target, requireAccess('delete'), async (ctx) => {
    const pin = pinOf(ctx);
    const { created, cached } = await registry.pins.add(pin, callerUser(ctx) || null);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { ...pin, cached };
    ctx.status = created ? 201 : 200;
  });

  router.delete(`${PINS_PATH}/*pin`, target, requireAccess('delete'), async (ctx) => {
    const pin = pinOf(ctx);
    if (!(await registry.pins.remove(pin))) {
      throw new RegistryError('MANIFEST_UNKNOWN', {
        message: `${pin.repository}:${pin.reference} is not pinned through the API (configured pins are removed from the configuration)`,
        detail: pin,
      });
    }
    respondEmpty(ctx, 204);
  });

  router.get(PINS_PATH, async (ctx) => {
    const mayPull = pullFilter(ctx, access ?? null) ?? (() => true);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { pins: (await registry.pins.list()).filter((pin) => mayPull(pin.repository)).map(shown) };
  });
}

function shown(pin: Pin) {
  return {
    source: pin.source,
    ...(pin.isPrefix ? { prefix: pin.repository, tags: pin.tagPattern ?? '' } : { repository: pin.repository, reference: pin.reference }),
    createdBy: pin.createdBy ?? undefined,
    createdAt: new Date(pin.createdAt).toISOString(),
  };
}

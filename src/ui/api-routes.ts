import Router from '@koa/router';
import { Context } from 'koa';
import { respondEmpty, single } from '../http/request';
import { UiDependencies } from './ui-dependencies';
import { identify, requireSameSiteAction } from './viewer';

/** Where the JSON API is served (docs/ui.md): what the pages show, for scripts too. */
export const API_PREFIX = '/api';

/**
 * GET  /api/repositories?q=                          repositories the caller may pull, with sizes and times
 * GET  /api/repositories/<name>/tags                 its tags: digest, media type, platforms, size, created, labels
 * GET  /api/repositories/<name>/manifests/<ref>      one image: layers, config (history, entrypoint), annotations
 * DELETE /api/repositories/<name>/manifests/<ref>    delete a tag or a manifest (delete right; evicts in the cache)
 * DELETE /api/cache/<name>                           evict a cached repository (delete right)
 * GET  /api/cache                                    the cache per upstream
 * GET  /api/storage                                  bytes and files per store, now and over time; the last collections
 * POST /api/gc/dry-run                               what garbage collection would remove (delete right on "")
 * POST /api/gc                                       run garbage collection now, or join the run under way (same right)
 * Errors are the registry's {"errors":[…]} (renderErrors), so scripts read them as they read /v2/'s.
 */
export function apiRoutes(router: Router, { catalog, access, sessions, config }: UiDependencies): void {
  const viewerOf = (ctx: Context) => identify(ctx, access, sessions);
  const action = async (ctx: Context) => {
    const viewer = await viewerOf(ctx);
    requireSameSiteAction(ctx, viewer, sessions, config.public_url);
    return viewer;
  };
  const noStore = (ctx: Context) => ctx.set('Cache-Control', 'no-store');

  router.get(`${API_PREFIX}/repositories`, async (ctx) => {
    noStore(ctx);
    ctx.body = { repositories: await catalog.repositories(await viewerOf(ctx), single(ctx.query.q) ?? '') };
  });

  router.get(`${API_PREFIX}/repositories/*name/tags`, async (ctx) => {
    noStore(ctx);
    const view = await catalog.repository(await viewerOf(ctx), ctx.params.name);
    ctx.body = { ...view.repository, tags: view.tags };
  });

  router.get(`${API_PREFIX}/repositories/*name/manifests/:reference`, async (ctx) => {
    noStore(ctx);
    ctx.body = await catalog.image(await viewerOf(ctx), ctx.params.name, ctx.params.reference);
  });

  router.delete(`${API_PREFIX}/repositories/*name/manifests/:reference`, async (ctx) => {
    await catalog.delete(await action(ctx), ctx.params.name, ctx.params.reference);
    respondEmpty(ctx, 204);
  });

  router.get(`${API_PREFIX}/cache`, async (ctx) => {
    noStore(ctx);
    ctx.body = { upstreams: await catalog.cache(await viewerOf(ctx)) };
  });

  router.delete(`${API_PREFIX}/cache/*name`, async (ctx) => {
    ctx.body = { evicted: await catalog.evict(await action(ctx), ctx.params.name) };
  });

  router.get(`${API_PREFIX}/storage`, async (ctx) => {
    noStore(ctx);
    ctx.body = await catalog.storage(await viewerOf(ctx));
  });

  router.post(`${API_PREFIX}/gc/dry-run`, async (ctx) => {
    ctx.body = await catalog.gcDryRun(await action(ctx));
  });

  router.post(`${API_PREFIX}/gc`, async (ctx) => {
    ctx.body = await catalog.collectGarbage(await action(ctx));
  });
}

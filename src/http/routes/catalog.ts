import { pullFilter } from '../middleware/authorize';
import { namespacePrefix } from '../middleware/namespace';
import { pagination, setNextLink } from '../request';
import { Page, pageOf } from '../../storage/registry-index';
import { RegistryRouter, RouteDependencies } from './context';

/**
 * GET /v2/_catalog?n=&last= — repository names, sorted, paginated with a Link header. On a mirror, the
 * repositories cached from its upstream, named as the mirror shows them.
 */
export function catalogRoutes(router: RegistryRouter, { registry, access }: RouteDependencies): void {
  router.get('/v2/_catalog', async (ctx) => {
    const page = pagination(ctx);
    const prefix = namespacePrefix(ctx);
    const mayPull = pullFilter(ctx, access ?? null);
    const repositories = mayPull
      ? visiblePage(await registry.listRepositories({ last: page.last }, prefix), (name) => mayPull(prefix + name), page.n)
      : await registry.listRepositories(page, prefix);
    setNextLink(ctx, '/v2/_catalog', page.n, repositories.next);
    ctx.body = { repositories: repositories.items };
  });
}

/** Only what the caller may pull, paginated after filtering so that a page is never short of visible names. */
function visiblePage(all: Page<string>, visible: (name: string) => boolean, n: number | undefined): Page<string> {
  return pageOf(all.items.filter(visible), n);
}

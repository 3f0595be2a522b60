import { namespacePrefix } from '../middleware/namespace';
import { pagination, setNextLink } from '../request';
import { RegistryRouter, RouteDependencies } from './context';

/**
 * GET /v2/_catalog?n=&last= — repository names, sorted, paginated with a Link header. On a mirror, the
 * repositories cached from its upstream, named as the mirror shows them.
 */
export function catalogRoutes(router: RegistryRouter, { registry }: RouteDependencies): void {
  router.get('/v2/_catalog', async (ctx) => {
    const page = pagination(ctx);
    const repositories = await registry.listRepositories(page, namespacePrefix(ctx));
    setNextLink(ctx, '/v2/_catalog', page.n, repositories.next);
    ctx.body = { repositories: repositories.items };
  });
}

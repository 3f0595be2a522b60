import { pagination, setNextLink } from '../request';
import { RegistryRouter, RouteDependencies } from './context';

/** GET /v2/_catalog?n=&last= — repository names, sorted, paginated with a Link header. */
export function catalogRoutes(router: RegistryRouter, { registry }: RouteDependencies): void {
  router.get('/v2/_catalog', async (ctx) => {
    const page = pagination(ctx);
    const repositories = await registry.listRepositories(page);
    setNextLink(ctx, '/v2/_catalog', page.n, repositories.next);
    ctx.body = { repositories: repositories.items };
  });
}

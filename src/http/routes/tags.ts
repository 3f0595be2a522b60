import { shownName } from '../middleware/namespace';
import { pagination, setNextLink } from '../request';
import { RegistryRouter, RouteDependencies } from './context';
import { requireAccess } from '../middleware/authorize';

/** GET /v2/<name>/tags/list?n=&last= — lexically sorted, paginated with a Link header. */
export function tagRoutes(router: RegistryRouter, { registry }: RouteDependencies): void {
  router.get('/v2/*name/tags/list', requireAccess('pull'), async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const page = pagination(ctx);
    const tags = await repository.listTags(page);
    // On a mirror, proxy/docker.io/library/alpine is library/alpine, as the client asked for it.
    const name = shownName(ctx, repository.name);
    setNextLink(ctx, `/v2/${name}/tags/list`, page.n, tags.next);
    ctx.body = { name, tags: tags.items };
  });
}

import { RegistryError } from '../../oci/errors';
import { pullFilter } from '../middleware/authorize';
import { namespacePrefix } from '../middleware/namespace';
import { single } from '../request';
import { RegistryRouter, RouteDependencies } from './context';

const DEFAULT_PAGE_SIZE = 25;
const MAX_PAGE_SIZE = 100;

/**
 * GET /v1/search?q=&n=&page= — Docker's v1 search, answered over every name `_catalog` lists: what
 * `docker search myregistry/<term>` and Synology DSM's registry search box ask. A name matches when it
 * contains `q` (case-insensitive; an empty `q` matches all) and the caller may pull it. Results are sorted by
 * name; `page` starts at 1.
 */
export function searchRoutes(router: RegistryRouter, { registry, access }: RouteDependencies): void {
  router.get('/v1/search', async (ctx) => {
    const query = single(ctx.query.q) ?? '';
    const pageSize = positive(single(ctx.query.n), 'n', DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    const page = positive(single(ctx.query.page), 'page', 1, Number.MAX_SAFE_INTEGER);
    const term = query.toLowerCase();
    const prefix = namespacePrefix(ctx);
    // With [auth], only what the caller may pull, as in _catalog.
    const mayPull = pullFilter(ctx, access ?? null) ?? (() => true);
    const { items } = await registry.listRepositories({}, prefix);
    const matches = items.filter((name) => name.toLowerCase().includes(term) && mayPull(prefix + name));
    const results = matches.slice((page - 1) * pageSize, page * pageSize).map((name) => ({
      name,
      description: '',
      star_count: 0,
      is_official: false,
      is_automated: false,
    }));
    ctx.body = {
      num_results: matches.length,
      num_pages: Math.ceil(matches.length / pageSize),
      query,
      page,
      page_size: pageSize,
      results,
    };
  });
}

/** A positive integer parameter, capped at `max`; absent or empty means `fallback`. */
function positive(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  if (!/^\d{1,15}$/.test(value) || Number(value) < 1) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', { message: `${name} must be a positive integer`, detail: { [name]: value } });
  }
  return Math.min(Number(value), max);
}

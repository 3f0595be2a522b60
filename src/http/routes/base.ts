import { RegistryRouter } from './context';

/** dist-spec end-1: `GET /v2/` says the API is spoken here. */
export function baseRoutes(router: RegistryRouter): void {
  router.get('/v2/', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = '{}';
  });
}

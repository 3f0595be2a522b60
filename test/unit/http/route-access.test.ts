import Router from '@koa/router';
import { assertRoutesDeclareAccess, requireAccess } from '../../../src/http/middleware/authorize';

describe('routes declare their access', () => {
  it('a repository route without requireAccess stops the start, naming the route', () => {
    const router = new Router();
    router.get('/v2/*name/tags/list', requireAccess('pull'), (ctx) => (ctx.body = {}));
    router.delete('/v2/*name/manifests/:reference', (ctx) => (ctx.status = 202));
    expect(() => assertRoutesDeclareAccess(router)).toThrow(/DELETE.*\/v2\/\*name\/manifests\/:reference.*declares no access/);
  });

  it('routes that name no repository need none', () => {
    const router = new Router();
    router.get('/v2/', (ctx) => (ctx.body = {}));
    router.get('/v2/*name/blobs/:digest', requireAccess('pull'), (ctx) => (ctx.body = ''));
    expect(() => assertRoutesDeclareAccess(router)).not.toThrow();
  });
});

import Router from '@koa/router';
import Koa from 'koa';
import { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../src/config/load-config';
import { namespace } from '../../../src/http/middleware/namespace';
import { Server } from 'node:http';

// The namespace middleware finds a repository name through the router's own match: a route added
// later maps every spelling of a name without a second copy of the route grammar.
describe('namespace middleware', () => {
  let work: string;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'namespace-'));
    const config = loadConfig({ cwd: work, env: {}, overrides: { log_level: 'silent' } });
    const router = new Router();
    // A route no other part of the registry knows of.
    router.get('/v2/*name/attestations/:id', (ctx) => (ctx.body = { name: ctx.params.name, id: ctx.params.id, path: ctx.path }));
    const app = new Koa();
    app.use(namespace(config, { kind: 'main' }, router));
    app.use(router.routes());
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(work, { recursive: true, force: true });
  });

  it.each([
    ['/v2/proxy/registry-1.docker.io/alpine/attestations/7', 'proxy/docker.io/library/alpine'],
    ['/v2/proxy/index.docker.io/library/alpine/attestations/7', 'proxy/docker.io/library/alpine'],
    ['/v2/proxy/docker.io/alpine/attestations/7', 'proxy/docker.io/library/alpine'],
    ['/v2/alpine/attestations/7?ns=docker.io', 'proxy/docker.io/library/alpine'],
    ['/v2/team/app/attestations/7', 'team/app'],
  ])('%s is routed under %s', async (requestPath, stored) => {
    const response = await fetch(base + requestPath);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { name: string; id: string; path: string };
    expect(body).toEqual({ name: stored, id: '7', path: `/v2/${stored}/attestations/7` });
  });

  it('a path no route names is left alone', async () => {
    const response = await fetch(`${base}/v2/proxy/registry-1.docker.io/alpine/unknown`);
    expect(response.status).toBe(404);
  });
});

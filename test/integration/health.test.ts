import { readdirSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { createApp } from '../../src/app';
import { isPostgresUrl } from '../../src/config/config';
import { ServerLifecycle } from '../../src/lifecycle';
import { createLogger } from '../../src/log';
import { basic, createAuthApp } from '../helpers/auth';
import { makeReadOnly } from '../helpers/read-only';
import { expectErrorCode, RegistryClient } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

describe('GET /healthz and /readyz', () => {
  let app: TestApp;
  let client: RegistryClient;

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
  });
  afterAll(() => app.close());

  test('/healthz answers 200 while the process runs', async () => {
    const response = await client.fetch('/healthz');
    expect(response.status).toBe(200);
    expect(response.headers.get('Cache-Control')).toBe('no-store');
    expect(await response.json()).toEqual({ status: 'ok' });
    expect((await client.fetch('/healthz', { method: 'HEAD' })).status).toBe(200);
  });

  test('/readyz answers 200 with every check ok, and leaves no probe file behind', async () => {
    const response = await client.fetch('/readyz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      status: 'ready',
      checks: {
        registry_storage: 'ok',
        temporary_registry_storage: 'ok',
        proxy_storage: 'ok',
        // A SQLite file's directory; PostgreSQL (the `postgres` jest project) has no directory here.
        ...(isPostgresUrl(app.config.database) ? {} : { database_directory: 'ok' }),
        database: 'ok',
      },
    });
    for (const directory of [app.config.registry_storage, app.config.temporary_registry_storage, app.config.proxy_storage]) {
      expect(readdirSync(directory).filter((entry) => entry.startsWith('.readyz'))).toEqual([]);
    }
  });

  test('/readyz turns 503 UNAVAILABLE while registry_storage is read-only, naming the check, and ready again after', async () => {
    const restore = makeReadOnly(app.config.registry_storage);
    try {
      const response = await client.fetch('/readyz');
      const body = await expectErrorCode(response, 503, 'UNAVAILABLE');
      const { checks } = body.errors[0].detail as { checks: Record<string, string> };
      expect(checks.registry_storage).toMatch(/^not writable: E(ROFS|ACCES)/);
      expect(checks.database).toBe('ok');
      expect(checks.proxy_storage).toBe('ok');
      // Liveness is unaffected: a restart would not make the disk writable.
      expect((await client.fetch('/healthz')).status).toBe(200);
    } finally {
      restore();
    }
    expect((await client.fetch('/readyz')).status).toBe(200);
  });

  test('concurrent /readyz probes share one probe of the storage', async () => {
    const probes = await Promise.all(Array.from({ length: 20 }, () => app.registry.readiness()));
    expect(new Set(probes).size).toBe(1);
    expect(probes[0].ready).toBe(true);
    expect(await app.registry.readiness()).not.toBe(probes[0]); // the next one after it settled probes again
  });

  test('/readyz is 503 once the index is closed', async () => {
    const own = await createTestApp();
    try {
      await own.registry.index.close();
      const response = await new RegistryClient(own).fetch('/readyz');
      const body = await expectErrorCode(response, 503, 'UNAVAILABLE');
      expect((body.errors[0].detail as { checks: Record<string, string> }).checks.database).toBe('closed');
    } finally {
      await own.close();
    }
  });

  test('/readyz is 503 "shutting down" while the server drains', async () => {
    const lifecycle = new ServerLifecycle();
    const server = createApp({ config: app.config, registry: app.registry, log: createLogger('silent'), lifecycle }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
      expect((await fetch(url)).status).toBe(200);
      lifecycle.draining = true;
      const body = await expectErrorCode(await fetch(url), 503, 'UNAVAILABLE');
      expect(body.errors[0].message).toBe('shutting down');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('health probes with [auth]', () => {
  let app: TestApp;
  afterAll(() => app.close());

  test('need no credentials, while /v2/ and /v2/_catalog still do', async () => {
    app = await createAuthApp({ alice: 'secret' }, '[auth]\nhtpasswd = "users.htpasswd"\n');
    const client = new RegistryClient(app);
    expect((await client.fetch('/healthz')).status).toBe(200);
    expect((await client.fetch('/readyz')).status).toBe(200);
    expect((await client.fetch('/v2/')).status).toBe(401);
    expect((await client.fetch('/v2/_catalog')).status).toBe(401);
    expect((await client.fetch('/v2/_catalog', { headers: basic('alice:secret') })).status).toBe(200);
  });
});

/**
 * What the registry makes of a reverse proxy's X-Forwarded-Proto and -Host, without the proxy (the e2e
 * test runs nginx): with trust_proxy they name the token realm's origin; without it they are ignored;
 * public_url overrides both. Locations and Link headers stay paths unless public_url is set, and a port
 * mirror behind a proxy does not name the main listener's internal port.
 */
import { createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { digestOf, expectErrorCode, expectStatus } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

const FORWARDED = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'registry.example.com:5443' };

function tokenAuth(topLevel: string): string {
  return `${topLevel}\n[auth]\nhtpasswd = "${HTPASSWD_FILE}"\ntoken = true\n`;
}

describe('GET /v2/ Bearer realm behind a reverse proxy', () => {
  const apps: TestApp[] = [];
  const start = async (topLevel: string) => {
    const app = await createAuthApp({ alice: 'alice-pw' }, tokenAuth(topLevel));
    apps.push(app);
    return app;
  };
  afterAll(() => Promise.all(apps.map((app) => app.close())));

  test('trust_proxy = true: the realm is https://<X-Forwarded-Host, port kept>/token; the first of several values wins', async () => {
    const app = await start('trust_proxy = true');
    const response = await fetch(`${app.url}/v2/`, { headers: FORWARDED });
    await expectErrorCode(response, 401, 'UNAUTHORIZED');
    expect(response.headers.get('WWW-Authenticate')).toBe('Bearer realm="https://registry.example.com:5443/token",service="registry"');

    const chained = await fetch(`${app.url}/v2/`, {
      headers: { 'X-Forwarded-Proto': 'https, http', 'X-Forwarded-Host': 'registry.example.com, 10.0.0.2:5000' },
    });
    expect(chained.headers.get('WWW-Authenticate')).toBe('Bearer realm="https://registry.example.com/token",service="registry"');
    // Without forwarded headers (a client on the registry's own port), its own address.
    expect((await fetch(`${app.url}/v2/`)).headers.get('WWW-Authenticate')).toBe(`Bearer realm="${app.url}/token",service="registry"`);
  });

  test('without trust_proxy the forwarded headers are ignored', async () => {
    const app = await start('');
    const response = await fetch(`${app.url}/v2/`, { headers: FORWARDED });
    expect(response.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${app.url}/token",service="registry"`);
  });

  test('public_url names the realm whatever the headers say, with or without trust_proxy', async () => {
    const app = await start('trust_proxy = true\npublic_url = "https://public.example.com/"');
    const response = await fetch(`${app.url}/v2/`, { headers: FORWARDED });
    expect(response.headers.get('WWW-Authenticate')).toBe('Bearer realm="https://public.example.com/token",service="registry"');
  });
});

describe('Locations and Link headers behind a reverse proxy', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ overrides: { trust_proxy: 'true' } });
  });
  afterAll(() => app?.close());

  test('POST /v2/<name>/blobs/uploads/ with trust_proxy and no public_url: a path, which clients resolve against the address they used', async () => {
    const response = await fetch(`${app.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: FORWARDED });
    await expectStatus(response, 202);
    expect(response.headers.get('Location')).toMatch(/^\/v2\/team\/app\/blobs\/uploads\/[^/]+$/);
  });

  test('GET /v2/_catalog?n=1: the Link header is a path', async () => {
    for (const name of ['team/a', 'team/b']) {
      const body = Buffer.from(name);
      const digest = digestOf(body);
      await expectStatus(await fetch(`${app.url}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', body }), 201);
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: body.length },
        layers: [],
      });
      const put = await fetch(`${app.url}/v2/${name}/manifests/v1`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
        body: manifest,
      });
      await expectStatus(put, 201);
      expect(put.headers.get('Location')).toMatch(/^\/v2\//);
    }
    const page = await fetch(`${app.url}/v2/_catalog?n=1`, { headers: FORWARDED });
    expect(page.headers.get('Link')).toBe(`</v2/_catalog?n=1&last=${encodeURIComponent('team/a')}>; rel="next"`);
  });
});

describe('a [[mirror]] listen behind a reverse proxy (trust_proxy = true)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({
      configuration: `trust_proxy = true

[[proxy.upstreams]]
host = "registry-1.docker.io"
url = "http://127.0.0.1:9"

[[mirror]]
upstream = "docker.io"
listen = "127.0.0.1:0"
`,
    });
  });
  afterAll(() => app?.close());

  test('POST on the mirror: 405 UNSUPPORTED that does not send the client to the main listener\'s internal port', async () => {
    const response = await fetch(`${app.mirrorUrl(0)}/v2/library/app/blobs/uploads/`, {
      method: 'POST',
      headers: { 'X-Forwarded-Host': 'hub.example.com' },
    });
    const body = await expectErrorCode(response, 405, 'UNSUPPORTED');
    expect(body.errors[0].message).toBe(
      "hub.example.com is a read-only mirror of docker.io; push to the registry's main address (not hub.example.com)",
    );
  });
});

import { basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { createTestApp, TestApp } from '../helpers/test-app';

const ALICE = basic('alice:alice-pw');
const CAROL = basic('carol:carol-pw');

// alice may delete cached content of upstream.test, carol only pull; anonymous callers may pull.
const CONFIGURATION = `
[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"

[[auth.rules]]
prefix = "proxy/upstream.test"
pull = ["*", "anonymous"]
delete = ["alice"]

[[auth.rules]]
prefix = "proxy/other.test"
pull = ["alice"]
delete = ["alice"]

[[proxy.upstreams]]
host = "upstream.test"
url = "http://127.0.0.1:9"
aliases = ["up"]

[[proxy.upstreams]]
host = "other.test"
url = "http://127.0.0.1:9"

[[proxy.pin]]
prefix = "other.test/secret"
tags = "v1\\\\..*"
`;

interface ErrorBody {
  errors: Array<{ code: string; message: string }>;
}

describe('/api/pins: pins on cached content, behind [auth]', () => {
  let app: TestApp;
  const request = (path: string, method: string, headers: Record<string, string> = {}) =>
    fetch(`${app.url}/api/pins${path}`, { method, headers });

  beforeAll(async () => {
    app = await createAuthApp({ alice: 'alice-pw', carol: 'carol-pw' }, CONFIGURATION);
  });
  afterAll(() => app?.close());

  test('PUT needs the delete right on the stored name: 401 anonymous, 403 DENIED (JSON) for a user without it', async () => {
    const anonymous = await request('/upstream.test/team/app:1', 'PUT');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^(Basic|Bearer) /);
    expect(((await anonymous.json()) as ErrorBody).errors[0].code).toBe('UNAUTHORIZED');

    const carol = await request('/upstream.test/team/app:1', 'PUT', CAROL);
    expect(carol.status).toBe(403);
    expect(carol.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await carol.json()) as ErrorBody).errors[0]).toMatchObject({ code: 'DENIED', message: 'carol may not delete proxy/upstream.test/team/app' });
    expect((await app.registry.pins.list()).filter((pin) => pin.source === 'api')).toEqual([]);
  });

  test('PUT as a user with the delete right pins (201, then 200); any spelling of the name is the stored one', async () => {
    const created = await request('/up/team/app:1', 'PUT', ALICE);
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ repository: 'proxy/upstream.test/team/app', reference: '1', cached: false });
    const again = await request('/proxy/upstream.test/team/app:1', 'PUT', ALICE);
    expect(again.status).toBe(200);
    const digest = `sha256:${'a'.repeat(64)}`;
    expect((await request(`/upstream.test/team/app@${digest}`, 'PUT', ALICE)).status).toBe(201);

    const listed = await request('', 'GET', CAROL);
    expect(listed.status).toBe(200);
    const { pins } = (await listed.json()) as { pins: Array<Record<string, unknown>> };
    // carol may not pull proxy/other.test: its configured prefix pin is not shown to her.
    expect(pins).toEqual([
      expect.objectContaining({ source: 'api', repository: 'proxy/upstream.test/team/app', reference: '1', createdBy: 'alice' }),
      expect.objectContaining({ source: 'api', repository: 'proxy/upstream.test/team/app', reference: digest, createdBy: 'alice' }),
    ]);
    const alicePins = ((await (await request('', 'GET', ALICE)).json()) as { pins: Array<Record<string, unknown>> }).pins;
    expect(alicePins).toContainEqual(expect.objectContaining({ source: 'config', prefix: 'proxy/other.test/secret', tags: 'v1\\..*' }));
    const metrics = await (await fetch(`${app.url}/metrics`, { headers: ALICE })).text();
    expect(metrics).toMatch(/^registry_proxy_pins\{source="api"\} 2$/m);
    expect(metrics).toMatch(/^registry_proxy_pins\{source="config"\} 1$/m);
  });

  test('DELETE needs the delete right too; unpinning what is not pinned is 404 in the registry error shape', async () => {
    expect((await request('/upstream.test/team/app:1', 'DELETE', CAROL)).status).toBe(403);
    const deleted = await request('/upstream.test/team/app:1', 'DELETE', ALICE);
    expect(deleted.status).toBe(204);
    const missing = await request('/upstream.test/team/app:1', 'DELETE', ALICE);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  test('a malformed pin is 400 NAME_INVALID; a pin of a host the cache does not serve is refused', async () => {
    const noTag = await request('/upstream.test/team/app', 'PUT', ALICE);
    expect(noTag.status).toBe(400);
    expect(((await noTag.json()) as ErrorBody).errors[0].code).toBe('NAME_INVALID');
    const badHost = await request('/notahost/app:1', 'PUT', ALICE);
    expect(((await badHost.json()) as ErrorBody).errors[0].code).toBe('NAME_UNKNOWN');
  });

  test('API pins survive a restart; configured ones are what the configuration says', async () => {
    expect((await request('/upstream.test/team/kept:2', 'PUT', ALICE)).status).toBe(201);
    await app.restart();
    const pins = await app.registry.pins.list();
    expect(pins).toContainEqual(expect.objectContaining({ source: 'api', repository: 'proxy/upstream.test/team/kept', reference: '2' }));
    expect(pins.filter((pin) => pin.source === 'config')).toHaveLength(1);
  });
});

describe('[[proxy.pin]] configuration', () => {
  test.each([
    ['image = "upstream.test/app"', /proxy\.pin\[0\]\.image: expected a name with :tag or @digest/],
    ['image = "upstream.test/app:1"\nprefix = "upstream.test"', /proxy\.pin\[0\]: set exactly one of image .* and prefix/],
    ['prefix = "upstream.test"\ntags = "v("', /proxy\.pin\[0\]\.tags: not a regular expression/],
    ['image = "nohost/app:1"', /proxy\.pin\[0\]\.image: nohost is not a registry host name/],
  ])('%s is refused at start', async (pin, message) => {
    await expect(
      createTestApp({ configuration: `[[proxy.upstreams]]\nhost = "upstream.test"\nurl = "http://127.0.0.1:9"\n[[proxy.pin]]\n${pin}\n` }),
    ).rejects.toThrow(message);
  });
});

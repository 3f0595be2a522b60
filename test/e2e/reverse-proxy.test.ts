/**
 * The registry behind Debian's nginx, configured with the README's example (deploy/nginx.conf), TLS on a
 * loopback port: real skopeo and podman push and pull through it over https, with and without the
 * built-in token service. What must hold behind a proxy: uploads of large layers stream through (also
 * chunked, size unknown), every Location a client sees is a path or the https address it used, and the
 * Bearer realm is that https address, from trusted X-Forwarded-Proto/-Host or from public_url. Never the
 * registry's own http://127.0.0.1:<port>.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FAILURE_LIMIT } from '../../src/auth/access-control';
import { createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { Nginx, NginxLogEntry, startNginx } from '../helpers/nginx';
import { buildImageLayout, BuiltImage, findTag } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { freePort } from '../helpers/upstream-registry';

const MiB = 1024 * 1024;
const USERS = { alice: 'alice-pw', carol: 'carol-pw' };

/** `[auth]` with the token service: anyone logged in pulls, only alice pushes. */
const TOKEN_AUTH = `
[auth]
htpasswd = "${HTPASSWD_FILE}"
token = true

[[auth.rules]]
prefix = ""
pull = ["*"]
push = ["alice"]
`;

const portOf = (app: TestApp) => Number(new URL(app.url).port);

/** Requests that opened, continued or closed an upload session (or mounted a blob). */
const uploads = (log: NginxLogEntry[]) => log.filter((entry) => /\/blobs\/uploads\//.test(entry.uri) && entry.method !== 'GET');

/** Every Location the registry sent and the client got: paths, or under `origin` (the https address nginx serves). */
function expectLocationsPathsOr(log: NginxLogEntry[], origin?: string): void {
  const locations = log.flatMap((entry) => [entry.upstreamLocation, entry.location]).filter(Boolean);
  expect(locations.length).toBeGreaterThan(0);
  for (const location of locations) {
    if (origin === undefined) expect(location).toMatch(/^\/v2\//);
    else expect(location.startsWith(`${origin}/v2/`)).toBe(true);
  }
}

describe('nginx (deploy/nginx.conf) terminating TLS in front of the registry, trust_proxy = true', () => {
  let app: TestApp;
  let nginx: Nginx;
  let podman: Podman;
  let work: string;
  let image: BuiltImage;
  const docker = (name: string) => `docker://${nginx.host}/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'reverse-proxy-e2e-'));
    app = await createTestApp({ overrides: { trust_proxy: 'true' } });
    nginx = await startNginx({ upstreamPort: portOf(app) });
    podman = createPodman();
    image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 24 * MiB, seed: 'reverse-proxy' });
  });
  afterAll(async () => {
    await podman?.cleanup();
    await nginx?.close();
    await app?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('skopeo pushes an image with 24 MiB layers over https and pulls it back unchanged; Locations are paths', async () => {
    await skopeoCopy(image.reference, docker('team/app:v1'));
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(docker('team/app:v1'), `oci:${pulled}:v1`);
    expect((await findTag(pulled, 'v1'))?.digest).toBe(image.manifestDigest);
    expect((await skopeoInspect(docker('team/app:v1'))).Layers).toEqual(image.layerDigests);

    const log = await nginx.accessLog();
    // Each layer went through nginx whole, in one request (client_max_body_size 0: nginx's 1 MiB limit would refuse it).
    expect(uploads(log).filter((entry) => entry.requestLength > 24 * MiB)).toHaveLength(2);
    expect(log.filter((entry) => entry.status >= 500)).toEqual([]);
    expectLocationsPathsOr(log);
    // Streamed both ways (proxy_request_buffering off, proxy_buffering off): nginx warns when it spools a body to disk.
    expect(await nginx.errorLog()).not.toMatch(/buffered to a temporary file/);
  });

  test('podman pulls through nginx, and pushes a new layer chunked (size unknown while it compresses), streamed on', async () => {
    await podman.run(['pull', `${nginx.host}/team/app:v1`]);
    // A layer podman holds uncompressed: pushing compresses it on the fly, so the upload has no Content-Length.
    const tarball = path.join(work, 'layer.tar');
    fs.mkdirSync(path.join(work, 'files'));
    fs.writeFileSync(path.join(work, 'files', 'random.bin'), randomBytes(24 * MiB));
    execFileSync('tar', ['-cf', tarball, '-C', path.join(work, 'files'), '.']);
    await podman.run(['import', tarball, `${nginx.host}/team/imported:v1`]);
    const before = (await nginx.accessLog()).length;
    await podman.run(['push', `${nginx.host}/team/imported:v1`]);

    const pushed = (await nginx.accessLog()).slice(before);
    expect(uploads(pushed).filter((entry) => entry.transferEncoding === 'chunked' && entry.requestLength > 24 * MiB)).toHaveLength(1);
    expectLocationsPathsOr(pushed);
    // A chunked body is streamed on only over HTTP/1.1 to the registry (proxy_http_version 1.1).
    expect(await nginx.errorLog()).not.toMatch(/buffered to a temporary file/);
    expect((await skopeoInspect(docker('team/imported:v1'))).Layers).toHaveLength(1);
  });
});

describe('nginx with [auth] token = true, trust_proxy = true: the Bearer realm is the https address clients used', () => {
  let app: TestApp;
  let nginx: Nginx;
  let podman: Podman;
  let work: string;
  let image: BuiltImage;
  const docker = (name: string) => `docker://${nginx.host}/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'reverse-proxy-token-e2e-'));
    app = await createAuthApp(USERS, `trust_proxy = true\n${TOKEN_AUTH}`);
    nginx = await startNginx({ upstreamPort: portOf(app) });
    podman = createPodman();
    image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 2 * MiB, seed: 'reverse-proxy-token' });
  });
  afterAll(async () => {
    await podman?.cleanup();
    await nginx?.close();
    await app?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('GET /v2/ through nginx challenges with realm https://<nginx host>/token', async () => {
    const response = await nginx.request('/v2/');
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe(`Bearer realm="${nginx.url}/token",service="registry"`);
    // Once: the registry sends it, and deploy/nginx.conf does not add it again.
    expect(response.headers['docker-distribution-api-version']).toBe('registry/2.0');
    // Straight to the registry, without forwarded headers, the realm is its own address.
    const direct = await fetch(`${app.url}/v2/`);
    expect(direct.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${app.url}/token",service="registry"`);
  });

  test('skopeo logs in at the realm through nginx, pushes and pulls; a pull-only user cannot push', async () => {
    await skopeoCopy(image.reference, docker('team/tokened:v1'), ['--dest-creds', 'alice:alice-pw']);
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(docker('team/tokened:v1'), `oci:${pulled}:v1`, ['--src-creds', 'carol:carol-pw']);
    expect((await findTag(pulled, 'v1'))?.digest).toBe(image.manifestDigest);
    await expect(skopeoCopy(image.reference, docker('team/refused:v1'), ['--dest-creds', 'carol:carol-pw'])).rejects.toThrow(
      /denied|unauthorized|authentication required/i,
    );

    const log = await nginx.accessLog();
    const realms = log.map((entry) => /realm="([^"]*)"/.exec(entry.upstreamWwwAuthenticate)?.[1]).filter(Boolean);
    expect(realms.length).toBeGreaterThan(0);
    expect(new Set(realms)).toEqual(new Set([`${nginx.url}/token`]));
    expect(log.filter((entry) => entry.uri.startsWith('/token?') && entry.status === 200).length).toBeGreaterThan(0);
    expectLocationsPathsOr(log);
  });

  test('podman login over https through nginx, then pull', async () => {
    await podman.run(['login', '--tls-verify=false', '-u', 'carol', '-p', 'carol-pw', nginx.host]);
    await podman.run(['pull', `${nginx.host}/team/tokened:v1`]);
    await podman.run(['logout', nginx.host]);
  });

  // Last: it locks 127.0.0.1, where every request through nginx comes from, out of logins for a minute.
  test('failed logins count against the address nginx saw, whatever X-Forwarded-For the client sends', async () => {
    const wrong = { Authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` };
    for (let attempt = 1; attempt < FAILURE_LIMIT; attempt++) {
      const response = await nginx.request('/token?service=registry', { headers: { ...wrong, 'X-Forwarded-For': `203.0.113.${attempt}` } });
      expect(response.status).toBe(401);
    }
    // The FAILURE_LIMIT-th failure from one address locks it out.
    const throttled = await nginx.request('/token?service=registry', { headers: { ...wrong, 'X-Forwarded-For': '198.51.100.1' } });
    expect(throttled.status).toBe(429);
  });
});

describe('nginx with public_url = "https://<nginx host>" instead of trust_proxy', () => {
  let app: TestApp;
  let nginx: Nginx;
  let work: string;
  let image: BuiltImage;
  const docker = (name: string) => `docker://${nginx.host}/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'reverse-proxy-public-url-e2e-'));
    // The registry must know nginx's address before nginx knows the registry's port.
    const port = await freePort();
    app = await createAuthApp(USERS, `public_url = "https://127.0.0.1:${port}"\n${TOKEN_AUTH}`);
    nginx = await startNginx({ upstreamPort: portOf(app), port });
    image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 2 * MiB, seed: 'reverse-proxy-url' });
  });
  afterAll(async () => {
    await nginx?.close();
    await app?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('realm and Locations are absolute under public_url; skopeo pushes and pulls', async () => {
    await skopeoCopy(image.reference, docker('team/app:v1'), ['--dest-creds', 'alice:alice-pw']);
    expect((await skopeoInspect(docker('team/app:v1'), { extraArgs: ['--creds', 'carol:carol-pw'] })).Digest).toBe(
      image.manifestDigest,
    );

    const log = await nginx.accessLog();
    expectLocationsPathsOr(log, nginx.url);
    const realms = log.map((entry) => /realm="([^"]*)"/.exec(entry.upstreamWwwAuthenticate)?.[1]).filter(Boolean);
    expect(new Set(realms)).toEqual(new Set([`${nginx.url}/token`]));
    // public_url wins whatever the request says: the registry does not trust forwarded headers here.
    const direct = await fetch(`${app.url}/v2/`, { headers: { 'X-Forwarded-Proto': 'http', 'X-Forwarded-Host': 'elsewhere.test' } });
    expect(direct.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${nginx.url}/token",service="registry"`);
  });
});

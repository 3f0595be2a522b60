import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pushManyRepositories } from '../helpers/many-repositories';
import { addUsers, basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { RegistryClient, digestOf, expectErrorCode, expectStatus, json, OCI_CONFIG, OCI_LAYER } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';
import { randomBytes } from 'node:crypto';
import { MediaType } from '../../src/oci/media-types';

const USERS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' };
const ALICE = basic('alice:alice-pw');
const BOB = basic('bob:bob-pw');
const CAROL = basic('carol:carol-pw');

// alice administers (delete on ""); bob pushes under team/; carol only pulls; private/ is alice's alone.
const RULES = `
[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"

[[auth.rules]]
prefix = "team/"
pull = ["*", "anonymous"]
push = ["bob", "alice"]
delete = ["alice"]

[[auth.rules]]
prefix = "private"
pull = ["alice"]
push = ["alice"]
delete = ["alice"]

[[auth.rules]]
prefix = ""
pull = ["*"]
push = ["alice"]
delete = ["alice"]
`;

interface RepositoryJson {
  name: string;
  kind: string;
  tags: number;
  manifests: number;
  size: number;
  lastPush: number | null;
  lastPull: number | null;
}

/** An image whose config says what the UI shows: created, labels, entrypoint, history; on a given platform. */
async function pushDescribedImage(client: RegistryClient, name: string, tag: string | undefined, architecture: string) {
  const config = await client.pushBlob(
    name,
    json({
      created: '2026-01-02T03:04:05Z',
      architecture,
      os: 'linux',
      config: { Entrypoint: ['/bin/app'], Cmd: ['--serve'], Labels: { 'org.opencontainers.image.source': 'https://example.test/app' } },
      rootfs: { type: 'layers', diff_ids: [] },
      history: [{ created: '2026-01-02T03:04:05Z', created_by: 'COPY app /bin/app' }],
      nonce: randomBytes(8).toString('hex'),
    }),
    OCI_CONFIG,
  );
  const layer = await client.pushBlob(name, randomBytes(1000), OCI_LAYER);
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: [layer],
    annotations: { 'org.example.note': 'built by the test' },
  };
  const pushed = await client.putManifest(name, tag ?? digestOf(json(manifest)), manifest);
  return { ...pushed, config, layer };
}

/** Logs in through the login form as a browser does; returns the session cookie (`name=value`). */
async function logInWithForm(app: TestApp, user: string, password: string): Promise<string> {
  const anonymous = new RegistryClient(app);
  const form = await anonymous.fetch('/ui/login');
  const anonymousCookie = form.headers.get('Set-Cookie')!.split(';')[0];
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1];
  const response = await anonymous.fetch('/ui/login', {
    method: 'POST',
    redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: anonymousCookie, Origin: app.url },
    body: new URLSearchParams({ csrf, username: user, password, next: '/ui/' }).toString(),
  });
  expect(response.status).toBe(302);
  return response.headers.get('Set-Cookie')!.split(';')[0];
}

describe('the web UI JSON API (/api/) with htpasswd users and rules', () => {
  let app: TestApp;
  let anonymous: RegistryClient;
  let alice: RegistryClient;
  let bob: RegistryClient;
  let carol: RegistryClient;
  let image: Awaited<ReturnType<typeof pushDescribedImage>>;
  let arm: Awaited<ReturnType<typeof pushDescribedImage>>;
  let indexDigest: string;

  beforeAll(async () => {
    app = await createAuthApp(USERS, RULES);
    anonymous = new RegistryClient(app);
    alice = new RegistryClient(app, ALICE);
    bob = new RegistryClient(app, BOB);
    carol = new RegistryClient(app, CAROL);
    image = await pushDescribedImage(bob, 'team/app', 'v1', 'amd64');
    arm = await pushDescribedImage(bob, 'team/app', undefined, 'arm64');
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...image.descriptor, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm.descriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    };
    indexDigest = (await bob.putManifest('team/app', 'multi', index)).digest;
    await bob.pushImage('team/app', { tag: 'old' });
    await alice.pushImage('private/secret', { tag: 'v1' });
  });
  afterAll(() => app.close());

  async function repositoriesOf(client: RegistryClient, query = ''): Promise<RepositoryJson[]> {
    const response = await client.fetch(`/api/repositories${query}`);
    await expectStatus(response, 200);
    return ((await response.json()) as { repositories: RepositoryJson[] }).repositories;
  }

  describe('GET /api/repositories', () => {
    test('lists what the caller may pull, with tag count, size and last push', async () => {
      const forAlice = await repositoriesOf(alice);
      expect(forAlice.map((r) => r.name)).toEqual(['private/secret', 'team/app']);
      const teamApp = forAlice.find((r) => r.name === 'team/app')!;
      expect(teamApp).toMatchObject({ kind: 'hosted', tags: 3, manifests: 4 });
      expect(teamApp.size).toBeGreaterThan(2000);
      expect(teamApp.lastPush).toBeGreaterThan(Date.now() - 600_000);
      expect((await repositoriesOf(carol)).map((r) => r.name)).toEqual(['team/app']);
      expect((await repositoriesOf(anonymous)).map((r) => r.name)).toEqual(['team/app']);
    });

    test('?q= keeps the names that contain it', async () => {
      expect((await repositoriesOf(alice, '?q=SEC')).map((r) => r.name)).toEqual(['private/secret']);
    });

    test('401 UNAUTHORIZED with a Basic challenge for a wrong password, never a listing', async () => {
      const response = await anonymous.fetch('/api/repositories', { headers: basic('alice:nope') });
      expect(response.headers.get('WWW-Authenticate')).toBe('Basic realm="registry"');
      await expectErrorCode(response, 401, 'UNAUTHORIZED');
    });
  });

  describe('GET /api/repositories/<name>/tags', () => {
    test('each tag with digest, media type, platforms of an index, size, created date and labels', async () => {
      const response = await carol.fetch('/api/repositories/team/app/tags');
      await expectStatus(response, 200);
      const body = (await response.json()) as { name: string; tags: Array<Record<string, unknown>> };
      expect(body.name).toBe('team/app');
      expect(body.tags.map((t) => t.tag)).toEqual(['multi', 'old', 'v1']);
      const v1 = body.tags.find((t) => t.tag === 'v1')!;
      expect(v1).toMatchObject({
        digest: image.digest,
        mediaType: MediaType.OciManifest,
        size: image.config.size + image.layer.size,
        created: '2026-01-02T03:04:05Z',
        labels: { 'org.opencontainers.image.source': 'https://example.test/app' },
        platforms: [{ os: 'linux', architecture: 'amd64' }],
      });
      const multi = body.tags.find((t) => t.tag === 'multi')!;
      expect(multi).toMatchObject({
        digest: indexDigest,
        mediaType: MediaType.OciIndex,
        size: image.config.size + image.layer.size + arm.config.size + arm.layer.size,
        platforms: [
          { os: 'linux', architecture: 'amd64', digest: image.digest },
          { os: 'linux', architecture: 'arm64', variant: 'v8', digest: arm.digest },
        ],
      });
    });

    test('a repository the caller may not pull: 403 DENIED for a user, 401 for anonymous', async () => {
      await expectErrorCode(await carol.fetch('/api/repositories/private/secret/tags'), 403, 'DENIED');
      await expectErrorCode(await anonymous.fetch('/api/repositories/private/secret/tags'), 401, 'UNAUTHORIZED');
    });
  });

  describe('GET /api/repositories/<name>/manifests/<reference>', () => {
    test('an image: layers with sizes, config history, entrypoint, annotations', async () => {
      const response = await carol.fetch('/api/repositories/team/app/manifests/v1');
      await expectStatus(response, 200);
      expect(await response.json()).toMatchObject({
        name: 'team/app',
        reference: 'v1',
        digest: image.digest,
        layers: [{ digest: image.layer.digest, mediaType: OCI_LAYER, size: 1000 }],
        annotations: { 'org.example.note': 'built by the test' },
        config: {
          digest: image.config.digest,
          entrypoint: ['/bin/app'],
          cmd: ['--serve'],
          history: [{ created: '2026-01-02T03:04:05Z', createdBy: 'COPY app /bin/app', emptyLayer: false }],
        },
      });
    });

    test('referrers (a signature, an SBOM) are listed under their subject', async () => {
      const signature = await bob.pushImage('team/app', {
        configMediaType: 'application/vnd.example.signature.v1+json',
        extra: { subject: image.descriptor },
      });
      const response = await carol.fetch(`/api/repositories/team/app/manifests/${image.digest}`);
      await expectStatus(response, 200);
      expect(((await response.json()) as { referrers: unknown[] }).referrers).toEqual([
        { digest: signature.digest, mediaType: MediaType.OciManifest, artifactType: 'application/vnd.example.signature.v1+json', size: signature.content.length },
      ]);
    });

    test('viewing is not pulling: the index records no pull', async () => {
      await carol.fetch('/api/repositories/team/app/manifests/v1');
      const teamApp = (await repositoriesOf(alice)).find((r) => r.name === 'team/app')!;
      expect(teamApp.lastPull).toBeNull();
    });

    test('404 MANIFEST_UNKNOWN for a tag that does not exist', async () => {
      await expectErrorCode(await carol.fetch('/api/repositories/team/app/manifests/nope'), 404, 'MANIFEST_UNKNOWN');
    });
  });

  describe('DELETE /api/repositories/<name>/manifests/<reference>', () => {
    test('403 DENIED without the delete right; the tag stays', async () => {
      await expectErrorCode(await carol.fetch('/api/repositories/team/app/manifests/old', { method: 'DELETE' }), 403, 'DENIED');
      await expectErrorCode(await bob.fetch('/api/repositories/team/app/manifests/old', { method: 'DELETE' }), 403, 'DENIED');
      expect(await carol.listTags('team/app')).toContain('old');
    });

    test('403 DENIED for a request another site sent (Origin), even with the right', async () => {
      const response = await alice.fetch('/api/repositories/team/app/manifests/old', { method: 'DELETE', headers: { Origin: 'https://evil.test' } });
      await expectErrorCode(response, 403, 'DENIED');
      expect(await carol.listTags('team/app')).toContain('old');
    });

    test('204 with the right, and the registry API no longer lists the tag', async () => {
      await expectStatus(await alice.fetch('/api/repositories/team/app/manifests/old', { method: 'DELETE' }), 204);
      expect(await carol.listTags('team/app')).toEqual(['multi', 'v1']);
    });
  });

  describe('POST /api/gc/dry-run', () => {
    test('a user with delete on the "" prefix gets the report; nothing is removed', async () => {
      const response = await alice.fetch('/api/gc/dry-run', { method: 'POST' });
      await expectStatus(response, 200);
      expect(await response.json()).toMatchObject({ dryRun: true, manifests: [], blobs: [] });
    });

    test('403 DENIED for anyone else', async () => {
      await expectErrorCode(await bob.fetch('/api/gc/dry-run', { method: 'POST' }), 403, 'DENIED');
      await expectErrorCode(await anonymous.fetch('/api/gc/dry-run', { method: 'POST' }), 401, 'UNAUTHORIZED');
    });
  });

  describe('GET /api/storage', () => {
    test('bytes per store, and the last collection once one ran; a run asked for while one runs joins it', async () => {
      const before = await carol.fetch('/api/storage');
      await expectStatus(before, 200);
      const body = (await before.json()) as { stores: Record<string, { bytes: number; blobs: number }>; lastGarbageCollection: unknown };
      expect(body.stores.hosted.bytes).toBeGreaterThan(0);
      expect(body.stores.proxy).toEqual({ bytes: 0, blobs: 0 });
      expect(body.lastGarbageCollection).toBeNull();

      const [first, second] = await Promise.all([app.registry.collectGarbage(), app.registry.collectGarbage()]);
      expect(second).toBe(first);
      const after = (await (await carol.fetch('/api/storage')).json()) as { lastGarbageCollection: { dryRun: boolean; finishedAt: number } };
      expect(after.lastGarbageCollection).toMatchObject({ dryRun: false, bytesFreed: first.bytesFreed });
      expect(after.lastGarbageCollection.finishedAt).toBeGreaterThan(Date.now() - 600_000);
    });
  });

  describe('the session cookie', () => {
    async function logIn(user: string, password: string): Promise<{ cookie: string; setCookie: string }> {
      const form = await anonymous.fetch('/ui/login');
      const anonymousCookie = form.headers.get('Set-Cookie')!.split(';')[0];
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1];
      const response = await anonymous.fetch('/ui/login', {
        method: 'POST',
        redirect: 'manual',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: anonymousCookie, Origin: app.url },
        body: new URLSearchParams({ csrf, username: user, password, next: '/ui/' }).toString(),
      });
      expect(response.status).toBe(302);
      const setCookie = response.headers.get('Set-Cookie')!;
      return { cookie: setCookie.split(';')[0], setCookie };
    }

    test('a login sets an HttpOnly, SameSite=Strict cookie that stands for the user on /api/', async () => {
      const { cookie, setCookie } = await logIn('alice', 'alice-pw');
      expect(setCookie).toMatch(/; httponly/i);
      expect(setCookie).toMatch(/; samesite=strict/i);
      const listed = await repositoriesOf(new RegistryClient(app, { Cookie: cookie }));
      expect(listed.map((r) => r.name)).toContain('private/secret');
    });

    test('an action with the cookie needs the CSRF token and our Origin', async () => {
      const { cookie } = await logIn('alice', 'alice-pw');
      const withCookie = new RegistryClient(app, { Cookie: cookie });
      await expectErrorCode(await withCookie.fetch('/api/gc/dry-run', { method: 'POST', headers: { Origin: app.url } }), 403, 'DENIED');
      const page = await withCookie.fetch('/ui/storage');
      const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1];
      await expectErrorCode(await withCookie.fetch('/api/gc/dry-run', { method: 'POST', headers: { 'X-CSRF-Token': csrf } }), 403, 'DENIED');
      await expectStatus(await withCookie.fetch('/api/gc/dry-run', { method: 'POST', headers: { 'X-CSRF-Token': csrf, Origin: app.url } }), 200);
    });

    test('a wrong password is refused with 401 and sets no session', async () => {
      const form = await anonymous.fetch('/ui/login');
      const anonymousCookie = form.headers.get('Set-Cookie')!.split(';')[0];
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1];
      const response = await anonymous.fetch('/ui/login', {
        method: 'POST',
        redirect: 'manual',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: anonymousCookie, Origin: app.url },
        body: new URLSearchParams({ csrf, username: 'alice', password: 'wrong', next: '/ui/' }).toString(),
      });
      expect(response.status).toBe(401);
      expect(response.headers.get('Set-Cookie')).toBeNull();
      expect(await response.text()).toContain('Wrong user or password');
    });
  });

  describe('GET /', () => {
    test('redirects a browser to the UI, and still answers clients in the registry error shape', async () => {
      const browser = await anonymous.fetch('/', { redirect: 'manual', headers: { Accept: 'text/html,application/xhtml+xml' } });
      expect(browser.status).toBe(302);
      expect(browser.headers.get('Location')).toBe('/ui/');
      await expectErrorCode(await anonymous.fetch('/', { headers: { Accept: 'application/json' } }), 404, 'UNSUPPORTED');
    });
  });
});

describe('[ui] settings', () => {
  test('enabled = false serves neither pages nor /api/', async () => {
    const app = await createTestApp({ overrides: { 'ui.enabled': 'false' } });
    try {
      const client = new RegistryClient(app);
      await expectErrorCode(await client.fetch('/api/repositories'), 404, 'UNSUPPORTED');
      await expectErrorCode(await client.fetch('/ui/'), 404, 'UNSUPPORTED');
    } finally {
      await app.close();
    }
  });

  test('path moves the pages; with auth off anyone browses and acts', async () => {
    const app = await createTestApp({ overrides: { 'ui.path': '/console/' } });
    try {
      const client = new RegistryClient(app);
      await client.pushImage('open/app', { tag: 'v1' });
      const browser = await client.fetch('/', { redirect: 'manual', headers: { Accept: 'text/html' } });
      expect(browser.headers.get('Location')).toBe('/console/');
      const page = await client.fetch('/console/');
      await expectStatus(page, 200);
      expect(await page.text()).toContain('open/app');
      await expectStatus(await client.fetch('/api/repositories/open/app/manifests/v1', { method: 'DELETE' }), 204);
      expect(await client.listTags('open/app')).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe('POST /api/gc and the storage history', () => {
  test('runs a collection (403 DENIED without the right, CSRF-safe with the cookie); /api/storage keeps the run and the sizes over time, also after a restart', async () => {
    const app = await createAuthApp(USERS, `${RULES}\n[gc]\ngrace = 0\n`);
    try {
      const alice = new RegistryClient(app, ALICE);
      const loose = randomBytes(3000);
      const { digest } = await alice.pushBlob('team/loose', loose);
      await new Promise((resolve) => setTimeout(resolve, 20)); // the loose blob's file is older than the cutoff (grace 0)
      await expectErrorCode(await new RegistryClient(app, CAROL).fetch('/api/gc', { method: 'POST' }), 403, 'DENIED');
      await expectErrorCode(await alice.fetch('/api/gc', { method: 'POST', headers: { Origin: 'https://elsewhere.test' } }), 403, 'DENIED');
      expect((await alice.getBlob('team/loose', digest)).response.status).toBe(200);

      const response = await alice.fetch('/api/gc', { method: 'POST' });
      await expectStatus(response, 200);
      const report = (await response.json()) as { dryRun: boolean; bytesFreed: number; blobs: Array<{ digest: string }> };
      expect(report).toMatchObject({ dryRun: false, bytesFreed: loose.length, blobs: [{ store: 'hosted', digest, size: loose.length }] });
      expect((await alice.getBlob('team/loose', digest)).response.status).toBe(404);

      await app.restart();
      const storage = (await (await alice.fetch('/api/storage')).json()) as {
        stores: { hosted: { bytes: number } };
        history: Array<{ at: number; stores: Record<string, { bytes: number; blobs: number }> }>;
        garbageCollections: Array<{ finishedAt: number; bytesFreed: number; blobs: number; manifests: number }>;
        lastGarbageCollection: unknown;
      };
      // This process ran none; the index remembers the one before the restart, and the sizes it left.
      expect(storage.lastGarbageCollection).toBeNull();
      expect(storage.garbageCollections).toEqual([expect.objectContaining({ bytesFreed: loose.length, blobs: 1, manifests: 0 })]);
      expect(storage.history).toHaveLength(1);
      expect(storage.history[0].stores.hosted).toEqual({ bytes: 0, blobs: 0 });
      expect(storage.history[0].at).toBe(storage.garbageCollections[0].finishedAt);
    } finally {
      await app.close();
    }
  });

  test('with the session cookie, running a collection needs the CSRF token, on the page as on /api/', async () => {
    const app = await createAuthApp(USERS, RULES);
    try {
      const cookie = await logInWithForm(app, 'alice', 'alice-pw');
      const withCookie = new RegistryClient(app, { Cookie: cookie });
      const confirmation = await withCookie.fetch('/ui/storage/gc');
      await expectStatus(confirmation, 200);
      const csrf = /name="csrf" value="([^"]+)"/.exec(await confirmation.text())![1];
      const post = (token: string) =>
        withCookie.fetch('/ui/storage/gc', {
          method: 'POST',
          redirect: 'manual',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: app.url },
          body: new URLSearchParams({ csrf: token }).toString(),
        });
      expect((await post('wrong')).status).toBe(403);
      await expectErrorCode(await withCookie.fetch('/api/gc', { method: 'POST', headers: { Origin: app.url } }), 403, 'DENIED');
      expect(await app.registry.storageHistory.gcRuns()).toEqual([]);
      const done = await post(csrf);
      expect(done.status).toBe(302);
      expect(decodeURIComponent(done.headers.get('Location')!)).toMatch(/^\/ui\/storage\?notice=Garbage collection freed /);
      expect(await app.registry.storageHistory.gcRuns()).toHaveLength(1);
      // carol may pull only: no confirmation page for her.
      expect((await new RegistryClient(app, CAROL).fetch('/ui/storage/gc')).status).toBe(403);
    } finally {
      await app.close();
    }
  });
});

describe('web UI sessions and the htpasswd file', () => {
  test("a session ends at the next request once its user is removed or their password changes; other users' sessions go on", async () => {
    const app = await createAuthApp(USERS, RULES);
    try {
      const sessions = { alice: await logInWithForm(app, 'alice', 'alice-pw'), bob: await logInWithForm(app, 'bob', 'bob-pw'), carol: await logInWithForm(app, 'carol', 'carol-pw') };
      const signedInAs = async (cookie: string) => /Signed in as <strong>([^<]+)</.exec(await (await new RegistryClient(app, { Cookie: cookie }).fetch('/ui/')).text())?.[1];
      expect(await signedInAs(sessions.alice)).toBe('alice');
      expect(await signedInAs(sessions.bob)).toBe('bob');
      expect(await signedInAs(sessions.carol)).toBe('carol');

      // bob is removed; alice gets a new password; carol stays as she was (her line is kept byte for byte).
      const file = path.join(app.storageDir, HTPASSWD_FILE);
      const carolLine = fs.readFileSync(file, 'utf8').split('\n').find((line) => line.startsWith('carol:'))!;
      fs.writeFileSync(file, `${carolLine}\n`);
      addUsers(file, { alice: 'alice-new-pw' });

      expect(await signedInAs(sessions.alice)).toBeUndefined();
      expect(await signedInAs(sessions.bob)).toBeUndefined();
      expect(await signedInAs(sessions.carol)).toBe('carol');
      // On /api/ the cookie now stands for no one: an action that needs a login is 401, not done as alice.
      const withOldCookie = new RegistryClient(app, { Cookie: sessions.alice });
      const csrf = /name="csrf" value="([^"]+)"/.exec(await (await withOldCookie.fetch('/ui/login')).text())![1];
      await expectErrorCode(await withOldCookie.fetch('/api/gc/dry-run', { method: 'POST', headers: { 'X-CSRF-Token': csrf, Origin: app.url } }), 401, 'UNAUTHORIZED');
      // A new login with the new password works.
      expect(await signedInAs(await logInWithForm(app, 'alice', 'alice-new-pw'))).toBe('alice');
    } finally {
      await app.close();
    }
  });
});

describe('anonymous = "none"', () => {
  test('/api/ needs credentials and pages send the browser to the login', async () => {
    const app = await createAuthApp(USERS, `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\n`);
    try {
      const client = new RegistryClient(app);
      await expectErrorCode(await client.fetch('/api/repositories'), 401, 'UNAUTHORIZED');
      const page = await client.fetch('/ui/', { redirect: 'manual' });
      expect(page.status).toBe(302);
      expect(page.headers.get('Location')).toBe('/ui/login?next=%2Fui%2F');
      await expectStatus(await client.fetch('/api/repositories', { headers: ALICE }), 200);
    } finally {
      await app.close();
    }
  });
});

describe('compression of pages and /api/ answers', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
    await pushManyRepositories(new RegistryClient(app), 2000);
  }, 180_000);
  afterAll(() => app.close());

  /** The raw answer, not decompressed: its headers and how many bytes went over the wire. */
  function rawGet(path: string, acceptEncoding?: string): Promise<{ headers: http.IncomingHttpHeaders; wire: Buffer }> {
    return new Promise((resolve, reject) => {
      const request = http.get(`${app.url}${path}`, { headers: acceptEncoding ? { 'Accept-Encoding': acceptEncoding } : {} }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ headers: response.headers, wire: Buffer.concat(chunks) }));
        response.on('error', reject);
      });
      request.on('error', reject);
    });
  }

  test.each(['/ui/', '/api/repositories'])('GET %s with 2,000 repositories: gzip when the client takes it, whole otherwise', async (path) => {
    const gzipped = await rawGet(path, 'gzip, deflate, br');
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.headers.vary).toMatch(/Accept-Encoding/i);
    const text = gunzipSync(gzipped.wire).toString('utf8');
    expect(text.split('many/repo-').length - 1).toBeGreaterThanOrEqual(2000);
    expect(text).toContain('many/repo-1999');

    const plain = await rawGet(path);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.wire.toString('utf8')).toBe(text);
    expect(gzipped.wire.length * 5).toBeLessThan(plain.wire.length);
  });

  test('a small answer goes uncompressed: gzip would not pay for itself', async () => {
    const small = await rawGet('/api/repositories?q=repo-0001', 'gzip');
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(small.wire.toString('utf8')).repositories.map((r: { name: string }) => r.name)).toEqual(['many/repo-0001']);
  });
});

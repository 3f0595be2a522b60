import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { addUsers, basic, createAuthApp, EMPTY_BASIC, HTPASSWD_FILE } from '../helpers/auth';
import { RegistryClient, digestOf, expectErrorCode, expectStatus } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

const USERS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' };
const ALICE = basic('alice:alice-pw');
const BOB = basic('bob:bob-pw');
const CAROL = basic('carol:carol-pw');

// alice administers; bob (group devs) pushes under team/; carol only pulls; proxy/ is pull-only for everyone logged in.
const RULES = `
[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"
max_uploads = 3

[[auth.groups]]
name = "devs"
members = ["bob"]

[[auth.rules]]
prefix = "proxy/"
pull = ["*"]

[[auth.rules]]
prefix = "team/"
pull = ["*", "anonymous"]
push = ["devs", "alice"]
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

async function catalogOf(client: RegistryClient, headers: Record<string, string>, query = ''): Promise<string[]> {
  const response = await client.fetch(`/v2/_catalog${query}`, { headers });
  await expectStatus(response, 200);
  return ((await response.json()) as { repositories: string[] }).repositories;
}

describe('access control with htpasswd Basic auth and rules (challenge = "basic")', () => {
  let app: TestApp;
  let anonymous: RegistryClient;
  let alice: RegistryClient;
  let bob: RegistryClient;
  let carol: RegistryClient;

  beforeAll(async () => {
    app = await createAuthApp(USERS, RULES.replace('max_uploads = 3', 'max_uploads = 3\nchallenge = "basic"'));
    anonymous = new RegistryClient(app);
    alice = new RegistryClient(app, ALICE);
    bob = new RegistryClient(app, BOB);
    carol = new RegistryClient(app, CAROL);
    await bob.pushImage('team/app', { tag: 'v1' });
    await alice.pushImage('private/secret', { tag: 'v1' });
    await alice.pushImage('shared/tool', { tag: 'v1' });
  });
  afterAll(() => app.close());

  describe('GET /v2/', () => {
    test('401 UNAUTHORIZED with a Basic challenge without credentials, though anonymous pulls are allowed', async () => {
      const response = await anonymous.fetch('/v2/');
      expect(response.headers.get('WWW-Authenticate')).toBe('Basic realm="registry"');
      await expectErrorCode(response, 401, 'UNAUTHORIZED');
    });

    test('200 with empty Basic credentials (Og==, anonymous skopeo) when anonymous pulls are allowed', async () => {
      await expectStatus(await anonymous.fetch('/v2/', { headers: EMPTY_BASIC }), 200);
    });

    test('200 for a user, 401 for a wrong password or an unknown user', async () => {
      await expectStatus(await alice.fetch('/v2/'), 200);
      const wrong = await anonymous.fetch('/v2/', { headers: basic('alice:nope') });
      expect(wrong.headers.get('WWW-Authenticate')).toBe('Basic realm="registry"');
      await expectErrorCode(wrong, 401, 'UNAUTHORIZED');
      await expectErrorCode(await anonymous.fetch('/v2/', { headers: basic('mallory:alice-pw') }), 401, 'UNAUTHORIZED');
    });
  });

  describe('repository rules', () => {
    test('a pull-only user pulls but may not push (403 DENIED) or delete', async () => {
      expect(await carol.listTags('team/app')).toEqual(['v1']);
      await expectStatus((await carol.getManifest('team/app', 'v1')).response, 200);
      await expectErrorCode(await carol.pushBlobMonolithic('team/app', randomBytes(10)), 403, 'DENIED');
      await expectErrorCode(await carol.fetch('/v2/team/app/manifests/v1', { method: 'DELETE' }), 403, 'DENIED');
    });

    test('a group member pushes under its prefix, not elsewhere, and may not delete', async () => {
      await bob.pushImage('team/other', { tag: 'v1' });
      await expectErrorCode(await bob.pushBlobMonolithic('shared/tool', randomBytes(10)), 403, 'DENIED');
      await expectErrorCode(await bob.fetch('/v2/team/other/manifests/v1', { method: 'DELETE' }), 403, 'DENIED');
    });

    test('a user with the delete right deletes', async () => {
      const image = await bob.pushImage('team/doomed', { tag: 'v1' });
      await expectStatus(await alice.fetch(`/v2/team/doomed/manifests/${image.digest}`, { method: 'DELETE' }), 202);
    });

    test('a private prefix: only its user may pull; others get 403, anonymous 401', async () => {
      await expectStatus((await alice.getManifest('private/secret', 'v1')).response, 200);
      await expectErrorCode((await carol.getManifest('private/secret', 'v1')).response, 403, 'DENIED');
      await expectErrorCode(await carol.fetch('/v2/private/secret/tags/list'), 403, 'DENIED');
      await expectErrorCode((await anonymous.getManifest('private/secret', 'v1')).response, 401, 'UNAUTHORIZED');
    });

    test('a prefix matches whole components: "private" does not cover "privateer/…"', async () => {
      await expectStatus(await carol.fetch('/v2/privateer/x/tags/list'), 404);
    });

    test('anonymous pulls where a rule lists "anonymous" (or none applies), and is challenged to push', async () => {
      await expectStatus((await anonymous.getManifest('team/app', 'v1')).response, 200);
      await expectStatus(await anonymous.fetch('/v2/team/app/tags/list', { headers: EMPTY_BASIC }), 200);
      // shared/ falls under the "" rule, which does not list anonymous.
      await expectErrorCode(await anonymous.fetch('/v2/shared/tool/tags/list'), 401, 'UNAUTHORIZED');
      const push = await anonymous.fetch('/v2/team/app/blobs/uploads/', { method: 'POST' });
      expect(push.headers.get('WWW-Authenticate')).toBe('Basic realm="registry"');
      await expectErrorCode(push, 401, 'UNAUTHORIZED');
      await expectErrorCode(await anonymous.fetch('/v2/team/app/manifests/v1', { method: 'DELETE', headers: EMPTY_BASIC }), 401, 'UNAUTHORIZED');
    });

    test('proxy/ is pull-only: a push there is DENIED before the cache would refuse it', async () => {
      await expectErrorCode(await alice.pushBlobMonolithic('proxy/docker.io/library/x', randomBytes(10)), 403, 'DENIED');
      await expectErrorCode(await anonymous.fetch('/v2/proxy/docker.io/library/alpine/tags/list'), 401, 'UNAUTHORIZED');
    });

    test('rules apply to the name the route uses: percent-encoding, case and trailing slashes do not get around them', async () => {
      await expectErrorCode(await carol.fetch('/v2/private%2Fsecret/tags/list'), 403, 'DENIED');
      await expectErrorCode(await carol.fetch('/v2/private/secret/TAGS/LIST'), 403, 'DENIED');
      await expectErrorCode(await carol.fetch('/v2/private/secret/tags/list/'), 403, 'DENIED');
      await expectErrorCode(await carol.fetch('/v2/%70rivate/secret/manifests/v1'), 403, 'DENIED');
    });

    test('?ns= reads are ruled by the mapped proxy/<upstream>/ name', async () => {
      // team/app is anonymous-readable as a hosted name, but ?ns= maps it under proxy/, which is not.
      await expectErrorCode(await anonymous.fetch('/v2/team/app/manifests/v1?ns=docker.io'), 401, 'UNAUTHORIZED');
    });
  });

  describe('listings', () => {
    test('_catalog lists only what the caller may pull, and pages over the visible names', async () => {
      const all = await catalogOf(alice, {});
      expect(all).toEqual(expect.arrayContaining(['private/secret', 'shared/tool', 'team/app']));
      const forCarol = await catalogOf(carol, {});
      expect(forCarol).not.toContain('private/secret');
      expect(forCarol).toEqual(expect.arrayContaining(['shared/tool', 'team/app']));
      const forAnonymous = await catalogOf(anonymous, EMPTY_BASIC);
      expect(forAnonymous.every((name) => name.startsWith('team/'))).toBe(true);
      expect(forAnonymous).toContain('team/app');

      const first = await carol.fetch('/v2/_catalog?n=1');
      expect(((await first.json()) as { repositories: string[] }).repositories).toEqual([forCarol[0]]);
      expect(first.headers.get('Link')).toBe(`</v2/_catalog?n=1&last=${encodeURIComponent(forCarol[0])}>; rel="next"`);
    });

    test('_catalog needs a login or allowed anonymous access', async () => {
      await expectStatus(await anonymous.fetch('/v2/_catalog'), 200);
    });
  });

  describe('uploads', () => {
    test("a session can only be continued by the user who opened it; another user's is unknown", async () => {
      const session = await bob.startUpload('team/shared-upload');
      await expectErrorCode(await alice.patchChunk(session, randomBytes(10)), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectErrorCode(await alice.fetch(session.location, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      const chunk = randomBytes(10);
      const moved = await bob.pushChunk(session, chunk);
      await bob.finishUpload('team/shared-upload', moved, digestOf(chunk));
    });

    test('the owner is kept with the session: after a restart only they continue it', async () => {
      const session = await bob.startUpload('team/restarted-upload');
      const first = randomBytes(10);
      const moved = await bob.pushChunk(session, first);
      await app.restart();
      await expectErrorCode(await alice.patchChunk(moved, randomBytes(10)), 404, 'BLOB_UPLOAD_UNKNOWN');
      const second = randomBytes(10);
      const resumed = await bob.pushChunk(moved, second);
      await bob.finishUpload('team/restarted-upload', resumed, digestOf(Buffer.concat([first, second])));
    });

    test('a user may have max_uploads sessions open; one more is 429 TOOMANYREQUESTS until one closes', async () => {
      const sessions = [];
      for (let i = 0; i < 3; i++) sessions.push(await alice.startUpload('shared/many'));
      const refused = await alice.fetch('/v2/shared/many/blobs/uploads/', { method: 'POST' });
      expect(refused.headers.get('Retry-After')).not.toBeNull();
      await expectErrorCode(refused, 429, 'TOOMANYREQUESTS');
      // Another user is not affected.
      const other = await bob.startUpload('team/many');
      await expectStatus(await bob.fetch(other.location, { method: 'DELETE' }), 204);
      for (const session of sessions) await expectStatus(await alice.fetch(session.location, { method: 'DELETE' }), 204);
      await alice.startUpload('shared/many');
    });

    test('a mount from a repository the user may not pull becomes an upload session', async () => {
      const secret = await alice.pushImage('private/mountable', { tag: 'v1' });
      const digest = secret.layers[0].digest;
      const response = await bob.fetch(`/v2/team/mounted/blobs/uploads/?mount=${digest}&from=private/mountable`, { method: 'POST' });
      await expectStatus(response, 202);
      await expectStatus(await bob.fetch(response.headers.get('Location')!, { method: 'DELETE' }), 204);
      const allowed = await alice.fetch(`/v2/shared/mounted/blobs/uploads/?mount=${digest}&from=private/mountable`, {
        method: 'POST',
      });
      await expectStatus(allowed, 201);
    });
  });

  test('the htpasswd file is reloaded when it changes', async () => {
    const dave = basic('dave:dave-pw');
    await expectErrorCode(await anonymous.fetch('/v2/', { headers: dave }), 401, 'UNAUTHORIZED');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    addUsers(path.join(app.storageDir, HTPASSWD_FILE), { dave: 'dave-pw' });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await expectStatus(await anonymous.fetch('/v2/', { headers: dave }), 200);
    expect(fs.readFileSync(path.join(app.storageDir, HTPASSWD_FILE), 'utf8')).toMatch(/^dave:\$2y\$/m);
  });
});

describe('repeated failed logins', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createAuthApp(USERS, `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\n`);
  });
  afterAll(() => app.close());

  test('are slowed down with 429 TOOMANYREQUESTS; credentials verified before keep working', async () => {
    const client = new RegistryClient(app);
    await expectStatus(await client.fetch('/v2/', { headers: ALICE }), 200);
    let refused: Response | undefined;
    for (let i = 0; i < 20 && !refused; i++) {
      const response = await client.fetch('/v2/', { headers: basic(`alice:guess-${i}`) });
      if (response.status === 429) refused = response;
      else await expectErrorCode(response, 401, 'UNAUTHORIZED');
    }
    expect(refused).toBeDefined();
    expect(Number(refused!.headers.get('Retry-After'))).toBeGreaterThan(0);
    await expectErrorCode(refused!, 429, 'TOOMANYREQUESTS');
    // Even the right password of another user is not tried now...
    await expectErrorCode(await client.fetch('/v2/', { headers: BOB }), 429, 'TOOMANYREQUESTS');
    // ...but a client that logged in before goes on.
    await expectStatus(await client.fetch('/v2/', { headers: ALICE }), 200);
  });

  test('anonymous access is refused when anonymous = "none", even with empty credentials', async () => {
    const client = new RegistryClient(app);
    await expectErrorCode(await client.fetch('/v2/', { headers: EMPTY_BASIC }), 401, 'UNAUTHORIZED');
    await expectErrorCode(await client.fetch('/v2/_catalog'), 401, 'UNAUTHORIZED');
    await expectErrorCode(await client.fetch('/v2/any/thing/tags/list'), 401, 'UNAUTHORIZED');
  });
});

describe('the built-in token service ([auth] token = true)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createAuthApp(USERS, RULES.replace('max_uploads = 3', 'token = true\ntoken_ttl = "2s"'));
    // Basic works beside tokens: seed with it.
    await new RegistryClient(app, BOB).pushImage('team/app', { tag: 'v1' });
    await new RegistryClient(app, ALICE).pushImage('private/secret', { tag: 'v1' });
    await new RegistryClient(app, ALICE).pushImage('shared/tool', { tag: 'v1' });
  });
  afterAll(() => app.close());

  async function tokenFor(headers: Record<string, string>, ...scopes: string[]): Promise<string> {
    const query = scopes.map((scope) => `scope=${encodeURIComponent(scope)}`).join('&');
    const response = await fetch(`${app.url}/token?service=registry&${query}`, { headers });
    await expectStatus(response, 200);
    const body = (await response.json()) as { token: string; access_token: string; expires_in: number };
    expect(body.access_token).toBe(body.token);
    expect(body.expires_in).toBe(2);
    return body.token;
  }
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

  test('GET /v2/ challenges with Bearer pointing at /token; a token from a login opens it', async () => {
    const response = await fetch(`${app.url}/v2/`);
    expect(response.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${app.url}/token",service="registry"`);
    await expectErrorCode(response, 401, 'UNAUTHORIZED');
    await expectStatus(await fetch(`${app.url}/v2/`, { headers: bearer(await tokenFor(BOB)) }), 200);
  });

  test('a wrong password gets no token', async () => {
    const response = await fetch(`${app.url}/token?service=registry`, { headers: basic('bob:wrong') });
    await expectErrorCode(response, 401, 'UNAUTHORIZED');
  });

  test('a token carries the requested actions the user may do, and each request is checked against it', async () => {
    const token = await tokenFor(BOB, 'repository:team/tokened:pull,push', 'repository:shared/tool:pull,push');
    const client = new RegistryClient(app, bearer(token));
    await client.pushImage('team/tokened', { tag: 'v1' });
    // Not in the token: 401 naming the scope to ask for.
    const outside = await client.fetch('/v2/team/app/tags/list');
    expect(outside.headers.get('WWW-Authenticate')).toContain('scope="repository:team/app:pull"');
    await expectErrorCode(outside, 401, 'UNAUTHORIZED');
    // Asked for, but the rules do not allow it: push was left out of the token, and the request is DENIED.
    await expectStatus(await client.fetch('/v2/shared/tool/tags/list'), 200);
    await expectErrorCode(await client.pushBlobMonolithic('shared/tool', randomBytes(10)), 403, 'DENIED');
  });

  test('an anonymous token pulls where anonymous may; a forged or expired token is 401', async () => {
    const anonymousToken = await tokenFor({}, 'repository:team/app:pull,push');
    const anonymous = new RegistryClient(app, bearer(anonymousToken));
    await expectStatus(await anonymous.fetch('/v2/team/app/tags/list'), 200);
    await expectErrorCode(await anonymous.pushBlobMonolithic('team/app', randomBytes(10)), 401, 'UNAUTHORIZED');

    const token = await tokenFor(ALICE, 'repository:private/secret:pull');
    const [header, payload] = token.split('.');
    const forged = `${header}.${payload}.${Buffer.from('x'.repeat(32)).toString('base64url')}`;
    await expectErrorCode(await fetch(`${app.url}/v2/private/secret/tags/list`, { headers: bearer(forged) }), 401, 'UNAUTHORIZED');
    await expectStatus(await fetch(`${app.url}/v2/private/secret/tags/list`, { headers: bearer(token) }), 200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await expectErrorCode(await fetch(`${app.url}/v2/private/secret/tags/list`, { headers: bearer(token) }), 401, 'UNAUTHORIZED');
  });

  test('Basic credentials still work with the token service on', async () => {
    await expectStatus(await fetch(`${app.url}/v2/private/secret/tags/list`, { headers: ALICE }), 200);
  });
});

describe('the default challenge (auto) with anonymous = "pull": Bearer, and Basic on every request', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createAuthApp(USERS, RULES);
    await new RegistryClient(app, BOB).pushImage('team/app', { tag: 'v1' });
    await new RegistryClient(app, ALICE).pushImage('private/secret', { tag: 'v1' });
  });
  afterAll(() => app.close());

  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
  async function tokenFor(headers: Record<string, string>, scope?: string): Promise<string> {
    const query = scope ? `&scope=${encodeURIComponent(scope)}` : '';
    const response = await fetch(`${app.url}/token?service=registry${query}`, { headers });
    await expectStatus(response, 200);
    return ((await response.json()) as { token: string }).token;
  }

  test('GET /v2/ without credentials: 401 with a Bearer challenge pointing at /token (dockerd pulls anonymously only then)', async () => {
    const response = await fetch(`${app.url}/v2/`);
    expect(response.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${app.url}/token",service="registry"`);
    await expectErrorCode(response, 401, 'UNAUTHORIZED');
  });

  test('an anonymous token opens /v2/ and pulls what anonymous may pull, nothing else', async () => {
    await expectStatus(await fetch(`${app.url}/v2/`, { headers: bearer(await tokenFor({})) }), 200);
    const token = await tokenFor({}, 'repository:team/app:pull');
    await expectStatus((await new RegistryClient(app, bearer(token)).getManifest('team/app', 'v1')).response, 200);
    const refused = await fetch(`${app.url}/v2/private/secret/manifests/v1`, { headers: bearer(await tokenFor({}, 'repository:private/secret:pull')) });
    expect(refused.headers.get('WWW-Authenticate')).toContain('scope="repository:private/secret:pull"');
    await expectErrorCode(refused, 401, 'UNAUTHORIZED');
  });

  test('Basic credentials work on every request without a token: /v2/, a private pull, a push', async () => {
    await expectStatus(await fetch(`${app.url}/v2/`, { headers: ALICE }), 200);
    await expectStatus(await fetch(`${app.url}/v2/`, { headers: EMPTY_BASIC }), 200);
    await expectStatus((await new RegistryClient(app, ALICE).getManifest('private/secret', 'v1')).response, 200);
    await new RegistryClient(app, BOB).pushImage('team/basic', { tag: 'v1' });
    const wrong = await fetch(`${app.url}/v2/`, { headers: basic('alice:nope') });
    await expectErrorCode(wrong, 401, 'UNAUTHORIZED');
  });

  test('/token takes Basic credentials: a logged-in user gets the push a rule gives them', async () => {
    const client = new RegistryClient(app, bearer(await tokenFor(BOB, 'repository:team/tokened:pull,push')));
    await client.pushImage('team/tokened', { tag: 'v1' });
    await expectErrorCode(await fetch(`${app.url}/token?service=registry`, { headers: basic('bob:wrong') }), 401, 'UNAUTHORIZED');
  });
});

describe('a mirror endpoint with auth', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createAuthApp(USERS, `[[mirror]]\nupstream = "docker.io"\nlisten = "127.0.0.1:0"\n${RULES}`);
  });
  afterAll(() => app.close());

  test('challenges on /v2/ and rules names as the cache stores them (proxy/docker.io/…)', async () => {
    const mirror = app.mirrorUrl();
    const base = await fetch(`${mirror}/v2/`);
    expect(base.headers.get('WWW-Authenticate')).toBe(`Bearer realm="${mirror}/token",service="registry"`);
    await expectErrorCode(base, 401, 'UNAUTHORIZED');
    // library/alpine here is proxy/docker.io/library/alpine, whose rule does not list anonymous: refused
    // before anything is asked of Docker Hub.
    await expectErrorCode(await fetch(`${mirror}/v2/library/alpine/tags/list`, { headers: EMPTY_BASIC }), 401, 'UNAUTHORIZED');
    await expectErrorCode(await fetch(`${mirror}/v2/_catalog`, { headers: basic('mallory:x') }), 401, 'UNAUTHORIZED');
    await expectStatus(await fetch(`${mirror}/v2/_catalog`, { headers: CAROL }), 200);
  });
});

describe('without [auth]', () => {
  test('everything stays open', async () => {
    const app = await createTestApp();
    try {
      const client = new RegistryClient(app);
      await expectStatus(await client.fetch('/v2/'), 200);
      await client.pushImage('open/app', { tag: 'v1' });
      expect(await catalogOf(client, {})).toEqual(['open/app']);
    } finally {
      await app.close();
    }
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GithubConfig } from '../../src/config/config';
import { GHCR_FAILED_NAMES_MAX, GhcrCatalog } from '../../src/ghcr/ghcr-catalog';
import type { ProxiedName } from '../../src/proxy/upstreams';
import { Logger } from '../../src/log';
import { RegistryIndex } from '../../src/storage/registry-index';
import { FakeGithub, FakeOwner, startFakeGithub } from '../helpers/fake-github';
import { RegistryClient, expectErrorCode } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';
import { freePort } from '../helpers/upstream-registry';

const pad = (n: number) => String(n).padStart(3, '0');

// 150 packages: two pages of GitHub's largest page size. app-000 has 120 versions: two pages of versions.
const alice: FakeOwner = {
  login: 'alice',
  type: 'User',
  packages: {
    ...Object.fromEntries(Array.from({ length: 150 }, (_, n) => [`app-${pad(n)}`, { versions: [['latest']] }])),
    'app-000': { versions: Array.from({ length: 120 }, (_, n) => [`t-${pad(n)}`]) },
    'tools/cli': { visibility: 'private', versions: [['v1', 'latest'], ['v0'], []] },
    MixedCase: { versions: [['1']] },
  },
};
const acme: FakeOwner = { login: 'Acme', type: 'Organization', packages: { 'platform/api': { versions: [['2.0']] }, web: {} } };

const expectedPackages = [
  'proxy/ghcr.io/acme/platform/api',
  'proxy/ghcr.io/acme/web',
  ...Array.from({ length: 150 }, (_, n) => `proxy/ghcr.io/alice/app-${pad(n)}`),
  'proxy/ghcr.io/alice/mixedcase',
  'proxy/ghcr.io/alice/tools/cli',
];

function githubConfiguration(github: FakeGithub, owners: string, ghcrUrl: string): string {
  return `
[proxy]
timeout = "2s"

[[proxy.upstreams]]
host = "ghcr.io"
url = "${ghcrUrl}"

[github]
token = "${github.token}"
api_url = "${github.url}"
${owners}
`;
}

/** Follows `Link: <…>; rel="next"` from `path` and returns every page's body. */
async function allPages<T>(client: RegistryClient, path: string): Promise<T[]> {
  const pages: T[] = [];
  let next: string | null = path;
  while (next !== null) {
    const response = await client.fetch(next);
    expect(response.status).toBe(200);
    pages.push((await response.json()) as T);
    const link = response.headers.get('Link');
    next = link === null ? null : /^<([^>]+)>;\s*rel="next"$/.exec(link)![1];
  }
  return pages;
}

describe('GHCR packages in GET /v2/_catalog, tags/list and GET /v1/search', () => {
  let github: FakeGithub;
  let app: TestApp;
  let client: RegistryClient;
  let everything: string[];

  beforeAll(async () => {
    github = await startFakeGithub({ users: [alice], orgs: [acme] });
    // ghcr.io itself is down here: tag lists come from the REST API's package versions.
    const deadGhcr = `http://127.0.0.1:${await freePort()}`;
    app = await createTestApp({ configuration: githubConfiguration(github, 'users = ["alice"]\norgs = ["Acme"]', deadGhcr) });
    client = new RegistryClient(app);
    await client.pushImage('hosted/app', { tag: '1' });
    await client.pushImage('zzz/last', { tag: '1' });
    everything = ['hosted/app', ...expectedPackages, 'zzz/last'].sort();
  });
  afterAll(async () => {
    await app?.close();
    await github?.close();
  });

  test('GET /v2/_catalog lists hosted repositories and every container package of every owner, sorted', async () => {
    const response = await client.fetch('/v2/_catalog');
    expect(response.status).toBe(200);
    expect(((await response.json()) as { repositories: string[] }).repositories).toEqual(everything);
    // per_page=100 with Link pages for alice's 152 packages; the organisation under /orgs/.
    expect(github.requests).toEqual(
      expect.arrayContaining([
        '/users/alice/packages?package_type=container&per_page=100',
        '/users/alice/packages?package_type=container&per_page=100&page=2',
        '/orgs/Acme/packages?package_type=container&per_page=100',
      ]),
    );
  });

  test('GET /v2/_catalog?n= pages through all of it in order, with Link', async () => {
    const pages = await allPages<{ repositories: string[] }>(client, '/v2/_catalog?n=7');
    expect(pages.length).toBe(Math.ceil(everything.length / 7));
    for (const page of pages) expect(page.repositories.length).toBeLessThanOrEqual(7);
    expect(pages.flatMap((page) => page.repositories)).toEqual(everything);

    const afterLast = await client.fetch(`/v2/_catalog?n=5&last=${encodeURIComponent('proxy/ghcr.io/alice/app-148')}`);
    expect(await afterLast.json()).toEqual({
      repositories: ['proxy/ghcr.io/alice/app-149', 'proxy/ghcr.io/alice/mixedcase', 'proxy/ghcr.io/alice/tools/cli', 'zzz/last'],
    });
    expect(afterLast.headers.get('Link')).toBeNull();
  });

  test('REST answers are cached in SQLite: more catalogs and a restart ask GitHub nothing', async () => {
    const asked = github.requests.length;
    await client.fetch('/v2/_catalog');
    await app.restart();
    const response = await client.fetch('/v2/_catalog');
    expect(((await response.json()) as { repositories: string[] }).repositories).toEqual(everything);
    expect(github.requests.length).toBe(asked);
  });

  test('GET /v2/proxy/ghcr.io/<owner>/<nested/package>/tags/list falls back to the versions\' tags (a%2Fb)', async () => {
    const response = await client.fetch('/v2/proxy/ghcr.io/alice/tools/cli/tags/list');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name: 'proxy/ghcr.io/alice/tools/cli', tags: ['latest', 'v0', 'v1'] });
    expect(github.requests).toContain('/users/alice/packages/container/tools%2Fcli/versions?per_page=100');

    const org = await client.fetch('/v2/proxy/ghcr.io/acme/platform/api/tags/list');
    expect(await org.json()).toEqual({ name: 'proxy/ghcr.io/acme/platform/api', tags: ['2.0'] });
  });

  test('tags/list from the REST API follows the versions\' pages and paginates with n and Link', async () => {
    const pages = await allPages<{ tags: string[] }>(client, '/v2/proxy/ghcr.io/alice/app-000/tags/list?n=50');
    expect(pages.map((page) => page.tags.length)).toEqual([50, 50, 20]);
    expect(pages.flatMap((page) => page.tags)).toEqual(Array.from({ length: 120 }, (_, n) => `t-${pad(n)}`));
    expect(github.requests).toContain('/users/alice/packages/container/app-000/versions?per_page=100&page=2');
  });

  test('tags/list of a package GitHub does not know is NAME_UNKNOWN or UNAVAILABLE, never a 500', async () => {
    const response = await client.fetch('/v2/proxy/ghcr.io/alice/no-such-package/tags/list');
    await expectErrorCode(response, 503, 'UNAVAILABLE');
  });

  test('tags/list of a package of an owner not configured asks GitHub nothing (its quota is for the owners configured)', async () => {
    const asked = github.requests.length;
    const response = await client.fetch('/v2/proxy/ghcr.io/stranger/anything/tags/list');
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(600);
    expect(response.status).not.toBe(500);
    expect(github.requests.slice(asked)).toEqual([]);
  });

  test('GET /v1/search finds names containing q, paginated with n and page', async () => {
    const cli = await client.fetch('/v1/search?q=CLI');
    expect(await cli.json()).toEqual({
      num_results: 1,
      num_pages: 1,
      query: 'CLI',
      page: 1,
      page_size: 25,
      results: [{ name: 'proxy/ghcr.io/alice/tools/cli', description: '', star_count: 0, is_official: false, is_automated: false }],
    });

    const apps = everything.filter((name) => name.includes('app'));
    const second = (await (await client.fetch('/v1/search?q=app&n=10&page=2')).json()) as {
      num_results: number;
      page: number;
      page_size: number;
      results: Array<{ name: string }>;
    };
    expect(second).toMatchObject({ num_results: apps.length, page: 2, page_size: 10 });
    expect(second.results.map((result) => result.name)).toEqual(apps.slice(10, 20));

    const all = (await (await client.fetch('/v1/search?n=100')).json()) as { num_results: number };
    expect(all.num_results).toBe(everything.length);

    await expectErrorCode(await client.fetch('/v1/search?q=x&page=0'), 400, 'PAGINATION_NUMBER_INVALID');
  });
});

describe('GitHub failing: the catalog still lists', () => {
  let github: FakeGithub;

  beforeAll(async () => {
    github = await startFakeGithub({
      self: { login: 'Me', type: 'User', packages: { mine: {} } },
      users: [alice, { login: 'broken', type: 'User', packages: { lost: {} } }],
    });
  });
  afterAll(() => github?.close());

  test('an owner answering 500 leaves out only its packages; hosted ones and other owners still list', async () => {
    github.fail('broken', 'server-error');
    const deadGhcr = `http://127.0.0.1:${await freePort()}`;
    const app = await createTestApp({ configuration: githubConfiguration(github, 'users = ["alice", "broken"]', deadGhcr) });
    try {
      const client = new RegistryClient(app);
      await client.pushImage('hosted/app', { tag: '1' });
      const response = await client.fetch('/v2/_catalog');
      expect(response.status).toBe(200);
      const { repositories } = (await response.json()) as { repositories: string[] };
      expect(repositories).toEqual(['hosted/app', ...expectedPackages.filter((name) => name.includes('/alice/'))]);
    } finally {
      await app.close();
      github.fail('broken', null);
    }
  });

  describe('GhcrCatalog', () => {
    let dir: string;
    let index: RegistryIndex;
    let logged: Array<{ level: string; message: string; fields?: Record<string, unknown> }>;
    let now: number;
    const log: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (message, fields) => logged.push({ level: 'warn', message, fields }),
      error: (message, fields) => logged.push({ level: 'error', message, fields }),
      isLevelEnabled: () => true,
    };
    const catalog = (github: FakeGithub, overrides: Partial<GithubConfig> = {}) =>
      new GhcrCatalog({
        github: { token: github.token, api_url: github.url, users: [], orgs: [], cache_ttl: 600_000, ...overrides },
        timeoutMs: 5000,
        sql: index.sql,
        log,
        now: () => now,
      });

    beforeEach(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ghcr-catalog-'));
      index = await RegistryIndex.open(path.join(dir, 'index.db'));
      logged = [];
      now = 1_000_000;
    });
    afterEach(async () => {
      await index.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    test('with no owners configured, the token\'s own packages (GET /user/packages), lower-cased', async () => {
      expect(await catalog(github).repositoryNames()).toEqual(['proxy/ghcr.io/me/mine']);
      expect(github.requests).toContain('/user/packages?package_type=container&per_page=100');
    });

    test('a rate-limit 403 after cache_ttl serves the last answer, logs it, and GitHub is left alone a while', async () => {
      const subject = catalog(github, { users: ['alice'] });
      const first = await subject.repositoryNames();
      expect(first).toHaveLength(152);

      github.fail('alice', 'rate-limit');
      try {
        now += 600_001;
        const asked = github.requests.length;
        expect(await subject.repositoryNames()).toEqual(first);
        expect(github.requests.length).toBe(asked + 1);
        expect(logged).toEqual([
          expect.objectContaining({ level: 'error', message: 'GitHub REST API failed', fields: expect.objectContaining({ rateLimited: true }) }),
        ]);
        // Within the retry pause: no request at all.
        now += 1000;
        expect(await subject.repositoryNames()).toEqual(first);
        expect(github.requests.length).toBe(asked + 1);
      } finally {
        github.fail('alice', null);
      }
    });

    test('a 500 with nothing cached lists nothing for that owner, logged, and never throws', async () => {
      github.fail('broken', 'server-error');
      try {
        expect(await catalog(github, { users: ['broken'] }).repositoryNames()).toEqual([]);
        expect(logged).toEqual([
          expect.objectContaining({ level: 'error', fields: expect.objectContaining({ error: expect.stringContaining('answered 500: Server Error') }) }),
        ]);
      } finally {
        github.fail('broken', null);
      }
    });

    const tagsOf = (subject: GhcrCatalog, remoteName: string) =>
      subject.alternativeTagList({ upstream: { name: 'ghcr.io' } as ProxiedName['upstream'], remoteName, name: `proxy/ghcr.io/${remoteName}` });

    test('with no owners configured, tags come only for the token\'s own packages, never under another owner\'s name', async () => {
      const subject = catalog(github);
      expect(await tagsOf(subject, 'me/mine')).toEqual([]);
      const asked = github.requests.length;
      expect(await tagsOf(subject, 'stranger/mine')).toBeNull();
      expect(await tagsOf(subject, 'alice/mine')).toBeNull();
      expect(github.requests.length).toBe(asked);
    });

    test(`failed names are remembered at most ${GHCR_FAILED_NAMES_MAX} at a time, the oldest forgotten first`, async () => {
      const subject = catalog(github, { users: ['alice'] });
      await expect(tagsOf(subject, 'alice/missing-first')).rejects.toThrow();
      // Within the retry pause: not asked again.
      const asked = github.requests.length;
      await expect(tagsOf(subject, 'alice/missing-first')).rejects.toThrow();
      expect(github.requests.length).toBe(asked);
      for (let i = 0; i < GHCR_FAILED_NAMES_MAX; i++) await expect(tagsOf(subject, `alice/missing-${i}`)).rejects.toThrow();
      // The first failure was forgotten to make room: GitHub is asked again.
      const before = github.requests.length;
      await expect(tagsOf(subject, 'alice/missing-first')).rejects.toThrow();
      expect(github.requests.length).toBe(before + 1);
    });

    test('a wrong token is a logged failure, not an exception', async () => {
      expect(await catalog(github, { token: 'ghp_wrong', users: ['alice'] }).repositoryNames()).toEqual([]);
      expect(logged[0].fields?.error).toContain('answered 401: Requires authentication');
    });
  });
});

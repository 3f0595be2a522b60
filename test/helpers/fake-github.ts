/**
 * A fake of GitHub's Packages REST API on 127.0.0.1, answering as docs.github.com/rest/packages/packages
 * documents it:
 *
 *   GET /user/packages?package_type=container&per_page=&page=                 the token's user
 *   GET /users/{user}/packages?…   GET /orgs/{org}/packages?…
 *   GET {owner}/packages/container/{package}/versions?per_page=&page=          package a/b is a%2Fb
 *
 * Package objects carry `id`, `name`, `package_type`, `owner` (`login`, `type`), `visibility`, `url`,
 * `html_url`; versions carry `id`, `name` (the manifest digest) and `metadata.container.tags`. Lists are
 * paginated with per_page (default 30, at most 100) and `page`, with GitHub's `Link` header
 * (`<…&page=2>; rel="next", <…&page=N>; rel="last"`). Without `Authorization: Bearer <token>` it answers
 * 401 like GitHub; `fail()` makes an owner answer 500 or GitHub's rate-limit 403.
 */
import http from 'node:http';
import { AddressInfo } from 'node:net';

export interface FakeOwner {
  login: string;
  type: 'User' | 'Organization';
  /** package name → tags of each version (one array per version). */
  packages: Record<string, { visibility?: 'public' | 'private'; versions?: string[][] }>;
}

export type FakeFailure = 'server-error' | 'rate-limit';

export interface FakeGithub {
  url: string;
  token: string;
  /** Paths with query strings, in the order they were asked. */
  requests: string[];
  /** Makes every request under `/users/<login>`, `/orgs/<login>` (or `/user` for the token's user) fail; null heals. */
  fail(owner: string, failure: FakeFailure | null): void;
  close(): Promise<void>;
}

export interface FakeGithubOptions {
  /** The token's own user, answered at /user/packages. */
  self?: FakeOwner;
  users?: FakeOwner[];
  orgs?: FakeOwner[];
}

export async function startFakeGithub(options: FakeGithubOptions): Promise<FakeGithub> {
  const token = 'ghp_fake_read_packages_token';
  const requests: string[] = [];
  const failures = new Map<string, FakeFailure>();
  let origin = '';

  const server = http.createServer((request, response) => {
    const rawUrl = request.url ?? '/';
    requests.push(rawUrl);
    const url = new URL(rawUrl, origin);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      response.end(JSON.stringify(body));
    };
    if (request.headers.authorization !== `Bearer ${token}`) {
      return send(401, { message: 'Requires authentication', documentation_url: 'https://docs.github.com/rest' });
    }
    // Split the raw path so that a%2Fb stays one segment.
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    let owner: FakeOwner | undefined;
    let rest: string[];
    let failureKey: string;
    if (segments[0] === 'user') {
      owner = options.self;
      rest = segments.slice(1);
      failureKey = 'user';
    } else if (segments[0] === 'users' || segments[0] === 'orgs') {
      const list = segments[0] === 'users' ? options.users : options.orgs;
      owner = list?.find((candidate) => candidate.login.toLowerCase() === segments[1]?.toLowerCase());
      rest = segments.slice(2);
      failureKey = segments[1] ?? '';
    } else {
      return send(404, { message: 'Not Found' });
    }

    const failure = failures.get(failureKey.toLowerCase());
    if (failure === 'server-error') return send(500, { message: 'Server Error' });
    if (failure === 'rate-limit') {
      return send(
        403,
        { message: 'API rate limit exceeded for user ID 1.', documentation_url: 'https://docs.github.com/rest/rate-limit' },
        { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600) },
      );
    }
    if (!owner) return send(404, { message: 'Not Found' });

    if (rest.length === 1 && rest[0] === 'packages') {
      if (url.searchParams.get('package_type') !== 'container') return send(400, { message: 'package_type is required' });
      const packages = Object.entries(owner.packages).map(([name, item], index) => ({
        id: 1000 + index,
        name,
        package_type: 'container',
        owner: { login: owner!.login, id: 1, type: owner!.type },
        version_count: item.versions?.length ?? 1,
        visibility: item.visibility ?? 'public',
        url: `${origin}/${segments[0]}/${owner!.login}/packages/container/${encodeURIComponent(name)}`,
        html_url: `https://github.com/${owner!.login}/packages/container/package/${encodeURIComponent(name)}`,
      }));
      return sendPage(packages);
    }
    if (rest.length === 4 && rest[0] === 'packages' && rest[1] === 'container' && rest[3] === 'versions') {
      const item = owner.packages[rest[2]];
      if (!item) return send(404, { message: 'Package not found.' });
      const versions = (item.versions ?? []).map((tags, index) => ({
        id: 5000 + index,
        name: `sha256:${index.toString(16).padStart(64, '0')}`,
        url: `${origin}${url.pathname}/${5000 + index}`,
        created_at: '2026-01-01T00:00:00Z',
        metadata: { package_type: 'container', container: { tags } },
      }));
      return sendPage(versions);
    }
    return send(404, { message: 'Not Found' });

    function sendPage(items: unknown[]): void {
      const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 30) || 30, 100);
      const page = Math.max(Number(url.searchParams.get('page') ?? 1) || 1, 1);
      const pages = Math.max(Math.ceil(items.length / perPage), 1);
      const link = (n: number) => {
        const target = new URL(url.href);
        target.searchParams.set('page', String(n));
        return `${origin}${url.pathname}${target.search}`;
      };
      const links: string[] = [];
      if (page > 1) links.push(`<${link(page - 1)}>; rel="prev"`, `<${link(1)}>; rel="first"`);
      if (page < pages) links.push(`<${link(page + 1)}>; rel="next"`, `<${link(pages)}>; rel="last"`);
      send(200, items.slice((page - 1) * perPage, page * perPage), links.length > 0 ? { link: links.join(', ') } : {});
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    token,
    requests,
    fail: (owner, failure) => {
      if (failure === null) failures.delete(owner.toLowerCase());
      else failures.set(owner.toLowerCase(), failure);
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

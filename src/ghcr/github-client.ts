/**
 * A small client for GitHub's Packages REST API (docs.github.com/rest/packages/packages), container
 * packages only:
 *
 *   GET /user/packages?package_type=container&per_page=100          the token's own user
 *   GET /users/{user}/packages?package_type=container&per_page=100
 *   GET /orgs/{org}/packages?package_type=container&per_page=100
 *   GET …/packages/container/{package}/versions?per_page=100        name URL-encoded: a/b is a%2Fb
 *
 * Pages are followed through `Link: <…>; rel="next"` (per_page is at most 100). Only the fields used here
 * are typed: a package is `{name, package_type, visibility, owner: {login}}`, a version
 * `{name: <digest>, metadata: {container: {tags: [...]}}}`.
 */

export interface GithubPackage {
  name: string;
  package_type?: string;
  visibility?: string;
  owner?: { login?: string };
}

interface GithubPackageVersion {
  name?: string;
  metadata?: { container?: { tags?: string[] } };
}

/** Whose packages: the token's user (`/user`), a user, or an organisation. */
export type PackageOwner = { kind: 'self' } | { kind: 'user'; login: string } | { kind: 'org'; login: string };

/** A REST answer other than 200, or no answer at all. `rateLimited` for GitHub's 403/429 rate-limit answers. */
export class GithubApiError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly rateLimited = false,
  ) {
    super(message);
    this.name = 'GithubApiError';
  }
}

export interface GithubClientOptions {
  /** e.g. https://api.github.com, without trailing slash. */
  apiUrl: string;
  /** "" sends no Authorization (public packages of users and orgs only). */
  token: string;
  timeoutMs: number;
}

/** GitHub stops a listing here: 100 pages of 100 is far beyond any real owner's packages. */
const MAX_PAGES = 100;
const API_VERSION = '2022-11-28';

export class GithubClient {
  constructor(private readonly options: GithubClientOptions) {}

  /** Every container package of `owner`, across all pages. */
  async listPackages(owner: PackageOwner): Promise<GithubPackage[]> {
    const items = await this.listAll<GithubPackage>(`${ownerPath(owner)}/packages?package_type=container&per_page=100`);
    return items.filter((item) => typeof item?.name === 'string');
  }

  /** The tags of every version of a container package, across all pages (unsorted, deduplicated). */
  async listVersionTags(owner: PackageOwner, packageName: string): Promise<string[]> {
    const path = `${ownerPath(owner)}/packages/container/${encodeURIComponent(packageName)}/versions?per_page=100`;
    const versions = await this.listAll<GithubPackageVersion>(path);
    const tags = versions.flatMap((version) => version?.metadata?.container?.tags ?? []);
    return [...new Set(tags.filter((tag) => typeof tag === 'string'))];
  }

  private async listAll<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    let url: string | null = `${this.options.apiUrl}${path}`;
    for (let pages = 0; url !== null; pages++) {
      if (pages === MAX_PAGES) throw new GithubApiError(`more than ${MAX_PAGES} pages at ${path}`, undefined);
      const response = await this.get(url);
      const body = (await response.json()) as unknown;
      if (!Array.isArray(body)) throw new GithubApiError(`GET ${url}: expected a JSON array`, response.status);
      items.push(...(body as T[]));
      url = this.nextPage(response.headers.get('link'));
    }
    return items;
  }

  private async get(url: string): Promise<Response> {
    const headers: Record<string, string> = {
      Accept: 'application/vnd.github+json',
      'X-GitHub-Api-Version': API_VERSION,
      // GitHub refuses requests without a User-Agent.
      'User-Agent': 'oci-cache-registry',
    };
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    let response: Response;
    try {
      response = await fetch(url, { headers, signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (error) {
      throw new GithubApiError(`GET ${url}: ${(error as Error).message}`, undefined);
    }
    if (response.status === 200) return response;
    const text = await response.text().catch(() => '');
    const message = (safeJson(text) as { message?: unknown } | undefined)?.message;
    // docs: a primary rate limit is 403 (or 429) with x-ratelimit-remaining: 0; a secondary one carries retry-after.
    const rateLimited =
      (response.status === 403 || response.status === 429) &&
      (response.headers.get('x-ratelimit-remaining') === '0' || response.headers.has('retry-after'));
    const reason = typeof message === 'string' ? `: ${message}` : '';
    throw new GithubApiError(`GET ${url} answered ${response.status}${reason}`, response.status, rateLimited);
  }

  /**
   * The `rel="next"` URL, only if it is on the API's own origin: the token goes with every request,
   * so a Link elsewhere is not followed.
   */
  private nextPage(link: string | null): string | null {
    if (!link) return null;
    for (const part of link.split(',')) {
      const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
      if (!match) continue;
      const next = new URL(match[1], this.options.apiUrl);
      if (next.origin !== new URL(this.options.apiUrl).origin) {
        throw new GithubApiError(`Link rel="next" leads off ${this.options.apiUrl}: ${next.href}`, undefined);
      }
      return next.href;
    }
    return null;
  }
}

function ownerPath(owner: PackageOwner): string {
  if (owner.kind === 'self') return '/user';
  return `/${owner.kind === 'org' ? 'orgs' : 'users'}/${encodeURIComponent(owner.login)}`;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

import type { SqlQueries } from '../storage/database/sql-database';
import type { Config, GithubConfig, ProxyConfig } from '../config/config';
import type { Logger } from '../log';
import { isValidName } from '../oci/names';
import type { ProxiedName } from '../proxy/upstreams';
import { PROXY_PREFIX } from '../proxy/upstreams';
import { Page, pageOf } from '../storage/registry-index';
import type { Pagination } from '../storage/repository';
import { GithubApiError, GithubClient, PackageOwner } from './github-client';
import { GithubRestCache } from './rest-cache';

/** The upstream whose packages GitHub's REST API lists. */
export const GHCR = 'ghcr.io';
const GHCR_PREFIX = `${PROXY_PREFIX}${GHCR}/`;
/**
 * The user name sent with the token to ghcr.io's token service: ghcr.io authenticates a personal access
 * token by itself and does not check the name (GitHub's docs: `docker login ghcr.io -u USERNAME`).
 */
export const GHCR_TOKEN_USERNAME = 'github-token';
/** After a failed REST call, GitHub is not asked again for this long (at most cache_ttl): it rate-limits. */
const RETRY_AFTER_FAILURE_MS = 60_000;
/** Names GitHub failed for, remembered for that pause; past it the oldest is forgotten. */
export const GHCR_FAILED_NAMES_MAX = 256;

export interface GhcrCatalogOptions {
  github: GithubConfig;
  timeoutMs: number;
  sql: SqlQueries;
  log: Logger;
  now?: () => number;
}

/**
 * ghcr.io as the catalog sees it: ghcr.io has no /v2/_catalog, so the container packages of the configured
 * owners come from GitHub's REST API, named proxy/ghcr.io/<owner>/<package> (lower case, as ghcr.io
 * names them), and a package's version tags stand in for ghcr.io's tags/list when that cannot be had.
 * Answers are cached in SQLite for cache_ttl; a failing GitHub never fails the catalog.
 */
export class GhcrCatalog {
  private readonly client: GithubClient;
  private readonly cache: GithubRestCache;
  private readonly inflight = new Map<string, Promise<string[]>>();
  private readonly failedUntil = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: GhcrCatalogOptions) {
    this.client = new GithubClient({ apiUrl: options.github.api_url, token: options.github.token, timeoutMs: options.timeoutMs });
    this.cache = new GithubRestCache(options.sql);
    this.now = options.now ?? Date.now;
  }

  /**
   * A catalog when `[github]` has a token (GitHub lists packages only to a token with read:packages, even
   * public ones) and the pull-through cache is on, which is what serves the names it lists; null otherwise.
   */
  static fromConfig(config: Pick<Config, 'github' | 'proxy'>, sql: SqlQueries, log: Logger): GhcrCatalog | null {
    if (!config.proxy.enabled || !config.github.token) return null;
    return new GhcrCatalog({ github: config.github, timeoutMs: config.proxy.timeout, sql, log });
  }

  /** proxy/ghcr.io/<owner>/<package> for every container package of every configured owner, sorted. Never throws. */
  async repositoryNames(): Promise<string[]> {
    const lists = await Promise.all(
      this.owners().map(async (owner) => {
        try {
          return await this.cached(`packages:${describeOwner(owner)}`, async () => {
            const packages = await this.client.listPackages(owner);
            const login = owner.kind === 'self' ? undefined : owner.login;
            return packages.map((item) => `${(item.owner?.login ?? login ?? '').toLowerCase()}/${item.name.toLowerCase()}`);
          });
        } catch {
          // cached() logged it; the other owners and the local repositories still list.
          return [];
        }
      }),
    );
    const names = lists.flat().map((remoteName) => `${GHCR_PREFIX}${remoteName}`);
    return [...new Set(names.filter((name) => isValidName(name)))].sort();
  }

  /**
   * The version tags GitHub's REST API lists for a proxy/ghcr.io/<owner>/<package>, sorted; null for any
   * other upstream, and for an owner this catalog is not configured for: the token's rate limit is spent
   * only on the owners it lists, and with none configured only on the token's own packages (asked under
   * another owner's name, GitHub would answer with the token owner's). Throws when GitHub cannot answer
   * and nothing is cached.
   */
  readonly alternativeTagList = async (target: ProxiedName): Promise<string[] | null> => {
    if (target.upstream.name !== GHCR) return null;
    const [login, ...rest] = target.remoteName.split('/');
    if (!login || rest.length === 0) return null;
    const owner = await this.configuredOwner(login, target.name);
    if (!owner) return null;
    const packageName = rest.join('/');
    const tags = await this.cached(`tags:${target.remoteName}`, () => this.client.listVersionTags(owner, packageName));
    return [...tags].sort();
  };

  private owners(): PackageOwner[] {
    const { users, orgs } = this.options.github;
    if (users.length === 0 && orgs.length === 0) return [{ kind: 'self' }];
    return [
      ...users.map((login): PackageOwner => ({ kind: 'user', login })),
      ...orgs.map((login): PackageOwner => ({ kind: 'org', login })),
    ];
  }

  /**
   * Where a package of `login` is asked about: a configured org or user; with no owners configured, the
   * token's own user when the package is among those it lists (from the cached package list). Null otherwise.
   */
  private async configuredOwner(login: string, name: string): Promise<PackageOwner | null> {
    const { users, orgs } = this.options.github;
    const same = (configured: string) => configured.toLowerCase() === login.toLowerCase();
    if (orgs.some(same)) return { kind: 'org', login };
    if (users.some(same)) return { kind: 'user', login };
    if (users.length > 0 || orgs.length > 0) return null;
    return (await this.repositoryNames()).includes(name.toLowerCase()) ? { kind: 'self' } : null;
  }

  /** GitHub is left alone for `key` a while; expired entries go first, and at the bound the oldest. */
  private rememberFailure(key: string, until: number): void {
    const now = this.now();
    this.failedUntil.delete(key);
    for (const [name, expires] of this.failedUntil) {
      if (expires > now && this.failedUntil.size < GHCR_FAILED_NAMES_MAX) break;
      this.failedUntil.delete(name);
    }
    this.failedUntil.set(key, until);
  }

  /**
   * A fresh cached answer, or a new one (concurrent askers share one request). When GitHub fails, the
   * failure is logged, the last answer (however old) is used, and GitHub is left alone for a while.
   */
  private async cached(key: string, fetch: () => Promise<string[]>): Promise<string[]> {
    const stored = await this.cache.get(key);
    const now = this.now();
    if (stored && now - stored.fetchedAt < this.options.github.cache_ttl) return stored.value;
    if (now < (this.failedUntil.get(key) ?? 0)) {
      if (stored) return stored.value;
      throw new GithubApiError(`${key}: GitHub failed recently`, undefined);
    }
    const running = this.inflight.get(key);
    if (running) return running;
    const fetching = fetch()
      .then(async (value) => {
        await this.cache.put(key, value, this.now());
        this.failedUntil.delete(key);
        return value;
      })
      .catch((error: unknown) => {
        const rateLimited = error instanceof GithubApiError && error.rateLimited;
        this.options.log.error('GitHub REST API failed', {
          key,
          error: (error as Error).message,
          rateLimited,
          serving: stored ? 'the last answer' : 'nothing',
        });
        this.rememberFailure(key, this.now() + Math.min(RETRY_AFTER_FAILURE_MS, this.options.github.cache_ttl));
        if (stored) return stored.value;
        throw error;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, fetching);
    return fetching;
  }
}

function describeOwner(owner: PackageOwner): string {
  return owner.kind === 'self' ? 'user' : `${owner.kind}/${owner.login.toLowerCase()}`;
}

/**
 * Repositories for `page` from a page of the index's names and a whole sorted list of other names (both
 * already after `page.last`), merged, deduplicated and cut to `page.n`. The index page has at most n names
 * and says whether more follow, so the first n of the union are among these.
 */
export function mergeRepositoryPages(local: Page<string>, others: readonly string[], page: Pagination): Page<string> {
  const after = page.last === undefined ? others : others.filter((name) => name > page.last!);
  const merged = [...new Set([...local.items, ...after])].sort();
  return pageOf(merged, page.n, local.next !== undefined);
}

/**
 * `[proxy]` with the GitHub token as ghcr.io's upstream credential: ghcr.io takes a token with read:packages
 * as the password of its Basic and Bearer token exchange. A `[[proxy.upstreams]]` for ghcr.io keeps its
 * URL and aliases, and its own username and password when it sets them. Hosts not allowed stay so.
 */
export function withGhcrToken(proxy: ProxyConfig, github: GithubConfig): ProxyConfig {
  if (!github.token) return proxy;
  const index = proxy.upstreams.findIndex((entry) => entry.host === GHCR || entry.aliases.includes(GHCR));
  const configured = index >= 0 ? proxy.upstreams[index] : undefined;
  if (configured?.username) return proxy;
  if (!configured && proxy.allowed_upstreams.length > 0 && !proxy.allowed_upstreams.includes(GHCR)) return proxy;
  const upstream = {
    host: configured?.host ?? GHCR,
    url: configured?.url ?? `https://${GHCR}`,
    urls: configured?.urls ?? [`https://${GHCR}`],
    aliases: configured?.aliases ?? [],
    username: GHCR_TOKEN_USERNAME,
    password: github.token,
  };
  const upstreams = configured ? proxy.upstreams.map((entry, at) => (at === index ? upstream : entry)) : [...proxy.upstreams, upstream];
  return { ...proxy, upstreams };
}

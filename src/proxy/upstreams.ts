import { ProxyConfig } from '../config/config';
import { Logger } from '../log';
import type { UpstreamObserver } from '../metrics/registry-metrics';
import { DOCKER_HUB, lookUpUpstream, storedName } from '../config/stored-names';
import { TokenCache } from './token-cache';
import { UpstreamClient } from './upstream-client';

// For the modules that import them from here; they live with the names they make.
export { lookUpUpstream, PROXY_PREFIX } from '../config/stored-names';

export interface Upstream {
  /** Canonical name, the second component of cached repository names. */
  name: string;
  /** The first URL it is reached at. */
  url: string;
  /** One client per URL (`[[proxy.upstreams]] urls`), in the order they are tried. */
  clients: UpstreamClient[];
}

/** A proxied repository name taken apart: proxy/<upstream>/<remoteName>. */
export interface ProxiedName {
  upstream: Upstream;
  /** The repository's name at the upstream, e.g. library/alpine. */
  remoteName: string;
  /** The canonical local name, e.g. proxy/docker.io/library/alpine. */
  name: string;
}

/** Clients kept for upstreams nobody configured (a client names those): the least recently used go first. */
export const MAX_UNCONFIGURED_CLIENTS = 64;

/**
 * Resolves the <upstream> part of proxy/<upstream>/<name>, with one client per upstream, and one token
 * cache shared by all (bounded in entries and bytes, whatever scopes the upstreams choose).
 */
export class Upstreams {
  /** Configured upstreams and Docker Hub, by every name they answer to: a fixed set. */
  private readonly clients = new Map<string, Upstream>();
  /** Upstreams a client named: any host, so a bounded, least recently used set. */
  private readonly named = new Map<string, Upstream>();
  private readonly tokens = new TokenCache();

  /** `metrics`: each upstream's client reports its requests there, under the upstream's canonical name. */
  constructor(
    private readonly config: ProxyConfig,
    private readonly log: Logger,
    private readonly metrics?: { upstream(name: string): UpstreamObserver },
  ) {}

  purgeExpiredTokens(): void {
    this.tokens.purgeExpired();
  }

  /**
   * Takes `proxy/<upstream>/<name>`, in any spelling, apart into the stored name (see `storedName`) and where
   * it comes from; throws NAME_UNKNOWN or DENIED for upstreams that are not served.
   */
  parse(fullName: string): ProxiedName {
    const name = storedName(this.config, fullName);
    const [, host, ...remoteName] = name.split('/');
    return { upstream: this.upstream(host), remoteName: remoteName.join('/'), name };
  }

  private upstream(host: string): Upstream {
    const known = this.clients.get(host);
    if (known) return known;
    const named = this.named.get(host);
    if (named) {
      // Most recently used last (Map order is insertion order).
      this.named.delete(host);
      this.named.set(host, named);
      return named;
    }
    const { name, settings } = lookUpUpstream(this.config, host);
    // The operator configured these URLs: each one's own host is dialled as configured (loopback, LAN),
    // and only by its own client. Any other upstream must resolve to public addresses only (UpstreamClient's `trusted`).
    const configured = this.config.upstreams.some((entry) => entry === settings);
    const kept = configured || name === DOCKER_HUB ? this.clients : this.named;
    const upstream = kept.get(name) ?? {
      name,
      url: settings.urls[0],
      clients: settings.urls.map(
        (url) =>
          new UpstreamClient({
            url,
            credentials: settings.username ? { username: settings.username, password: settings.password } : undefined,
            timeoutMs: this.config.timeout,
            concurrency: this.config.concurrency,
            log: this.log,
            observer: this.metrics?.upstream(name),
            trusted: configured,
            tokens: this.tokens,
          }),
      ),
    };
    kept.set(name, upstream);
    kept.set(host, upstream);
    for (const [oldest] of this.named) {
      if (this.named.size <= MAX_UNCONFIGURED_CLIENTS) break;
      this.named.delete(oldest);
    }
    return upstream;
  }
}

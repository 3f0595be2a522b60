import { ProxyConfig } from '../config/config';
import { Logger } from '../log';
import type { UpstreamObserver } from '../metrics/registry-metrics';
import { lookUpUpstream, storedName } from './stored-names';
import { UpstreamClient } from './upstream-client';

// For the modules that import them from here; they live with the names they make.
export { lookUpUpstream, PROXY_PREFIX } from './stored-names';

export interface Upstream {
  /** Canonical name, the second component of cached repository names. */
  name: string;
  url: string;
  client: UpstreamClient;
}

/** A proxied repository name taken apart: proxy/<upstream>/<remoteName>. */
export interface ProxiedName {
  upstream: Upstream;
  /** The repository's name at the upstream, e.g. library/alpine. */
  remoteName: string;
  /** The canonical local name, e.g. proxy/docker.io/library/alpine. */
  name: string;
}

/** Resolves the <upstream> part of proxy/<upstream>/<name>, with one client (and token cache) per upstream. */
export class Upstreams {
  private readonly clients = new Map<string, Upstream>();

  /** `metrics`: each upstream's client reports its requests there, under the upstream's canonical name. */
  constructor(
    private readonly config: ProxyConfig,
    private readonly log: Logger,
    private readonly metrics?: { upstream(name: string): UpstreamObserver },
  ) {}

  purgeExpiredTokens(): void {
    for (const upstream of new Set(this.clients.values())) upstream.client.purgeExpiredTokens();
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
    const { name, settings } = lookUpUpstream(this.config, host);
    const upstream = this.clients.get(name) ?? {
      name,
      url: settings.url,
      client: new UpstreamClient({
        url: settings.url,
        credentials: settings.username ? { username: settings.username, password: settings.password } : undefined,
        timeoutMs: this.config.timeout,
        concurrency: this.config.concurrency,
        log: this.log,
        observer: this.metrics?.upstream(name),
      }),
    };
    this.clients.set(name, upstream);
    this.clients.set(host, upstream);
    return upstream;
  }
}

import { ProxyConfig, UpstreamConfig } from '../config/config';
import { RegistryError } from '../oci/errors';
import { Logger } from '../log';
import type { UpstreamObserver } from '../metrics/registry-metrics';
import { TokenCache } from './token-cache';
import { UpstreamClient } from './upstream-client';

/** The prefix under which cached repositories live: proxy/<upstream>/<name>. */
export const PROXY_PREFIX = 'proxy/';

/** Docker Hub answers to several names; they are one upstream, cached once, under "docker.io". */
const DOCKER_HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_URL = 'https://registry-1.docker.io';

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

  /** Takes `proxy/<upstream>/<name>` apart; throws NAME_UNKNOWN or DENIED for upstreams that are not served. */
  parse(fullName: string): ProxiedName {
    const [, host, ...rest] = fullName.split('/');
    if (!host || rest.length === 0) {
      throw new RegistryError('NAME_UNKNOWN', {
        message: 'proxied repositories are named proxy/<registry>/<image>',
        detail: { name: fullName },
      });
    }
    const upstream = this.upstream(host);
    // Docker Hub's official images live under library/.
    const remoteName = upstream.name === DOCKER_HUB && rest.length === 1 ? `library/${rest[0]}` : rest.join('/');
    return { upstream, remoteName, name: `${PROXY_PREFIX}${upstream.name}/${remoteName}` };
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
    // The operator configured this URL: its host is dialled as configured (loopback, LAN). Any other
    // upstream must resolve to public addresses only (UpstreamClient's `trusted`).
    const configured = this.config.upstreams.some((entry) => entry.url === settings.url);
    const kept = configured || name === DOCKER_HUB ? this.clients : this.named;
    const upstream = kept.get(name) ?? {
      name,
      url: settings.url,
      client: new UpstreamClient({
        url: settings.url,
        credentials: settings.username ? { username: settings.username, password: settings.password } : undefined,
        timeoutMs: this.config.timeout,
        concurrency: this.config.concurrency,
        log: this.log,
        observer: this.metrics?.upstream(name),
        trusted: configured,
        tokens: this.tokens,
      }),
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

/**
 * The canonical name and connection settings of the upstream called `host` (a Docker Hub alias, a configured
 * host or alias, or any allowed registry host); throws NAME_UNKNOWN or DENIED for hosts that are not served.
 * Mirror endpoints and `?ns=` use it too, so every way into the cache names upstreams alike.
 */
export function lookUpUpstream(
  config: ProxyConfig,
  host: string,
): { name: string; settings: Pick<UpstreamConfig, 'url' | 'username' | 'password'> } {
  const isDockerHub = DOCKER_HUB_NAMES.includes(host);
  const names = (entry: UpstreamConfig) => [entry.host, ...entry.aliases];
  const configured = config.upstreams.find((entry) =>
    names(entry).some((candidate) => candidate === host || (isDockerHub && DOCKER_HUB_NAMES.includes(candidate))),
  );
  if (isDockerHub) {
    return { name: DOCKER_HUB, settings: configured ?? { url: DOCKER_HUB_URL, username: '', password: '' } };
  }
  if (configured) return { name: configured.host, settings: configured };

  const allowed = config.allowed_upstreams;
  if (allowed.length > 0 && !allowed.includes(host)) {
    throw new RegistryError('DENIED', { message: `upstream ${host} is not allowed here`, detail: { upstream: host } });
  }
  // A registry host has a dot (ghcr.io, quay.io) or is localhost; anything else is a typo, not a host to dial.
  if (!host.includes('.') && host !== 'localhost') {
    throw new RegistryError('NAME_UNKNOWN', { message: `${host} is not a registry host name`, detail: { upstream: host } });
  }
  return { name: host, settings: { url: `https://${host}`, username: '', password: '' } };
}

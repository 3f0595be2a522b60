import type { ProxyConfig, UpstreamConfig } from './config';
import { RegistryError } from '../oci/errors';

/**
 * Which name content is stored under, for every way a client may spell it. Rules, token scopes, the
 * catalog, logs and the cache itself all use this one mapping, so that no spelling reaches stored content
 * past a rule written for another. Pure: configuration in, name out; it never creates a client or dials.
 */

/** The prefix under which cached repositories live: proxy/<upstream>/<name>. */
export const PROXY_PREFIX = 'proxy/';

/** Docker Hub answers to several names; they are one upstream, cached once, under "docker.io". */
const DOCKER_HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_URL = 'https://registry-1.docker.io';

/** How a request reached the name: on a mirror endpoint of one upstream, or with containerd's `?ns=`. */
export interface NameSource {
  /** The `[[mirror]] upstream` of the endpoint the request came to (any of its spellings). */
  mirror?: string;
  /** containerd's `?ns=<registry>` on a GET or HEAD of the main endpoint. */
  ns?: string;
}

/**
 * The stored name for `name` as a client wrote it (percent-decoded):
 * - `proxy/<host>/<image>`: <host> becomes its upstream's canonical name (Docker Hub's three host names are
 *   docker.io, an alias its configured host), and a one-component Docker Hub image gets `library/`:
 *   proxy/index.docker.io/library/alpine, proxy/registry-1.docker.io/library/alpine, proxy/docker.io/alpine
 *   and proxy/hub/alpine are all proxy/docker.io/library/alpine.
 * - On a mirror: <name> is proxy/<mirror upstream>/<name> (alpine and library/alpine on a Docker Hub mirror
 *   are proxy/docker.io/library/alpine), unless it already is proxy/<a name of that upstream>/<image>.
 * - With `ns` naming an upstream the cache serves (and `name` not under proxy/): proxy/<ns>/<name>.
 * - Anything else is a hosted name and stays as it is.
 * Throws NAME_UNKNOWN or DENIED, as `lookUpUpstream` does, for proxy/ names of hosts that are not served.
 */
export function storedName(config: ProxyConfig, name: string, source: NameSource = {}): string {
  if (source.mirror !== undefined) {
    const upstream = lookUpUpstream(config, source.mirror).name;
    return proxiedName(config, isUnder(config, name, upstream) ? name : `${PROXY_PREFIX}${upstream}/${name}`);
  }
  if (name.startsWith(PROXY_PREFIX)) return proxiedName(config, name);
  const upstream = source.ns ? servedUpstream(config, source.ns) : undefined;
  return upstream === undefined ? name : proxiedName(config, `${PROXY_PREFIX}${upstream}/${name}`);
}

/** proxy/<host>/<image> with <host> canonical and Docker Hub's library/ added. */
function proxiedName(config: ProxyConfig, name: string): string {
  const [, host, ...image] = name.split('/');
  if (!host || image.length === 0) {
    throw new RegistryError('NAME_UNKNOWN', {
      message: 'proxied repositories are named proxy/<registry>/<image>',
      detail: { name },
    });
  }
  const upstream = lookUpUpstream(config, host).name;
  // Docker Hub's official images live under library/: `docker pull alpine` is library/alpine.
  const remoteName = upstream === DOCKER_HUB && image.length === 1 ? `library/${image[0]}` : image.join('/');
  return `${PROXY_PREFIX}${upstream}/${remoteName}`;
}

/** Whether `name` is proxy/<one of the upstream's names>/<image>, which a mirror of that upstream serves as it is. */
function isUnder(config: ProxyConfig, name: string, upstream: string): boolean {
  const [first, host, ...image] = name.split('/');
  return `${first}/` === PROXY_PREFIX && image.length > 0 && servedUpstream(config, host) === upstream;
}

/** The canonical name of an upstream the cache would serve, or undefined. */
function servedUpstream(config: ProxyConfig, host: string): string | undefined {
  if (!config.enabled) return undefined;
  try {
    return lookUpUpstream(config, host).name;
  } catch (error) {
    if (error instanceof RegistryError) return undefined;
    throw error;
  }
}

/**
 * The canonical name and connection settings of the upstream called `host` (a Docker Hub alias, a configured
 * host or alias, or any allowed registry host); throws NAME_UNKNOWN or DENIED for hosts that are not served.
 */
export function lookUpUpstream(
  config: ProxyConfig,
  host: string,
): { name: string; settings: Pick<UpstreamConfig, 'url' | 'urls' | 'username' | 'password'> } {
  const isDockerHub = DOCKER_HUB_NAMES.includes(host);
  const names = (entry: UpstreamConfig) => [entry.host, ...entry.aliases];
  const configured = config.upstreams.find((entry) =>
    names(entry).some((candidate) => candidate === host || (isDockerHub && DOCKER_HUB_NAMES.includes(candidate))),
  );
  // An upstream configured under an alias of Docker Hub's (host = "registry-1.docker.io", aliases = ["hub"])
  // is Docker Hub too: whichever of its names a client uses, it is stored once, under docker.io.
  if (isDockerHub || (configured && names(configured).some((candidate) => DOCKER_HUB_NAMES.includes(candidate)))) {
    return { name: DOCKER_HUB, settings: configured ?? { url: DOCKER_HUB_URL, urls: [DOCKER_HUB_URL], username: '', password: '' } };
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
  return { name: host, settings: { url: `https://${host}`, urls: [`https://${host}`], username: '', password: '' } };
}

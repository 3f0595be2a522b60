import { RegistryError } from '../oci/errors';
import { lookUpUpstream } from './stored-names';
import type { Config } from './config';

/** `host:port` or `[v6]:port` of a `[[mirror]] listen`; null when it is neither. Port 0 picks a free port, as `port` does. */
export function parseListen(listen: string): { host: string; port: number } | null {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(listen);
  if (!match || Number(match[2]) > 65535) return null;
  return { host: match[1].replace(/^\[(.*)\]$/, '$1'), port: Number(match[2]) };
}

// A host name or address as a Host header carries it, optionally with a port.
const HOST_NAME = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/i;

/**
 * What the schema cannot say about `[[mirror]]`: exactly one of `listen` and `host`, their forms, an upstream
 * the cache would serve, host names used once. The first problem as "<key>: <what is wrong>", or undefined.
 */
export function mirrorProblem(config: Pick<Config, 'mirror' | 'proxy'>): string | undefined {
  const hosts = new Set<string>();
  for (const [index, mirror] of config.mirror.entries()) {
    const key = `mirror[${index}]`;
    if ((mirror.listen === '') === (mirror.host === '')) {
      return `${key}: set exactly one of listen (a port of its own) and host (a name in the Host header)`;
    }
    if (mirror.listen !== '' && !parseListen(mirror.listen)) {
      return `${key}.listen: expected host:port such as "0.0.0.0:5001", got ${JSON.stringify(mirror.listen)}`;
    }
    if (mirror.host !== '') {
      if (!HOST_NAME.test(mirror.host)) return `${key}.host: expected a host name such as "hub.example.com", got ${JSON.stringify(mirror.host)}`;
      if (hosts.has(mirror.host.toLowerCase())) return `${key}.host: ${mirror.host} is already a mirror`;
      hosts.add(mirror.host.toLowerCase());
    }
    if (!config.proxy.enabled) return `${key}: a mirror serves the pull-through cache, which [proxy] enabled = false turns off`;
    try {
      lookUpUpstream(config.proxy, mirror.upstream);
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      return `${key}.upstream: ${error.message}`;
    }
  }
  return undefined;
}

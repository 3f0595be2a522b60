import { Context, Middleware } from 'koa';
import { Config } from '../../config/config';
import { PROXY_PREFIX, lookUpUpstream } from '../../proxy/upstreams';
import { RegistryError } from '../../oci/errors';
import { single } from '../request';

/**
 * What a listener serves: the main registry (hosted repositories, proxy/<upstream>/…, and `?ns=`), or a
 * read-only mirror whose root namespace is one upstream's, for clients that take only a host as a mirror
 * (Docker Engine's registry-mirrors asks a mirror for /v2/library/alpine/…, never with a path prefix).
 */
export type Endpoint =
  | { kind: 'main' }
  /** `mainPort`: the main listener's port, named when a push is refused. */
  | { kind: 'mirror'; upstream: string; mainPort?: number };

// A repository route's path, taken apart as the router does: /v2/<name>/<resource>, <name> as long as it can be.
const REPOSITORY_PATH = /^\/v2\/(.+)(\/(?:manifests\/[^/]+|blobs\/uploads\/[^/]*|blobs\/[^/]+|tags\/list|referrers\/[^/]+))$/;

/**
 * Maps the names a request uses onto the registry's own before the router runs, by rewriting the path:
 * routes and repositories never learn about mirrors, and a mirror reads and fills the very cache entries
 * that proxy/<upstream>/… does.
 * - On a mirror (this listener's, or a `[[mirror]] host` the request's Host names): /v2/<name>/… is
 *   /v2/proxy/<upstream>/<name>/… (Upstreams adds library/ for Docker Hub), unless it already names
 *   proxy/<upstream>/; anything but GET and HEAD is refused. containerd's `?ns=` is ignored there: the
 *   endpoint has one upstream.
 * - On the main endpoint, a GET or HEAD with containerd's `?ns=<registry>` naming an upstream the cache
 *   serves is read from proxy/<registry>/<name>. Without `ns` nothing changes: a hosted repository is
 *   never shadowed by a cached one.
 * A mirror shows names without its prefix (tags/list, _catalog): see `shownName` and `namespacePrefix`.
 */
export function namespace(config: Config, endpoint: Endpoint): Middleware {
  const upstreamName = (host: string) => lookUpUpstream(config.proxy, host).name;
  // Host mirrors are matched per request on every listener: a reverse proxy may send them to any of them.
  const hostMirrors = new Map(
    config.mirror.filter((mirror) => mirror.host).map((mirror) => [mirror.host.toLowerCase(), upstreamName(mirror.upstream)]),
  );
  const listenerUpstream = endpoint.kind === 'mirror' ? upstreamName(endpoint.upstream) : undefined;

  return async (ctx, next) => {
    // A configured name with a port matches Host as sent; one without matches any port.
    const hostMirror = hostMirrors.get(ctx.host.toLowerCase()) ?? hostMirrors.get(ctx.hostname.toLowerCase());
    const mirrored = hostMirror ?? listenerUpstream;
    const repositoryPath = REPOSITORY_PATH.exec(ctx.path);
    const reading = ctx.method === 'GET' || ctx.method === 'HEAD';

    if (mirrored !== undefined) {
      const prefix = `${PROXY_PREFIX}${mirrored}/`;
      (ctx.state as NamespaceState).namespacePrefix = prefix;
      if (repositoryPath) {
        const [, name, resource] = repositoryPath;
        if (!reading) {
          // A port mirror knows the main port, but not which name and port reach it past a reverse proxy
          // (trust_proxy): there the main port is an internal one.
          const mainPort =
            hostMirror === undefined && endpoint.kind === 'mirror' && !config.trust_proxy ? endpoint.mainPort : undefined;
          throw pushRefused(ctx, name, mirrored, config.public_url, mainPort);
        }
        if (!isUnder(name, mirrored)) ctx.path = `/v2/${prefix}${name}${resource}`;
      }
    } else if (repositoryPath && reading) {
      const [, name, resource] = repositoryPath;
      const ns = single(ctx.query.ns);
      const upstream = ns && !name.startsWith(PROXY_PREFIX) ? servedUpstream(ns) : undefined;
      if (upstream) ctx.path = `/v2/${PROXY_PREFIX}${upstream}/${name}${resource}`;
    }
    await next();
  };

  /** Whether `name` is proxy/<one of the mirrored upstream's names>/<image>, which a mirror serves as it is. */
  function isUnder(name: string, upstream: string): boolean {
    const [first, host, ...image] = name.split('/');
    return `${first}/` === PROXY_PREFIX && image.length > 0 && servedUpstream(host) === upstream;
  }

  /** The canonical name of an upstream the cache would serve, or undefined. */
  function servedUpstream(host: string): string | undefined {
    if (!config.proxy.enabled) return undefined;
    try {
      return upstreamName(host);
    } catch (error) {
      if (error instanceof RegistryError) return undefined;
      throw error;
    }
  }
}

interface NamespaceState {
  namespacePrefix?: string;
}

/** The prefix a request's endpoint hides from the names it shows: '' on the main endpoint, 'proxy/docker.io/' on a Docker Hub mirror. */
export function namespacePrefix(ctx: Context): string {
  return (ctx.state as NamespaceState).namespacePrefix ?? '';
}

/** A repository name as the request's endpoint shows it (tags/list's `name`, Link headers). */
export function shownName(ctx: Context, name: string): string {
  const prefix = namespacePrefix(ctx);
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** UNSUPPORTED, naming where to push instead: public_url's host, or this host at the main port, when known. */
function pushRefused(ctx: Context, name: string, upstream: string, publicUrl: string, mainPort: number | undefined): RegistryError {
  const hosted = publicUrl ? new URL(publicUrl).host : mainPort !== undefined ? `${ctx.hostname}:${mainPort}` : undefined;
  const where = hosted ? `${hosted}/${name}` : `the registry's main address (not ${ctx.host})`;
  return new RegistryError('UNSUPPORTED', {
    message: `${ctx.host} is a read-only mirror of ${upstream}; push to ${where}`,
    detail: { name, upstream },
    // RFC 9110: a 405 names the methods that are allowed.
    headers: { Allow: 'GET, HEAD' },
  });
}

import Router from '@koa/router';
import { Context, Middleware } from 'koa';
import { Config } from '../../config/config';
import { lookUpUpstream, NameSource, PROXY_PREFIX, storedName } from '../../config/stored-names';
import { RegistryError } from '../../oci/errors';
import { decodeComponent, single } from '../request';

/**
 * What a listener serves: the main registry (hosted repositories, proxy/<upstream>/…, and `?ns=`), or a
 * read-only mirror whose root namespace is one upstream's, for clients that take only a host as a mirror
 * (Docker Engine's registry-mirrors asks a mirror for /v2/library/alpine/…, never with a path prefix).
 */
export type Endpoint =
  | { kind: 'main' }
  /** `mainPort`: the main listener's port, named when a push is refused. */
  | { kind: 'mirror'; upstream: string; mainPort?: number };

/**
 * Maps the names a request uses onto the names content is stored under (`storedName`), before anything
 * looks at them, by rewriting the path: the rules, the routes, the repositories and the log see one name
 * for every spelling, and a mirror reads and fills the very cache entries that proxy/<upstream>/… does.
 * - On a mirror (this listener's, or a `[[mirror]] host` the request's Host names): /v2/<name>/… is
 *   /v2/proxy/<upstream>/<name>/…, unless it already names proxy/<upstream>/; anything but GET and HEAD is
 *   refused. containerd's `?ns=` is ignored there: the endpoint has one upstream.
 * - On the main endpoint, proxy/<host>/<image> in any spelling (Docker Hub's three host names, aliases,
 *   library/) is the canonical proxy/<upstream>/<image>; a GET or HEAD with containerd's `?ns=<registry>`
 *   naming an upstream the cache serves is read from proxy/<registry>/<name>. Without `ns` a hosted
 *   repository is never shadowed by a cached one. A mount's `from` is mapped too.
 * A name under proxy/ of a host the cache does not serve is left as written: the cache refuses it with the
 * same error (NAME_UNKNOWN or DENIED), after authentication, so that it tells anonymous callers nothing more.
 * A mirror shows names without its prefix (tags/list, _catalog): see `shownName` and `namespacePrefix`.
 */
export function namespace(config: Config, endpoint: Endpoint, router: Router): Middleware {
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
    const state = ctx.state as NamespaceState;
    const source: NameSource = mirrored !== undefined ? { mirror: mirrored } : {};
    // Token scopes name repositories as requests on this endpoint do; the token route maps them alike.
    state.storedName = (name) => storedName(config.proxy, name, source);
    if (mirrored !== undefined) state.namespacePrefix = `${PROXY_PREFIX}${mirrored}/`;

    const written = writtenRepositoryName(router, ctx.path, ctx.method);
    if (written !== undefined) {
      const name = decodeComponent(written);
      const reading = ctx.method === 'GET' || ctx.method === 'HEAD';
      if (mirrored !== undefined && !reading) {
        // A port mirror knows the main port, but not which name and port reach it past a reverse proxy
        // (trust_proxy): there the main port is an internal one.
        const mainPort = hostMirror === undefined && endpoint.kind === 'mirror' && !config.trust_proxy ? endpoint.mainPort : undefined;
        throw pushRefused(ctx, name, mirrored, config.public_url, mainPort);
      }
      const ns = mirrored === undefined && reading ? single(ctx.query.ns) : undefined;
      const stored = servedName(name, ns ? { ns } : source);
      state.repositoryName = stored;
      state.requestedName = name;
      if (stored !== name) ctx.path = `/v2/${encodeName(stored)}${ctx.path.slice('/v2/'.length + written.length)}`;
    }
    const from = single(ctx.query.from);
    if (from !== undefined && ctx.method === 'POST') {
      const stored = servedName(from, source);
      if (stored !== from) ctx.query = { ...ctx.query, from: stored };
    }
    await next();
  };

  /** The stored name; as written when it names an upstream the cache does not serve (see above). */
  function servedName(name: string, source: NameSource): string {
    try {
      return storedName(config.proxy, name, source);
    } catch (error) {
      if (error instanceof RegistryError) return name;
      throw error;
    }
  }
}

/**
 * The repository name a request's path holds as written (percent-encoded), taken from the router's own
 * match of the route it will dispatch to (its `*name` parameter), so that the route grammar is written once,
 * in the routes. A path whose route does not take this method still names its repository: a mirror refuses
 * a push to it by name, and allowedMethods answers 405. Undefined for paths that name no repository.
 */
function writtenRepositoryName(router: Router, path: string, method: string): string | undefined {
  const matched = router.match(path, method);
  const candidates = [...matched.pathAndMethod, ...matched.path].filter((layer) => layer.methods.length > 0);
  for (const layer of candidates) {
    const index = layer.paramNames.findIndex((parameter) => parameter.name === 'name');
    if (index === -1) continue;
    return layer.captures(path)[index];
  }
  return undefined;
}

/** Each component percent-encoded: a stored name is valid and needs none, but a refused one may hold anything. */
function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

interface NamespaceState {
  namespacePrefix?: string;
  /** The repository a repository route names, as stored. */
  repositoryName?: string;
  /** The same repository as the client wrote it (percent-decoded), which a token's scope names. */
  requestedName?: string;
  storedName?: (name: string) => string;
}

/**
 * The name `name` is stored under, as a request to this endpoint would write it (a mirror's library/alpine
 * is proxy/docker.io/library/alpine); throws NAME_UNKNOWN or DENIED as `storedName` does.
 */
export function storedNameOf(ctx: Context, name: string): string {
  const map = (ctx.state as NamespaceState).storedName;
  if (!map) throw new Error('the namespace middleware has not run');
  return map(name);
}

/** The stored name of the repository a repository route names (for the request log); undefined elsewhere. */
export function repositoryName(ctx: Context): string | undefined {
  return (ctx.state as NamespaceState).repositoryName;
}

/** The repository a repository route names, as the client wrote it: what a token's scope for it says. */
export function requestedRepositoryName(ctx: Context): string | undefined {
  return (ctx.state as NamespaceState).requestedName;
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

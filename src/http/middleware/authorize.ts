import Router from '@koa/router';
import { Context, Middleware } from 'koa';
import { AccessControl, Caller } from '../../auth/access-control';
import { Action } from '../../auth/policy';
import { tokenAllows } from '../../auth/token';
import { RegistryError } from '../../oci/errors';
import { HEALTH_PATHS } from '../routes/health';
import { requestedRepositoryName } from './namespace';

/** Where the built-in token service answers (`[auth] token = true`), on every listener. */
export const TOKEN_PATH = '/token';

interface AccessState {
  caller?: Caller;
  /** Set by `authenticate` when `[auth]` is on: what `requireAccess` asks. */
  decide?: (ctx: Context, action: Action, name: string) => void;
}

/**
 * Authentication at the edge, before the routes; authorization is declared by each route with
 * `requireAccess`, on the name the router matched. Without `[auth] htpasswd` every request passes.
 * - `/v2/` needs credentials: containers/image (skopeo, podman) sends them only after a challenge there.
 *   Empty Basic credentials (`Og==`, anonymous skopeo) count as anonymous, allowed with `anonymous = "pull"`.
 * - Anything else needs a login, or anonymous access (`_catalog` and search then list what the caller may pull).
 * - Repository routes: `requireAccess('pull' | 'push' | 'delete')`. Refused: 401 with a challenge when the
 *   caller is anonymous or a token lacks the scope, 403 DENIED for a logged-in user without the right.
 */
export function authenticate(access: AccessControl | null, publicUrl: string): Middleware {
  if (!access) return (_ctx, next) => next();
  return async (ctx, next) => {
    // Fail closed: a repository route reached past the early returns below is refused, not let through.
    (ctx.state as AccessState).decide = () => {
      throw new RegistryError('DENIED', { message: 'no access decided for this request' });
    };
    if (access.signer && ctx.path === TOKEN_PATH) return next(); // the token route authenticates for itself
    if (HEALTH_PATHS.has(ctx.path)) return next(); // probes carry no credentials and reveal no content
    const authentication = await access.authenticate(ctx.get('Authorization'), ctx.ip);
    if (!authentication.ok) {
      if (authentication.throttled) {
        throw new RegistryError('TOOMANYREQUESTS', {
          message: 'too many failed logins from this address; try again later',
          headers: { 'Retry-After': String(authentication.retryAfter) },
        });
      }
      throw unauthorized(ctx, access, publicUrl, 'invalid credentials');
    }
    const { caller } = authentication;
    const anonymous = caller.principal.kind === 'anonymous';
    const base = /^\/v2\/?$/.test(ctx.path);
    if (anonymous && (access.config.anonymous === 'none' || (base && !caller.presented))) {
      throw unauthorized(ctx, access, publicUrl);
    }
    const state = ctx.state as AccessState;
    state.caller = caller;
    state.decide = (routeCtx, action, name) => requireRight(routeCtx, access, publicUrl, caller, action, name);
    await next();
  };
}

const ACCESS_DECLARED = Symbol('access declared');

/**
 * A repository route's access, declared with the route: `router.get(path, requireAccess('pull'), …)`. It rules
 * on the router's own `name` parameter, which is the stored name (the namespace middleware has mapped every
 * spelling before routing). `assertRoutesDeclareAccess` refuses to start with a repository route without it.
 */
export function requireAccess(action: Action): Middleware {
  const middleware: Middleware = (ctx, next) => {
    (ctx.state as AccessState).decide?.(ctx, action, (ctx.params as { name: string }).name);
    return next();
  };
  return Object.assign(middleware, { [ACCESS_DECLARED]: action });
}

/** Every route with a repository name in its path declares its access: a route added without it fails at start, not in production. */
export function assertRoutesDeclareAccess(router: Router): void {
  for (const layer of router.stack) {
    const names = (layer as unknown as { paramNames: { name: string }[] }).paramNames.map((param) => param.name);
    const declared = layer.stack.some((middleware) => ACCESS_DECLARED in middleware);
    if (names.includes('name') && !declared) {
      throw new Error(`route ${layer.methods.join(',')} ${String(layer.path)} names a repository but declares no access (requireAccess)`);
    }
  }
}

/** The user an upload session belongs to: "" for anonymous callers and when auth is off. */
export function callerUser(ctx: Context): string {
  const principal = (ctx.state as AccessState).caller?.principal;
  return principal?.kind === 'user' ? principal.name : '';
}

/**
 * Records who made a request that authenticates on its own (the web UI and /api/, before `authenticate`):
 * the request log names them as it names /v2/'s callers.
 */
export function recordCaller(ctx: Context, caller: Caller): void {
  (ctx.state as AccessState).caller = caller;
}

/** Who made the request, for the request log: a user name, "anonymous", or undefined when auth is off or failed. */
export function callerName(ctx: Context): string | undefined {
  const principal = (ctx.state as AccessState).caller?.principal;
  if (!principal) return undefined;
  return principal.kind === 'user' ? principal.name : 'anonymous';
}

/**
 * Which names the caller may pull, for listings (`_catalog`, search); undefined when auth is off and
 * everything is listed.
 */
export function pullFilter(ctx: Context, access: AccessControl | null): ((name: string) => boolean) | undefined {
  if (!access) return undefined;
  const caller = (ctx.state as AccessState).caller;
  if (!caller) return () => false;
  return (name) => access.policy.allows(caller.principal, 'pull', name);
}

function requireRight(
  ctx: Context,
  access: AccessControl,
  publicUrl: string,
  caller: Caller,
  action: Action,
  name: string,
): void {
  const requestedName = requestedRepositoryName(ctx) ?? name;
  const allowed = access.policy.allows(caller.principal, action, name);
  // The rules decide on the stored name, always, here; a token only narrows that to the scopes it was issued
  // for. /token grants a scope after checking the rules on its stored name, but writes it as the client asked
  // (`proxy/index.docker.io/library/alpine`, or a mirror's `alpine`), because that is the name the client
  // will present it for, and it may have reached /token through another endpoint (public_url's) than its
  // requests (a mirror's), where the same spelling maps elsewhere. So the typed name, or the stored one,
  // must be in the token; either way the rules on the stored name have just been checked, and a token can
  // never grant what they refuse.
  const scoped = !caller.token || tokenAllows(caller.token, action, requestedName) || tokenAllows(caller.token, action, name);
  if (allowed && scoped) return;
  if (caller.principal.kind === 'anonymous' || (allowed && !scoped)) {
    throw unauthorized(ctx, access, publicUrl, `${action} access to ${name} needs credentials`, `repository:${requestedName}:${action}`);
  }
  throw new RegistryError('DENIED', { message: `${caller.principal.name} may not ${action} ${name}`, detail: { name, action } });
}

/** 401 with the challenge clients answer: Basic, or Bearer pointing at our token service. */
function unauthorized(ctx: Context, access: AccessControl, publicUrl: string, message?: string, scope?: string): RegistryError {
  const realm = quoted(access.config.realm);
  let challenge = `Basic realm="${realm}"`;
  if (access.signer) {
    const origin = publicUrl || `${ctx.protocol}://${ctx.host}`;
    challenge = `Bearer realm="${quoted(origin + TOKEN_PATH)}",service="${realm}"`;
    if (scope) challenge += `,scope="${quoted(scope)}",error="insufficient_scope"`;
  }
  return new RegistryError('UNAUTHORIZED', { message, headers: { 'WWW-Authenticate': challenge } });
}

/** A quoted-string's content (RFC 9110 5.6.4) that Node accepts in a header: no quotes, backslashes or control/non-ASCII characters (a name like a%00b). */
function quoted(text: string): string {
  return text.replace(/["\\]|[^\x20-\x7e]/g, '');
}

import { Context, Middleware } from 'koa';
import { AccessControl, Caller } from '../../auth/access-control';
import { Action } from '../../auth/policy';
import { tokenAllows } from '../../auth/token';
import { RegistryError } from '../../oci/errors';
import { HEALTH_PATHS } from '../routes/health';
import { decodeComponent, REPOSITORY_ROUTE, single } from '../request';

/** Where the built-in token service answers (`[auth] token = true`), on every listener. */
export const TOKEN_PATH = '/token';

interface Target {
  kind: 'base' | 'catalog' | 'repository' | 'other';
  /** The repository's stored name, as the routes will see it (after namespace mapping, percent-decoded). */
  name?: string;
  /** The name as the client wrote it, which a token's scope names. */
  requestedName?: string;
  action?: Action;
  /** Set on requests to one upload session; "" on POST …/blobs/uploads/. */
  uploadId?: string;
}

interface AccessState {
  caller?: Caller;
  /** The name authorized for this request; the router's `name` parameter must be the same. */
  authorizedName?: string;
}

/**
 * Authentication and authorization at the edge, after the namespace mapping (rules apply to the name
 * content is stored under, whatever spelling the client used: see `storedName`) and before the routes.
 * Without `[auth] htpasswd` every request passes.
 * - `/v2/` needs credentials: containers/image (skopeo, podman) sends them only after a challenge there.
 *   Empty Basic credentials (`Og==`, anonymous skopeo) count as anonymous, allowed with `anonymous = "pull"`.
 * - `_catalog` and anything that is not a repository route need a login, or anonymous access.
 * - Repository routes: GET/HEAD pull, POST/PUT/PATCH push, DELETE delete (any request on an upload session
 *   is push). Refused: 401 with a challenge when the caller is anonymous or a token lacks the scope, 403 DENIED
 *   for a logged-in user without the right.
 */
export function authorize(access: AccessControl | null, publicUrl: string): Middleware {
  if (!access) return (_ctx, next) => next();
  return async (ctx, next) => {
    if (access.signer && ctx.path === TOKEN_PATH) return next(); // the token route authenticates for itself
    if (HEALTH_PATHS.has(ctx.path)) return next(); // probes carry no credentials and reveal no content
    const target = describeTarget(ctx);
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
    if (anonymous && (access.config.anonymous === 'none' || (target.kind === 'base' && !caller.presented))) {
      throw unauthorized(ctx, access, publicUrl);
    }
    const state = ctx.state as AccessState;
    state.caller = caller;

    if (target.kind !== 'repository') return next();
    const { name, action, uploadId } = target as Required<Target>;
    requireRight(ctx, access, publicUrl, caller, action, name, target.requestedName!);
    state.authorizedName = name;
    const user = caller.principal.kind === 'user' ? caller.principal.name : '';

    if (ctx.method === 'POST' && uploadId === '') {
      const from = single(ctx.query.from);
      // dist-spec: a mount the registry will not do falls back to an upload session; no reading across rights.
      if (from !== undefined && !access.policy.allows(caller.principal, 'pull', from)) {
        const { mount: _mount, from: _from, ...rest } = ctx.query;
        ctx.query = rest;
      }
      if (!access.uploads.mayOpen(user)) {
        throw new RegistryError('TOOMANYREQUESTS', {
          message: `at most ${access.config.max_uploads} open uploads per user`,
          headers: { 'Retry-After': '60' },
        });
      }
      await next();
      const opened = ctx.response.get('Docker-Upload-UUID');
      if (ctx.status === 202 && typeof opened === 'string' && opened !== '') access.uploads.opened(opened, user);
      return;
    }
    if (uploadId) {
      // Another user's session is as good as unknown: its id says nothing about who else may write to it.
      if (!access.uploads.mayUse(uploadId, user)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId } });
      const end = access.uploads.begin(uploadId);
      try {
        await next();
      } finally {
        end();
      }
      if ((ctx.method === 'PUT' && ctx.status === 201) || (ctx.method === 'DELETE' && ctx.status === 204)) {
        access.uploads.closed(uploadId);
      }
      return;
    }
    await next();
  };
}

/** For the router's `name` parameter: a name the edge did not authorize is refused, whatever parsed it differently. */
export function requireAuthorizedName(access: AccessControl | null) {
  return async (name: string, ctx: Context, next: () => Promise<unknown>) => {
    if (access && (ctx.state as AccessState).authorizedName !== name) {
      throw new RegistryError('DENIED', { detail: { name } });
    }
    return next();
  };
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
  requestedName: string,
): void {
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

function describeTarget(ctx: Context): Target {
  const path = ctx.path;
  if (/^\/v2\/?$/.test(path)) return { kind: 'base' };
  if (/^\/v2\/_catalog\/?$/i.test(path)) return { kind: 'catalog' };
  const match = REPOSITORY_ROUTE.exec(path);
  if (!match) return { kind: 'other' };
  const name = decodeComponent(match[1]);
  const original = REPOSITORY_ROUTE.exec(ctx.originalUrl.split('?')[0]);
  const requestedName = original ? decodeComponent(original[1]) : name;
  const uploadId = match[2] === undefined ? undefined : decodeComponent(match[3] ?? '');
  const method = ctx.method;
  const action: Action =
    uploadId !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH'
      ? 'push'
      : method === 'DELETE'
        ? 'delete'
        : 'pull';
  return { kind: 'repository', name, requestedName, action, uploadId };
}

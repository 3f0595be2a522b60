import { Context } from 'koa';
import { AccessControl } from '../auth/access-control';
import { Action, ANONYMOUS, Principal } from '../auth/policy';
import { tokenAllows, TokenClaims } from '../auth/token';
import { recordCaller } from '../http/middleware/authorize';
import { RegistryError } from '../oci/errors';
import { SESSION_COOKIE, Sessions } from './sessions';

/** Who looks at the UI or calls /api/, and what they may do: the registry API's users and rules. */
export interface Viewer {
  /** The logged-in user; undefined for anonymous callers and when auth is off. */
  user?: string;
  /** Anonymous with `[auth]` on: may look only where `anonymous = "pull"` allows, else must log in. */
  mustLogIn: boolean;
  /** How the request proved who it is: the UI's session cookie, an Authorization header (scripts), or not at all. */
  via: 'session' | 'header' | 'none';
  /** The cookie value, which anchors the CSRF token; undefined when the request sent none. */
  cookie?: string;
  may(action: Action, name: string): boolean;
  /**
   * Garbage collection (its dry run included) shows and touches every repository: it needs the delete right
   * on the "" prefix, which is what the rule `prefix = ""` (or no rule at all) grants.
   */
  mayCollect: boolean;
}

/**
 * Reads the session cookie, or else an Authorization header as the registry API does (AccessControl:
 * the same users, failed-login slow-down and tokens). Bad credentials are refused, never taken as anonymous.
 */
export async function identify(ctx: Context, access: AccessControl | null, sessions: Sessions): Promise<Viewer> {
  const cookie = ctx.cookies.get(SESSION_COOKIE) || undefined;
  if (!access) return viewerOf(null, null, undefined, cookie, cookie ? 'session' : 'none', false);
  // Checked against the htpasswd file at each request: a removed user or a changed password ends the session.
  const sessionUser = sessions.user(cookie, (user) => access.credentialStamp(user));
  if (sessionUser !== undefined) {
    const principal: Principal = { kind: 'user', name: sessionUser };
    recordCaller(ctx, { principal, presented: false });
    return viewerOf(access, principal, undefined, cookie, 'session', false);
  }

  const header = ctx.get('Authorization');
  if (header !== '') {
    const authentication = await access.authenticate(header, ctx.ip);
    if (!authentication.ok) {
      if (authentication.throttled) {
        throw new RegistryError('TOOMANYREQUESTS', {
          message: 'too many failed logins from this address; try again later',
          headers: { 'Retry-After': String(authentication.retryAfter) },
        });
      }
      throw new RegistryError('UNAUTHORIZED', { message: 'invalid credentials' });
    }
    recordCaller(ctx, authentication.caller);
    const { principal, token } = authentication.caller;
    return viewerOf(access, principal, token, cookie, 'header', principal.kind === 'anonymous' && access.config.anonymous === 'none');
  }
  recordCaller(ctx, { principal: ANONYMOUS, presented: false });
  return viewerOf(access, ANONYMOUS, undefined, cookie, cookie ? 'session' : 'none', access.config.anonymous === 'none');
}

function viewerOf(
  access: AccessControl | null,
  principal: Principal | null,
  token: TokenClaims | undefined,
  cookie: string | undefined,
  via: Viewer['via'],
  mustLogIn: boolean,
): Viewer {
  const may = (action: Action, name: string): boolean => {
    if (!access || !principal) return true;
    // A token bounds a request to the scopes it was issued for, as on /v2/.
    return access.policy.allows(principal, action, name) && (!token || tokenAllows(token, action, name));
  };
  return {
    user: principal?.kind === 'user' ? principal.name : undefined,
    mustLogIn,
    via,
    cookie,
    may,
    mayCollect: !mustLogIn && (!access || (principal?.kind === 'user' && may('delete', ''))),
  };
}

/**
 * Every action (anything but GET and HEAD) is refused unless it comes from this registry's own pages or
 * from a script: a request a browser sends from another site says so in Origin; and a request carrying
 * the session cookie must also carry the session's CSRF token (X-CSRF-Token, or the form's `csrf`).
 */
export function requireSameSiteAction(ctx: Context, viewer: Viewer, sessions: Sessions, publicUrl: string, formToken?: string): void {
  const origin = ctx.get('Origin');
  const own = new Set([`${ctx.protocol}://${ctx.host}`]);
  if (publicUrl) own.add(new URL(publicUrl).origin);
  if (origin !== '' && !own.has(origin)) {
    throw new RegistryError('DENIED', { message: `a request from ${origin.slice(0, 200)} may not act here`, detail: { origin: origin.slice(0, 200) } });
  }
  if (viewer.cookie === undefined) return;
  if (origin === '' && ctx.get('Sec-Fetch-Site') !== 'same-origin') {
    throw new RegistryError('DENIED', { message: 'an action with the session cookie needs an Origin header' });
  }
  if (!sessions.csrfMatches(viewer.cookie, ctx.get('X-CSRF-Token') || formToken)) {
    throw new RegistryError('DENIED', { message: 'missing or wrong CSRF token; reload the page' });
  }
}

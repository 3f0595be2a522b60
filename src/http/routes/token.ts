import { Context } from 'koa';
import { AccessControl } from '../../auth/access-control';
import { ANONYMOUS, Principal } from '../../auth/policy';
import { parseScopes, TokenAccess } from '../../auth/token';
import { RegistryError } from '../../oci/errors';
import { storedNameOf } from '../middleware/namespace';
import { TOKEN_PATH } from '../middleware/authorize';
import { RegistryRouter } from './context';

/**
 * GET /token?service=&scope=repository:<name>:pull,push — the distribution token protocol, for clients that
 * prefer Bearer (`[auth] token = true`). Basic credentials (or none, for an anonymous token) in, a short-lived
 * signed token out, holding the requested actions the caller may do. No scope: a token for /v2/ (docker login).
 */
export function tokenRoutes(router: RegistryRouter, access: AccessControl): void {
  const signer = access.signer;
  if (!signer) return;
  router.get(TOKEN_PATH, async (ctx) => {
    const header = ctx.get('Authorization');
    let principal: Principal = ANONYMOUS;
    if (header !== '') {
      const space = header.indexOf(' ');
      const user =
        header.slice(0, space).toLowerCase() === 'basic'
          ? await access.verifyBasic(header.slice(space + 1).trim(), ctx.ip)
          : ({ ok: false, throttled: false } as const);
      if (typeof user !== 'string') {
        if (user.throttled) {
          throw new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': String(user.retryAfter) } });
        }
        throw new RegistryError('UNAUTHORIZED', {
          message: 'invalid credentials',
          headers: { 'WWW-Authenticate': `Basic realm="${access.config.realm.replace(/["\\\r\n]/g, '')}"` },
        });
      }
      if (user !== '') principal = { kind: 'user', name: user };
    }
    if (principal.kind === 'anonymous' && access.config.anonymous === 'none' && header === '') {
      // Logging in needs credentials; an anonymous token would only lead to 401s.
      throw new RegistryError('UNAUTHORIZED', {
        headers: { 'WWW-Authenticate': `Basic realm="${access.config.realm.replace(/["\\\r\n]/g, '')}"` },
      });
    }
    // Rights are those of the name the content is stored under (a mirror's alpine, proxy/index.docker.io/…
    // and proxy/docker.io/alpine are all proxy/docker.io/library/alpine); the grant keeps the scope's name as
    // asked, which is the name the client will present it for (see requireRight in authorize.ts).
    const scopeValues = ([] as string[]).concat(ctx.query.scope ?? []);
    const grants: TokenAccess[] = parseScopes(scopeValues).flatMap(({ name, actions }) => {
      const stored = scopeName(ctx, name);
      const granted = stored === undefined ? [] : access.policy.granted(principal, actions, stored);
      return granted.length > 0 ? [{ type: 'repository' as const, name, actions: granted }] : [];
    });
    const { token, claims } = signer.issue(principal.kind === 'user' ? principal.name : '', grants);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      token,
      access_token: token,
      expires_in: signer.ttlSeconds,
      issued_at: new Date(claims.iat * 1000).toISOString(),
    };
  });
}

/** A scope's stored name; undefined for a name under proxy/ of an upstream not served, which grants nothing. */
function scopeName(ctx: Context, name: string): string | undefined {
  try {
    return storedNameOf(ctx, name);
  } catch (error) {
    if (error instanceof RegistryError) return undefined;
    throw error;
  }
}

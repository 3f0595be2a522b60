import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Action, ACTIONS } from './policy';

/** What a token allows, as the distribution token spec writes it: `access: [{type, name, actions}]`. */
export interface TokenAccess {
  type: 'repository';
  name: string;
  actions: Action[];
}

export interface TokenClaims {
  iss: string;
  /** The user name; "" for an anonymous token. */
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  access: TokenAccess[];
}

/** A requested scope, `repository:<name>:<action>[,<action>…]` (docker's `*` means all three). */
export interface Scope {
  name: string;
  actions: Action[];
}

/**
 * Short-lived HS256 JWTs, signed with a key made at start: a restart invalidates every token, and clients
 * simply ask for a new one (they do on every 401). Only this process issues and checks them.
 */
export class TokenSigner {
  private readonly key = randomBytes(32);

  constructor(
    private readonly service: string,
    private readonly ttlMs: number,
  ) {}

  get ttlSeconds(): number {
    return Math.max(1, Math.floor(this.ttlMs / 1000));
  }

  issue(subject: string, access: TokenAccess[], now = Date.now()): { token: string; claims: TokenClaims } {
    const iat = Math.floor(now / 1000);
    const claims: TokenClaims = { iss: this.service, sub: subject, aud: this.service, iat, exp: iat + this.ttlSeconds, access };
    const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
    return { token: `${unsigned}.${this.sign(unsigned)}`, claims };
  }

  /** The claims of a token this signer issued and that has not expired; null otherwise. */
  verify(token: string, now = Date.now()): TokenClaims | null {
    const parts = token.split('.');
    if (parts.length !== 3 || token.length > 64 * 1024) return null;
    const expected = Buffer.from(this.sign(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2]);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    let claims: TokenClaims;
    try {
      const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as { alg?: unknown };
      if (header.alg !== 'HS256') return null;
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as TokenClaims;
    } catch {
      return null;
    }
    if (claims.aud !== this.service || typeof claims.exp !== 'number' || claims.exp * 1000 <= now) return null;
    if (typeof claims.sub !== 'string' || !Array.isArray(claims.access)) return null;
    return claims;
  }

  private sign(data: string): string {
    return createHmac('sha256', this.key).update(data).digest('base64url');
  }
}

/** Whether the token's access list allows `action` on `name`. */
export function tokenAllows(claims: TokenClaims, action: Action, name: string): boolean {
  return claims.access.some((entry) => entry.type === 'repository' && entry.name === name && entry.actions.includes(action));
}

/** The repository scopes of a token request (`scope` may repeat, and one value may hold several, space-separated). */
export function parseScopes(values: readonly string[]): Scope[] {
  const scopes: Scope[] = [];
  for (const scope of values.flatMap((value) => value.split(' '))) {
    // repository:<name>:<actions>; a name never contains ':' (a port cannot appear in a path component).
    const match = /^repository(?:\([^)]*\))?:([^:]+):([a-z*,]+)$/.exec(scope);
    if (!match) continue;
    const requested = match[2].split(',');
    const actions = ACTIONS.filter((action) => requested.includes(action) || requested.includes('*'));
    if (actions.length > 0) scopes.push({ name: match[1], actions });
  }
  return scopes;
}

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/**
 * Bearer tokens from upstream token services, each kept until shortly before it expires and then
 * dropped: expired entries are removed when read, on every `set`, and by `purgeExpired()`, so the
 * map cannot grow with tokens nobody will use again.
 */

export interface TokenCacheOptions {
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /**
   * Seconds before the stated expiry at which a token is no longer handed out, so a request made
   * with it does not reach the upstream after it lapsed (and covers the token request's latency:
   * the lifetime is counted from when the answer arrived, not from the server's `issued_at`).
   */
  marginSeconds?: number;
}

interface Entry {
  token: string;
  /** Milliseconds since the epoch after which the token is not used. */
  usableUntil: number;
}

export const DEFAULT_TOKEN_MARGIN_SECONDS = 10;

export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly marginSeconds: number;

  constructor(options: TokenCacheOptions = {}) {
    this.now = options.now ?? Date.now;
    this.marginSeconds = options.marginSeconds ?? DEFAULT_TOKEN_MARGIN_SECONDS;
  }

  /** The token for `key` if it is still usable; an expired one is dropped. */
  get(key: string): string | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() >= entry.usableUntil) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /** Keeps `token` for `expiresInSeconds` from now, less the margin (never less than zero). */
  set(key: string, token: string, expiresInSeconds: number): void {
    this.purgeExpired();
    const lifetimeSeconds = Math.max(0, expiresInSeconds - this.marginSeconds);
    if (lifetimeSeconds === 0) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, { token, usableUntil: this.now() + lifetimeSeconds * 1000 });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Drops every expired token; returns how many were dropped. */
  purgeExpired(): number {
    const now = this.now();
    let dropped = 0;
    for (const [key, entry] of this.entries) {
      if (now >= entry.usableUntil) {
        this.entries.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Tokens still usable (expired ones are purged first). */
  get size(): number {
    this.purgeExpired();
    return this.entries.size;
  }
}

/**
 * Bearer tokens from upstream token services, each kept until shortly before it expires and then
 * dropped: expired entries are removed when read, on every `set`, and by `purgeExpired()`, so the
 * map cannot grow with tokens nobody will use again. An upstream chooses the scopes (one per
 * repository asked for) and the lifetimes, so the cache is also bounded in entries and bytes: past
 * either bound, the least recently used tokens go first.
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
  /** Tokens kept at most (least recently used dropped first). */
  maxEntries?: number;
  /** Bytes of keys and tokens kept at most (least recently used dropped first). */
  maxBytes?: number;
}

interface Entry {
  token: string;
  /** Milliseconds since the epoch after which the token is not used. */
  usableUntil: number;
  bytes: number;
}

export const DEFAULT_TOKEN_MARGIN_SECONDS = 10;
export const DEFAULT_MAX_TOKENS = 1000;
export const DEFAULT_MAX_TOKEN_CACHE_BYTES = 4 * 1024 * 1024;

export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly marginSeconds: number;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private bytes = 0;

  constructor(options: TokenCacheOptions = {}) {
    this.now = options.now ?? Date.now;
    this.marginSeconds = options.marginSeconds ?? DEFAULT_TOKEN_MARGIN_SECONDS;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_TOKENS;
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_TOKEN_CACHE_BYTES;
  }

  /** The token for `key` if it is still usable; an expired one is dropped. */
  get(key: string): string | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.delete(key);
    if (this.now() >= entry.usableUntil) return undefined;
    // Map order is insertion order: re-inserting makes it the most recently used.
    this.insert(key, entry);
    return entry.token;
  }

  /** Keeps `token` for `expiresInSeconds` from now, less the margin (never less than zero). */
  set(key: string, token: string, expiresInSeconds: number): void {
    this.purgeExpired();
    const lifetimeSeconds = Math.max(0, expiresInSeconds - this.marginSeconds);
    this.delete(key);
    const bytes = Buffer.byteLength(key) + Buffer.byteLength(token);
    if (lifetimeSeconds === 0 || bytes > this.maxBytes) return;
    this.insert(key, { token, usableUntil: this.now() + lifetimeSeconds * 1000, bytes });
    for (const [oldest] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.delete(oldest);
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  /** Bytes of the keys and tokens held. */
  get byteSize(): number {
    return this.bytes;
  }

  private insert(key: string, entry: Entry): void {
    this.entries.set(key, entry);
    this.bytes += entry.bytes;
  }

  /** Drops every expired token; returns how many were dropped. */
  purgeExpired(): number {
    const now = this.now();
    let dropped = 0;
    for (const [key, entry] of this.entries) {
      if (now >= entry.usableUntil) {
        this.delete(key);
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

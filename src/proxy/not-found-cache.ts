/**
 * Manifests an upstream just answered 404 for, by `<name>@<reference>`, remembered for a short while
 * (`[proxy] not_found_ttl`) so that a typo pulled in a loop does not send every pull upstream. In memory:
 * it is short-lived, and bounded in entries (the oldest go first), since clients choose the names.
 */
export const MAX_NOT_FOUND_ENTRIES = 10_000;

export class NotFoundCache {
  /** Expiry by key, oldest first (Map order is insertion order). */
  private readonly entries = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = MAX_NOT_FOUND_ENTRIES,
  ) {}

  remember(key: string, now: number): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(key);
    this.entries.set(key, now + this.ttlMs);
    for (const [oldest] of this.entries) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  /** Whether the upstream answered 404 for `key` less than the TTL ago. */
  has(key: string, now: number): boolean {
    const expiry = this.entries.get(key);
    if (expiry === undefined) return false;
    if (expiry > now) return true;
    this.entries.delete(key);
    return false;
  }
}

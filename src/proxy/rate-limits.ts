import type { Logger } from '../log';

/**
 * Upstream pull budgets, as Docker Hub announces them (docs.docker.com, "Docker Hub usage and limits"):
 *
 *   ratelimit-limit: 100;w=21600        pulls allowed per window of w seconds
 *   ratelimit-remaining: 76;w=21600     pulls left in it
 *
 * on manifest answers (HEAD too, which does not count against it), and 429 with Retry-After once it is
 * spent. Per upstream and credential (anonymous pulls are counted per address, a user's per account).
 * Below `[proxy] rate_limit_reserve` remaining, or after a 429, the cache serves the tags it holds without
 * revalidating them, until the window resets or Retry-After passes: the pulls left go to what is not cached.
 */

/** How long a budget state holds at most, whatever an upstream says: Docker Hub's window is 6 hours. */
export const MAX_RATE_LIMIT_PAUSE_MS = 6 * 3_600_000;
/** Budgets kept at most: clients may name any upstream host (allowed_upstreams empty); the oldest go first. */
export const MAX_RATE_LIMIT_STATES = 256;
/** A 429 without a usable Retry-After (or window) pauses revalidation this long. */
const DEFAULT_RETRY_AFTER_MS = 60_000;

export interface RateLimitState {
  upstream: string;
  /** The upstream user the budget belongs to; "anonymous" without credentials. */
  credential: string;
  /** From the last answer that carried ratelimit-* headers; null before one did. */
  limit: number | null;
  remaining: number | null;
  /** The window the headers named, in seconds; null when they named none. */
  windowSeconds: number | null;
  /** While set (ms since the epoch), cached tags are served without revalidation. */
  limitedUntil: number | null;
  /** Why: the remaining count fell below the reserve, or the upstream answered 429. */
  reason: 'reserve' | '429' | null;
}

export class RateLimits {
  private readonly states = new Map<string, RateLimitState>();

  constructor(
    /** `[proxy] rate_limit_reserve`: below this many pulls left, revalidation pauses; 0: only a 429 pauses it. */
    private readonly reserve: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads what an upstream answer says of the budget of `credential` ("" for anonymous) at `upstream`. */
  observe(upstream: string, credential: string, response: Pick<Response, 'status' | 'headers'>): void {
    const limit = parseRateLimitHeader(response.headers.get('ratelimit-limit'));
    const remaining = parseRateLimitHeader(response.headers.get('ratelimit-remaining'));
    if (response.status !== 429 && limit === null && remaining === null) return;
    const state = this.stateOf(upstream, credential || 'anonymous');
    const now = this.now();
    if (limit !== null) state.limit = limit.count;
    if (remaining !== null) state.remaining = remaining.count;
    state.windowSeconds = remaining?.windowSeconds ?? limit?.windowSeconds ?? state.windowSeconds;
    const windowMs = state.windowSeconds === null ? null : state.windowSeconds * 1000;

    if (response.status === 429) {
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'), now) ?? windowMs ?? DEFAULT_RETRY_AFTER_MS;
      this.pause(state, '429', now + bounded(retryAfter));
    } else if (remaining !== null && remaining.count < this.reserve) {
      // The window slides: a pull spent now is back after at most one window.
      this.pause(state, 'reserve', now + bounded(windowMs ?? DEFAULT_RETRY_AFTER_MS));
    } else if (remaining !== null && state.limitedUntil !== null) {
      // The upstream says there is budget again.
      this.resume(state);
    }
  }

  /** Whether cached tags of `upstream` are served without revalidation now. */
  limited(upstream: string, credential: string): boolean {
    const state = this.states.get(key(upstream, credential || 'anonymous'));
    if (state?.limitedUntil == null) return false;
    if (this.now() < state.limitedUntil) return true;
    this.resume(state);
    return false;
  }

  /** Every upstream budget seen, for metrics and the web UI. */
  list(): RateLimitState[] {
    for (const state of this.states.values()) {
      if (state.limitedUntil !== null && this.now() >= state.limitedUntil) this.resume(state);
    }
    return [...this.states.values()].map((state) => ({ ...state }));
  }

  private pause(state: RateLimitState, reason: 'reserve' | '429', until: number): void {
    const entering = state.limitedUntil === null;
    state.limitedUntil = Math.max(state.limitedUntil ?? 0, until);
    state.reason = reason;
    // Logged once per pause, not on every answer while it lasts.
    if (entering) {
      this.log.warn('upstream rate limit: serving cached tags without revalidation', {
        upstream: state.upstream,
        credential: state.credential,
        reason,
        limit: state.limit,
        remaining: state.remaining,
        until: new Date(state.limitedUntil).toISOString(),
      });
    }
  }

  private resume(state: RateLimitState): void {
    if (state.limitedUntil === null) return;
    state.limitedUntil = null;
    state.reason = null;
    this.log.info('upstream rate limit: revalidating cached tags again', { upstream: state.upstream, credential: state.credential });
  }

  private stateOf(upstream: string, credential: string): RateLimitState {
    let state = this.states.get(key(upstream, credential));
    if (!state) {
      state = { upstream, credential, limit: null, remaining: null, windowSeconds: null, limitedUntil: null, reason: null };
      this.states.set(key(upstream, credential), state);
      for (const [oldest] of this.states) {
        if (this.states.size <= MAX_RATE_LIMIT_STATES) break;
        this.states.delete(oldest);
      }
    }
    return state;
  }
}

function key(upstream: string, credential: string): string {
  return `${upstream}\n${credential}`;
}

function bounded(ms: number): number {
  return Math.min(Math.max(ms, 0), MAX_RATE_LIMIT_PAUSE_MS);
}

/** `100;w=21600` (Docker Hub; the IETF RateLimit draft's form) → count and window; null when absent or not that. */
export function parseRateLimitHeader(value: string | null): { count: number; windowSeconds: number | null } | null {
  const match = value === null ? null : /^\s*(\d{1,12})\s*(?:;\s*w\s*=\s*(\d{1,12}))?/.exec(value);
  if (!match) return null;
  return { count: Number(match[1]), windowSeconds: match[2] === undefined ? null : Number(match[2]) };
}

/** RFC 9110 10.2.3: delay-seconds or an HTTP-date, in ms from `now`; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  if (/^\s*\d{1,12}\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(date - now, 0);
}

import { createLogger } from '../../../src/log';
import { MAX_RATE_LIMIT_PAUSE_MS, parseRateLimitHeader, parseRetryAfter, RateLimits } from '../../../src/proxy/rate-limits';

const answer = (status: number, headers: Record<string, string>) => ({ status, headers: new Headers(headers) });

describe('upstream rate limits', () => {
  test("parses Docker Hub's ratelimit-* headers, with and without a window; anything else is null", () => {
    expect(parseRateLimitHeader('100;w=21600')).toEqual({ count: 100, windowSeconds: 21600 });
    expect(parseRateLimitHeader(' 76 ; w = 3600')).toEqual({ count: 76, windowSeconds: 3600 });
    expect(parseRateLimitHeader('5')).toEqual({ count: 5, windowSeconds: null });
    expect(parseRateLimitHeader('lots')).toBeNull();
    expect(parseRateLimitHeader(null)).toBeNull();
  });

  test('Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3)', () => {
    const now = Date.parse('2026-12-03T10:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Thu, 03 Dec 2026 10:05:00 GMT', now)).toBe(300_000);
    expect(parseRetryAfter('Thu, 03 Dec 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeNull();
  });

  test('a pause ends when its time has passed, or early when an answer shows budget again', () => {
    let now = 1_000_000;
    const limits = new RateLimits(10, createLogger('silent'), () => now);
    limits.observe('docker.io', '', answer(200, { 'ratelimit-limit': '100;w=60', 'ratelimit-remaining': '3;w=60' }));
    expect(limits.limited('docker.io', '')).toBe(true);
    expect(limits.limited('docker.io', 'someone-else')).toBe(false);
    now += 60_000;
    expect(limits.limited('docker.io', '')).toBe(false);

    limits.observe('docker.io', '', answer(429, { 'Retry-After': '30' }));
    expect(limits.list()[0]).toMatchObject({ reason: '429', limitedUntil: now + 30_000 });
    limits.observe('docker.io', '', answer(200, { 'ratelimit-remaining': '90;w=60' }));
    expect(limits.limited('docker.io', '')).toBe(false);

    // A window an upstream claims to be a year long is bounded too.
    limits.observe('docker.io', '', answer(200, { 'ratelimit-remaining': '0;w=31536000' }));
    expect(limits.list()[0].limitedUntil).toBe(now + MAX_RATE_LIMIT_PAUSE_MS);
  });

  test('rate_limit_reserve = 0: only a 429 pauses revalidation', () => {
    const limits = new RateLimits(0, createLogger('silent'));
    limits.observe('docker.io', 'me', answer(200, { 'ratelimit-remaining': '0;w=21600' }));
    expect(limits.limited('docker.io', 'me')).toBe(false);
    limits.observe('docker.io', 'me', answer(429, {}));
    expect(limits.limited('docker.io', 'me')).toBe(true);
  });
});

import { TokenCache } from '../../../src/proxy/token-cache';

describe('TokenCache', () => {
  let now: number;
  let cache: TokenCache;

  beforeEach(() => {
    now = 1_700_000_000_000;
    cache = new TokenCache({ now: () => now, marginSeconds: 10 });
  });

  test('a token is handed out until its expiry less the margin', () => {
    cache.set('k', 'token-1', 300);
    expect(cache.get('k')).toBe('token-1');
    now += 289_999;
    expect(cache.get('k')).toBe('token-1');
    now += 1;
    expect(cache.get('k')).toBeUndefined();
  });

  test('an expired token is dropped when read', () => {
    cache.set('k', 'token-1', 60);
    now += 60_000;
    expect(cache.size).toBe(0);
    expect(cache.get('k')).toBeUndefined();
  });

  test('purgeExpired drops only expired tokens and says how many', () => {
    cache.set('short', 'a', 60);
    cache.set('long', 'b', 300);
    now += 100_000;
    expect(cache.purgeExpired()).toBe(1);
    expect(cache.size).toBe(1);
    expect(cache.get('long')).toBe('b');
  });

  test('set purges expired entries, so unused keys do not pile up', () => {
    for (let i = 0; i < 100; i++) cache.set(`scope-${i}`, `t${i}`, 60);
    now += 61_000;
    cache.set('fresh', 'f', 60);
    // set already dropped the 100 expired tokens: nothing is left to purge.
    expect(cache.purgeExpired()).toBe(0);
    expect(cache.size).toBe(1);
  });

  test('set replaces a token and its expiry; delete forgets it', () => {
    cache.set('k', 'old', 60);
    now += 40_000;
    cache.set('k', 'new', 60);
    now += 40_000;
    expect(cache.get('k')).toBe('new');
    cache.delete('k');
    expect(cache.get('k')).toBeUndefined();
  });

  test('a lifetime not longer than the margin is not cached', () => {
    cache.set('k', 'token', 10);
    expect(cache.get('k')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test('the default clock is Date.now', () => {
    const real = new TokenCache();
    real.set('k', 'token', 300);
    expect(real.get('k')).toBe('token');
  });
});

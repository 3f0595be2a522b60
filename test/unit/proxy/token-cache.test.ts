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

describe('TokenCache bounds: an upstream chooses scopes and token sizes', () => {
  test('past maxEntries the least recently used token goes first', () => {
    const cache = new TokenCache({ maxEntries: 3 });
    cache.set('a', 'ta', 300);
    cache.set('b', 'tb', 300);
    cache.set('c', 'tc', 300);
    expect(cache.get('a')).toBe('ta'); // a is now the most recently used
    cache.set('d', 'td', 300);
    expect(cache.size).toBe(3);
    expect(cache.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((key) => cache.get(key))).toEqual(['ta', 'tc', 'td']);
  });

  test('past maxBytes the oldest tokens go, and a token larger than the bound is not kept', () => {
    const cache = new TokenCache({ maxBytes: 1000 });
    for (let i = 0; i < 10; i++) cache.set(`scope-${i}`, 'x'.repeat(200), 300);
    expect(cache.byteSize).toBeLessThanOrEqual(1000);
    expect(cache.size).toBe(4);
    expect(cache.get('scope-9')).toBe('x'.repeat(200));
    expect(cache.get('scope-0')).toBeUndefined();
    cache.set('huge', 'x'.repeat(2000), 300);
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.get('scope-9')).toBe('x'.repeat(200));
  });

  test('bytes are given back when tokens are replaced, deleted or expire', () => {
    let now = 0;
    const cache = new TokenCache({ now: () => now, marginSeconds: 0 });
    cache.set('k', 'abc', 60);
    cache.set('k', 'abcdef', 60);
    expect(cache.byteSize).toBe('k'.length + 'abcdef'.length);
    cache.set('j', 'x', 120);
    cache.delete('j');
    expect(cache.byteSize).toBe('k'.length + 'abcdef'.length);
    now += 61_000;
    expect(cache.size).toBe(0);
    expect(cache.byteSize).toBe(0);
  });
});

import { NotFoundCache } from '../../../src/proxy/not-found-cache';

describe('NotFoundCache: recent upstream 404s', () => {
  test('a 404 is remembered for the TTL, then forgotten', () => {
    const cache = new NotFoundCache(30_000);
    cache.remember('proxy/up/app@typo', 1_000);
    expect(cache.has('proxy/up/app@typo', 1_000)).toBe(true);
    expect(cache.has('proxy/up/app@typo', 30_999)).toBe(true);
    expect(cache.has('proxy/up/app@typo', 31_000)).toBe(false);
    expect(cache.has('proxy/up/app@other', 1_000)).toBe(false);
  });

  test('a TTL of 0 remembers nothing', () => {
    const cache = new NotFoundCache(0);
    cache.remember('proxy/up/app@typo', 1_000);
    expect(cache.has('proxy/up/app@typo', 1_000)).toBe(false);
  });

  test('bounded in entries: the oldest go first', () => {
    const cache = new NotFoundCache(30_000, 3);
    for (const tag of ['a', 'b', 'c', 'd']) cache.remember(`proxy/up/app@${tag}`, 1_000);
    expect(['a', 'b', 'c', 'd'].map((tag) => cache.has(`proxy/up/app@${tag}`, 1_000))).toEqual([false, true, true, true]);
  });
});

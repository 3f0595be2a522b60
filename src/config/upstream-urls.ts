import type { UpstreamConfig } from './config';

/** URLs one upstream may list: each request may try them all in turn. */
export const MAX_UPSTREAM_URLS = 8;

/**
 * What the schema cannot say about `[[proxy.upstreams]]` url and urls: exactly one of them, each an http(s)
 * URL, listed once. Settles them in place (before the configuration is frozen): `urls` lists every URL in
 * the order they are tried, `url` is the first. The first problem as "<key>: <what is wrong>", or undefined.
 */
export function settleUpstreamUrls(upstreams: Array<Pick<UpstreamConfig, 'url' | 'urls'>>): string | undefined {
  for (const [index, upstream] of upstreams.entries()) {
    const key = `proxy.upstreams[${index}]`;
    if ((upstream.url === '') === (upstream.urls.length === 0)) {
      return `${key}: set exactly one of url (one URL) and urls (several, tried in order)`;
    }
    const urls = upstream.url === '' ? upstream.urls : [upstream.url];
    if (urls.length > MAX_UPSTREAM_URLS) return `${key}.urls: at most ${MAX_UPSTREAM_URLS} URLs, got ${urls.length}`;
    const settled: string[] = [];
    for (const url of urls) {
      if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
        return `${key}.urls: expected http or https URLs, got ${JSON.stringify(url)}`;
      }
      const bare = url.replace(/\/+$/, '');
      if (settled.includes(bare)) return `${key}.urls: ${bare} is listed twice`;
      settled.push(bare);
    }
    upstream.urls = settled;
    upstream.url = settled[0];
  }
  return undefined;
}

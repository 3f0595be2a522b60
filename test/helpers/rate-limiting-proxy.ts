/**
 * Docker Hub's rate limit in front of a real upstream: a loopback HTTP proxy that passes requests to the
 * upstream unchanged, or, while limiting, answers manifest requests as Docker Hub does once the pull limit
 * is spent: 429 TOOMANYREQUESTS with `ratelimit-limit` / `ratelimit-remaining` headers. Stricter than Hub,
 * which counts only GETs: the cache's revalidating HEAD gets the 429 too, so a test sees the cache serve
 * through it.
 */
import http from 'node:http';
import { AddressInfo } from 'node:net';

export interface RateLimitingProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Start or stop answering 429. */
  setLimiting(limiting: boolean): void;
  /** 429s answered so far. */
  refused(): number;
  close(): Promise<void>;
}

const HUB_LIMIT_BODY = JSON.stringify({
  errors: [
    {
      code: 'TOOMANYREQUESTS',
      message:
        'You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit',
    },
  ],
});

export async function startRateLimitingProxy(upstreamUrl: string): Promise<RateLimitingProxy> {
  const upstream = new URL(upstreamUrl);
  let limiting = false;
  let refused = 0;
  const server = http.createServer((request, response) => {
    if (limiting && /\/manifests\//.test(request.url ?? '')) {
      refused++;
      request.resume();
      response.writeHead(429, {
        'content-type': 'application/json',
        'ratelimit-limit': '100;w=21600',
        'ratelimit-remaining': '0;w=21600',
        'docker-ratelimit-source': '127.0.0.1',
        'retry-after': '60',
      });
      response.end(HUB_LIMIT_BODY);
      return;
    }
    const forwarded = http.request(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: { ...request.headers, host: upstream.host } },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    request.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    setLimiting: (value) => {
      limiting = value;
    },
    refused: () => refused,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

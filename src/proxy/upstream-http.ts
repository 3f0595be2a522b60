/**
 * One HTTP exchange with an upstream host, on node:http/node:https rather than fetch, because the address
 * connected to must be the address checked: a validating `lookup` resolves the name once, refuses it
 * unless every address is public unicast (public-address.ts), and hands the checked address to the
 * socket, so a name that answers differently the second time (DNS rebinding) cannot get around it.
 * Hosts the operator configured are dialled as configured, on sockets of their own (a kept-alive socket
 * opened for a trusted host is never reused for a checked one).
 *
 * Redirects are not followed here (the caller checks each hop), and the answer is a fetch `Response`
 * whose body is read only as it is consumed.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import { nonPublicReason } from './public-address';

/** An upstream host that may not be dialled: refused before any connection is attempted. */
export class UpstreamRefusedError extends Error {
  readonly code = 'EUPSTREAMREFUSED';

  constructor(
    readonly host: string,
    reason: string,
  ) {
    super(`upstream ${host} is not allowed: ${reason}`);
    this.name = 'UpstreamRefusedError';
  }
}

/** Said whatever the address turned out to be, so the answer does not tell what listens where. */
export const NOT_PUBLIC = 'it is not a public address';

export interface ExchangeOptions {
  method: 'GET' | 'HEAD';
  headers: Record<string, string>;
  signal: AbortSignal;
  /** Dial the host whatever it resolves to: the operator configured it. */
  trusted: boolean;
}

const agents = {
  trusted: { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) },
  checked: { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) },
};

/** Throws UpstreamRefusedError unless `url` may be dialled; an IP literal is judged here (no lookup runs for one). */
export function checkDestination(url: URL, trusted: boolean): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UpstreamRefusedError(url.host, `${url.protocol} is not http(s)`);
  if (trusted) return;
  // WHATWG URL parsing has already turned 2130706433, 0x7f.1 and 0177.0.0.1 into 127.0.0.1.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIpLiteral(host) && nonPublicReason(host) !== undefined) throw new UpstreamRefusedError(url.hostname, NOT_PUBLIC);
}

/** One request, no redirects followed; resolves when the response headers arrive. */
export function exchange(url: URL, options: ExchangeOptions): Promise<Response> {
  checkDestination(url, options.trusted);
  const protocol = url.protocol as 'http:' | 'https:';
  const send = protocol === 'https:' ? https.request : http.request;
  return new Promise<Response>((resolve, reject) => {
    const request = send(url, {
      method: options.method,
      headers: options.headers,
      signal: options.signal,
      agent: agents[options.trusted ? 'trusted' : 'checked'][protocol],
      lookup: options.trusted ? undefined : publicOnlyLookup,
    });
    request.once('error', reject);
    request.once('response', (incoming) => {
      try {
        resolve(toResponse(incoming, options.method));
      } catch (error) {
        incoming.destroy();
        reject(error);
      }
    });
    request.end();
  });
}

/** dns.lookup, refusing the name unless every address it has is public: none of them is dialled otherwise. */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { family: options.family, hints: options.hints, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 0);
    if (addresses.length === 0 || addresses.some(({ address }) => nonPublicReason(address) !== undefined)) {
      return callback(new UpstreamRefusedError(hostname, NOT_PUBLIC) as NodeJS.ErrnoException, '', 0);
    }
    if (options.all) return callback(null, addresses);
    return callback(null, addresses[0].address, addresses[0].family);
  });
};

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

// Fetch standard: these statuses have no body.
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

function toResponse(incoming: http.IncomingMessage, method: 'GET' | 'HEAD'): Response {
  const headers = new Headers();
  for (let i = 0; i < incoming.rawHeaders.length; i += 2) headers.append(incoming.rawHeaders[i], incoming.rawHeaders[i + 1]);
  const status = incoming.statusCode ?? 0;
  if (status < 200 || status > 599) throw new Error(`upstream answered with status ${status}`);
  const hasBody = method !== 'HEAD' && !NULL_BODY_STATUSES.has(status);
  if (!hasBody) incoming.resume();
  return new Response(hasBody ? pulledStream(incoming) : null, { status, statusText: incoming.statusMessage, headers });
}

/**
 * The body as a web stream that reads from the socket only when its consumer asks (highWaterMark 0),
 * so a body nobody reads (or an endless one read up to a cap) is not buffered; cancelling it closes the
 * connection. (Readable.toWeb in Node 20 counts its high-water mark in chunks, not bytes.)
 */
function pulledStream(incoming: Readable): ReadableStream<Uint8Array> {
  const chunks = incoming[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { value, done } = await chunks.next();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      async cancel() {
        incoming.destroy();
        await chunks.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

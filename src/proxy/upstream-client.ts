/**
 * A client for one upstream registry that answers its auth challenges the way docker and
 * containers/image do (distribution's token auth spec, docs/spec/auth/token.md):
 *
 *   GET /v2/<name>/manifests/<reference>          → 401 WWW-Authenticate: Bearer realm=…,service=…,scope=…
 *   GET <realm>?service=…&scope=repository:<name>:pull   (Basic credentials if configured)
 *                                                  → {"token"|"access_token", "expires_in", "issued_at"}
 *   GET /v2/<name>/manifests/<reference>  Authorization: Bearer <token>
 *
 * Tokens are cached per (realm, service, scope) until shortly before they expire, so a pull costs one
 * token request, not one per blob. A `Basic` challenge is answered with the configured credentials,
 * and from then on they are sent up front. Everything other than a challenge we can answer — 404,
 * 429, 5xx, a 401 we cannot get past — goes back to the caller as the upstream's Response.
 */
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from '../log';
import { readAtMost } from '../streams';
import type { UpstreamObserver } from '../metrics/registry-metrics';
import { findChallenge, parseWwwAuthenticate } from './challenge';
import { TokenCache } from './token-cache';
import { exchange, UpstreamRefusedError } from './upstream-http';

export { UpstreamRefusedError } from './upstream-http';

export interface UpstreamCredentials {
  username?: string;
  password?: string;
}

export interface UpstreamClientOptions {
  /** e.g. 'https://registry-1.docker.io' or 'http://127.0.0.1:5056' (no trailing slash). */
  url: string;
  credentials?: UpstreamCredentials;
  /** How long to wait for response headers; the body is not under this timeout. */
  timeoutMs: number;
  /** Requests in flight to this upstream until their headers arrive. */
  concurrency: number;
  log: Logger;
  /** Told of every registry request's answer and every request that got none (metrics). */
  observer?: UpstreamObserver;
  /**
   * The operator configured this upstream (`[[proxy.upstreams]]`): its own host is dialled whatever it
   * resolves to (127.0.0.1, harbor.lan). Every other host it leads to, and every host of an upstream a
   * client named, must resolve to public addresses only.
   */
  trusted?: boolean;
  /** Shared between clients to bound the tokens held in all; one of its own by default. */
  tokens?: TokenCache;
  /** Milliseconds since the epoch; injectable for tests of token expiry. */
  now?: () => number;
}

export interface UpstreamRequestOptions {
  /** The repository the scope `repository:<repository>:pull` is asked for. */
  repository: string;
  /** Sent as given (Accept, Range, …); an Authorization here is replaced by ours. */
  headers?: Record<string, string>;
  /** Aborts the request, and the body after the headers arrived. */
  signal?: AbortSignal;
}

/**
 * The upstream could not be reached: DNS, refused or reset connections, TLS, or no response headers
 * within the timeout. The proxy serves what it has cached when it sees this.
 */
export class UpstreamUnavailableError extends Error {
  readonly upstream: string;

  constructor(upstream: string, message: string, options?: { cause?: unknown }) {
    super(`upstream ${upstream} unavailable: ${message}`, options);
    this.name = 'UpstreamUnavailableError';
    this.upstream = upstream;
  }
}

/**
 * The upstream answered, but not with something usable: over a size cap, malformed, too many redirects.
 * Unlike UpstreamUnavailableError the upstream is up; the proxy still serves what it has cached.
 */
export class UpstreamAnswerError extends Error {
  constructor(
    readonly upstream: string,
    message: string,
  ) {
    super(`upstream ${upstream} ${message}`);
    this.name = 'UpstreamAnswerError';
  }
}

/** Token service answers are small (Docker Hub's are about 2 KiB); this caps what we read of a hostile one. */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
/** A longer token is refused rather than cached and sent with every request. */
export const MAX_TOKEN_BYTES = 16 * 1024;
/** Token lifetime when the service states none or less: the token spec's minimum. */
const MIN_TOKEN_LIFETIME_SECONDS = 60;
/** Longer lifetimes are clamped: an upstream cannot make us hold (and trust) a token forever. */
export const MAX_TOKEN_LIFETIME_SECONDS = 3600;
/** Redirects followed per request (Fetch standard's limit is 20; a registry needs one, to its CDN). */
export const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

interface BearerService {
  realm: string;
  service: string | undefined;
}

interface SentAuthorization {
  header?: string;
  /** The Bearer token sent and its cache key, to drop it if the upstream refuses it. */
  token?: { key: string; value: string };
  basic?: boolean;
}

export class UpstreamClient {
  readonly url: string;
  private readonly origin: string;
  private readonly trusted: boolean;
  /** Who tokens are asked for ('' for anonymous); part of the token cache's key. */
  readonly username: string;
  private readonly credentials: { username: string; password: string } | undefined;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly observer: UpstreamObserver | undefined;
  private readonly limit: LimitFunction;
  private readonly tokens: TokenCache;
  /** One token request per key at a time; concurrent requests for the same scope share it. */
  private readonly inflightTokens = new Map<string, Promise<string | undefined>>();
  /** The token service from the last Bearer challenge, so later requests can send a cached token up front. */
  private bearer: BearerService | undefined;
  /** Set once the upstream asked for Basic: then credentials go with every request. */
  private usesBasic = false;

  constructor(options: UpstreamClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.origin = new URL(this.url).origin;
    this.trusted = options.trusted ?? false;
    const username = options.credentials?.username ?? '';
    this.credentials = username === '' ? undefined : { username, password: options.credentials?.password ?? '' };
    this.username = username;
    this.timeoutMs = options.timeoutMs;
    this.log = options.log;
    this.observer = options.observer;
    this.limit = pLimit(options.concurrency);
    this.tokens = options.tokens ?? new TokenCache({ now: options.now });
  }

  /** GET or HEAD `<url>/v2/<path>` (path without `/v2/`, e.g. `library/alpine/manifests/3.20`). */
  async request(method: 'GET' | 'HEAD', path: string, options: UpstreamRequestOptions): Promise<Response> {
    const url = `${this.url}/v2/${path}`;
    const scope = `repository:${options.repository}:pull`;
    const sent = this.authorizationFor(scope);
    const { response, from } = await this.send(method, url, withAuthorization(options.headers, sent.header), options.signal);
    // A challenge is answered only when the upstream itself sent it: a host it redirected to (a CDN) gets
    // neither the configured credentials nor a say in which token realm receives them.
    if (response.status !== 401 || from.origin !== this.origin) return response;

    const challenges = parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '');
    const bearer = findChallenge(challenges, 'bearer');
    if (bearer?.params.realm) {
      const service: BearerService = { realm: bearer.params.realm, service: bearer.params.service };
      this.bearer = service;
      this.usesBasic = false;
      // A token we sent was refused: revoked, or expired earlier than it said. Drop it (unless a
      // concurrent request has already replaced it) and never retry with it.
      if (sent.token && this.tokens.get(sent.token.key) === sent.token.value) this.tokens.delete(sent.token.key);
      // dist-spec auth: the challenge names the scope the operation needs; ours if it names none.
      const tokenScope = bearer.params.scope ?? scope;
      const token = await this.token(service, tokenScope);
      if (token === undefined) return response;
      await discard(response);
      return (await this.send(method, url, withAuthorization(options.headers, `Bearer ${token}`), options.signal)).response;
    }

    const basic = findChallenge(challenges, 'basic');
    if (basic && this.credentials && !sent.basic) {
      this.usesBasic = true;
      await discard(response);
      return (await this.send(method, url, withAuthorization(options.headers, this.basicAuthorization()), options.signal)).response;
    }
    return response;
  }

  /** Drops expired tokens (also done lazily on every token stored or read). */
  purgeExpiredTokens(): void {
    this.tokens.purgeExpired();
  }

  private authorizationFor(scope: string): SentAuthorization {
    if (this.usesBasic && this.credentials) return { header: this.basicAuthorization(), basic: true };
    if (this.bearer) {
      const key = tokenCacheKey(this, this.bearer, scope);
      const token = this.tokens.get(key);
      if (token !== undefined) return { header: `Bearer ${token}`, token: { key, value: token } };
    }
    return {};
  }

  private basicAuthorization(): string {
    const { username, password } = this.credentials!;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** A cached token, or one fetched now; undefined if the token service refused or answered nonsense. */
  private async token(service: BearerService, scope: string): Promise<string | undefined> {
    const key = tokenCacheKey(this, service, scope);
    const cached = this.tokens.get(key);
    if (cached !== undefined) return cached;
    let inflight = this.inflightTokens.get(key);
    if (inflight === undefined) {
      inflight = this.fetchToken(service, scope, key).finally(() => this.inflightTokens.delete(key));
      this.inflightTokens.set(key, inflight);
    }
    return inflight;
  }

  private async fetchToken(service: BearerService, scope: string, key: string): Promise<string | undefined> {
    const fields = { upstream: this.url, realm: service.realm, service: service.service, scope };
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(service.realm);
    } catch {
      this.log.warn('upstream token realm is not a URL', fields);
      return undefined;
    }
    if (tokenUrl.protocol !== 'https:' && tokenUrl.protocol !== 'http:') {
      this.log.warn('upstream token realm is not http(s)', fields);
      return undefined;
    }
    if (service.service !== undefined) tokenUrl.searchParams.set('service', service.service);
    tokenUrl.searchParams.set('scope', scope);

    const headers: Record<string, string> = { accept: 'application/json' };
    // The realm comes from the upstream's challenge; credentials configured for an https upstream are
    // not sent in the clear to an http realm it names.
    const downgrade = tokenUrl.protocol === 'http:' && this.url.startsWith('https:');
    if (this.credentials && !downgrade) headers.authorization = this.basicAuthorization();
    if (this.credentials && downgrade) this.log.warn('not sending upstream credentials to an http token realm', fields);

    // Unlike registry requests, the whole answer is awaited under the timeout: it is small, and a token
    // service that stalls mid-body is as unavailable as one that never answers.
    const body = await this.limit(() =>
      this.withTimeout(`token service ${tokenUrl.origin}: `, undefined, async (signal) => {
        const { response } = await this.follow('GET', tokenUrl, headers, signal);
        if (!response.ok) {
          await discard(response);
          return { status: response.status, text: '' };
        }
        const text = await readCapped(response, MAX_TOKEN_RESPONSE_BYTES);
        if (text === undefined) {
          throw new UpstreamAnswerError(this.url, `token service ${tokenUrl.origin} answered more than ${MAX_TOKEN_RESPONSE_BYTES} bytes`);
        }
        return { status: response.status, text };
      }),
    );
    if (body.status < 200 || body.status > 299) {
      this.log.warn('upstream token service refused', { ...fields, status: body.status });
      return undefined;
    }
    const parsed = parseTokenResponse(body.text);
    if (parsed === undefined) {
      this.log.warn('upstream token service answered without a token', fields);
      return undefined;
    }
    if (Buffer.byteLength(parsed.token) > MAX_TOKEN_BYTES) {
      throw new UpstreamAnswerError(this.url, `token service ${tokenUrl.origin} issued a token over ${MAX_TOKEN_BYTES} bytes`);
    }
    this.tokens.set(key, parsed.token, parsed.expiresIn);
    this.log.debug('upstream token issued', { ...fields, expiresIn: parsed.expiresIn });
    return parsed.token;
  }

  /**
   * One request through the concurrency limit, with its redirects; the limit's slot and the timeout end
   * when the last hop's headers arrive. `from` is the URL that answered.
   */
  private send(
    method: 'GET' | 'HEAD',
    url: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ response: Response; from: URL }> {
    return this.limit(() =>
      this.withTimeout('', signal, async (combined) => {
        const answer = await this.follow(method, new URL(url), headers, combined);
        this.observer?.answered(method, answer.response.status);
        return answer;
      }),
    );
  }

  /**
   * `exchange`, following redirects by hand: registries send blob GETs to a CDN or object store, and
   * every hop is a new destination to check. A hop may go to the configured upstream's own host (as
   * configured) or to a public address; never from https to http unless the upstream itself is
   * configured with http; at most MAX_REDIRECTS of them. Authorization is dropped when a hop leaves the
   * origin, as fetch does (Fetch standard, "HTTP-redirect fetch"): the CDN rejects a foreign credential,
   * and the credential never leaks there.
   */
  private async follow(
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<{ response: Response; from: URL }> {
    let current = url;
    let sent = headers;
    for (let hops = 0; ; hops++) {
      const response = await exchange(current, { method, headers: sent, signal, trusted: this.isTrusted(current) });
      const location = REDIRECT_STATUSES.has(response.status) ? response.headers.get('location') : null;
      if (location === null) return { response, from: current };
      await discard(response);
      if (hops === MAX_REDIRECTS) throw new UpstreamAnswerError(this.url, `redirected more than ${MAX_REDIRECTS} times`);
      const next = redirectTarget(current, location, this.url);
      if (next.origin !== current.origin) sent = withAuthorization(sent);
      current = next;
    }
  }

  /** The configured upstream's own host name is dialled as configured; any other host is checked. */
  private isTrusted(url: URL): boolean {
    return this.trusted && url.hostname === new URL(this.url).hostname;
  }

  /**
   * Runs `work` with a signal that aborts after `timeoutMs` or when the caller's signal does. The timer
   * is cleared when `work` settles, so a body still streaming afterwards is not cut off by it (which is
   * why this is not AbortSignal.timeout on the whole fetch). Failures become UpstreamUnavailableError,
   * except the caller's own abort, which is rethrown as is.
   */
  private async withTimeout<T>(
    context: string,
    signal: AbortSignal | undefined,
    work: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.timeoutMs);
    try {
      return await work(signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      // Refused destinations and unusable answers are not the upstream being down.
      if (error instanceof UpstreamRefusedError || error instanceof UpstreamAnswerError) throw error;
      this.observer?.failed(timeout.signal.aborted ? 'timeout' : 'unreachable');
      if (timeout.signal.aborted) {
        throw new UpstreamUnavailableError(this.url, `${context}no response within ${this.timeoutMs} ms`, { cause: error });
      }
      if (error instanceof UpstreamUnavailableError) throw error;
      throw new UpstreamUnavailableError(this.url, `${context}${describeFetchError(error)}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Where a redirect from `current` to `location` goes, for an upstream configured at `upstreamUrl`: never
 * from https to http unless the upstream itself is configured with http (a configured https upstream's
 * traffic must not be readable on the way), never to anything but http(s).
 */
export function redirectTarget(current: URL, location: string, upstreamUrl: string): URL {
  let next: URL;
  try {
    next = new URL(location, current);
  } catch {
    throw new UpstreamAnswerError(upstreamUrl, 'redirected to an invalid URL');
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new UpstreamRefusedError(next.host, `a redirect to ${next.protocol}`);
  }
  if (current.protocol === 'https:' && next.protocol === 'http:' && !upstreamUrl.startsWith('http:')) {
    throw new UpstreamRefusedError(next.host, 'a redirect from https to http');
  }
  return next;
}

/** Clients may share a cache: the key names the upstream and the user the token was issued for. */
function tokenCacheKey(client: UpstreamClient, service: BearerService, scope: string): string {
  return JSON.stringify([client.url, client.username, service.realm, service.service ?? '', scope]);
}

/** The caller's headers with our Authorization (or none) in place of any they gave. */
function withAuthorization(headers: Record<string, string> = {}, authorization?: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'authorization') result[name] = value;
  }
  if (authorization !== undefined) result.authorization = authorization;
  return result;
}

/** Lets the connection go back to the pool without reading a body we will not use. */
async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

/** The body as text, or undefined once it passes `maxBytes` (the rest is not read). */
async function readCapped(response: Response, maxBytes: number): Promise<string | undefined> {
  if (response.body === null) return '';
  const content = await readAtMost(response.body as unknown as AsyncIterable<Uint8Array>, maxBytes);
  return content?.toString('utf8');
}

/** distribution's token spec: `token` (or OAuth2's `access_token`), `expires_in` seconds (60 if less or absent), `issued_at`. */
function parseTokenResponse(text: string): { token: string; expiresIn: number } | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const fields = body as { token?: unknown; access_token?: unknown; expires_in?: unknown };
  const token = [fields.token, fields.access_token].find((value): value is string => typeof value === 'string' && value !== '');
  if (token === undefined) return undefined;
  const stated = typeof fields.expires_in === 'number' && Number.isFinite(fields.expires_in) ? fields.expires_in : 0;
  // issued_at is not used: the lifetime counts from when the answer arrived, on our clock, so a token
  // service with a skewed clock cannot make us hold a token past its end (the cache's margin covers latency).
  return { token, expiresIn: Math.min(Math.max(stated, MIN_TOKEN_LIFETIME_SECONDS), MAX_TOKEN_LIFETIME_SECONDS) };
}

/**
 * fetch's "fetch failed" hides the useful part in `cause` (ECONNREFUSED, ENOTFOUND, certificate errors).
 * Duck-typed: errors from fetch may come from another realm (jest's sandbox), where instanceof fails.
 */
function describeFetchError(error: unknown): string {
  const { message, cause } = (error ?? {}) as { message?: unknown; cause?: { code?: unknown; message?: unknown } };
  if (typeof message !== 'string') return String(error);
  if (typeof cause?.message !== 'string') return message;
  return `${message}: ${typeof cause.code === 'string' ? `${cause.code} ` : ''}${cause.message}`;
}

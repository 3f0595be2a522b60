import { createHash } from 'node:crypto';
import { AuthConfig } from '../config/config';
import { ConfigError } from '../config/load-config';
import { Logger } from '../log';
import { HtpasswdFile } from './htpasswd';
import { AccessPolicy, ANONYMOUS, Principal } from './policy';
import { TokenClaims, TokenSigner } from './token';

/** A verified Basic header is trusted this long without another bcrypt comparison (GET manifest is a hot path). */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;
/** Failed logins one client address may make per window before it is refused with TOOMANYREQUESTS. */
export const FAILURE_LIMIT = 10;
const FAILURE_WINDOW_MS = 60_000;
/** Addresses whose failures are remembered; past it the one whose window began first is forgotten. */
export const FAILURE_CLIENTS_MAX = 10_000;
/** An upload session not touched this long no longer counts against its user's cap (its data stays until gc). */
const UPLOAD_IDLE_MS = 15 * 60_000;

/** Who made a request, and how. */
export interface Caller {
  principal: Principal;
  /** The request carried an Authorization header (empty Basic credentials, `Og==`, included). */
  presented: boolean;
  /** Set when the request carried a Bearer token: its access list bounds what the request may do. */
  token?: TokenClaims;
}

export type Authentication = { ok: true; caller: Caller } | { ok: false; throttled: false } | { ok: false; throttled: true; retryAfter: number };

/**
 * Inbound authentication and the access policy, shared by every listener of one server. Credentials are
 * never logged, and only a hash of a verified header is kept.
 */
export class AccessControl {
  readonly policy: AccessPolicy;
  /** The scheme a 401 challenges with; Bearer points at the token service (`signer`), which exists only then. */
  readonly challenge: 'basic' | 'bearer';
  readonly signer: TokenSigner | null;
  readonly uploads: UploadOwners;
  private readonly users: HtpasswdFile;
  private readonly verified = new Map<string, { user: string; expires: number; generation: number }>();
  private readonly failures = new Map<string, { count: number; windowStart: number }>();

  constructor(
    readonly config: AuthConfig,
    private readonly log: Logger,
    uploadOwners?: UploadOwnerStore,
  ) {
    config.rules.forEach((rule, index) => {
      if (rule.push.includes('anonymous') || rule.delete.includes('anonymous')) {
        throw new ConfigError(`auth.rules[${index}]: "anonymous" may only pull (prefix ${JSON.stringify(rule.prefix)})`);
      }
    });
    if (config.token && config.challenge === 'basic') {
      throw new ConfigError('auth.token = true asks for Bearer challenges, auth.challenge = "basic" for Basic: set one');
    }
    this.users = new HtpasswdFile(config.htpasswd, log);
    this.policy = new AccessPolicy(config);
    this.challenge = challengeScheme(config);
    this.signer = this.challenge === 'bearer' ? new TokenSigner(config.realm, config.token_ttl) : null;
    this.uploads = new UploadOwners(config.max_uploads, uploadOwners);
  }

  /** Built when `[auth] htpasswd` names a file; null means the registry is open. */
  static fromConfig(config: AuthConfig, log: Logger, uploadOwners?: UploadOwnerStore): AccessControl | null {
    return config.htpasswd === '' ? null : new AccessControl(config, log, uploadOwners);
  }

  /** Reads an Authorization header. `client` is the address failures are counted against. */
  async authenticate(header: string, client: string, now = Date.now()): Promise<Authentication> {
    if (header === '') return { ok: true, caller: { principal: ANONYMOUS, presented: false } };
    const space = header.indexOf(' ');
    const scheme = (space > 0 ? header.slice(0, space) : header).toLowerCase();
    const credentials = space > 0 ? header.slice(space + 1).trim() : '';
    if (scheme === 'bearer' && this.signer) {
      const claims = this.signer.verify(credentials, now);
      // Not a failed login: an expired token is routine (the client fetches another), and HMACs cannot be guessed.
      if (!claims) return { ok: false, throttled: false };
      const principal: Principal = claims.sub === '' ? ANONYMOUS : { kind: 'user', name: claims.sub };
      return { ok: true, caller: { principal, presented: true, token: claims } };
    }
    if (scheme !== 'basic') return this.fail(client, now);
    const user = await this.verifyBasic(credentials, client, now);
    if (typeof user !== 'string') return user;
    return { ok: true, caller: { principal: user === '' ? ANONYMOUS : { kind: 'user', name: user }, presented: true } };
  }

  /** The user a Basic header's credentials belong to; "" for empty credentials (anonymous skopeo sends `Og==`). */
  async verifyBasic(credentials: string, client: string, now = Date.now()): Promise<string | Exclude<Authentication, { ok: true }>> {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    if (decoded === ':') return '';
    this.users.refresh();
    const key = createHash('sha256').update(credentials).digest('base64');
    const known = this.verified.get(key);
    if (known && known.expires > now && known.generation === this.users.generation) return known.user;

    // Counted before the comparison, which awaits: guesses sent in parallel would otherwise all pass the
    // check before the first of them failed. A right password gives its attempt back.
    const blocked = this.blockedFor(client, now);
    if (blocked > 0) return { ok: false, throttled: true, retryAfter: blocked };
    const attempt = this.count(client, now);
    const colon = decoded.indexOf(':');
    const user = colon > 0 ? decoded.slice(0, colon) : '';
    if (user === '' || !(await this.users.verify(user, decoded.slice(colon + 1)))) {
      this.log.info('login failed', { user: user.slice(0, 64), client });
      return this.throttledOrNot(client, now);
    }
    attempt.count--;
    if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
    this.verified.set(key, { user, expires: now + VERIFIED_TTL_MS, generation: this.users.generation });
    return user;
  }

  /**
   * What a login as `user` stands on: a digest of the user's password hash in the htpasswd file as it is now;
   * undefined when the user is no longer there. A new password or a removed user changes it (web UI sessions).
   */
  credentialStamp(user: string): string | undefined {
    const hash = this.users.currentHash(user);
    return hash === undefined ? undefined : createHash('sha256').update(hash).digest('base64url');
  }

  private fail(client: string, now: number): Exclude<Authentication, { ok: true }> {
    this.count(client, now);
    return this.throttledOrNot(client, now);
  }

  private throttledOrNot(client: string, now: number): Exclude<Authentication, { ok: true }> {
    const blocked = this.blockedFor(client, now);
    return blocked > 0 ? { ok: false, throttled: true, retryAfter: blocked } : { ok: false, throttled: false };
  }

  /** Counts an attempt of `client` in its current window; returns that window's entry. */
  private count(client: string, now: number): { count: number; windowStart: number } {
    let entry = this.failures.get(client);
    if (!entry || now - entry.windowStart >= FAILURE_WINDOW_MS) {
      // A new window goes to the end of the map, which thus stays ordered by window start: when full, the
      // first entry is the oldest (expired ones first), and the addresses throttled now stay throttled.
      this.failures.delete(client);
      if (this.failures.size >= FAILURE_CLIENTS_MAX) this.failures.delete(this.failures.keys().next().value!);
      entry = { count: 0, windowStart: now };
      this.failures.set(client, entry);
    }
    entry.count++;
    return entry;
  }

  /** Seconds until `client` may try a password again; 0 when it may now. */
  private blockedFor(client: string, now: number): number {
    const entry = this.failures.get(client);
    if (!entry || entry.count < FAILURE_LIMIT) return 0;
    const left = entry.windowStart + FAILURE_WINDOW_MS - now;
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }
}

/**
 * `challenge = "auto"`: Bearer when anonymous may pull, Basic otherwise. Docker Engine pulls anonymously only
 * after a Bearer challenge (after a Basic one it stops with "no basic auth credentials"), and it runs every
 * handler whose scheme a 401 offers, so offering both fails the same way. skopeo, podman and containerd answer
 * either, and every request accepts Basic credentials whatever the challenge. Synology DSM's registry browser
 * speaks only Basic (not tested here): `challenge = "basic"` is for it, and then Docker needs a login to pull.
 */
function challengeScheme(config: Pick<AuthConfig, 'challenge' | 'token' | 'anonymous'>): 'basic' | 'bearer' {
  if (config.token) return 'bearer';
  if (config.challenge === 'auto') return config.anonymous === 'pull' ? 'bearer' : 'basic';
  return config.challenge;
}

/** Where upload owners are kept across restarts: the index's uploads table. */
export interface UploadOwnerStore {
  save(uploadId: string, owner: string): Promise<void>;
  /** The owner; null when none was recorded, undefined when there is no such session. */
  load(uploadId: string): Promise<string | null | undefined>;
}

/**
 * Which user opened which upload session, so that only they continue it, and how many each has open.
 * The owner is also saved with the session, so that a session opened before a restart stays its owner's.
 */
export class UploadOwners {
  private readonly sessions = new Map<string, { owner: string; touched: number; active: number }>();

  constructor(
    private readonly maxPerUser: number,
    private readonly store?: UploadOwnerStore,
  ) {}

  /** Whether `user` may open another session now. */
  mayOpen(user: string, now = Date.now()): boolean {
    if (this.maxPerUser === 0) return true;
    let open = 0;
    for (const [id, session] of this.sessions) {
      if (session.active === 0 && now - session.touched > UPLOAD_IDLE_MS) this.sessions.delete(id);
      else if (session.owner === user) open++;
    }
    return open < this.maxPerUser;
  }

  async opened(uploadId: string, owner: string, now = Date.now()): Promise<void> {
    this.sessions.set(uploadId, { owner, touched: now, active: 0 });
    await this.store?.save(uploadId, owner);
  }

  /** Whether `user` may use the session: they opened it, or no owner was ever recorded for it. */
  async mayUse(uploadId: string, user: string): Promise<boolean> {
    const session = this.sessions.get(uploadId);
    if (session) return session.owner === user;
    const owner = await this.store?.load(uploadId);
    return owner === undefined || owner === null || owner === user;
  }

  /** Marks a request on the session as running, so a long PATCH keeps counting; returns its end. */
  begin(uploadId: string, now = Date.now()): () => void {
    const session = this.sessions.get(uploadId);
    if (!session) return () => {};
    session.active++;
    session.touched = now;
    return () => {
      session.active--;
      session.touched = Date.now();
    };
  }

  closed(uploadId: string): void {
    this.sessions.delete(uploadId);
  }
}

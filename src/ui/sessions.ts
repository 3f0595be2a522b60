import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** A logged-in session lasts this long from its login (a NAS's browser tab stays open for days). */
const SESSION_TTL_MS = 12 * 3_600_000;
/** Logged-in sessions kept at most; the oldest goes first. */
const SESSIONS_MAX = 10_000;

export const SESSION_COOKIE = 'registry_ui_session';

interface Session {
  user: string;
  /** What the login stood on (AccessControl.credentialStamp): the session ends when it changes. */
  credential: string;
  expires: number;
}

/**
 * Browser sessions, in memory: a restart logs everyone out (docs/ui.md says why they are not kept in the
 * index). A session also ends when its user leaves the htpasswd file or gets a new password. The cookie holds a random id: for a login,
 * the key of a session here; for an anonymous browser, an id nobody stored, which only anchors its CSRF
 * token. A CSRF token is an HMAC of the cookie under a key of this process, so it needs no state and
 * cannot be made without reading the cookie, which another site cannot do (HttpOnly, SameSite=Strict).
 */
export class Sessions {
  private readonly sessions = new Map<string, Session>();
  private readonly key = randomBytes(32);

  /** A fresh cookie value: for a login, `user` and the `credential` the login stood on; else for an anonymous browser. */
  create(login?: { user: string; credential: string }, now = Date.now()): string {
    const id = randomBytes(24).toString('base64url');
    if (login !== undefined) {
      if (this.sessions.size >= SESSIONS_MAX) this.sessions.delete(this.sessions.keys().next().value!);
      this.sessions.set(id, { ...login, expires: now + SESSION_TTL_MS });
    }
    return id;
  }

  /**
   * The user a cookie value is logged in as, or undefined. `credentialOf` tells what the user's login stands
   * on now (undefined: the user is gone); a session whose credential changed is over.
   */
  user(id: string | undefined, credentialOf: (user: string) => string | undefined, now = Date.now()): string | undefined {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    if (session.expires <= now || credentialOf(session.user) !== session.credential) {
      this.sessions.delete(id);
      return undefined;
    }
    return session.user;
  }

  end(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  csrfToken(id: string): string {
    return createHmac('sha256', this.key).update(id).digest('base64url');
  }

  csrfMatches(id: string | undefined, token: string | undefined): boolean {
    if (!id || !token) return false;
    const expected = Buffer.from(this.csrfToken(id));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

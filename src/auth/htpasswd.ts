import bcrypt from 'bcryptjs';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { ConfigError } from '../config/load-config';
import { Logger } from '../log';

/** How often the file's mtime is looked at: a change is picked up within this long, at one stat per interval. */
const RECHECK_MS = 1000;


/**
 * An htpasswd file of bcrypt hashes (`htpasswd -Bbn user password` writes `user:$2y$05$…`), reloaded
 * when its mtime or size changes. Other hash kinds (MD5 `$apr1$`, SHA1, crypt) are skipped with a
 * warning: those users cannot log in.
 */
export class HtpasswdFile {
  private users = new Map<string, string>();
  /** Compared against for unknown users, at the cost most users have, so that they take as long as known ones. */
  private dummyHash = '';
  private stamp = '';
  private checkedAt = 0;
  /** Bumped on every reload, so a cache of verified credentials knows to forget. */
  generation = 0;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {
    // At start a missing or unreadable file stops the server: running open by mistake is worse.
    try {
      this.load(fs.statSync(path));
    } catch (error) {
      throw new ConfigError(`auth.htpasswd: cannot read "${path}": ${(error as Error).message.split(', ')[0]}`);
    }
  }

  /** Whether `password` is `user`'s. Takes a bcrypt comparison's time whether or not the user exists. */
  async verify(user: string, password: string): Promise<boolean> {
    this.refresh();
    // A user the file does not know yet, or a password that does not match, may be one the operator wrote a
    // moment ago, inside RECHECK_MS: look at the file once more (one stat) before saying no.
    let hash = this.users.get(user);
    if (hash === undefined) {
      this.refresh(true);
      hash = this.users.get(user);
    }
    if (await bcrypt.compare(password, hash ?? this.dummyHash)) return hash !== undefined;
    if (hash === undefined) return false;
    this.refresh(true);
    const current = this.users.get(user);
    return current !== undefined && current !== hash && bcrypt.compare(password, current);
  }

  /**
   * The stored hash of `user` as the file says now (looked at without waiting out RECHECK_MS: one stat), or
   * undefined when the user is gone. A web UI session compares it on each request, so that removing a user
   * or changing their password ends their sessions at once.
   */
  currentHash(user: string): string | undefined {
    this.refresh(true);
    return this.users.get(user);
  }

  /** Re-reads the file when it changed; a file that vanished or broke keeps the last good users. */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    try {
      const stats = fs.statSync(this.path);
      if (stampOf(stats) !== this.stamp) this.load(stats);
    } catch (error) {
      this.log.error('cannot reload the htpasswd file; keeping the users already loaded', {
        path: this.path,
        error: (error as Error).message,
      });
    }
  }

  private load(stats: fs.Stats): void {
    this.users = parseHtpasswd(fs.readFileSync(this.path, 'utf8'), (line, reason) =>
      this.log.warn('htpasswd line skipped', { path: this.path, line, reason }),
    );
    this.dummyHash = bcrypt.hashSync(randomBytes(16).toString('hex'), commonCost(this.users.values()));
    this.stamp = stampOf(stats);
    this.checkedAt = Date.now();
    this.generation++;
    this.log.info('htpasswd loaded', { path: this.path, users: this.users.size });
  }
}

/** `user:hash` lines; blank lines and `#` comments ignored. Only bcrypt hashes are kept. */
export function parseHtpasswd(text: string, skipped: (line: number, reason: string) => void = () => {}): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = colon > 0 ? line.slice(0, colon) : '';
    const hash = line.slice(colon + 1);
    if (user === '') return skipped(index + 1, 'no user name');
    if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return skipped(index + 1, 'not a bcrypt hash (use htpasswd -B)');
    // bcryptjs knows $2a$ and $2b$; $2y$ (PHP's and Apache's name) is the same algorithm.
    users.set(user, hash.replace(/^\$2y\$/, '$2b$'));
  });
  return users;
}

/** The bcrypt cost most hashes have (`htpasswd -B` uses 5 unless given -C). */
function commonCost(hashes: Iterable<string>): number {
  const counts = new Map<number, number>();
  for (const hash of hashes) {
    const cost = Number(hash.slice(4, 6));
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let best = 5;
  for (const [cost, count] of counts) if (count > (counts.get(best) ?? 0)) best = cost;
  return best;
}

function stampOf(stats: fs.Stats): string {
  return `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
}

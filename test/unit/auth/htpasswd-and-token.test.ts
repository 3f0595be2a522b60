import bcrypt from 'bcryptjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HtpasswdFile, parseHtpasswd } from '../../../src/auth/htpasswd';
import { createLogger } from '../../../src/log';
import { parseScopes, TokenSigner, tokenAllows } from '../../../src/auth/token';

/**
 * A line as `htpasswd -Bbn user password` writes it: bcrypt at cost 5 under Apache's `$2y$` name. Made with
 * bcryptjs so that the unit tests need no tool outside node_modules; the e2e tests write their users with the
 * real `htpasswd` (test/helpers/auth.ts).
 */
const htpasswdLine = (user: string, password: string) => `${user}:${bcrypt.hashSync(password, 5).replace(/^\$2[ab]\$/, '$2y$')}\n`;

describe('parseHtpasswd', () => {
  test('keeps bcrypt users as htpasswd -B writes them, and skips other hashes and junk', () => {
    const line = htpasswdLine('alice', 'pw').trim();
    const skipped: number[] = [];
    const users = parseHtpasswd(`# comment\n${line}\n\nbob:$apr1$abc$def\nnocolon\n:$2y$05$${'a'.repeat(53)}\n`, (n) => skipped.push(n));
    expect([...users.keys()]).toEqual(['alice']);
    expect(skipped).toEqual([4, 5, 6]);
  });
});

describe('HtpasswdFile', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'htpasswd-test-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // A user added (or a password changed) a moment after the last look at the file can log in at once,
  // not only after the recheck interval: an operator adds a user and tries it straight away.
  test('a user added or a password changed right after a check is known at once', async () => {
    const file = path.join(dir, 'users.htpasswd');
    fs.writeFileSync(file, htpasswdLine('alice', 'a-pw'));
    const users = new HtpasswdFile(file, createLogger('silent'));
    expect(await users.verify('alice', 'a-pw')).toBe(true);
    fs.appendFileSync(file, htpasswdLine('dave', 'd-pw'));
    expect(await users.verify('dave', 'd-pw')).toBe(true);
    fs.writeFileSync(file, htpasswdLine('alice', 'new-pw') + htpasswdLine('dave', 'd-pw'));
    expect(await users.verify('alice', 'new-pw')).toBe(true);
    expect(await users.verify('alice', 'a-pw')).toBe(false);
    expect(await users.verify('nobody', 'x')).toBe(false);
  });
});

describe('TokenSigner', () => {
  const signer = new TokenSigner('registry', 60_000);

  test('verifies its own tokens until they expire', () => {
    const now = Date.now();
    const { token } = signer.issue('bob', [{ type: 'repository', name: 'team/app', actions: ['pull'] }], now);
    const claims = signer.verify(token, now)!;
    expect(claims.sub).toBe('bob');
    expect(tokenAllows(claims, 'pull', 'team/app')).toBe(true);
    expect(tokenAllows(claims, 'push', 'team/app')).toBe(false);
    expect(tokenAllows(claims, 'pull', 'team/other')).toBe(false);
    expect(signer.verify(token, now + 61_000)).toBeNull();
  });

  test("rejects another signer's tokens, tampered claims and junk", () => {
    const { token } = new TokenSigner('registry', 60_000).issue('bob', []);
    expect(signer.verify(token)).toBeNull();
    const own = signer.issue('bob', []).token.split('.');
    const tampered = Buffer.from(JSON.stringify({ sub: 'alice', aud: 'registry', exp: 9e9, access: [] })).toString('base64url');
    expect(signer.verify(`${own[0]}.${tampered}.${own[2]}`)).toBeNull();
    for (const junk of ['', 'a.b', 'a.b.c', '...', 'x'.repeat(100_000)]) expect(signer.verify(junk)).toBeNull();
  });
});

describe('parseScopes', () => {
  test('repository scopes with actions; * is all three; others ignored', () => {
    expect(
      parseScopes(['repository:team/app:pull,push', 'repository:a/b:* registry:catalog:*', 'repository:x:frobnicate', 'garbage']),
    ).toEqual([
      { name: 'team/app', actions: ['pull', 'push'] },
      { name: 'a/b', actions: ['pull', 'push', 'delete'] },
    ]);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AccessControl, FAILURE_CLIENTS_MAX, FAILURE_LIMIT, UploadOwners } from '../../../src/auth/access-control';
import { AuthConfig } from '../../../src/config/config';
import { createLogger } from '../../../src/log';
import { addUsers } from '../../helpers/auth';

const log = createLogger('silent');
const header = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;

describe('AccessControl.authenticate', () => {
  let dir: string;
  let access: AccessControl;
  let config: AuthConfig;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'access-control-'));
    const htpasswd = path.join(dir, 'users.htpasswd');
    addUsers(htpasswd, { alice: 'pw', bob: 'right', carol: 'right' });
    config = {
      htpasswd,
      anonymous: 'pull',
      realm: 'registry',
      challenge: 'auto',
      token: true,
      token_ttl: 60_000,
      max_uploads: 0,
      groups: [],
      rules: [],
    };
    access = new AccessControl(config, log);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('no header and empty Basic credentials are anonymous; only the latter counts as presented', async () => {
    expect(await access.authenticate('', '10.0.0.1')).toEqual({ ok: true, caller: { principal: { kind: 'anonymous' }, presented: false } });
    expect(await access.authenticate('Basic Og==', '10.0.0.1')).toEqual({
      ok: true,
      caller: { principal: { kind: 'anonymous' }, presented: true },
    });
  });

  test('a user, a wrong password, an unknown user, an unknown scheme', async () => {
    expect(await access.authenticate(header('alice:pw'), '10.0.0.2')).toMatchObject({ ok: true, caller: { principal: { name: 'alice' } } });
    expect(await access.authenticate(header('alice:nope'), '10.0.0.2')).toEqual({ ok: false, throttled: false });
    expect(await access.authenticate(header('nobody:pw'), '10.0.0.2')).toEqual({ ok: false, throttled: false });
    expect(await access.authenticate('Digest x', '10.0.0.2')).toEqual({ ok: false, throttled: false });
  });

  test(`after ${FAILURE_LIMIT} failures an address is throttled; a verified header is not, nor another address`, async () => {
    await access.authenticate(header('alice:pw'), '10.0.0.3');
    const results = [];
    for (let i = 0; i < FAILURE_LIMIT; i++) results.push(await access.authenticate(header(`alice:${i}`), '10.0.0.3'));
    expect(results[FAILURE_LIMIT - 1]).toMatchObject({ ok: false, throttled: true });
    expect(await access.authenticate(header('alice:pw'), '10.0.0.3')).toMatchObject({ ok: true });
    expect(await access.authenticate(header('alice:pw'), '10.0.0.4')).toMatchObject({ ok: true });
  });

  test(`parallel guesses: past ${FAILURE_LIMIT} attempts in flight the rest are refused unchecked, the right password included`, async () => {
    const guesses = Array.from({ length: 3 * FAILURE_LIMIT }, (_, i) => access.authenticate(header(`bob:wrong${i}`), '10.0.1.1'));
    const results = await Promise.all([...guesses, access.authenticate(header('bob:right'), '10.0.1.1')]);
    expect(results[results.length - 1]).toMatchObject({ ok: false, throttled: true });
    expect(results.filter((result) => !result.ok && !result.throttled).length).toBeLessThan(FAILURE_LIMIT);
    // A right password counts as no failure: the address that logs in is not closer to the limit.
    for (let i = 0; i < 2 * FAILURE_LIMIT; i++) {
      expect(await access.authenticate(header(`carol:right`), '10.0.1.2')).toMatchObject({ ok: true });
    }
    expect(await access.authenticate(header('carol:wrong'), '10.0.1.2')).toEqual({ ok: false, throttled: false });
  });

  test(`at ${FAILURE_CLIENTS_MAX} addresses the oldest is forgotten, not every throttled one`, async () => {
    const access = new AccessControl(config, log);
    for (let i = 0; i < FAILURE_CLIENTS_MAX - 1; i++) await access.authenticate('Digest x', `10.1.${i >> 8}.${i & 255}`);
    for (let i = 0; i < FAILURE_LIMIT; i++) await access.authenticate('Digest x', '10.2.0.1');
    expect(await access.authenticate(header('carol:whatever'), '10.2.0.1')).toMatchObject({ ok: false, throttled: true });
    // One more address than the map holds.
    await access.authenticate('Digest x', '10.3.0.1');
    expect(await access.authenticate(header('carol:whatever'), '10.2.0.1')).toMatchObject({ ok: false, throttled: true });
  });

  test('bad or expired tokens are refused without counting as failed logins', async () => {
    for (let i = 0; i < FAILURE_LIMIT * 2; i++) {
      expect(await access.authenticate('Bearer a.b.c', '10.0.0.5')).toEqual({ ok: false, throttled: false });
    }
    const { token } = access.signer!.issue('alice', []);
    expect(await access.authenticate(`Bearer ${token}`, '10.0.0.5')).toMatchObject({ ok: true, caller: { token: { sub: 'alice' } } });
  });
});

describe('AccessControl at start', () => {
  const base: AuthConfig = { htpasswd: '', anonymous: 'none', realm: 'r', challenge: 'auto', token: false, token_ttl: 1000, max_uploads: 0, groups: [], rules: [] };

  test('no htpasswd: no access control (the registry is open)', () => {
    expect(AccessControl.fromConfig(base, log)).toBeNull();
  });

  test('a missing htpasswd file and "anonymous" in push are configuration errors', () => {
    const missing = path.join(os.tmpdir(), 'does-not-exist.htpasswd');
    expect(() => AccessControl.fromConfig({ ...base, htpasswd: missing }, log)).toThrow(
      `configuration error: auth.htpasswd: cannot read "${missing}": ENOENT: no such file or directory`,
    );
    const rules = [{ prefix: 'x', pull: [], push: ['anonymous'], delete: [] }];
    expect(() => AccessControl.fromConfig({ ...base, htpasswd: missing, rules }, log)).toThrow(/auth\.rules\[0\]: "anonymous" may only pull/);
  });
});

describe('the challenge scheme', () => {
  let dir: string;
  let htpasswd: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'access-control-challenge-'));
    htpasswd = path.join(dir, 'users.htpasswd');
    addUsers(htpasswd, { alice: 'pw' });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const configWith = (changes: Partial<AuthConfig>): AuthConfig => ({
    htpasswd,
    anonymous: 'none',
    realm: 'r',
    challenge: 'auto',
    token: false,
    token_ttl: 1000,
    max_uploads: 0,
    groups: [],
    rules: [],
    ...changes,
  });
  const schemeOf = (changes: Partial<AuthConfig>) => {
    const access = new AccessControl(configWith(changes), log);
    return { challenge: access.challenge, tokens: access.signer !== null };
  };

  test('auto: Bearer with a token service when anonymous may pull (what dockerd needs to pull anonymously), else Basic', () => {
    expect(schemeOf({ anonymous: 'pull' })).toEqual({ challenge: 'bearer', tokens: true });
    expect(schemeOf({ anonymous: 'none' })).toEqual({ challenge: 'basic', tokens: false });
  });

  test('basic and bearer as set; token = true is bearer; token = true with challenge = "basic" is a configuration error', () => {
    expect(schemeOf({ anonymous: 'pull', challenge: 'basic' })).toEqual({ challenge: 'basic', tokens: false });
    expect(schemeOf({ challenge: 'bearer' })).toEqual({ challenge: 'bearer', tokens: true });
    expect(schemeOf({ token: true })).toEqual({ challenge: 'bearer', tokens: true });
    expect(() => schemeOf({ token: true, challenge: 'basic' })).toThrow(/auth\.token = true .* auth\.challenge = "basic"/);
  });
});

describe('UploadOwners', () => {
  test('only the owner uses a session; the cap counts open and recently used sessions', async () => {
    const owners = new UploadOwners(2);
    const now = Date.now();
    await owners.opened('a', 'alice', now);
    await owners.opened('b', 'alice', now);
    expect(await owners.mayUse('a', 'alice')).toBe(true);
    expect(await owners.mayUse('a', 'bob')).toBe(false);
    expect(await owners.mayUse('unknown', 'bob')).toBe(true);
    expect(owners.mayOpen('alice', now)).toBe(false);
    expect(owners.mayOpen('bob', now)).toBe(true);
    owners.closed('a');
    expect(owners.mayOpen('alice', now)).toBe(true);
    // A session idle for long no longer counts, unless a request on it is still running.
    await owners.opened('c', 'alice', now);
    const end = owners.begin('c', now);
    const later = now + 60 * 60_000;
    await owners.opened('d', 'alice', later);
    expect(owners.mayOpen('alice', later)).toBe(false); // c (running) and d; b has expired
    end();
    expect(owners.mayOpen('alice', Date.now() + 60 * 60_000)).toBe(true); // c has expired now
  });
});

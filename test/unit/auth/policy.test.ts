import { AccessPolicy, ANONYMOUS, Principal } from '../../../src/auth/policy';

const user = (name: string): Principal => ({ kind: 'user', name });

describe('AccessPolicy', () => {
  const policy = new AccessPolicy({
    anonymous: 'pull',
    groups: [{ name: 'devs', members: ['bob'] }],
    rules: [
      { prefix: 'proxy/', pull: ['*'], push: [], delete: [] },
      { prefix: 'team', pull: ['*', 'anonymous'], push: ['devs'], delete: ['alice'] },
      { prefix: 'team/secret/', pull: ['alice'], push: ['alice'], delete: ['alice'] },
    ],
  });

  test('the longest matching prefix decides', () => {
    expect(policy.allows(user('bob'), 'pull', 'team/app')).toBe(true);
    expect(policy.allows(user('bob'), 'pull', 'team/secret/x')).toBe(false);
    expect(policy.allows(user('alice'), 'pull', 'team/secret/x')).toBe(true);
  });

  test('prefixes match whole components', () => {
    expect(policy.allows(ANONYMOUS, 'pull', 'team')).toBe(true);
    expect(policy.allows(ANONYMOUS, 'pull', 'teamwork/app')).toBe(true); // no rule: anonymous may pull
    expect(policy.allows(user('carol'), 'push', 'teamwork/app')).toBe(true); // no rule: any user does anything
    expect(policy.allows(user('carol'), 'push', 'team/app')).toBe(false);
  });

  test('groups, "*" and the delete list', () => {
    expect(policy.allows(user('bob'), 'push', 'team/app')).toBe(true);
    expect(policy.allows(user('bob'), 'delete', 'team/app')).toBe(false);
    expect(policy.allows(user('alice'), 'delete', 'team/app')).toBe(true);
    expect(policy.allows(user('carol'), 'pull', 'proxy/docker.io/library/alpine')).toBe(true);
    expect(policy.allows(user('alice'), 'push', 'proxy/docker.io/library/alpine')).toBe(false);
  });

  test('anonymous only ever pulls, where a rule lists it or none applies, and only with anonymous = "pull"', () => {
    expect(policy.allows(ANONYMOUS, 'pull', 'proxy/docker.io/library/alpine')).toBe(false);
    expect(policy.allows(ANONYMOUS, 'push', 'teamwork/app')).toBe(false);
    const closed = new AccessPolicy({ anonymous: 'none', groups: [], rules: [{ prefix: '', pull: ['anonymous'], push: [], delete: [] }] });
    expect(closed.allows(ANONYMOUS, 'pull', 'any')).toBe(false);
  });

  test('granted() keeps the requested actions that are allowed', () => {
    expect(policy.granted(user('bob'), ['pull', 'push', 'delete'], 'team/app')).toEqual(['pull', 'push']);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config/load-config';

let cwd: string;
beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'config-rules-'));
});
afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));

const UPSTREAMS = `
[[proxy.upstreams]]
host = "harbor.lan"
url = "http://127.0.0.1:1"
aliases = ["harbor"]
`;

/** A configuration with rules for `prefixes`, in order, after a rule that is fine. */
function withRules(prefixes: string[], extra = UPSTREAMS): string {
  const rules = ['team/', ...prefixes].map((prefix) => `[[auth.rules]]\nprefix = ${JSON.stringify(prefix)}\npull = ["alice"]\n`);
  return `${extra}\n[auth]\nhtpasswd = "users.htpasswd"\n${rules.join('\n')}`;
}

function load(configuration: string) {
  fs.writeFileSync(path.join(cwd, 'configuration.toml'), configuration);
  return loadConfig({ cwd, env: {} });
}

/** The one-line ConfigError that loading `configuration` throws. */
function errorOf(configuration: string): string {
  try {
    load(configuration);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).not.toContain('\n');
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('[[auth.rules]] prefixes are stored names: one that can never match stops the start, naming the rule', () => {
  test('prefixes stored names can start with load as written', () => {
    const prefixes = [
      '',
      'team',
      'a.b/c_d/e__f/g-h',
      'proxy',
      'proxy/',
      'proxy/docker.io',
      'proxy/docker.io/',
      'proxy/docker.io/library',
      'proxy/docker.io/library/alpine',
      'proxy/docker.io/bitnami/',
      'proxy/docker.io/bitnami/redis',
      'proxy/harbor.lan/team',
      'proxy/ghcr.io/acme/tools',
    ];
    expect(load(withRules(prefixes)).auth.rules.map((rule) => rule.prefix)).toEqual(['team/', ...prefixes]);
  });

  test.each([
    ['Team/', 'can never match a repository name'],
    ['proxy/Docker.io/library/alpine', 'can never match a repository name'],
    ['team//app', 'can never match a repository name'],
    ['team/app//', 'can never match a repository name'],
    ['/team', 'can never match a repository name'],
    ['/', 'can never match a repository name'],
    ['team/-app', 'can never match a repository name'],
    ['proxy/127.0.0.1:5000/app', 'can never match a repository name'],
  ])('%j is not a name', (prefix, problem) => {
    const file = path.join(cwd, 'configuration.toml');
    expect(errorOf(withRules([prefix]))).toBe(
      `configuration error: auth.rules[1].prefix: ${JSON.stringify(prefix)} ${problem}: names are lower-case components of ` +
        `letters and digits, separated inside by ".", "_", "__" or "-", joined by single "/" (write "" for every repository) (from ${file})`,
    );
  });

  test.each([
    ['proxy/index.docker.io/library/alpine', 'index.docker.io is cached as docker.io; write "proxy/docker.io/library/alpine"'],
    ['proxy/registry-1.docker.io/', 'registry-1.docker.io is cached as docker.io; write "proxy/docker.io/"'],
    ['proxy/harbor/team', 'harbor is cached as harbor.lan; write "proxy/harbor.lan/team"'],
  ])('%j names an upstream by another of its names', (prefix, problem) => {
    expect(errorOf(withRules([prefix]))).toContain(`auth.rules[1].prefix: ${JSON.stringify(prefix)} can never match: ${problem}`);
  });

  test('an unknown alias, or an upstream outside allowed_upstreams, is nothing the cache stores', () => {
    expect(errorOf(withRules(['proxy/hub/library/alpine']))).toContain(
      'auth.rules[1].prefix: "proxy/hub/library/alpine" can never match: nothing is cached under proxy/hub/ (hub is not a registry host name)',
    );
    const restricted = `[proxy]\nallowed_upstreams = ["ghcr.io"]\n${UPSTREAMS}`;
    expect(errorOf(withRules(['proxy/quay.io/app'], restricted))).toContain(
      'auth.rules[1].prefix: "proxy/quay.io/app" can never match: nothing is cached under proxy/quay.io/ (upstream quay.io is not allowed here)',
    );
    // Configured upstreams are served whatever allowed_upstreams says.
    expect(load(withRules(['proxy/harbor.lan/'], restricted)).auth.rules).toHaveLength(2);
  });

  test("Docker Hub's one-component image names are stored under library/: a bare proxy/docker.io/<image> is refused", () => {
    expect(errorOf(withRules(['proxy/docker.io/alpine']))).toContain(
      'auth.rules[1].prefix: "proxy/docker.io/alpine" does not match the image alpine, which is stored as ' +
        '"proxy/docker.io/library/alpine"; write that, or "proxy/docker.io/alpine/" for the images of the Docker Hub account alpine',
    );
  });

  test('the first rule at fault is named', () => {
    expect(errorOf(withRules(['ok/app', 'Bad', 'proxy/hub/x']))).toContain('auth.rules[2].prefix: "Bad"');
  });
});

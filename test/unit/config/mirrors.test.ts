import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config/load-config';
import { parseListen } from '../../../src/config/mirrors';
import { listenAddresses } from '../../../src/server/listeners';

let cwd: string;
beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'config-mirrors-'));
});
afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));

function load(configuration: string, env: Record<string, string> = {}) {
  fs.writeFileSync(path.join(cwd, 'configuration.toml'), configuration);
  return loadConfig({ cwd, env });
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

describe('[[mirror]] and trust_proxy', () => {
  test('reads listen and host mirrors in order; trust_proxy from the file or REGISTRY_TRUST_PROXY', () => {
    const config = load(
      [
        'trust_proxy = true',
        '[[mirror]]',
        'upstream = "docker.io"',
        'listen = "0.0.0.0:5001"',
        '[[mirror]]',
        'upstream = "ghcr.io"',
        'host = "ghcr.example.com"',
        '',
      ].join('\n'),
    );
    expect(config.trust_proxy).toBe(true);
    expect(config.mirror).toEqual([
      { upstream: 'docker.io', listen: '0.0.0.0:5001', host: '' },
      { upstream: 'ghcr.io', listen: '', host: 'ghcr.example.com' },
    ]);
    expect(load('', { REGISTRY_TRUST_PROXY: '1' }).trust_proxy).toBe(true);
  });

  test('listenAddresses: the main address first, then one per listen mirror; host mirrors need none', () => {
    const config = load(
      [
        'host = "0.0.0.0"',
        'port = 5000',
        '[[mirror]]',
        'upstream = "docker.io"',
        'host = "hub.example.com"',
        '[[mirror]]',
        'upstream = "registry-1.docker.io"',
        'listen = "[::]:5001"',
        '',
      ].join('\n'),
    );
    expect(listenAddresses(config)).toEqual([
      { host: '0.0.0.0', port: 5000, endpoint: { kind: 'main' } },
      { host: '::', port: 5001, endpoint: { kind: 'mirror', upstream: 'registry-1.docker.io' } },
    ]);
  });

  test('exactly one of listen and host', () => {
    const file = path.join(cwd, 'configuration.toml');
    expect(errorOf('[[mirror]]\nupstream = "docker.io"\n')).toBe(
      `configuration error: mirror[0]: set exactly one of listen (a port of its own) and host (a name in the Host header) (from ${file})`,
    );
    expect(errorOf('[[mirror]]\nupstream = "docker.io"\nlisten = "127.0.0.1:5001"\nhost = "hub.example.com"\n')).toContain(
      'mirror[0]: set exactly one of listen',
    );
  });

  test.each(['5001', '0.0.0.0', '0.0.0.0:', ':5001', '0.0.0.0:70000', 'http://0.0.0.0:5001', '::1:5001'])(
    'listen = %j is not host:port',
    (listen) => {
      expect(errorOf(`[[mirror]]\nupstream = "docker.io"\nlisten = "${listen}"\n`)).toContain(
        `mirror[0].listen: expected host:port such as "0.0.0.0:5001", got "${listen}"`,
      );
    },
  );

  test('host must be a host name, used by one mirror only', () => {
    expect(errorOf('[[mirror]]\nupstream = "docker.io"\nhost = "https://hub.example.com/"\n')).toContain('mirror[0].host: expected a host name');
    expect(
      errorOf('[[mirror]]\nupstream = "docker.io"\nhost = "hub.example.com"\n[[mirror]]\nupstream = "ghcr.io"\nhost = "HUB.example.com"\n'),
    ).toContain('mirror[1].host: HUB.example.com is already a mirror');
  });

  test('the upstream is required and must be one the cache serves', () => {
    expect(errorOf('[[mirror]]\nlisten = "127.0.0.1:5001"\n')).toContain('mirror[0].upstream: required, but not set');
    expect(errorOf('[[mirror]]\nupstream = "dockerhub"\nlisten = "127.0.0.1:5001"\n')).toContain(
      'mirror[0].upstream: dockerhub is not a registry host name',
    );
    expect(
      errorOf('[proxy]\nallowed_upstreams = ["quay.io"]\n[[mirror]]\nupstream = "ghcr.io"\nlisten = "127.0.0.1:5001"\n'),
    ).toContain('mirror[0].upstream: upstream ghcr.io is not allowed here');
    // A configured upstream's name or alias is served whatever allowed_upstreams says.
    const configured = load(
      '[proxy]\nallowed_upstreams = ["quay.io"]\n[[proxy.upstreams]]\nhost = "harbor"\nurl = "http://127.0.0.1:1"\naliases = ["h"]\n' +
        '[[mirror]]\nupstream = "h"\nlisten = "127.0.0.1:5001"\n',
    );
    expect(configured.mirror[0].upstream).toBe('h');
  });

  test('a mirror needs the pull-through cache', () => {
    expect(errorOf('[proxy]\nenabled = false\n[[mirror]]\nupstream = "docker.io"\nlisten = "127.0.0.1:5001"\n')).toContain(
      'mirror[0]: a mirror serves the pull-through cache, which [proxy] enabled = false turns off',
    );
  });
});

describe('parseListen', () => {
  test.each([
    ['0.0.0.0:5001', { host: '0.0.0.0', port: 5001 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['nas.local:5001', { host: 'nas.local', port: 5001 }],
    ['[::]:5001', { host: '::', port: 5001 }],
    ['[::1]:65535', { host: '::1', port: 65535 }],
  ])('%s', (listen, expected) => {
    expect(parseListen(listen)).toEqual(expected);
  });
});

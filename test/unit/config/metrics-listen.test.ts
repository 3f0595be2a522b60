import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config/load-config';

let cwd: string;

beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'config-test-'));
});

afterEach(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('[metrics] listen', () => {
  it('takes host:port, [v6]:port, or "" for the main listener', () => {
    for (const listen of ['', '127.0.0.1:9090', '0.0.0.0:0', '[::1]:9090', 'localhost:5001']) {
      expect(loadConfig({ cwd, env: {}, overrides: { 'metrics.listen': listen } }).metrics.listen).toBe(listen);
    }
  });

  it('refuses anything else at load, naming where it came from', () => {
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), '[metrics]\nlisten = "9090"\n');
    expect(messageOf(() => loadConfig({ cwd, env: {} }))).toBe(
      `configuration error: metrics.listen: expected host:port such as "127.0.0.1:5001", or "" for the main listener, got "9090" (from ${path.join(cwd, 'configuration.toml')})`,
    );
    // Every layer present is validated, the file first (as for any key): the other layers alone from here.
    fs.rmSync(path.join(cwd, 'configuration.toml'));
    expect(messageOf(() => loadConfig({ cwd, env: { REGISTRY_METRICS_LISTEN: 'host:99999' } }))).toMatch(
      /got "host:99999" \(from REGISTRY_METRICS_LISTEN\)$/,
    );
    expect(messageOf(() => loadConfig({ cwd, env: {}, overrides: { 'metrics.listen': 'http://x:1' } }))).toMatch(
      /got "http:\/\/x:1" \(from --metrics.listen on the command line\)$/,
    );
  });
});

/**
 * Drives the real podman, isolated from the machine: its own storage root (vfs driver, which needs
 * no kernel overlay support), its own runroot, registries.conf and signature policy.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface Podman {
  run(args: string[]): Promise<string>;
  /** Removes the storage root. */
  cleanup(): Promise<void>;
}

/** `registriesConf`: the text of registries.conf (mirrors); by default, no search registries and no mirrors. */
export function createPodman(options: { registriesConf?: string } = {}): Podman {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'podman-test-'));
  const policy = path.join(home, 'policy.json');
  const registriesConf = path.join(home, 'registries.conf');
  fs.writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  fs.writeFileSync(registriesConf, options.registriesConf ?? 'unqualified-search-registries = []\n');
  fs.writeFileSync(path.join(home, 'auth.json'), '{"auths":{}}');
  const globalFlags = ['--storage-driver', 'vfs', '--root', path.join(home, 'root'), '--runroot', path.join(home, 'run')];
  const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: registriesConf, REGISTRY_AUTH_FILE: path.join(home, 'auth.json') };

  const run = async (args: string[]) => {
    const [command, ...rest] = args;
    // Pull and push take the policy and plain-http flags; everything else takes its arguments as they are.
    const transferFlags = command === 'pull' || command === 'push' ? ['--signature-policy', policy, '--tls-verify=false'] : [];
    try {
      const { stdout } = await execFileAsync('podman', [...globalFlags, command, ...transferFlags, ...rest], {
        env,
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout.trim();
    } catch (error) {
      const failure = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`podman ${args.join(' ')} failed: ${failure.message}\n${failure.stdout ?? ''}\n${failure.stderr ?? ''}`);
    }
  };
  return {
    run,
    cleanup: async () => {
      await run(['system', 'reset', '--force']).catch(() => undefined);
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * A containerd daemon of the test's own: temp root and state, its own socket, no CRI plugin,
 * driven by `ctr` with the `native` snapshotter (no kernel overlay support needed).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface Containerd {
  /** `ctr images pull` with hosts.toml files from `hostsDir` (certs.d layout: <registry>/hosts.toml). */
  pull(reference: string, hostsDir: string): Promise<string>;
  /** Removes an image and its content, so the next pull fetches everything again. */
  remove(reference: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'containerd-test-'));
  const address = path.join(home, 'containerd.sock');
  fs.writeFileSync(
    path.join(home, 'config.toml'),
    [
      'version = 2',
      `root = "${path.join(home, 'root')}"`,
      `state = "${path.join(home, 'state')}"`,
      '[grpc]',
      `  address = "${address}"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  disable = true',
      '',
    ].join('\n'),
  );
  const log = fs.openSync(path.join(home, 'containerd.log'), 'a');
  const daemon: ChildProcess = spawn('containerd', ['--config', path.join(home, 'config.toml')], { stdio: ['ignore', log, log] });
  fs.closeSync(log);

  const ctr = async (args: string[]) => {
    try {
      const { stdout } = await execFileAsync('ctr', ['--address', address, ...args], { timeout: 120_000 });
      return stdout;
    } catch (error) {
      const failure = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`ctr ${args.join(' ')} failed: ${failure.message}\n${failure.stdout ?? ''}\n${failure.stderr ?? ''}`);
    }
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await ctr(['version']);
      break;
    } catch (error) {
      if (Date.now() > deadline || daemon.exitCode !== null) {
        throw new Error(`containerd did not start: ${fs.readFileSync(path.join(home, 'containerd.log'), 'utf8')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  return {
    pull: (reference, hostsDir) => ctr(['images', 'pull', '--hosts-dir', hostsDir, '--snapshotter', 'native', reference]),
    remove: async (reference) => {
      await ctr(['images', 'remove', '--sync', reference]);
      await ctr(['content', 'prune', 'references']).catch(() => undefined);
    },
    stop: async () => {
      if (daemon.exitCode === null) {
        const exited = new Promise((resolve) => daemon.once('exit', resolve));
        daemon.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

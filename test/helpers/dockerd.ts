/**
 * A Docker Engine daemon of the test's own (Debian's `docker.io`, dockerd 20.10), driven with the real
 * `docker` CLI. No systemd, no bridge, no iptables: containers run with `--network host`.
 *
 *   /tmp/dk-XXXXXX/         short on purpose: dockerd's unix sockets live under exec-root (108-byte limit)
 *     daemon.json           registry-mirrors, insecure-registries
 *     hosts                 with `hosts`: bind-mounted over /etc/hosts for this dockerd alone (unshare --mount)
 *     root/                 --data-root (vfs storage: plain directories)
 *     exec/                 --exec-root (its containerd's sockets and state)
 *     docker.sock pid       -H unix://…, --pidfile
 *     cfg/                  DOCKER_CONFIG of the CLI: `docker login` stores credentials here
 *     dockerd.log           the daemon's output
 */
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;
export const DOCKER_TIMEOUT_MS = 180_000;

// Daemons still running when jest's worker exits (a test that never reached afterAll) are killed with it.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface DockerdOptions {
  /** daemon.json `registry-mirrors`: Docker Hub mirrors, e.g. `http://127.0.0.1:5001`. */
  registryMirrors?: string[];
  /** daemon.json `insecure-registries`: `host:port`s reached over plain http. */
  insecureRegistries?: string[];
  /** Names that resolve to an address for this daemon only, e.g. `{ 'hub.test': '127.0.0.1' }`. */
  hosts?: Record<string, string>;
  /**
   * `vfs` (the default) works anywhere but copies an image's whole file system for every container and
   * build step; `overlay2` shares layers, and falls back to vfs where the kernel cannot mount overlays.
   */
  storageDriver?: 'vfs' | 'overlay2';
}

export interface DockerResult {
  stdout: string;
  stderr: string;
}

export interface Dockerd {
  dir: string;
  /** Runs the CLI against this daemon; rejects with its stderr when it exits non-zero. */
  docker(args: string[], options?: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<DockerResult>;
  /** What the daemon wrote so far. */
  log(): string;
  /** Stops the daemon (SIGTERM, its containers with it) and removes its directory. */
  stop(): Promise<void>;
}

export async function startDockerd(options: DockerdOptions = {}): Promise<Dockerd> {
  if (options.storageDriver === 'overlay2') {
    try {
      return await startDaemon(options, 'overlay2');
    } catch {
      return startDaemon(options, 'vfs');
    }
  }
  return startDaemon(options, 'vfs');
}

async function startDaemon(options: DockerdOptions, storageDriver: 'vfs' | 'overlay2'): Promise<Dockerd> {
  const dir = fs.mkdtempSync('/tmp/dk-');
  const socket = path.join(dir, 'docker.sock');
  const logPath = path.join(dir, 'dockerd.log');
  fs.writeFileSync(
    path.join(dir, 'daemon.json'),
    JSON.stringify({ 'registry-mirrors': options.registryMirrors ?? [], 'insecure-registries': options.insecureRegistries ?? [] }),
  );
  const dockerdArgs = [
    '--storage-driver', storageDriver, '--iptables=false', '--ip-masq=false', '--bridge=none',
    '--data-root', path.join(dir, 'root'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'pid'),
    '-H', `unix://${socket}`, '--config-file', path.join(dir, 'daemon.json'),
  ];
  let command = 'dockerd';
  let args = dockerdArgs;
  if (options.hosts) {
    const hostsFile = path.join(dir, 'hosts');
    const lines = Object.entries(options.hosts).map(([name, address]) => `${address} ${name}`);
    fs.writeFileSync(hostsFile, ['127.0.0.1 localhost', ...lines, ''].join('\n'));
    // A mount namespace of its own (unshare makes mounts private): the bind mount is seen by this dockerd
    // alone; the machine's /etc/hosts is untouched. `exec` keeps the daemon's pid the child's.
    command = 'unshare';
    args = ['--mount', '--', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec dockerd "$@"', hostsFile, ...dockerdArgs];
  }
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(command, args, { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => running.delete(child));
  const log = () => fs.readFileSync(logPath, 'utf8');

  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(dir, 'cfg') };
  const docker: Dockerd['docker'] = (dockerArgs, { input, timeoutMs = DOCKER_TIMEOUT_MS, env: extra } = {}) =>
    new Promise((resolve, reject) => {
      const cli = execFile(
        'docker',
        dockerArgs,
        { env: { ...env, ...extra }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error) reject(new Error(`docker ${dockerArgs.join(' ')}: ${error.message}\n${stderr}`));
          else resolve({ stdout, stderr });
        },
      );
      if (input !== undefined) cli.stdin!.end(input);
    });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    // dockerd leaves its network namespace's bind mount (exec/netns/default) behind, even on SIGTERM.
    unmountUnder(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const output = log();
      unmountUnder(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`dockerd exited before serving:\n${output}`);
    }
    if (fs.existsSync(socket) && (await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 }).then(() => true, () => false))) break;
    if (Date.now() > deadline) {
      const output = log();
      await stop();
      throw new Error(`dockerd did not answer within ${START_TIMEOUT_MS / 1000} s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { dir, docker, log, stop };
}

/** Unmounts whatever is mounted under `dir` in this mount namespace, deepest first. */
function unmountUnder(dir: string): void {
  const mounts = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((target): target is string => target !== undefined && target.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) spawnSync('umount', ['--lazy', target]);
}

// The reference registry must be on PATH. As root on a Debian-like machine, installs it with apt-get,
// as scripts/test-prerequisites.mjs does for the tests; anywhere else, says what to install.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';

function onPath(command) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir || '.', command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(command, args) {
  console.error(`bench: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (result.status !== 0) throw new Error(`\`${command} ${args.join(' ')}\` failed (${result.error?.message ?? `exit ${result.status}`})`);
}

export function ensureDockerRegistry() {
  if (onPath('docker-registry')) return;
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    run('apt-get', ['update']);
    run('apt-get', ['install', '-y', '--no-install-recommends', 'docker-registry']);
    if (onPath('docker-registry')) return;
  }
  throw new Error(
    'docker-registry (the reference registry, CNCF distribution) is not on PATH. Install it with:\n' +
      '  sudo apt-get update && sudo apt-get install -y --no-install-recommends docker-registry',
  );
}

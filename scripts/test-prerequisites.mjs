// Checks that the tools the integration and e2e tests drive are installed: `npm test` runs this before jest.
// As root on a Debian-like machine (CI) it installs what is missing; anywhere else it says what to install.
// It never skips: a test run without these tools would not test what it claims to.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';

// command on PATH → Debian package that provides it
const REQUIRED = { skopeo: 'skopeo', podman: 'podman', containerd: 'containerd', ctr: 'containerd', 'docker-registry': 'docker-registry', openssl: 'openssl', htpasswd: 'apache2-utils' };

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
  console.error(`test-prerequisites: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (result.status !== 0) {
    console.error(`test-prerequisites: \`${command} ${args.join(' ')}\` failed (${result.error?.message ?? `exit ${result.status}`})`);
    process.exit(1);
  }
}

const missingCommands = () => Object.keys(REQUIRED).filter((command) => !onPath(command));

let missing = missingCommands();
if (missing.length > 0 && process.getuid?.() === 0 && onPath('apt-get')) {
  const packages = [...new Set(missing.map((command) => REQUIRED[command]))];
  run('apt-get', ['update']);
  run('apt-get', ['install', '-y', '--no-install-recommends', ...packages]);
  missing = missingCommands();
}

if (missing.length > 0) {
  const packages = [...new Set(missing.map((command) => REQUIRED[command]))];
  console.error(
    `test-prerequisites: not on PATH: ${missing.join(', ')}. The tests need them. Install with:\n` +
      `  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages.join(' ')}`,
  );
  process.exit(1);
}
console.log(`test-prerequisites: ${Object.keys(REQUIRED).join(', ')} found`);

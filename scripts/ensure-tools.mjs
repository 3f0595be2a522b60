// Makes sure commands the tests or the benchmark drive are on PATH. As root on a Debian-like machine
// (CI) it installs the missing ones' packages with apt-get; anywhere else it says what to install.
// It never skips: a run without these tools would not measure or test what it claims to.
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

function run(who, command, args) {
  console.error(`${who}: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (result.status !== 0) throw new Error(`${who}: \`${command} ${args.join(' ')}\` failed (${result.error?.message ?? `exit ${result.status}`})`);
}

/**
 * `required` maps each command to the Debian package that provides it. Throws an Error whose message
 * names what is missing and the apt-get command that installs it.
 */
export function ensureTools(required, who) {
  const missingCommands = () => Object.keys(required).filter((command) => !onPath(command));
  const packagesOf = (commands) => [...new Set(commands.map((command) => required[command]))];
  let missing = missingCommands();
  if (missing.length > 0 && process.getuid?.() === 0 && onPath('apt-get')) {
    run(who, 'apt-get', ['update']);
    run(who, 'apt-get', ['install', '-y', '--no-install-recommends', ...packagesOf(missing)]);
    missing = missingCommands();
  }
  if (missing.length > 0) {
    throw new Error(
      `${who}: not on PATH: ${missing.join(', ')}. Install with:\n` +
        `  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packagesOf(missing).join(' ')}`,
    );
  }
}

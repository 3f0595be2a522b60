// Runs a command for a daemon fixture (radosgw.cjs, postgres.cjs): its stdout, or an Error naming the
// command with its stderr. Bounded in time: a wedged tool fails the start rather than hanging it.
'use strict';
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');

const execFileAsync = promisify(execFile);

const COMMAND_TIMEOUT_MS = 60_000;

/** @returns {Promise<string>} */
async function runCommand(command, args) {
  try {
    const { stdout } = await execFileAsync(command, args, { timeout: COMMAND_TIMEOUT_MS });
    return stdout;
  } catch (error) {
    throw new Error(`${command} ${args.join(' ')}: ${error.message}${error.stderr ? `\n${error.stderr}` : ''}`);
  }
}

module.exports = { runCommand };

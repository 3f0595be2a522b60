// Brings node_modules and dist/ up to date before `npm start` and `npm test`, so a fresh
// checkout or an edited source tree never runs stale code. Does nothing when both are current.
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (path) => join(root, path);

const mtime = (path) => (existsSync(path) ? statSync(path).mtimeMs : 0);

/** Newest mtime of a directory tree, directories included (a deleted file changes its directory). */
function newestIn(dir) {
  let newest = mtime(dir);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestIn(path) : mtime(path));
  }
  return newest;
}

function run(command, args) {
  console.error(`prepare-run: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const modules = at('node_modules');
if (!existsSync(modules) || mtime(modules) < Math.max(mtime(at('package.json')), mtime(at('package-lock.json')))) {
  run('npm', ['install']);
  // npm leaves node_modules untouched when nothing changed; mark it current so the next run skips.
  const now = new Date();
  utimesSync(modules, now, now);
}

// --no-build: for `npm run test:unit`, which runs the TypeScript sources through swc and needs no dist/.
if (process.argv.includes('--no-build')) process.exit(0);

const main = at('dist/main.js');
const sources = Math.max(newestIn(at('src')), mtime(at('tsconfig.json')), mtime(at('tsconfig.build.json')));
if (!existsSync(main) || mtime(main) < sources) {
  // --noEmitOnError: a failed build must not leave a fresh-looking dist/ that the next run trusts.
  run('npx', ['tsc', '-p', 'tsconfig.build.json', '--noEmitOnError']);
}

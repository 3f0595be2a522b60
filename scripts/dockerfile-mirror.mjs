// Replays the Dockerfile without Docker, so that what CI tests is the Dockerfile itself, not a copy of its
// commands: there is no Docker engine on the CI machine to build the image.
//
//   node scripts/dockerfile-mirror.mjs [--dockerfile <file>] [--context <dir>] [--check] [--keep]
//
// 1. Checks the Dockerfile against issue #8 (LTS slim node base, multi-stage, non-root USER, VOLUME /storage,
//    REGISTRY_HOST=0.0.0.0, exec-form ENTRYPOINT, HEALTHCHECK). --check stops here.
// 2. Replays each stage in a directory of its own (its "root": /app is <temp>/<stage>/app): WORKDIR, COPY
//    from the build context (files git lists, minus .dockerignore) or from an earlier stage, RUN with sh -c
//    in the stage's WORKDIR with the stage's ENV. Steps that act on the operating system are handled
//    visibly instead: apt-get installs are checked (the packages' commands must be on PATH), /storage and
//    other absolute paths are relocated under the stage's root, chown goes to the user the runtime runs as.
//    The host's node and npm stand in for the base image's.
// 3. Starts the runtime stage as the image would: ENTRYPOINT + CMD in its WORKDIR with its ENV, its files
//    only, on a free port; runs the HEALTHCHECK command as written; pushes and pulls an image; sends SIGTERM
//    and requires a clean exit; starts it once more (as `docker run -t` would, with pretty logs) and pulls
//    what the first run stored. As root, the runtime runs as the image's USER or, if that user does not
//    exist here, as nobody: it must not need root.
// Every step is printed as run, relocated, checked, not replayed or recorded; an instruction the mirror
// does not understand fails it. Exits non-zero on any failure.
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, connect } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { DockerfileError, parseDockerfile, evaluate, checkRequirements, classifyRun, dockerignore } = require('./dockerfile.cjs');

const repository = fileURLToPath(new URL('..', import.meta.url));

class MirrorError extends Error {}

const started = Date.now();
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const say = (line) => process.stdout.write(`${line}\n`);
const counts = { run: 0, relocated: 0, checked: 0, 'not replayed': 0, recorded: 0 };
/** One line per step: what the mirror did with it. */
function report(kind, text) {
  counts[kind] += 1;
  say(`    ${kind}: ${text}`);
}

function parseArguments(argv) {
  const options = { dockerfile: null, context: repository, check: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--check') options.check = true;
    else if (flag === '--keep') options.keep = true;
    else if ((flag === '--dockerfile' || flag === '--context') && argv[i + 1]) options[flag.slice(2)] = path.resolve(argv[++i]);
    else throw new MirrorError(`unknown argument ${flag}\nusage: node scripts/dockerfile-mirror.mjs [--dockerfile <file>] [--context <dir>] [--check] [--keep]`);
  }
  options.dockerfile ??= path.join(options.context, 'Dockerfile');
  return options;
}

// Host variables a RUN step may need to reach the npm registry and its cache; nothing else leaks in.
const PASSED_THROUGH = [
  'PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'CI',
  'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY',
  'npm_config_registry', 'npm_config_cache', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
];
const hostEnv = Object.fromEntries(PASSED_THROUGH.filter((name) => process.env[name] !== undefined).map((name) => [name, process.env[name]]));

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir || '.', command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

/** /etc/passwd entry of a user name or uid, or null. */
function passwd(user) {
  const lines = fs.existsSync('/etc/passwd') ? fs.readFileSync('/etc/passwd', 'utf8').split('\n') : [];
  for (const line of lines) {
    const [name, , uid, gid] = line.split(':');
    if (name === user || uid === user) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return null;
}

/**
 * Who the runtime (and any RUN after a USER) runs as. As root: the image's user if it exists here,
 * else nobody, so the run proves the registry needs no root. Otherwise: ourselves, already not root.
 */
function runtimeIdentity(imageUser) {
  const [user, group] = imageUser.split(':');
  if (process.getuid?.() !== 0) {
    return { uid: null, gid: null, description: `uid ${process.getuid?.()} (the mirror is not root; USER ${imageUser} not switched to)` };
  }
  const own = /^\d+$/.test(user) ? { name: user, uid: Number(user), gid: Number(group ?? user) } : passwd(user);
  if (own && own.uid !== 0) return { uid: own.uid, gid: own.gid, description: `${own.name} (uid ${own.uid}, gid ${own.gid})` };
  const nobody = passwd('nobody') ?? { uid: 65534, gid: 65534 };
  return { uid: nobody.uid, gid: nobody.gid, description: `nobody (uid ${nobody.uid}, gid ${nobody.gid}): no user ${user} on this machine` };
}

function spawnOptions(identity) {
  return identity && identity.uid !== null ? { uid: identity.uid, gid: identity.gid } : {};
}

/** Runs a command to completion with its output passed through; fails the mirror unless it exits 0. */
function runCommand(argv, { cwd, env, identity, what }) {
  const at = Date.now();
  const result = spawnSync(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'inherit', 'inherit'], ...spawnOptions(identity) });
  if (result.status !== 0) {
    throw new MirrorError(`${what}: ${argv.join(' ')} failed (${result.error?.message ?? (result.signal ? `signal ${result.signal}` : `exit ${result.status}`)})`);
  }
  return seconds(at);
}

/** The build context as Docker would send it: files git lists (tracked, or new and not ignored), minus .dockerignore. */
function buildContext(context) {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: context, encoding: 'utf8' });
  if (listed.status !== 0) throw new MirrorError(`git ls-files in ${context} failed: ${listed.stderr}`);
  const ignorePath = path.join(context, '.dockerignore');
  const ignored = fs.existsSync(ignorePath) ? dockerignore(fs.readFileSync(ignorePath, 'utf8')) : () => false;
  const files = new Set();
  for (const file of listed.stdout.split('\0')) {
    // A file deleted in the working tree but still in git's index is not in the context.
    if (file === '' || ignored(file) || !fs.existsSync(path.join(context, file))) continue;
    files.add(file);
  }
  return { files, dockerignore: fs.existsSync(ignorePath) };
}

function copyEntry(source, target) {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.cpSync(source, target, { recursive: true, verbatimSymlinks: true, force: true });
}

function chownTree(target, identity, recursive) {
  if (identity.uid === null) return;
  fs.chownSync(target, identity.uid, identity.gid);
  if (recursive && fs.statSync(target).isDirectory()) {
    for (const entry of fs.readdirSync(target)) chownTree(path.join(target, entry), identity, true);
  }
}

/** A free TCP port on this machine, for REGISTRY_PORT. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Mirror {
  constructor(options) {
    this.options = options;
    this.root = null;
    this.stageRoots = [];
  }

  /** Where a path of a stage's filesystem lives in the mirror. */
  at(stageIndex, containerPath) {
    return path.join(this.stageRoots[stageIndex], containerPath);
  }

  check() {
    const text = fs.readFileSync(this.options.dockerfile, 'utf8');
    this.stages = evaluate(parseDockerfile(text));
    const { problems, found } = checkRequirements(this.stages);
    say(`dockerfile-mirror: ${path.relative(process.cwd(), this.options.dockerfile) || this.options.dockerfile}`);
    say(`  requirements met: ${found.join(', ') || 'none'}`);
    if (problems.length > 0) throw new MirrorError(`the Dockerfile does not meet the requirements of issue #8:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }

  prepare() {
    const { files, dockerignore: hasIgnore } = buildContext(this.options.context);
    this.context = files;
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'dockerfile-mirror-'));
    // mkdtemp makes it 0700; the runtime user (nobody) must be able to reach the image's files.
    fs.chmodSync(this.root, 0o755);
    for (let dir = path.dirname(this.root); ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, 'node_modules'))) {
        throw new MirrorError(`${dir}/node_modules exists: the runtime could resolve modules from it, outside the image's files; pick another TMPDIR`);
      }
      if (dir === path.dirname(dir)) break;
    }
    this.identity = runtimeIdentity(this.stages.at(-1).config.user);
    say(`  build context: ${files.size} files (git ls-files${hasIgnore ? ', minus .dockerignore' : ''}) from ${this.options.context}`);
    say(`  replaying in ${this.root}; host node ${process.version}, npm ${spawnSync('npm', ['--version'], { encoding: 'utf8' }).stdout.trim()}`);
    say(`  host variables passed to RUN: ${Object.keys(hostEnv).join(', ')}`);
  }

  replayStages() {
    for (const stage of this.stages) {
      const label = stage.name ?? (stage === this.stages.at(-1) ? 'runtime' : `#${stage.index}`);
      const stageRoot = path.join(this.root, `${stage.index}-${label.replace('#', 'stage')}`);
      this.stageRoots[stage.index] = stageRoot;
      say(`\n== stage ${label}: FROM ${stage.base} (line ${stage.line}) → ${stageRoot}`);
      if (stage.baseStage !== null) {
        fs.cpSync(this.stageRoots[stage.baseStage], stageRoot, { recursive: true, verbatimSymlinks: true });
        report('run', `copied stage ${stage.base}'s files`);
      } else {
        fs.mkdirSync(stageRoot, { mode: 0o755 });
        report('checked', `${stage.base} met the base image requirements; its Node is stood in for by the host's node ${process.version}`);
      }
      const total = stage.steps.length;
      stage.steps.forEach((step, index) => {
        say(`  [${label} ${index + 1}/${total}] ${step.keyword} ${step.args.replace(/\s+/g, ' ')}`);
        this.replayStep(stage, step);
      });
    }
  }

  replayStep(stage, step) {
    const { keyword } = step;
    if (keyword === 'WORKDIR') {
      fs.mkdirSync(this.at(stage.index, step.workdir), { recursive: true, mode: 0o755 });
      return report('relocated', `${step.workdir} → ${this.at(stage.index, step.workdir)}`);
    }
    if (keyword === 'COPY') return this.copy(stage, step);
    if (keyword === 'RUN') return this.run(stage, step);
    if (['ENV', 'USER', 'VOLUME', 'EXPOSE', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD'].includes(keyword)) {
      return report('recorded', `image configuration, applied when the runtime starts${keyword === 'ENV' ? ' (and to later RUN steps)' : ''}`);
    }
    throw new MirrorError(`${step.where}: the mirror has no replay for ${keyword}`);
  }

  copy(stage, step) {
    const destination = this.at(stage.index, step.destination);
    const intoDirectory = step.destination.endsWith('/') || step.sources.length > 1;
    let copied = 0;
    const place = (source, relative, sourceIsDirectory) => {
      // A directory's contents go into the destination; a file goes into it if it ends with / (or exists as a directory).
      const target = sourceIsDirectory
        ? path.join(destination, relative)
        : intoDirectory || (fs.existsSync(destination) && fs.statSync(destination).isDirectory())
          ? path.join(destination, path.basename(source))
          : destination;
      copyEntry(source, target);
      if (step.chown) chownTree(target, this.identity, true);
      copied += 1;
    };
    for (const raw of step.sources) {
      if (step.from !== null) {
        const source = this.at(step.from, path.posix.resolve('/', raw));
        if (!fs.existsSync(source)) throw new MirrorError(`${step.where}: ${raw} does not exist in stage ${step.from} (${source})`);
        place(source, '', fs.statSync(source).isDirectory());
        continue;
      }
      const relative = path.posix.normalize(raw).replace(/^(\.?\/)+/, '').replace(/\/$/, '');
      if (relative.startsWith('..')) throw new MirrorError(`${step.where}: ${raw} is outside the build context`);
      if (relative === '' || relative === '.' || !this.context.has(relative)) {
        const prefix = relative === '' || relative === '.' ? '' : `${relative}/`;
        const below = [...this.context].filter((file) => file.startsWith(prefix));
        if (below.length === 0) {
          throw new MirrorError(`${step.where}: ${raw} is not in the build context (not listed by git ls-files, or excluded by .dockerignore)`);
        }
        for (const file of below) place(path.join(this.options.context, file), file.slice(prefix.length), true);
      } else {
        place(path.join(this.options.context, relative), '', false);
      }
    }
    const from = step.from !== null ? `stage ${this.stages[step.from].name ?? step.from}` : 'the build context';
    report('run', `${copied} ${copied === 1 ? 'entry' : 'entries'} from ${from} → ${destination}${step.chown ? ` (--chown ${step.chown} → ${this.identity.description})` : ''}`);
  }

  run(stage, step) {
    const cwd = this.at(stage.index, step.workdir);
    fs.mkdirSync(cwd, { recursive: true });
    if ('PATH' in step.env) throw new MirrorError(`${step.where}: ENV PATH names the image's directories; the mirror cannot relocate it`);
    const env = { ...hostEnv, ...step.env };
    const asUser = step.user !== null && !['root', '0'].includes(step.user.split(':')[0]);
    const identity = asUser ? this.identity : null;
    if (step.command.form === 'exec') {
      const took = runCommand(step.command.argv, { cwd, env, identity, what: step.where });
      return report('run', `${JSON.stringify(step.command.argv)} in ${cwd} (${took})`);
    }
    const parts = classifyRun(step.command.text, step.where);
    if (parts.every((part) => part.kind === 'run')) {
      const took = runCommand(['sh', '-c', step.command.text], { cwd, env, identity, what: step.where });
      return report('run', `sh -c in ${cwd}${identity ? ` as ${identity.description}` : ''} (${took})`);
    }
    for (const part of parts) {
      if (part.kind === 'not-replayed') report('not replayed', `${part.text}: ${part.why}`);
      else if (part.kind === 'check-packages') {
        const missing = part.commands.filter((command) => !onPath(command));
        if (missing.length > 0) {
          throw new MirrorError(`${step.where}: ${part.text} installs ${part.packages.join(' ')} in the image; here ${missing.join(', ')} must be on PATH (apt-get install ${part.packages.join(' ')})`);
        }
        report('checked', `${part.text}: the mirror installs nothing; the packages' commands are here: ${part.commands.map((command) => `${command} → ${onPath(command)}`).join(', ')}`);
      } else if (part.kind === 'mkdir') {
        for (const target of part.paths) fs.mkdirSync(this.at(stage.index, target), { recursive: true, mode: 0o755 });
        report('relocated', `${part.text} → ${part.paths.map((target) => this.at(stage.index, target)).join(' ')}`);
      } else if (part.kind === 'chown') {
        const owner = part.owner.split(':')[0];
        const imageUser = (this.stages.at(-1).config.user ?? '').split(':')[0];
        if (owner !== imageUser && !passwd(owner)) throw new MirrorError(`${step.where}: ${part.text}: ${owner} is neither the image's USER nor a user here`);
        for (const target of part.paths) chownTree(this.at(stage.index, target), this.identity, part.recursive);
        report(
          'relocated',
          this.identity.uid === null
            ? `${part.text}: ${part.paths.map((target) => this.at(stage.index, target)).join(' ')} already belong to ${this.identity.description}`
            : `${part.text} → ${part.paths.map((target) => this.at(stage.index, target)).join(' ')} owned by ${this.identity.description}`,
        );
      } else {
        const took = runCommand(['sh', '-c', part.text], { cwd, env, identity, what: step.where });
        report('run', `sh -c ${JSON.stringify(part.text)} in ${cwd} (${took})`);
      }
    }
  }

  /** The runtime stage's process environment: its ENV with absolute paths relocated, a free port. */
  runtimeEnvironment(port, extra = {}) {
    const runtime = this.stages.at(-1);
    const home = path.join(this.root, 'home');
    fs.mkdirSync(home, { recursive: true, mode: 0o755 });
    const env = { PATH: process.env.PATH, HOME: home };
    const notes = [];
    for (const [name, value] of Object.entries(runtime.config.env)) {
      if (value.startsWith('/')) {
        env[name] = this.at(runtime.index, value);
        notes.push(`${name}=${value} → ${env[name]}`);
      } else env[name] = value;
    }
    env.REGISTRY_PORT = String(port);
    Object.assign(env, extra);
    return { env, notes };
  }

  /** Container paths in an exec-form argv (e.g. /app/dist/main.js) → the runtime stage's files. */
  relocateArgv(argv, what) {
    const runtime = this.stages.at(-1);
    if (argv[0].startsWith('/')) throw new MirrorError(`${what}: ${argv[0]} is a path in the image; the mirror runs commands from PATH (node, sh)`);
    return argv.map((arg, index) => {
      if (index === 0) {
        if (!onPath(arg)) throw new MirrorError(`${what}: ${arg} is not on PATH here`);
        return arg;
      }
      return arg.startsWith('/') && fs.existsSync(this.at(runtime.index, arg)) ? this.at(runtime.index, arg) : arg;
    });
  }

  async start(port, { extra = {}, label = '', why = '' } = {}) {
    const runtime = this.stages.at(-1);
    const { entrypoint, cmd } = runtime.config;
    if (cmd && cmd.form !== 'exec') throw new MirrorError('CMD: shell form after an exec-form ENTRYPOINT is not understood by the mirror');
    const argv = this.relocateArgv([...entrypoint.argv, ...(cmd?.argv ?? [])], 'ENTRYPOINT/CMD');
    const { env, notes } = this.runtimeEnvironment(port, extra);
    const cwd = this.at(runtime.index, runtime.config.workdir);
    say(`\n== runtime${label}: ${JSON.stringify([...entrypoint.argv, ...(cmd?.argv ?? [])])} in ${runtime.config.workdir}`);
    for (const note of notes) report('relocated', note);
    report('relocated', `REGISTRY_PORT=${port}: a free port here (the image listens on its default)`);
    for (const [name, value] of Object.entries(extra)) report('relocated', `${name}=${value}: ${why}`);
    report('checked', `NODE_ENV=${env.NODE_ENV}, REGISTRY_HOST=${env.REGISTRY_HOST}; only the runtime stage's files (${cwd}); runs as ${this.identity.description}`);
    const at = Date.now();
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions(this.identity) });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      let partial = '';
      stream.on('data', (chunk) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop();
        for (const line of lines) say(`    | ${line}`);
      });
    }
    let exit = null;
    void exited.then((result) => (exit = result));
    while (!(await canConnect(port))) {
      if (exit) throw new MirrorError(`the runtime exited before listening (${exit.signal ?? `exit ${exit.code}`})`);
      if (Date.now() - at > 30_000) {
        child.kill('SIGKILL');
        throw new MirrorError(`the runtime did not listen on port ${port} within 30 s`);
      }
      await sleep(100);
    }
    report('run', `listening on port ${port} after ${seconds(at)}`);
    return { child, exited, env, cwd };
  }

  /** Runs the HEALTHCHECK command as written, as Docker would inside the container; requires exit 0. */
  async healthcheck({ env, cwd }) {
    const { healthcheck } = this.stages.at(-1).config;
    const argv = healthcheck.form === 'exec' ? this.relocateArgv(healthcheck.argv, 'HEALTHCHECK') : ['sh', '-c', healthcheck.text];
    const { retries, timeout } = healthcheck.options;
    for (let attempt = 1; ; attempt++) {
      const at = Date.now();
      const result = spawnSync(argv[0], argv.slice(1), { cwd, env, encoding: 'utf8', timeout, ...spawnOptions(this.identity) });
      if (result.status === 0) {
        return report('checked', `HEALTHCHECK CMD exited 0 in ${seconds(at)} (attempt ${attempt} of ${retries}, as ${this.identity.description})`);
      }
      const outcome = result.error?.message ?? (result.signal ? `signal ${result.signal}` : `exit ${result.status}`);
      if (attempt >= retries) throw new MirrorError(`HEALTHCHECK CMD failed ${retries} times, last: ${outcome} ${result.stdout}${result.stderr}`);
      // Docker waits --interval between probes; one second is enough to tell a start-up race from a failure.
      say(`    HEALTHCHECK attempt ${attempt}: ${outcome}; again in 1 s`);
      await sleep(1000);
    }
  }

  async stop({ child, exited }) {
    const at = Date.now();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const { code, signal } = await exited;
    clearTimeout(timer);
    if (code !== 0) throw new MirrorError(`after SIGTERM the runtime ended with ${signal ? `signal ${signal}` : `exit ${code}`}, not exit 0`);
    report('checked', `SIGTERM → exit 0 after ${seconds(at)}`);
  }

  async runtime() {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const first = await this.start(port);
    try {
      await this.healthcheck(first);
      this.pushed = await pushImage(base);
      report('checked', `pushed ${this.pushed.reference} (${this.pushed.digest}) and pulled it back byte for byte`);
    } catch (error) {
      first.child.kill('SIGKILL');
      throw error;
    }
    await this.stop(first);

    const second = await this.start(port, {
      extra: { REGISTRY_LOG_FORMAT: 'pretty' },
      label: ' again, on the same /storage',
      why: 'as under docker run -t, where a terminal makes log_format=auto pretty (pino-pretty must be a production dependency)',
    });
    try {
      await this.healthcheck(second);
      await pullImage(base, this.pushed);
      report('checked', `pulled ${this.pushed.reference} stored by the first run (it persisted in the volume's directory)`);
    } catch (error) {
      second.child.kill('SIGKILL');
      throw error;
    }
    await this.stop(second);
  }

  cleanUp() {
    if (!this.root) return;
    if (this.options.keep) say(`  kept ${this.root}`);
    else fs.rmSync(this.root, { recursive: true, force: true });
  }
}

const sha256 = (bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function expectStatus(response, status, what) {
  if (response.status !== status) throw new MirrorError(`${what}: expected ${status}, got ${response.status} ${await response.text()}`);
  return response;
}

/** dist-spec: POST /v2/<name>/blobs/uploads/ → 202 Location; PUT <Location>?digest= with the bytes → 201. */
async function pushBlob(base, name, bytes) {
  const started = await expectStatus(await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' }), 202, `POST /v2/${name}/blobs/uploads/`);
  const location = new URL(started.headers.get('location'), base);
  location.searchParams.set('digest', sha256(bytes));
  await expectStatus(
    await fetch(location, { method: 'PUT', body: bytes, headers: { 'Content-Type': 'application/octet-stream' } }),
    201,
    `PUT ${location.pathname}?digest=…`,
  );
}

async function pushImage(base) {
  const name = 'dockerfile-mirror/hello';
  const config = Buffer.from('{}');
  const layer = Buffer.from(`pushed by scripts/dockerfile-mirror.mjs at ${new Date().toISOString()}\n`);
  for (const blob of [config, layer]) await pushBlob(base, name, blob);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    }),
  );
  await expectStatus(
    await fetch(`${base}/v2/${name}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'Content-Type': mediaType } }),
    201,
    `PUT /v2/${name}/manifests/v1`,
  );
  const pushed = { name, reference: `${name}:v1`, mediaType, manifest, digest: sha256(manifest), layer };
  await pullImage(base, pushed);
  return pushed;
}

async function pullImage(base, { name, mediaType, manifest, digest, layer }) {
  const response = await expectStatus(await fetch(`${base}/v2/${name}/manifests/v1`, { headers: { Accept: mediaType } }), 200, `GET /v2/${name}/manifests/v1`);
  const body = Buffer.from(await response.arrayBuffer());
  if (!body.equals(manifest) || response.headers.get('docker-content-digest') !== digest) {
    throw new MirrorError(`GET /v2/${name}/manifests/v1: not the manifest pushed (Docker-Content-Digest ${response.headers.get('docker-content-digest')})`);
  }
  const blob = await expectStatus(await fetch(`${base}/v2/${name}/blobs/${sha256(layer)}`), 200, `GET /v2/${name}/blobs/${sha256(layer)}`);
  if (!Buffer.from(await blob.arrayBuffer()).equals(layer)) throw new MirrorError(`GET /v2/${name}/blobs/${sha256(layer)}: not the bytes pushed`);
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const mirror = new Mirror(options);
  try {
    mirror.check();
    if (options.check) return say('dockerfile-mirror: requirements met (--check: not replayed)');
    mirror.prepare();
    mirror.replayStages();
    await mirror.runtime();
  } finally {
    mirror.cleanUp();
  }
  say(`\ndockerfile-mirror: OK in ${seconds(started)}`);
  say(`  steps: ${Object.entries(counts).map(([kind, count]) => `${count} ${kind}`).join(', ')}`);
  say('  the runtime stage started from its own files, passed its HEALTHCHECK, took a push and served the pull, stopped cleanly on SIGTERM, and started again on the same storage');
  say(`  not covered: the image build itself (no Docker engine here), the base image's own Node (the host's ${process.version} stood in), OS packages (only their commands were checked)`);
}

main().catch((error) => {
  const known = error instanceof MirrorError || error instanceof DockerfileError;
  process.stderr.write(`\ndockerfile-mirror: FAILED after ${seconds(started)}: ${known ? error.message : error?.stack ?? error}\n`);
  process.exit(1);
});

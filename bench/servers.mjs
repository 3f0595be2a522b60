// The servers compared: ours (dist/main.js) and the reference (Debian's docker-registry, CNCF
// distribution 2.8.2), each as its own process on 127.0.0.1 with its own data under a temp dir,
// plus a docker-registry upstream whose access log tells what the caches fetched, and nginx in front
// of either with deploy/nginx.conf (plain HTTP on loopback instead of TLS) and deploy/nginx-accel.conf.
//
//   <work>/<server dir>/
//     configuration.toml | config.yml   written here
//     data/                              everything the server stores
//     stdout.log stderr.log              its output (the upstream's stdout is its access log)
//   <work>/nginx-<random>/               nginx.conf, registry.conf, registry-accel.conf, logs, temp files
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { send } from './client.mjs';
import freePortModule from '../scripts/free-port.cjs';

export const { freePort } = freePortModule;

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** Every child still running: killed on any exit of the bench, however it ends. */
export const children = new Set();

export function killAllChildren() {
  for (const child of children) {
    try {
      // nginx: SIGTERM, which its master passes to the workers; a SIGKILL'd master leaves them listening.
      child.kill(child.finalSignal ?? 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Peak resident set size (VmHWM) in bytes. */
export function peakRss(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /VmHWM:\s+(\d+) kB/.exec(status);
  if (!kib) throw new Error(`no VmHWM for ${pid}`);
  return Number(kib[1]) * 1024;
}

/** CPU time (user + system, all threads) a process has used so far, in seconds. */
export function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // After the command name: state is field 3, utime field 14, stime field 15 (proc(5)); clock ticks of 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Resets the kernel's high-water mark to the current RSS (proc(5): writing 5 to clear_refs), so the
 * next peakRss() is the peak of what ran in between. Returns false where that is not allowed.
 */
export function resetPeakRss(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, child, logFile, probe) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before serving:\n${log.slice(-2000)}`);
    }
    const result = await probe().catch(() => undefined);
    if (result) return result;
    await sleep(30);
  }
  child.kill('SIGKILL');
  throw new Error(`${what} did not start within ${START_TIMEOUT_MS} ms`);
}

function spawnLogged(command, args, dir, stdoutName = 'stdout.log', env = process.env) {
  const stdout = fs.openSync(path.join(dir, stdoutName), 'a');
  const stderr = fs.openSync(path.join(dir, 'stderr.log'), 'a');
  const child = track(spawn(command, args, { cwd: dir, stdio: ['ignore', stdout, stderr], env }));
  fs.closeSync(stdout);
  fs.closeSync(stderr);
  return child;
}

function handle(kind, label, child, dir, url, extra) {
  // The process's peak RSS over its whole life: VmHWM is read before every reset and before the stop,
  // so no stretch of its life (warm-ups and setup included) escapes the maximum.
  let lifetimePeak = 0;
  const notePeak = () => {
    try {
      lifetimePeak = Math.max(lifetimePeak, peakRss(child.pid));
    } catch {
      // gone already
    }
    return lifetimePeak;
  };
  return {
    kind,
    label,
    url,
    pid: child.pid,
    dir,
    peakRss: () => peakRss(child.pid),
    /** Peak RSS in bytes from the start until now (or until the stop), whatever resets happened. */
    lifetimePeakRss: notePeak,
    cpuSeconds: () => cpuSeconds(child.pid),
    resetPeakRss: () => {
      notePeak();
      return resetPeakRss(child.pid);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      notePeak();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
    /** Stops the server and deletes its data. */
    async close() {
      await this.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    },
    ...extra,
  };
}

const toml = (value) => JSON.stringify(value);

/**
 * Our server, built in dist/ (or `main`, another build of it). `upstream` (a URL) configures the upstream `upstream.bench`, pulled as
 * /v2/proxy/upstream.bench/<name>. Request logging is off (log_level warn), as for the reference.
 * `accelRedirect` sets accel_redirect (for nginx in front).
 */
export async function startOurs(parent, { upstream, nodeOptions = [], main = MAIN, accelRedirect = '', s3, database } = {}) {
  const dir = await fsp.mkdtemp(path.join(parent, 'ours-'));
  const data = path.join(dir, 'data');
  const config =
    `host = "127.0.0.1"\nport = 0\nlog_level = "warn"\n` +
    `registry_storage = ${toml(path.join(data, 'registry'))}\n` +
    `temporary_registry_storage = ${toml(path.join(data, 'tmp'))}\n` +
    `proxy_storage = ${toml(path.join(data, 'proxy'))}\n` +
    `database = ${toml(database ?? path.join(data, 'index.db'))}\n` +
    `accel_redirect = ${toml(accelRedirect)}\n` +
    `[gc]\ninterval = "0"\n` +
    (upstream ? `[[proxy.upstreams]]\nhost = "upstream.bench"\nurl = ${toml(upstream)}\n` : '') +
    (s3
      ? `[storage]\nbackend = "s3"\n[storage.s3]\nendpoint = ${toml(s3.endpoint)}\nbucket = ${toml(s3.bucket)}\npath_style = true\n` +
        `access_key_id = ${toml(s3.accessKeyId)}\nsecret_access_key = ${toml(s3.secretAccessKey)}\nredirect = ${s3.redirect}\n`
      : '');
  const configPath = path.join(dir, 'configuration.toml');
  await fsp.writeFile(configPath, config);
  const child = spawnLogged(process.execPath, [...nodeOptions, main, 'serve', '--config', configPath], dir);
  const stdoutPath = path.join(dir, 'stdout.log');
  const url = await waitFor('our server', child, path.join(dir, 'stderr.log'), async () => {
    const match = /listening on (http:\/\/\S+)/.exec(await fsp.readFile(stdoutPath, 'utf8'));
    return match?.[1];
  });
  return handle('ours', 'ours', child, dir, url, {
    storage: { registry: path.join(data, 'registry'), proxy: path.join(data, 'proxy') },
    /** Repository names under the cache. */
    proxied: (name) => `proxy/upstream.bench/${name}`,
    /** Whether a blob is in the cache's store (the download finished and was verified). */
    hasCachedBlob: (digest) => fs.existsSync(path.join(data, 'proxy', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7))),
  });
}

/**
 * docker-registry. `remoteUrl` puts it in proxy mode (`proxy.remoteurl`). `accessLog` keeps its access
 * log (stdout, combined log format) in access.log; otherwise it is off, like our request log.
 */
export async function startReference(parent, { remoteUrl, accessLog = false, label = 'reference', s3 } = {}) {
  const dir = await fsp.mkdtemp(path.join(parent, `${label}-`));
  const data = path.join(dir, 'data');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  // Debian's shipped config uses the in-memory blob descriptor cache; keep it.
  const config =
    'version: 0.1\n' +
    `log:\n  level: warn\n  formatter: json\n  accesslog:\n    disabled: ${!accessLog}\n` +
    `storage:\n  cache:\n    blobdescriptor: inmemory\n` +
    (s3
      ? // distribution's s3 driver: a region endpoint makes it address the bucket path-style.
        `  s3:\n    accesskey: ${JSON.stringify(s3.accessKeyId)}\n    secretkey: ${JSON.stringify(s3.secretAccessKey)}\n` +
        `    region: us-east-1\n    regionendpoint: ${JSON.stringify(s3.endpoint)}\n    bucket: ${JSON.stringify(s3.bucket)}\n` +
        `    secure: false\n    v4auth: true\n  redirect:\n    disable: ${!s3.redirect}\n`
      : `  filesystem:\n    rootdirectory: ${JSON.stringify(data)}\n`) +
    '  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n' +
    `http:\n  addr: ${JSON.stringify(host)}\n  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}\n` +
    (remoteUrl ? `proxy:\n  remoteurl: ${JSON.stringify(remoteUrl)}\n` : '');
  const configPath = path.join(dir, 'config.yml');
  await fsp.writeFile(configPath, config);
  // distribution's AWS SDK (Go, v1) panics at start when AWS_CA_BUNDLE is set, as some machines set it for
  // their own TLS; radosgw on loopback is plain HTTP anyway.
  const { AWS_CA_BUNDLE: _, ...env } = process.env;
  const child = spawnLogged('docker-registry', ['serve', configPath], dir, accessLog ? 'access.log' : 'stdout.log', env);
  const url = `http://${host}`;
  await waitFor('docker-registry', child, path.join(dir, 'stderr.log'), async () => {
    const response = await send(`${url}/v2/`, { timeoutMs: 1000 });
    return response.status === 200;
  });
  const accessLogPath = path.join(dir, 'access.log');
  return handle('reference', label, child, dir, url, {
    // Nothing nginx could send from: distribution never answers with X-Accel-Redirect.
    storage: { registry: path.join(data, 'none', 'registry'), proxy: path.join(data, 'none', 'proxy') },
    proxied: (name) => name,
    hasCachedBlob: (digest) =>
      fs.existsSync(path.join(data, 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data')),
    /**
     * The access log's length after every request answered so far was written: the line is written
     * once a response is done, so a marker request is made and waited for.
     */
    async accessLogMark() {
      const marker = `/v2/-bench-marker-${randomBytes(8).toString('hex')}`;
      await send(`${url}${marker}`);
      const deadline = Date.now() + 5000;
      for (;;) {
        const text = await fsp.readFile(accessLogPath, 'utf8');
        const at = text.indexOf(`${marker} `);
        if (at >= 0) return text.indexOf('\n', at) + 1;
        if (Date.now() > deadline) throw new Error(`access log marker not written within 5 s`);
        await sleep(20);
      }
    },
    /** Requests logged after `mark` (markers excluded): method, uri, status, bytes sent. */
    async accessLogSince(mark) {
      const text = (await fsp.readFile(accessLogPath, 'utf8')).slice(mark);
      const entries = [];
      for (const line of text.split('\n')) {
        const match = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) (\d+|-)/.exec(line);
        if (!match || match[2].startsWith('/v2/-bench-marker-')) continue;
        entries.push({ method: match[1], uri: match[2], status: Number(match[3]), bytes: match[4] === '-' ? 0 : Number(match[4]) });
      }
      return entries;
    },
    accessLogSize: () => fs.statSync(accessLogPath).size,
  });
}

// ---- nginx in front --------------------------------------------------------------------------------

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
export const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
export const ACCEL_PREFIX = '/_blobs/';

/** `text` with each key replaced by its value, each found exactly once (an edit of deploy/ that drops one fails loudly). */
function substitute(file, text, replacements) {
  let result = text;
  for (const [from, to] of Object.entries(replacements)) {
    const count = result.split(from).length - 1;
    if (count !== 1) throw new Error(`${file}: expected "${from}" once, found it ${count} times`);
    result = result.replace(from, () => to);
  }
  return result;
}

/** Child pids of `pid` (nginx's workers), from /proc/<pid>/task/<pid>/children. */
function childPids(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * nginx in front of `backend` (ours or the reference), on a free loopback port: deploy/nginx.conf as
 * shipped but for plain HTTP (the bench measures the registries, not TLS), with deploy/nginx-accel.conf
 * included and aliased to the backend's storage, whatever the backend (distribution never names a file,
 * so its configuration is the same but unused). The main configuration follows Debian's defaults
 * (worker_processes auto, sendfile, tcp_nopush); access log off, as for the registries.
 */
export async function startNginx(parent, backend) {
  const dir = await fsp.mkdtemp(path.join(parent, 'nginx-'));
  const port = await freePort();
  const backendPort = new URL(backend.url).port;
  const serverBlock = substitute('deploy/nginx.conf', await fsp.readFile(path.join(DEPLOY, 'nginx.conf'), 'utf8'), {
    'listen 443 ssl;': `listen 127.0.0.1:${port};`,
    '    ssl_certificate     /etc/ssl/certs/registry.example.com.crt;\n': '',
    '    ssl_certificate_key /etc/ssl/private/registry.example.com.key;\n': '',
    'http://127.0.0.1:5000;': `http://127.0.0.1:${backendPort};`,
  });
  const accel = substitute('deploy/nginx-accel.conf', await fsp.readFile(path.join(DEPLOY, 'nginx-accel.conf'), 'utf8'), {
    'alias /var/lib/oci-cache-registry/registry/blobs/;': `alias ${path.join(backend.storage.registry, 'blobs')}/;`,
    'alias /var/lib/oci-cache-registry/proxy/blobs/;': `alias ${path.join(backend.storage.proxy, 'blobs')}/;`,
  });
  await fsp.writeFile(path.join(dir, 'registry-accel.conf'), accel);
  const end = serverBlock.lastIndexOf('}');
  await fsp.writeFile(path.join(dir, 'registry.conf'), `${serverBlock.slice(0, end)}    include ${dir}/registry-accel.conf;\n${serverBlock.slice(end)}`);
  const errorLog = path.join(dir, 'error.log');
  // As root, nginx would run its workers as nobody, who may not enter the bench's temp dirs.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const main =
    `${user}worker_processes auto;\npid ${dir}/nginx.pid;\nerror_log ${errorLog} warn;\n` +
    'events { worker_connections 1024; }\n' +
    'http {\n' +
    '  sendfile on;\n  tcp_nopush on;\n  types { }\n  default_type application/octet-stream;\n  access_log off;\n' +
    ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/${kind}-temp;\n`).join('') +
    `  include ${dir}/registry.conf;\n` +
    '}\n';
  const mainPath = path.join(dir, 'nginx.conf');
  await fsp.writeFile(mainPath, main);
  const child = spawnLogged(NGINX, ['-p', `${dir}/`, '-e', errorLog, '-c', mainPath, '-g', 'daemon off;'], dir);
  child.finalSignal = 'SIGTERM';
  const url = `http://127.0.0.1:${port}`;
  await waitFor('nginx', child, errorLog, async () => (await send(`${url}/v2/`, { timeoutMs: 1000 })).status > 0);
  const base = handle('nginx', `nginx → ${backend.label}`, child, dir, url, {});
  return {
    ...base,
    /** CPU time of the master and its workers. */
    cpuSeconds: () => [child.pid, ...childPids(child.pid)].reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    /** The errors nginx logged, such as a file it could not open. */
    errorLog: () => fs.readFileSync(errorLog, 'utf8'),
  };
}

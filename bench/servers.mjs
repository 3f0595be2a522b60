// The servers compared: ours (dist/main.js) and the reference (Debian's docker-registry, CNCF
// distribution 2.8.2), each as its own process on 127.0.0.1 with its own data under a temp dir,
// plus a docker-registry upstream whose access log tells what the caches fetched.
//
//   <work>/<server dir>/
//     configuration.toml | config.yml   written here
//     data/                              everything the server stores
//     stdout.log stderr.log              its output (the upstream's stdout is its access log)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { send } from './client.mjs';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** Every child still running: killed on any exit of the bench, however it ends. */
export const children = new Set();

export function killAllChildren() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
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

export async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
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

function spawnLogged(command, args, dir, stdoutName = 'stdout.log') {
  const stdout = fs.openSync(path.join(dir, stdoutName), 'a');
  const stderr = fs.openSync(path.join(dir, 'stderr.log'), 'a');
  const child = track(spawn(command, args, { cwd: dir, stdio: ['ignore', stdout, stderr] }));
  fs.closeSync(stdout);
  fs.closeSync(stderr);
  return child;
}

function handle(kind, label, child, dir, url, extra) {
  return {
    kind,
    label,
    url,
    pid: child.pid,
    dir,
    peakRss: () => peakRss(child.pid),
    cpuSeconds: () => cpuSeconds(child.pid),
    resetPeakRss: () => resetPeakRss(child.pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
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
 */
export async function startOurs(parent, { upstream, nodeOptions = [], main = MAIN } = {}) {
  const dir = await fsp.mkdtemp(path.join(parent, 'ours-'));
  const data = path.join(dir, 'data');
  const config =
    `host = "127.0.0.1"\nport = 0\nlog_level = "warn"\n` +
    `registry_storage = ${toml(path.join(data, 'registry'))}\n` +
    `temporary_registry_storage = ${toml(path.join(data, 'tmp'))}\n` +
    `proxy_storage = ${toml(path.join(data, 'proxy'))}\n` +
    `database = ${toml(path.join(data, 'index.db'))}\n` +
    `[gc]\ninterval = "0"\n` +
    (upstream ? `[[proxy.upstreams]]\nhost = "upstream.bench"\nurl = ${toml(upstream)}\n` : '');
  const configPath = path.join(dir, 'configuration.toml');
  await fsp.writeFile(configPath, config);
  const child = spawnLogged(process.execPath, [...nodeOptions, main, 'serve', '--config', configPath], dir);
  const stdoutPath = path.join(dir, 'stdout.log');
  const url = await waitFor('our server', child, path.join(dir, 'stderr.log'), async () => {
    const match = /listening on (http:\/\/\S+)/.exec(await fsp.readFile(stdoutPath, 'utf8'));
    return match?.[1];
  });
  return handle('ours', 'ours', child, dir, url, {
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
export async function startReference(parent, { remoteUrl, accessLog = false, label = 'reference' } = {}) {
  const dir = await fsp.mkdtemp(path.join(parent, `${label}-`));
  const data = path.join(dir, 'data');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  // Debian's shipped config uses the in-memory blob descriptor cache; keep it.
  const config =
    'version: 0.1\n' +
    `log:\n  level: warn\n  formatter: json\n  accesslog:\n    disabled: ${!accessLog}\n` +
    `storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: ${JSON.stringify(data)}\n` +
    '  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n' +
    `http:\n  addr: ${JSON.stringify(host)}\n  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}\n` +
    (remoteUrl ? `proxy:\n  remoteurl: ${JSON.stringify(remoteUrl)}\n` : '');
  const configPath = path.join(dir, 'config.yml');
  await fsp.writeFile(configPath, config);
  const child = spawnLogged('docker-registry', ['serve', configPath], dir, accessLog ? 'access.log' : 'stdout.log');
  const url = `http://${host}`;
  await waitFor('docker-registry', child, path.join(dir, 'stderr.log'), async () => {
    const response = await send(`${url}/v2/`, { timeoutMs: 1000 });
    return response.status === 200;
  });
  const accessLogPath = path.join(dir, 'access.log');
  return handle('reference', label, child, dir, url, {
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

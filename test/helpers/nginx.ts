/**
 * Debian's nginx as the TLS reverse proxy in front of a test registry, configured with the README's own
 * example, deploy/nginx.conf: its name, certificate paths and upstream address are replaced by a
 * loopback port, a fresh self-signed certificate for 127.0.0.1 and the registry's port. Everything nginx
 * writes (pid, logs, temp files) stays in a temp dir; its access log records, per request, what the
 * registry sent (Location, WWW-Authenticate) and what the client got.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { IncomingHttpHeaders } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { freePort } from './upstream-registry';

const execFileAsync = promisify(execFile);

export const DEPLOY_NGINX_CONF = path.join(__dirname, '..', '..', 'deploy', 'nginx.conf');
export const DEPLOY_NGINX_ACCEL_CONF = path.join(__dirname, '..', '..', 'deploy', 'nginx-accel.conf');

/** Debian installs nginx in /usr/sbin, which an ordinary user's PATH lacks. */
const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/** One request as nginx logged it: `upstream*` as the registry answered, `location` as the client got it. */
export interface NginxLogEntry {
  method: string;
  uri: string;
  status: number;
  /** Request line, headers and body as received from the client, in bytes. */
  requestLength: number;
  transferEncoding: string;
  upstreamLocation: string;
  location: string;
  upstreamWwwAuthenticate: string;
  /** The registry's X-Accel-Redirect, which nginx acts on and does not pass to the client. */
  upstreamAccelRedirect: string;
  /** Bytes of the response body nginx sent. */
  bodyBytesSent: number;
}

export interface NginxResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body as received, for binary content. */
  bytes: Buffer;
}

export interface Nginx {
  /** `https://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, for image references. */
  host: string;
  /** Every request nginx has finished, oldest first. */
  accessLog(): Promise<NginxLogEntry[]>;
  /** nginx's warnings and errors, such as "a client request body is buffered to a temporary file". */
  errorLog(): Promise<string>;
  /** An https request through nginx that trusts (and verifies) its certificate. */
  request(pathAndQuery: string, options?: { method?: string; headers?: Record<string, string> }): Promise<NginxResponse>;
  close(): Promise<void>;
}

export interface NginxOptions {
  /** The registry's loopback port, in place of 5000 in `proxy_pass http://127.0.0.1:5000`. */
  upstreamPort: number;
  /** nginx's port, when the registry must know it first (public_url); a free one otherwise. */
  port?: number;
  /**
   * With deploy/nginx-accel.conf included in the server block, its aliases pointing at these storage
   * directories (the registry's registry_storage and proxy_storage).
   */
  accel?: { registryStorage: string; proxyStorage: string };
}

// Each part of deploy/nginx.conf the test replaces, exactly once: an edit there that drops one fails loudly here.
const PLACEHOLDERS = {
  listen: 'listen 443 ssl;',
  certificate: '/etc/ssl/certs/registry.example.com.crt',
  key: '/etc/ssl/private/registry.example.com.key',
  upstream: 'http://127.0.0.1:5000;',
};

// Each alias of deploy/nginx-accel.conf, replaced exactly once.
const ACCEL_PLACEHOLDERS = {
  registry: 'alias /var/lib/oci-cache-registry/registry/blobs/;',
  proxy: 'alias /var/lib/oci-cache-registry/proxy/blobs/;',
};

const LOG_FORMAT =
  '\'{"method":"$request_method","uri":"$request_uri","status":$status,"requestLength":$request_length,' +
  '"transferEncoding":"$http_transfer_encoding","upstreamLocation":"$upstream_http_location",' +
  '"location":"$sent_http_location","upstreamWwwAuthenticate":"$upstream_http_www_authenticate",' +
  '"upstreamAccelRedirect":"$upstream_http_x_accel_redirect","bodyBytesSent":$body_bytes_sent}\'';

/** Starts nginx with deploy/nginx.conf in front of the registry at 127.0.0.1:<upstreamPort>. */
export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nginx-test-'));
  let child: ChildProcess | undefined;
  try {
    const port = options.port ?? (await freePort());
    const certificatePath = path.join(dir, 'cert.pem');
    const keyPath = path.join(dir, 'key.pem');
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyPath, '-out', certificatePath,
    ]);
    const certificate = await readFile(certificatePath, 'utf8');

    let serverBlock = substitute(DEPLOY_NGINX_CONF, await readFile(DEPLOY_NGINX_CONF, 'utf8'), {
      [PLACEHOLDERS.listen]: `listen 127.0.0.1:${port} ssl;`,
      [PLACEHOLDERS.certificate]: certificatePath,
      [PLACEHOLDERS.key]: keyPath,
      [PLACEHOLDERS.upstream]: `http://127.0.0.1:${options.upstreamPort};`,
    });
    if (options.accel) {
      // As an operator would: `include` the snippet as the server block's last directive.
      const accel = substitute(DEPLOY_NGINX_ACCEL_CONF, await readFile(DEPLOY_NGINX_ACCEL_CONF, 'utf8'), {
        [ACCEL_PLACEHOLDERS.registry]: `alias ${path.join(options.accel.registryStorage, 'blobs')}/;`,
        [ACCEL_PLACEHOLDERS.proxy]: `alias ${path.join(options.accel.proxyStorage, 'blobs')}/;`,
      });
      await writeFile(path.join(dir, 'registry-accel.conf'), accel);
      const end = serverBlock.lastIndexOf('}');
      serverBlock = `${serverBlock.slice(0, end)}    include ${dir}/registry-accel.conf;\n${serverBlock.slice(end)}`;
    }
    await writeFile(path.join(dir, 'registry.conf'), serverBlock);
    const accessLogPath = path.join(dir, 'access.log');
    const errorLogPath = path.join(dir, 'error.log');
    // As root, nginx would run its workers as nobody, who may not enter this temp dir.
    const user = process.getuid?.() === 0 ? 'user root;\n' : '';
    const main =
      `${user}worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${errorLogPath} warn;\n` +
      'events { worker_connections 256; }\n' +
      'http {\n' +
      ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/${kind}-temp;\n`).join('') +
      `  log_format registry escape=json ${LOG_FORMAT};\n` +
      `  access_log ${accessLogPath} registry;\n` +
      `  include ${dir}/registry.conf;\n` +
      '}\n';
    const mainPath = path.join(dir, 'nginx.conf');
    await writeFile(mainPath, main);

    // -e: the error log before the configuration is read, which would otherwise go to /var/log/nginx.
    child = spawn(NGINX, ['-p', `${dir}/`, '-e', errorLogPath, '-c', mainPath, '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    await waitUntilListening(port, certificate, exited, async () => `${stderr}${await readFile(errorLogPath, 'utf8').catch(() => '')}`);

    const started = child;
    const request: Nginx['request'] = (pathAndQuery, { method = 'GET', headers = {} } = {}) =>
      new Promise((resolve, reject) => {
        const outgoing = https.request(
          { host: '127.0.0.1', port, path: pathAndQuery, method, headers, ca: certificate, agent: false },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              const bytes = Buffer.concat(chunks);
              resolve({ status: response.statusCode!, headers: response.headers, body: bytes.toString('utf8'), bytes });
            });
            response.on('error', reject);
          },
        );
        outgoing.on('error', reject);
        outgoing.end();
      });
    return {
      url: `https://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      request,
      accessLog: async () =>
        (await readFile(accessLogPath, 'utf8'))
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as NginxLogEntry),
      errorLog: () => readFile(errorLogPath, 'utf8'),
      close: async () => {
        await stop(started, exited);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (child) await stop(child, new Promise((resolve) => child!.once('exit', resolve)));
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function substitute(file: string, text: string, replacements: Record<string, string>): string {
  let result = text;
  for (const [from, to] of Object.entries(replacements)) {
    const count = result.split(from).length - 1;
    if (count !== 1) throw new Error(`${file}: expected "${from}" once, found it ${count} times`);
    result = result.replace(from, () => to);
  }
  return result;
}

/** Until a TLS handshake on the port verifies our certificate; fails with nginx's messages if it exits first. */
async function waitUntilListening(port: number, certificate: string, exited: Promise<void>, messages: () => Promise<string>) {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (gone) throw new Error(`nginx exited at startup:\n${await messages()}`);
    const ready = await new Promise<boolean>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: certificate }, () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s:\n${await messages()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** SIGTERM: nginx's fast shutdown, workers included (a SIGKILL'd master would leave them listening). */
async function stop(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export interface StaticNginx {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, for image references. */
  host: string;
  /** A plain http request, answered as nginx sent it. */
  request(pathAndQuery: string, options?: { method?: string; headers?: Record<string, string> }): Promise<NginxResponse>;
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts nginx with a generated configuration for its http {} context (`registry export --static`'s
 * DIR.nginx.conf), plain http on a free loopback port: its one `listen 80;` becomes that port.
 */
export async function startStaticNginx(configurationFile: string): Promise<StaticNginx> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nginx-static-'));
  let child: ChildProcess | undefined;
  try {
    const port = await freePort();
    const listen = 'listen 80;';
    const generated = await readFile(configurationFile, 'utf8');
    if (generated.split(listen).length !== 2) throw new Error(`${configurationFile}: expected "${listen}" once`);
    await writeFile(path.join(dir, 'static.conf'), generated.replace(listen, `listen 127.0.0.1:${port};`));
    const errorLogPath = path.join(dir, 'error.log');
    const user = process.getuid?.() === 0 ? 'user root;\n' : '';
    const main =
      `${user}worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${errorLogPath} warn;\n` +
      'events { worker_connections 256; }\n' +
      'http {\n' +
      ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/${kind}-temp;\n`).join('') +
      `  access_log ${dir}/access.log;\n` +
      `  include ${dir}/static.conf;\n` +
      '}\n';
    const mainPath = path.join(dir, 'nginx.conf');
    await writeFile(mainPath, main);
    child = spawn(NGINX, ['-p', `${dir}/`, '-e', errorLogPath, '-c', mainPath, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const messages = async () => `${stderr}${await readFile(errorLogPath, 'utf8').catch(() => '')}`;
      if (gone) throw new Error(`nginx exited at startup:\n${await messages()}`);
      const ready = await new Promise<boolean>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => {
          socket.end();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      });
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s:\n${await messages()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const started = child;
    return {
      url: `http://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      request: (pathAndQuery, { method = 'GET', headers = {} } = {}) =>
        new Promise((resolve, reject) => {
          const outgoing = http.request({ host: '127.0.0.1', port, path: pathAndQuery, method, headers, agent: false }, (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              const bytes = Buffer.concat(chunks);
              resolve({ status: response.statusCode!, headers: response.headers, body: bytes.toString('utf8'), bytes });
            });
            response.on('error', reject);
          });
          outgoing.on('error', reject);
          outgoing.end();
        }),
      errorLog: () => readFile(errorLogPath, 'utf8'),
      close: async () => {
        await stop(started, exited);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (child) await stop(child, new Promise((resolve) => child!.once('exit', resolve)));
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

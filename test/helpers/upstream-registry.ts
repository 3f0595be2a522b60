/**
 * The reference registry (CNCF distribution 2.8.2, Debian's `docker-registry`) as a real upstream on
 * 127.0.0.1, with no auth, htpasswd (Basic) auth, or token auth backed by a token server in this process.
 *
 *   <temp dir>/
 *     config.yml        written here; `docker-registry serve config.yml`
 *     data/             storage.filesystem.rootdirectory (survives stop/start)
 *     access.log        the registry's stdout: one combined-log-format line per request (gorilla handlers)
 *     registry.log      its stderr: the JSON application log (log.formatter: json)
 *     htpasswd          htpasswd mode: `htpasswd -Bbn user password`
 *     key.pem cert.pem  token mode: the token signing key and its self-signed cert (auth.token.rootcertbundle)
 *
 * distribution 2.8.2 writes its access log to stdout in Apache combined format whatever `log.formatter`
 * says (the formatter applies to the application log on stderr):
 *
 *   127.0.0.1 - - [23/Nov/2026:15:55:40 +0000] "GET /v2/foo/blobs/sha256:… HTTP/1.1" 200 1234 "" "skopeo/1.9.3"
 *
 * That line is written after the response finished, so a client can see the body before the line
 * exists: `accessLog()` first requests a marker path and waits for it to appear.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createSign, randomBytes, X509Certificate } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/** A port free on 127.0.0.1 now (shared with the bench and the daemon fixtures, so plain CommonJS). */
export const { freePort } = require('../../scripts/free-port.cjs') as { freePort(): Promise<number> };

const execFileAsync = promisify(execFile);

export interface AccessLogEntry {
  method: string;
  /** As requested, with any query string. */
  uri: string;
  status: number;
}

export interface UpstreamRegistry {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, for skopeo references. */
  host: string;
  rootDirectory: string;
  /** Requests the registry served so far, in order (e.g. to count `GET /v2/<name>/blobs/<digest>`). */
  accessLog(): Promise<AccessLogEntry[]>;
  /** Kills the registry; data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it (and the token server) and removes the temp dir. */
  close(): Promise<void>;
  /** htpasswd and token modes: the one user, allowed to push and pull. */
  credentials?: { username: string; password: string };
  tokenServer?: TokenServer;
}

export interface TokenServer {
  /** The realm: http://127.0.0.1:PORT/token */
  url: string;
  /** Tokens issued so far. */
  issued(): number;
  /** `expires_in` (and the JWT's lifetime) of tokens issued from now on. */
  setExpiresIn(seconds: number): void;
}

export interface UpstreamRegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** Token mode: seconds a token lives (default 300, like Docker Hub's anonymous tokens). */
  tokenExpiresIn?: number;
  /** Token mode: issue pull-only tokens to anonymous requests, as Docker Hub does (default true). */
  anonymousPull?: boolean;
  /** htpasswd and token modes: the user's name and password (default upstream-user and a random one). */
  credentials?: { username: string; password: string };
}

const SERVICE = 'test-registry';
const ISSUER = 'test-issuer';
const START_TIMEOUT_MS = 15_000;
const ACCESS_LINE = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) /;
const MARKER_PREFIX = '/v2/-accesslog-marker-';

// Registries still running when jest's worker exits (a test that never reached afterAll) are killed with it.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startUpstreamRegistry(options: UpstreamRegistryOptions = {}): Promise<UpstreamRegistry> {
  const auth = options.auth ?? 'none';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'upstream-registry-'));
  const rootDirectory = path.join(dir, 'data');
  const accessLogPath = path.join(dir, 'access.log');
  const registryLogPath = path.join(dir, 'registry.log');
  let tokenHttpServer: http.Server | undefined;
  let child: ChildProcess | undefined;

  const stop = async () => {
    const current = child;
    child = undefined;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((resolve) => current.once('exit', resolve));
    current.kill('SIGKILL');
    await exited;
  };
  const close = async () => {
    await stop();
    if (tokenHttpServer) await closeServer(tokenHttpServer);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    const credentials =
      auth === 'none'
        ? undefined
        : (options.credentials ?? { username: 'upstream-user', password: `pw-${randomBytes(6).toString('hex')}` });

    let authYaml = '';
    let tokenServer: TokenServer | undefined;
    if (auth === 'htpasswd') {
      const htpasswdPath = path.join(dir, 'htpasswd');
      const { stdout } = await execFileAsync('htpasswd', ['-Bbn', credentials!.username, credentials!.password]);
      await writeFile(htpasswdPath, stdout);
      authYaml = `auth:\n  htpasswd:\n    realm: ${q('upstream-registry')}\n    path: ${q(htpasswdPath)}\n`;
    } else if (auth === 'token') {
      const keyPath = path.join(dir, 'key.pem');
      const certPath = path.join(dir, 'cert.pem');
      await execFileAsync('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
        '-subj', `/CN=${ISSUER}`, '-keyout', keyPath, '-out', certPath,
      ]);
      const started = await startTokenServer({
        privateKey: await readFile(keyPath, 'utf8'),
        certificate: await readFile(certPath, 'utf8'),
        credentials: credentials!,
        expiresIn: options.tokenExpiresIn ?? 300,
        anonymousPull: options.anonymousPull ?? true,
      });
      tokenHttpServer = started.server;
      tokenServer = started.tokenServer;
      authYaml =
        `auth:\n  token:\n    realm: ${q(tokenServer.url)}\n    service: ${q(SERVICE)}\n` +
        `    issuer: ${q(ISSUER)}\n    rootcertbundle: ${q(certPath)}\n`;
    }

    // JSON strings are YAML scalars, so paths need no further quoting rules.
    const config =
      'version: 0.1\n' +
      'log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: false\n' +
      `storage:\n  filesystem:\n    rootdirectory: ${q(rootDirectory)}\n  delete:\n    enabled: true\n` +
      '  maintenance:\n    uploadpurging:\n      enabled: false\n' +
      `http:\n  addr: ${q(host)}\n  secret: ${q(randomBytes(16).toString('hex'))}\n` +
      authYaml;
    const configPath = path.join(dir, 'config.yml');
    await writeFile(configPath, config);

    const start = async () => {
      if (child) return;
      const stdout = openSync(accessLogPath, 'a');
      const stderr = openSync(registryLogPath, 'a');
      const spawned = spawn('docker-registry', ['serve', configPath], { cwd: dir, stdio: ['ignore', stdout, stderr] });
      closeSync(stdout);
      closeSync(stderr);
      child = spawned;
      running.add(spawned);
      spawned.once('exit', () => running.delete(spawned));
      await waitUntilServing(url, spawned, registryLogPath);
    };

    const accessLog = async (): Promise<AccessLogEntry[]> => {
      if (child) {
        const marker = `${MARKER_PREFIX}${randomBytes(8).toString('hex')}`;
        await fetch(`${url}${marker}`).then((response) => response.arrayBuffer());
        const deadline = Date.now() + 5000;
        while (!(await readFile(accessLogPath, 'utf8')).includes(`${marker} `)) {
          if (Date.now() > deadline) throw new Error(`access log marker ${marker} not written within 5 s`);
          await sleep(20);
        }
      }
      return parseAccessLog(await readFile(accessLogPath, 'utf8').catch(() => ''));
    };

    await start();
    return { url, host, rootDirectory, accessLog, stop, start, close, credentials, tokenServer };
  } catch (error) {
    await close();
    throw error;
  }
}

function parseAccessLog(text: string): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    const match = ACCESS_LINE.exec(line);
    if (!match || match[2].startsWith(MARKER_PREFIX)) continue;
    entries.push({ method: match[1], uri: match[2], status: Number(match[3]) });
  }
  return entries;
}

/** `GET /v2/` answering at all (401 in the auth modes) means the registry is up. */
async function waitUntilServing(url: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}) before serving:\n${log}`);
    }
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200 || response.status === 401) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`docker-registry did not answer GET ${url}/v2/ within ${START_TIMEOUT_MS} ms`);
}

// ---- token server (distribution's token auth spec, docs/spec/auth/token.md and jwt.md) ----

interface TokenServerOptions {
  privateKey: string;
  certificate: string;
  credentials: { username: string; password: string };
  expiresIn: number;
  anonymousPull: boolean;
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

/**
 * GET /token?service=…&scope=…[&scope=…] with optional Basic credentials. The user gets every action
 * asked for; anonymous requests (no credentials, or skopeo's empty `Basic Og==`) get pull only, if
 * allowed. Wrong credentials are 401.
 */
async function startTokenServer(options: TokenServerOptions): Promise<{ server: http.Server; tokenServer: TokenServer }> {
  let issued = 0;
  let expiresIn = options.expiresIn;
  // JWS x5c: the signing cert, base64 (not url-safe) DER. distribution verifies the chain against
  // auth.token.rootcertbundle; a self-signed cert that is itself in the bundle is a complete chain.
  const x5c = [new X509Certificate(options.certificate).raw.toString('base64')];

  const server = http.createServer((request, response) => {
    const requestUrl = new URL(request.url ?? '/', 'http://token.invalid');
    const answer = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (request.method !== 'GET' || requestUrl.pathname !== '/token') return answer(404, { error: 'not found' });
    const service = requestUrl.searchParams.get('service');
    if (service !== null && service !== SERVICE) return answer(400, { error: `unknown service ${service}` });

    const user = authenticate(request.headers.authorization, options.credentials);
    if (user === false) return answer(401, { error: 'invalid credentials' });
    if (user === undefined && !options.anonymousPull) return answer(401, { error: 'authentication required' });

    const access = requestUrl.searchParams
      .getAll('scope')
      .flatMap((value) => value.split(' '))
      .map(parseScope)
      .filter((entry): entry is Access => entry !== undefined)
      .map((entry) => (user === undefined ? { ...entry, actions: entry.actions.filter((action) => action === 'pull') } : entry))
      .filter((entry) => entry.actions.length > 0);

    const now = Math.floor(Date.now() / 1000);
    const token = signJwt(
      { alg: 'RS256', typ: 'JWT', x5c },
      {
        iss: ISSUER,
        sub: user ?? '',
        aud: SERVICE,
        exp: now + expiresIn,
        nbf: now - 1,
        iat: now,
        jti: randomBytes(12).toString('hex'),
        access,
      },
      options.privateKey,
    );
    issued++;
    answer(200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    tokenServer: {
      url: `http://127.0.0.1:${port}/token`,
      issued: () => issued,
      setExpiresIn: (seconds) => {
        expiresIn = seconds;
      },
    },
  };
}

/** The user name, undefined for anonymous, false for wrong credentials. */
function authenticate(
  header: string | undefined,
  credentials: { username: string; password: string },
): string | undefined | false {
  if (header === undefined) return undefined;
  const match = /^Basic\s+(\S+)$/i.exec(header);
  if (!match) return false;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  if (decoded === ':') return undefined; // containers/image's anonymous `Basic Og==`
  const colon = decoded.indexOf(':');
  const username = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  return colon > 0 && username === credentials.username && password === credentials.password ? username : false;
}

/** `repository:library/alpine:pull,push` → {type, name, actions}; the name is everything between the first and last colon. */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

/** A compact JWS, RS256 (RSASSA-PKCS1-v1_5 with SHA-256), with node:crypto only. */
function signJwt(header: object, claims: object, privateKeyPem: string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signingInput = `${encode(header)}.${encode(claims)}`;
  const signature = createSign('RSA-SHA256').update(signingInput).sign(privateKeyPem).toString('base64url');
  return `${signingInput}.${signature}`;
}

// ---- small things ----

function q(value: string): string {
  return JSON.stringify(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port nothing listens on right now: listen on 0, note it, close. */

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

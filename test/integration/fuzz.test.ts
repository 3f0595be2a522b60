import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { RegistryClient, expectStatus } from '../helpers/registry-client';
import { TestApp } from '../helpers/test-app';

/**
 * A bounded fuzz run: a few thousand malformed and hostile requests from a seeded generator (reproducible:
 * FUZZ_SEED picks another sequence), after which the server must be alive, must have answered none of them
 * with a 5xx, and must have written nothing outside its storage roots. The cache is off: with it, names
 * under proxy/ would reach out to the network, and an unreachable upstream is a legitimate 503.
 */
const REQUESTS = 3000;
const CONCURRENCY = 16;
const SEED = Number(process.env.FUZZ_SEED ?? 20261123);

/** mulberry32: small, seedable, good enough to pick cases. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** The server may drop the connection instead of answering (headers over Node's limit). */
  mayDrop?: boolean;
}

const MARKER = `fuzz-escape-${process.pid}`;

function generator(next: () => number, validName: string, validDigest: string, authorization: string) {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
  const hex = (n: number) => Array.from({ length: n }, () => '0123456789abcdef'[Math.floor(next() * 16)]).join('');
  const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)));

  const names = [
    validName,
    'fuzz/app',
    `../../../../tmp/${MARKER}`,
    `..%2f..%2f..%2ftmp%2f${MARKER}`,
    `%2e%2e/%2e%2e/tmp/${MARKER}`,
    `a/../../${MARKER}`,
    `a/./b`,
    'a//b',
    'A/UPPER',
    'x'.repeat(300),
    Array.from({ length: 60 }, () => 'ab').join('/'),
    'a%00b',
    'a\\..\\..\\b',
    '%ff%fe',
    'proxy/docker.io/library/alpine',
    '_catalog',
    'caf\u00e9',
    '-leading/dash',
  ];
  const digests = [
    validDigest,
    `sha256:${hex(64)}`,
    `sha512:${hex(128)}`,
    `sha256:${hex(63)}`,
    `sha256:../../../../tmp/${MARKER}`,
    `sha256:..%2f..%2f${MARKER}`,
    'md5:d41d8cd98f00b204e9800998ecf8427e',
    'sha256:',
    ':',
    `${'sha256:'.repeat(20)}`,
    `SHA256:${hex(64).toUpperCase()}`,
  ];
  const references = [...digests, 'latest', 'v1', '-bad', 'x'.repeat(200), '..', '%2e%2e', `..%2f${MARKER}`];
  const uploadIds = ['00000000-0000-0000-0000-000000000000', `../../${MARKER}`, '%2e%2e%2f%2e%2e', 'x'.repeat(500), hex(32), ''];
  const ranges = ['bytes=0-0', 'bytes=5-2', 'bytes=-0', 'bytes=abc', 'bytes=0-99999999999999999999', 'bytes=1-2,3-4', 'bytes=-99999999999', 'items=0-1', ''];
  const contentRanges = ['0-0', '5-2', 'abc', '0-99999999999999999999', 'bytes 0-9/*', '-1-5', '1-'];
  const jsonBodies = [
    '{',
    '{"schemaVersion":2',
    '[]',
    'null',
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:../../x","size":1},"layers":[]}',
    `{"schemaVersion":2,"config":{"mediaType":"a","digest":"${validDigest}","size":-1},"layers":[{"digest":"../../${MARKER}","size":1e309}]}`,
    '{"schemaVersion":2,"manifests":[{"digest":"sha256:' + '0'.repeat(64) + '","size":1}]}',
    '['.repeat(5000) + ']'.repeat(5000),
    '{"a":"' + '\\u0000'.repeat(100) + '"}',
    '\u0000\u0001\u0002',
  ];
  const manifestTypes = [
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.oci.image.index.v1+json',
    'text/plain',
    '',
    'application/json; charset=utf-8; boundary="',
  ];
  // Besides the valid login (most requests, so that they reach the routes): none, anonymous and broken ones.
  const otherAuthorizations = [
    '',
    'Basic Og==',
    'Basic !!!not-base64',
    `Basic ${Buffer.from('alice:wrong').toString('base64')}`,
    'Bearer a.b.c',
    'Bearer ' + 'x'.repeat(5000),
    'Digest username="alice"',
    'Basic',
  ];
  const queries = [
    '',
    `?digest=sha256:../../${MARKER}`,
    `?digest=${validDigest}`,
    `?mount=${validDigest}&from=../../etc`,
    `?mount=sha256:../../x&from=${validName}`,
    '?n=-1',
    '?n=99999999999',
    '?n=abc&last=%00',
    '?ns=../../..',
    '?ns=docker.io',
    '?digest=a&digest=b',
  ];

  return (): FuzzRequest => {
    const name = pick(names);
    const shapes: Array<() => FuzzRequest> = [
      () => ({ method: pick(['GET', 'HEAD']), path: `/v2/${name}/blobs/${pick(digests)}`, headers: { Range: pick(ranges) } }),
      () => ({ method: pick(['GET', 'HEAD', 'DELETE']), path: `/v2/${name}/manifests/${pick(references)}`, headers: { Accept: pick(manifestTypes) } }),
      () => ({
        method: 'PUT',
        path: `/v2/${name}/manifests/${pick(references)}`,
        headers: { 'Content-Type': pick(manifestTypes) },
        body: Buffer.from(pick(jsonBodies)),
      }),
      () => ({ method: 'POST', path: `/v2/${name}/blobs/uploads/${pick(queries)}`, headers: {}, body: next() < 0.5 ? junk(64) : undefined }),
      () => ({
        method: pick(['PATCH', 'PUT', 'GET', 'DELETE']),
        path: `/v2/${name}/blobs/uploads/${pick(uploadIds)}${pick(queries)}`,
        headers: { 'Content-Range': pick(contentRanges) },
        body: junk(Math.floor(next() * 256)),
      }),
      () => ({ method: 'GET', path: `/v2/${name}/tags/list${pick(queries)}`, headers: {} }),
      () => ({ method: 'GET', path: `/v2/_catalog${pick(queries)}`, headers: {} }),
      () => ({ method: 'GET', path: `/v2/${name}/referrers/${pick(digests)}?artifactType=${pick(['', '%00', 'a/b'])}`, headers: {} }),
      () => ({ method: pick(['OPTIONS', 'TRACE', 'FOO', 'PROPFIND']), path: `/v2/${name}/manifests/latest`, headers: {} }),
      () => ({ method: 'GET', path: pick(['/', '/v2', '/v2/', '/v1/search?q=../../', '/token?scope=repository:../..:pull', '/../../etc/passwd', '/v2/../../']), headers: {} }),
      () => ({ method: 'GET', path: `/v2/${name}/tags/list`, headers: { 'X-Huge': 'a'.repeat(20_000 + Math.floor(next() * 50_000)) }, mayDrop: true }),
      () => ({ method: 'GET', path: `/v2/${name}/manifests/latest`, headers: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`X-H${i}`, hex(40)])), mayDrop: true }),
    ];
    const request = pick(shapes)();
    const auth = next() < 0.75 ? authorization : pick(otherAuthorizations);
    if (auth !== '') request.headers.Authorization = auth;
    return request;
  };
}

function send(baseUrl: URL, request: FuzzRequest): Promise<number | 'dropped'> {
  return new Promise((resolve) => {
    let req: http.ClientRequest;
    try {
      req = http.request(
        {
          host: baseUrl.hostname,
          port: baseUrl.port,
          method: request.method,
          path: request.path,
          headers: { ...request.headers, ...(request.body ? { 'Content-Length': String(request.body.length) } : {}) },
          agent: false,
          timeout: 10_000,
        },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', () => resolve(response.statusCode ?? 0));
        },
      );
    } catch {
      resolve(-1); // the client refused to send it (e.g. a header it considers invalid): nothing reached the server
      return;
    }
    req.on('error', () => resolve('dropped'));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(request.body);
  });
}

function filesUnder(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else found.push(path.relative(root, full));
    }
  };
  walk(root);
  return found;
}

/** Paths anywhere under `root` (not descending into `skip`) whose name holds the marker, a few levels deep. */
function markerFiles(root: string, skip: string, depth = 3): string[] {
  if (depth < 0 || root === skip) return [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(root, entry.name);
    const own = entry.name.includes(MARKER) ? [full] : [];
    return entry.isDirectory() ? [...own, ...markerFiles(full, skip, depth - 1)] : own;
  });
}

describe('bounded fuzz run', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await createAuthApp(
      { alice: 'alice-pw' },
      `[proxy]\nenabled = false\n\n[auth]\nhtpasswd = "${HTPASSWD_FILE}"\nanonymous = "pull"\nmax_uploads = 0\n`,
    );
  });
  afterAll(() => app.close());

  test(`${REQUESTS} malformed and hostile requests: no 5xx, the server stays up, nothing written outside its roots`, async () => {
    const alice = new RegistryClient(app, basic('alice:alice-pw'));
    const image = await alice.pushImage('fuzz/app', { tag: 'latest' });
    const nextRequest = generator(random(SEED), 'fuzz/app', image.layers[0].digest, basic('alice:alice-pw').Authorization);

    const statuses = new Map<number | 'dropped', number>();
    const failures: string[] = [];
    const baseUrl = new URL(app.url);
    let sent = 0;
    const worker = async () => {
      while (sent < REQUESTS) {
        sent++;
        const request = nextRequest();
        const status = await send(baseUrl, request);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const what = `${request.method} ${request.path.slice(0, 120)} → ${status}`;
        // 501 is the one deliberate 5xx: RFC 9110's answer to a method no route has (TRACE, PROPFIND, FOO…).
        if (typeof status === 'number' && status >= 500 && status !== 501) failures.push(what);
        if (status === 'dropped' && !request.mayDrop && !request.body) failures.push(what);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    expect(failures).toEqual([]);
    if (process.env.FUZZ_VERBOSE) console.log(Object.fromEntries(statuses));
    // Most requests got an answer: the run tested the server, not the client library.
    const answered = [...statuses].filter(([status]) => typeof status === 'number' && status > 0).reduce((sum, [, count]) => sum + count, 0);
    expect(answered).toBeGreaterThan(REQUESTS * 0.8);

    // Alive, and the content pushed before is intact.
    await expectStatus(await alice.fetch('/v2/'), 200);
    const { response, body } = await alice.getManifest('fuzz/app', 'latest');
    await expectStatus(response, 200);
    expect(body.equals(image.content)).toBe(true);

    // Nothing escaped: no file named after the traversal marker anywhere near, and the storage directory
    // holds only the server's own roots.
    expect(markerFiles(os.tmpdir(), app.storageDir)).toEqual([]);
    expect(markerFiles(path.dirname(app.storageDir), app.storageDir, 1)).toEqual([]);
    const { registry_storage, temporary_registry_storage, proxy_storage, database } = app.config;
    const roots = [registry_storage, temporary_registry_storage, proxy_storage].map((root) => path.relative(app.storageDir, root) + path.sep);
    const files = [path.relative(app.storageDir, database), 'configuration.toml', HTPASSWD_FILE];
    const outside = filesUnder(app.storageDir).filter(
      (file) => !roots.some((root) => file.startsWith(root)) && !files.some((own) => file === own || file.startsWith(`${own}-`)),
    );
    expect(outside).toEqual([]);
  }, 180_000);
});

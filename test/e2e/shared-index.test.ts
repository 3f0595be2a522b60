import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { digestOf } from '../../src/oci/digest';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { Dockerd, startDockerd } from '../helpers/dockerd';
import { createPodman } from '../helpers/podman';
import { Postgres, startPostgres } from '../helpers/postgres';
import { Radosgw, startRadosgw } from '../helpers/radosgw';
import { RegistryClient } from '../helpers/registry-client';
import { startStaticNginx, StaticNginx } from '../helpers/nginx';
import { filesUnder, waitFor } from '../helpers/files';
import { readDirTransport, skopeoCopy, skopeoDelete, skopeoListTags } from '../helpers/skopeo';
import { ServerProcess, startServerProcess } from '../helpers/server-process';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * Two replicas on one PostgreSQL database (`database = "postgres://…"`) and one S3 bucket (Ceph's RADOS
 * Gateway), each with its own local staging directories, as two machines would have: what one stores the
 * other serves, with real clients on each side; a collection on one while the other pushes loses nothing.
 * Then three replicas behind nginx's round-robin, whose upload sessions move between replicas: their bytes
 * and state are in the bucket and the database, nothing on a volume they share (docs/scale-out.md).
 */
jest.setTimeout(300_000);

let postgres: Postgres;
let gateway: Radosgw;
let upstream: UpstreamRegistry;
let work: string;
let replicas: [TestApp, TestApp];
let image: BuiltImage;

const BUCKET = 'replicas';

/** What puts a replica on the test's bucket and a database, as command-line overrides. */
function replicaSettings(database: string, bucket: string): Record<string, string> {
  return {
    database,
    ...gateway.registrySettings(bucket),
    // Old enough to collect what a test made garbage before its collection; new pushes stay protected.
    'gc.grace': '3s',
    'gc.interval': '0',
  };
}

/**
 * A blob new to the upstream's `name`, pulled through the cache by 16 clients at once, the i-th from
 * `registryUrl(i)`: each gets it whole, and the upstream's log shows one GET of it. Its path on the registry.
 */
async function expectOneUpstreamGet(name: string, registryUrl: (i: number) => string): Promise<string> {
  const blob = randomBytes(3 * 1024 * 1024);
  const digest = digestOf(blob);
  const pusher = new RegistryClient(upstream);
  await pusher.finishUpload(name, await pusher.startUpload(name), digest, blob);
  const before = (await upstream.accessLog()).length;
  const blobPath = `/v2/proxy/docker.io/${name}/blobs/${digest}`;
  const bodies = await Promise.all(
    Array.from({ length: 16 }, async (_, i) => {
      const response = await fetch(`${registryUrl(i)}${blobPath}`);
      expect(response.status).toBe(200);
      return Buffer.from(await response.arrayBuffer());
    }),
  );
  for (const body of bodies) expect(digestOf(body)).toBe(digest);
  const gets = (await upstream.accessLog()).slice(before).filter((entry) => entry.method === 'GET' && entry.uri.endsWith(`/blobs/${digest}`));
  expect(gets).toHaveLength(1);
  return blobPath;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'shared-index-'));
  [postgres, gateway, upstream] = await Promise.all([startPostgres(), startRadosgw(), startUpstreamRegistry({ auth: 'none' })]);
  await gateway.createBucket(BUCKET);
  const settings = replicaSettings(await postgres.createDatabase(), BUCKET);
  const configuration = `[[proxy.upstreams]]\nhost = "registry-1.docker.io"\nurl = "${upstream.url}"\n`;
  // Started together: they migrate the empty database once between them.
  replicas = (await Promise.all([createTestApp({ overrides: settings, configuration }), createTestApp({ overrides: settings, configuration })])) as [
    TestApp,
    TestApp,
  ];
  image = await buildImageLayout(path.join(work, 'image'), { tag: 'v1', layers: 3, layerSize: 300_000, seed: 'shared-index' });
});
afterAll(async () => {
  await Promise.all((replicas ?? []).map((replica) => replica?.close()));
  await Promise.all([postgres?.close(), gateway?.close(), upstream?.close()]);
  fs.rmSync(work, { recursive: true, force: true });
});




describe('two replicas sharing one PostgreSQL index and one bucket', () => {
  test('skopeo pushes through one replica and pulls byte-identical through the other; tags and catalog agree', async () => {
    const [a, b] = replicas;
    await skopeoCopy(image.reference, `docker://${a.host}/team/app:v1`);
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(`docker://${b.host}/team/app:v1`, `dir:${pulled}`);
    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(image.manifest)).toBe(true);
    for (const digest of image.layerDigests) expect(digestOf(files[digest.slice(7)])).toBe(digest);
    expect(await skopeoListTags(`docker://${b.host}/team/app`)).toEqual(['v1']);
    for (const replica of replicas) {
      const catalog = (await (await fetch(`${replica.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories).toEqual(['team/app']);
    }
  });

  test('podman pulls through the other replica what skopeo pushed through one', async () => {
    const podman = createPodman();
    try {
      await podman.run(['pull', '--tls-verify=false', `${replicas[1].host}/team/app:v1`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc', `${replicas[1].host}/team/app:v1`])).toBe(image.configDigest);
    } finally {
      await podman.cleanup();
    }
  });

  test('a manifest deleted through one replica is gone through the other', async () => {
    const [a, b] = replicas;
    const other = await buildImageLayout(path.join(work, 'other'), { tag: 'v2', layers: 1, layerSize: 100_000, seed: 'shared-delete' });
    await skopeoCopy(other.reference, `docker://${a.host}/team/app:v2`);
    expect(await skopeoListTags(`docker://${b.host}/team/app`)).toEqual(['v1', 'v2']);
    await skopeoDelete(`docker://${b.host}/team/app:v2`);
    expect(await skopeoListTags(`docker://${a.host}/team/app`)).toEqual(['v1']);
    expect((await fetch(`${a.url}/v2/team/app/manifests/${other.manifestDigest}`, { method: 'HEAD' })).status).toBe(404);
  });

  test('a blob cached from the upstream through one replica is served from the bucket by the other, fetched once', async () => {
    const [a, b] = replicas;
    const cached = await buildImageLayout(path.join(work, 'upstream'), { tag: '1', layers: 2, layerSize: 200_000, seed: 'shared-cache' });
    await skopeoCopy(cached.reference, `docker://${upstream.host}/library/cached:1`);
    const before = (await upstream.accessLog()).length;
    await skopeoCopy(`docker://${a.host}/proxy/docker.io/library/cached@${cached.manifestDigest}`, `dir:${path.join(work, 'cold')}`);
    // The client has its last byte once it is verified, before the blob has gone up into the bucket.
    await waitFor(() => filesUnder(a.config.proxy_storage).length === 0);
    const warm = path.join(work, 'warm');
    await skopeoCopy(`docker://${b.host}/proxy/docker.io/library/cached@${cached.manifestDigest}`, `dir:${warm}`);
    for (const digest of cached.layerDigests) expect(digestOf(readDirTransport(warm)[digest.slice(7)])).toBe(digest);
    const blobGets = (await upstream.accessLog())
      .slice(before)
      .filter((entry) => entry.method === 'GET' && /\/blobs\/sha256:/.test(entry.uri));
    expect(blobGets.map((entry) => entry.uri).sort()).toEqual(
      [cached.configDigest, ...cached.layerDigests].map((digest) => `/v2/library/cached/blobs/${digest}`).sort(),
    );
  });

  test('16 concurrent cold pulls of one blob spread over both replicas make one upstream GET (the download lease)', async () => {
    await expectOneUpstreamGet('library/shared', (i) => replicas[i % 2].url);
  });

  test('a collection on one replica while the other pushes removes only garbage; everything referenced still pulls', async () => {
    const [a, b] = replicas;
    // Garbage: blobs pushed and never referenced, older than the grace period by the time the collection runs.
    const client = new RegistryClient(a);
    const garbage = await Promise.all([1, 2, 3].map(() => client.pushBlob('team/garbage', randomBytes(50_000))));
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const pushes = (async () => {
      const names: string[] = [];
      for (let i = 0; i < 4; i++) {
        const built = await buildImageLayout(path.join(work, `during-${i}`), { tag: `v${i}`, layers: 2, layerSize: 100_000, seed: `during-gc-${i}` });
        await skopeoCopy(built.reference, `docker://${a.host}/team/during:v${i}`);
        names.push(`team/during:v${i}`);
      }
      return names;
    })();
    const report = await b.registry.collectGarbage();
    const pushed = await pushes;
    const removed = report.blobs.map((blob) => blob.digest);
    for (const blob of garbage) expect(removed).toContain(blob.digest);
    // A second collection at the same time, from the other replica, is refused: one runs at a time.
    const [first, second] = await Promise.allSettled([a.registry.collectGarbage(), b.registry.collectGarbage()]);
    expect([first.status, second.status].sort()).toEqual(['fulfilled', 'rejected']);
    const refused = (first.status === 'rejected' ? first.reason : (second as PromiseRejectedResult).reason) as { code: string };
    expect(refused.code).toBe('UNAVAILABLE');
    for (const name of ['team/app:v1', ...pushed]) {
      await skopeoCopy(`docker://${b.host}/${name}`, `dir:${path.join(work, `after-${name.replace(/[/:]/g, '-')}`)}`);
    }
    expect(await a.registry.verify()).toMatchObject({ missing: [], corrupt: [] });
  });
});

describe('three replicas behind nginx round-robin, upload sessions in the bucket', () => {
  let three: TestApp[];
  let nginx: StaticNginx;
  const balancedLog = () => path.join(work, 'balanced.log');

  beforeAll(async () => {
    await gateway.createBucket('round-robin');
    // Each replica with a directory of its own (createTestApp's temp dir): they share only the database and the bucket.
    const settings = replicaSettings(await postgres.createDatabase(), 'round-robin');
    const configuration = `[[proxy.upstreams]]\nhost = "registry-1.docker.io"\nurl = "${upstream.url}"\n`;
    three = await Promise.all([1, 2, 3].map(() => createTestApp({ overrides: settings, configuration })));
    // Round-robin per request (no keepalive to the replicas): an upload's POST, PATCH and PUT go to different ones.
    nginx = await startStaticNginx(balancerConfiguration(path.join(work, 'balancer.conf'), three.map((app) => app.host), balancedLog()));
  });
  afterAll(async () => {
    await nginx?.close();
    await Promise.all((three ?? []).map((app) => app.close()));
  });

  test('skopeo pushes with each upload spread over the replicas, and skopeo and podman pull it back', async () => {
    const pushed = await buildImageLayout(path.join(work, 'balanced'), { tag: 'v1', layers: 4, layerSize: 500_000, seed: 'round-robin' });
    await skopeoCopy(pushed.reference, `docker://${nginx.host}/team/balanced:v1`);
    // Each upload session's requests, and the replicas that answered them.
    const sessions = new Map<string, Set<string>>();
    for (const line of fs.readFileSync(balancedLog(), 'utf8').split('\n')) {
      const [method, uri, status, replica] = line.split(' ');
      const session = /\/blobs\/uploads\/([0-9a-f-]{36})/.exec(uri ?? '')?.[1];
      if (!session || !/^(PATCH|PUT)$/.test(method) || !status?.startsWith('2')) continue;
      if (!sessions.has(session)) sessions.set(session, new Set());
      sessions.get(session)!.add(replica);
    }
    expect(sessions.size).toBeGreaterThanOrEqual(pushed.layerDigests.length);
    expect([...sessions.values()].some((replicasOfSession) => replicasOfSession.size > 1)).toBe(true);

    const pulled = path.join(work, 'balanced-pulled');
    await skopeoCopy(`docker://${nginx.host}/team/balanced:v1`, `dir:${pulled}`);
    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(pushed.manifest)).toBe(true);
    for (const digest of pushed.layerDigests) expect(digestOf(files[digest.slice(7)])).toBe(digest);
    const podman = createPodman();
    try {
      await podman.run(['pull', '--tls-verify=false', `${nginx.host}/team/balanced:v1`]);
      expect(await podman.run(['images', '--quiet', '--no-trunc', `${nginx.host}/team/balanced:v1`])).toBe(pushed.configDigest);
    } finally {
      await podman.cleanup();
    }
  });

  test('16 concurrent cold pulls of one blob through the balancer, spread over the three, make one upstream GET', async () => {
    const blobPath = await expectOneUpstreamGet('library/balanced', () => `http://${nginx.host}`);
    // The balancer's log: which replica answered each of the 16.
    const answered = fs
      .readFileSync(balancedLog(), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith(`GET ${blobPath} 200 `))
      .map((line) => line.split(' ')[3]);
    expect(answered).toHaveLength(16);
    expect(new Set(answered).size).toBe(3);
  });

  test('podman pushes through the balancer an image none of them has seen, and every replica serves it', async () => {
    // podman names an image it pulls from a layout after the layout's path, which must be lower case.
    const layout = path.join(os.tmpdir(), `podman-round-robin-${process.pid}`);
    const image = await buildImageLayout(layout, { tag: 'v1', layers: 3, layerSize: 3_000_000, seed: 'podman-round-robin' });
    const podman = createPodman();
    try {
      await podman.run(['pull', image.reference]);
      const [local] = (await podman.run(['images', '--quiet', '--no-trunc'])).split('\n');
      await podman.run(['push', '--tls-verify=false', local, `docker://${nginx.host}/team/podman-pushed:v1`]);
    } finally {
      await podman.cleanup();
      fs.rmSync(layout, { recursive: true, force: true });
    }
    for (const app of three) {
      const pulled = path.join(work, `podman-pushed-from-${app.host.replace(':', '-')}`);
      await skopeoCopy(`docker://${app.host}/team/podman-pushed:v1`, `dir:${pulled}`);
      const files = readDirTransport(pulled);
      // podman may compress again, so the layers are checked against the manifest it pushed.
      const manifest = JSON.parse(files['manifest.json'].toString()) as { layers: Array<{ digest: string }> };
      expect(manifest.layers).toHaveLength(3);
      for (const layer of manifest.layers) expect(digestOf(files[layer.digest.slice(7)])).toBe(layer.digest);
    }
  });

  test('a chunked upload whose PATCHes go round the replicas arrives whole, and leaves nothing under uploads/', async () => {
    const client = new RegistryClient({ url: `http://${nginx.host}` });
    const content = randomBytes(23 * 1024 * 1024);
    let session = await client.startUpload('team/chunked');
    // 6 MiB chunks: each one's bytes end in a part and a tail that the next replica takes on.
    for (let start = 0; start < content.length; start += 6 * 1024 * 1024) {
      session = await client.pushChunk(session, content.subarray(start, start + 6 * 1024 * 1024));
    }
    await client.finishUpload('team/chunked', session, digestOf(content));
    const { body } = await client.getBlob('team/chunked', digestOf(content));
    expect(body.equals(content)).toBe(true);
    const patches = fs
      .readFileSync(balancedLog(), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('PATCH ') && line.includes(session.uploadId))
      .map((line) => line.split(' ')[3]);
    expect(patches).toHaveLength(4);
    expect(new Set(patches).size).toBe(3);
    expect(await gateway.objectKeys('round-robin', 'registry/uploads/')).toEqual([]);
    expect(await gateway.multipartKeys('round-robin', 'registry/uploads/')).toEqual([]);
  });

  test('Docker Engine pulls through the balancer, and pushes the image to another name (its layers mounted)', async () => {
    let dockerd: Dockerd | undefined;
    try {
      dockerd = await startDockerd({ insecureRegistries: [nginx.host] });
      await dockerd.docker(['pull', `${nginx.host}/team/balanced:v1`]);
      const { stdout } = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', `${nginx.host}/team/balanced:v1`]);
      expect(stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
      await dockerd.docker(['tag', `${nginx.host}/team/balanced:v1`, `${nginx.host}/team/copied:v1`]);
      const push = await dockerd.docker(['push', `${nginx.host}/team/copied:v1`]);
      expect(push.stdout).toMatch(/Mounted from team\/balanced|Layer already exists/);
      // Every replica sees the new tag.
      for (const app of three) expect(await skopeoListTags(`docker://${app.host}/team/copied`)).toEqual(['v1']);
    } finally {
      await dockerd?.stop();
    }
  });
});

/** The nginx configuration of a round-robin balancer over `hosts`, logging which one answered each request. */
function balancerConfiguration(file: string, hosts: string[], log: string): string {
  fs.writeFileSync(
    file,
    `log_format balanced '$request_method $uri $status $upstream_addr';\n` +
      `upstream replicas {\n${hosts.map((host) => `  server ${host};\n`).join('')}}\n` +
      'server {\n  listen 80;\n  client_max_body_size 0;\n' +
      `  access_log ${log} balanced;\n` +
      '  location / {\n    proxy_pass http://replicas;\n    proxy_set_header Host $http_host;\n' +
      '    proxy_request_buffering off;\n    proxy_buffering off;\n    proxy_read_timeout 300s;\n  }\n}\n',
  );
  return file;
}

describe('a replica killed with SIGKILL in the middle of a push', () => {
  let processes: ServerProcess[];
  let nginx: StaticNginx;
  const killed = new Set<ServerProcess>();

  beforeAll(async () => {
    await gateway.createBucket('killed');
    const settings = replicaSettings(await postgres.createDatabase(), 'killed');
    const args = Object.entries(settings).flatMap(([key, value]) => [`--${key}`, value]);
    processes = await Promise.all(
      [1, 2, 3].map((n) => {
        const cwd = path.join(work, `process-${n}`);
        fs.mkdirSync(cwd, { recursive: true });
        return startServerProcess(cwd, args);
      }),
    );
    const hosts = processes.map((replica) => new URL(replica.url).host);
    nginx = await startStaticNginx(balancerConfiguration(path.join(work, 'killed.conf'), hosts, path.join(work, 'killed.log')));
  });
  afterAll(async () => {
    await nginx?.close();
    await Promise.all((processes ?? []).map((replica) => replica.stop()));
  });

  /** What each replica has read so far, from sockets and files alike (/proc/<pid>/io rchar). */
  function bytesRead(replica: ServerProcess): number {
    try {
      return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${replica.pid}/io`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0;
    }
  }

  /** The replica receiving a body now: one that has read more than `bytes` since `before` was taken. */
  function receivingReplica(before: Map<ServerProcess, number>, bytes: number): ServerProcess | undefined {
    return processes.find((replica) => !killed.has(replica) && bytesRead(replica) - (before.get(replica) ?? 0) > bytes);
  }

  /** Waits for a replica to receive a body, kills it with SIGKILL and waits for it to be gone; the one killed. */
  async function killReceiving(before: Map<ServerProcess, number>, bytes: number): Promise<ServerProcess> {
    let receiving: ServerProcess | undefined;
    const deadline = Date.now() + 60_000;
    while (!receiving && Date.now() < deadline) {
      receiving = receivingReplica(before, bytes);
      if (!receiving) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(receiving).toBeDefined();
    receiving!.signal('SIGKILL');
    expect(await receiving!.exited).toMatchObject({ signal: 'SIGKILL' });
    killed.add(receiving!);
    return receiving!;
  }

  test('the push fails where the kill cut it; pushed again, it completes through the other replicas and pulls whole', async () => {
    const big = await buildImageLayout(path.join(work, 'killed-image'), { tag: 'v1', layers: 3, layerSize: 24 * 1024 * 1024, seed: 'sigkill' });
    const target = `docker://${nginx.host}/team/killed:v1`;
    const before = new Map(processes.map((replica) => [replica, bytesRead(replica)]));
    const push = skopeoCopy(big.reference, target).then(
      () => 'pushed',
      (error: Error) => error.message,
    );
    // More than anything but a layer's body (a tail read back is under 5 MiB).
    await killReceiving(before, 10 * 1024 * 1024);
    // The request the kill cut is a 502 from nginx (a body already sent is not replayed to another replica),
    // which skopeo does not retry (not even with --retry-times); running the push again completes it.
    expect(await push).toMatch(/502 Bad Gateway/);
    await skopeoCopy(big.reference, target);

    const pulled = path.join(work, 'killed-pulled');
    await skopeoCopy(`docker://${nginx.host}/team/killed:v1`, `dir:${pulled}`);
    const files = readDirTransport(pulled);
    expect(files['manifest.json'].equals(big.manifest)).toBe(true);
    for (const digest of big.layerDigests) expect(digestOf(files[digest.slice(7)])).toBe(digest);
  });
  test('a chunked upload whose replica is killed mid-PATCH goes on through another from the offset recorded before', async () => {
    const MiB = 1024 * 1024;
    const client = new RegistryClient({ url: `http://${nginx.host}` });
    const content = randomBytes(20 * MiB);
    // 12 MiB: an 8 MiB part and a 4 MiB tail, recorded in the index.
    let session = await client.pushChunk(await client.startUpload('team/resumed'), content.subarray(0, 12 * MiB));

    // The next chunk streams in and stops halfway, the replica receiving it is killed, the connection fails.
    const before = new Map(processes.map((replica) => [replica, bytesRead(replica)]));
    // A Content-Length (nginx passes a chunked body on only once it has all of it), of which half is sent.
    const request = http.request(client.url(session.location), {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(8 * MiB) },
    });
    const answered = new Promise<number>((resolve) => {
      request.on('response', (response) => resolve(response.statusCode ?? 0));
      request.on('error', () => resolve(0));
    });
    for (let offset = 12 * MiB; offset < 16 * MiB; offset += MiB) request.write(content.subarray(offset, offset + MiB));
    await killReceiving(before, 2 * MiB);
    expect([0, 502]).toContain(await answered);
    request.destroy();

    // What the dead replica was writing was never recorded: the session is where the last 202 left it.
    const status = await client.fetch(session.location);
    expect(status.status).toBe(204);
    expect(status.headers.get('Range')).toBe(`0-${12 * MiB - 1}`);
    session = await client.pushChunk(session, content.subarray(12 * MiB));
    await client.finishUpload('team/resumed', session, digestOf(content));
    expect((await client.getBlob('team/resumed', digestOf(content))).body.equals(content)).toBe(true);
  });
});

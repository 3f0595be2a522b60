// The scenarios. Each group runs against one fresh server process and returns, per scenario, its
// figures and the server's peak RSS during that scenario (the kernel's high-water mark is reset
// before each one, see resetPeakRss), and for scenarios that move blob bytes the server's CPU seconds
// per GiB moved (and nginx's, when it is in front).
import { randomBytes } from 'node:crypto';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_LAYER,
  OCI_MANIFEST,
  RegistryClient,
  expectStatus,
  timedFanOut,
} from './client.mjs';
import { GiB, MiB, blobDigest, sha256 } from './content.mjs';
import { discardAll } from './discarding-client.mjs';

const SETTLE_TIMEOUT_MS = 120_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `operation` with the server's peak RSS reset first. Adds to what it returns: seconds, the
 * server's peak RSS, and the CPU seconds the server (and nginx, `front`, when it is in front) and the
 * bench's own threads used meanwhile (not its curl processes). When the operation returns the blob
 * `bytes` it moved (pushed, or received by all clients together), also CPU seconds per GiB of them.
 */
async function measure(server, operation, front) {
  const reset = server.resetPeakRss();
  const serverCpu = server.cpuSeconds();
  const nginxCpu = front?.cpuSeconds();
  const clientCpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const result = (await operation()) ?? {};
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const client = process.cpuUsage(clientCpu);
  const figures = {
    seconds,
    ...result,
    rssMiB: server.peakRss() / MiB,
    rssSinceStart: !reset,
    serverCpuSeconds: server.cpuSeconds() - serverCpu,
    clientCpuSeconds: (client.user + client.system) / 1e6,
  };
  if (front) figures.nginxCpuSeconds = front.cpuSeconds() - nginxCpu;
  if (result.bytes > 0) {
    const gib = result.bytes / GiB;
    figures.serverCpuPerGiB = figures.serverCpuSeconds / gib;
    if (front) {
      figures.nginxCpuPerGiB = figures.nginxCpuSeconds / gib;
      figures.totalCpuPerGiB = (figures.serverCpuSeconds + figures.nginxCpuSeconds) / gib;
    }
  }
  return figures;
}

export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function latencyFigures({ opsPerSecond, latencies }) {
  return { opsPerSecond, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

// ---- blobs: push monolithic, push chunked, pull with 1 and N clients, verifying and discarding ------

export async function blobGroup(server, { sizes, workers }) {
  const client = new RegistryClient(server.url, { maxSockets: 4 });
  const name = 'bench/blob';
  const monolithic = { seed: 1, size: sizes.blob, digest: blobDigest(1, sizes.blob) };
  const chunked = { seed: 2, size: sizes.blob, digest: blobDigest(2, sizes.blob) };
  const blobUrl = `${server.url}/v2/${name}/blobs/${monolithic.digest}`;
  try {
    // Warm-up, not measured: a small push both ways and a pull, so no figure includes a cold JIT.
    const warmUp = { seed: 3, size: 2 * sizes.chunk, digest: blobDigest(3, 2 * sizes.chunk) };
    await client.pushMonolithic('bench/warmup', warmUp);
    await client.pushChunked('bench/warmup', { seed: 4, size: warmUp.size, digest: blobDigest(4, warmUp.size) }, sizes.chunk);
    const warmUpUrl = `${server.url}/v2/bench/warmup/blobs/${warmUp.digest}`;
    await workers.pullAll(Array.from({ length: sizes.pullClients }, () => ({ url: warmUpUrl, digest: warmUp.digest })));

    const results = {};
    const pushed = { bytes: sizes.blob };
    results['push-monolithic'] = await measure(server, async () => (await client.pushMonolithic(name, monolithic), pushed));
    results['push-chunked'] = await measure(server, async () => (await client.pushChunked(name, chunked, sizes.chunk), pushed));
    await discardAll([{ url: blobUrl, size: sizes.blob }]); // warm-up of the discarding client's path, not measured
    for (const clients of [1, sizes.pullClients]) {
      // Verifying: every byte hashed, as docker and containerd do.
      results[`pull-${clients}`] = await measure(server, () =>
        workers.pullAll(Array.from({ length: clients }, () => ({ url: blobUrl, digest: monolithic.digest }))),
      );
      // Discarding (curl -o /dev/null): what the server alone can do, without the clients' hashing.
      results[`pull-discard-${clients}`] = await measure(server, () =>
        discardAll(Array.from({ length: clients }, () => ({ url: blobUrl, size: sizes.blob }))),
      );
    }
    for (const result of Object.values(results)) result.MiBps = (result.bytes ?? sizes.blob) / MiB / result.seconds;
    return results;
  } finally {
    client.close();
  }
}

// ---- blobs in an S3 bucket (radosgw): pushes, and pulls streamed or redirected ----------------------

/**
 * Both servers on their own bucket of the same radosgw. `redirect`: blob GETs answer 307 to a presigned
 * URL (ours `[storage.s3] redirect`, distribution's default), and the discarding clients follow it, so
 * the bytes come from radosgw; the figures are then radosgw's, and the server's CPU is what a redirect
 * costs. Without it, each server streams from the bucket. Pushes are measured in the streaming group only.
 */
export async function s3Group(server, { sizes, redirect }) {
  const client = new RegistryClient(server.url, { maxSockets: 4 });
  const name = 'bench/s3';
  const size = sizes.bigBlob;
  const monolithic = { seed: 11, size, digest: blobDigest(11, size) };
  const chunked = { seed: 12, size, digest: blobDigest(12, size) };
  const blobUrl = `${server.url}/v2/${name}/blobs/${monolithic.digest}`;
  const scenario = redirect ? 's3-redirect' : 's3';
  try {
    const warmUp = { seed: 13, size: 2 * sizes.chunk, digest: blobDigest(13, 2 * sizes.chunk) };
    await client.pushMonolithic('bench/warmup', warmUp);
    const results = {};
    const pushed = { bytes: size };
    if (redirect) {
      await client.pushMonolithic(name, monolithic);
    } else {
      results['s3-push-monolithic'] = await measure(server, async () => (await client.pushMonolithic(name, monolithic), pushed));
      results['s3-push-chunked'] = await measure(server, async () => (await client.pushChunked(name, chunked, sizes.chunk), pushed));
    }
    // Not measured: that the server answers as this group says, and a warm-up of the path.
    const answer = await client.send(`/v2/${name}/blobs/${monolithic.digest}`, { method: 'GET', headers: { Range: 'bytes=0-0' } });
    if ((answer.status === 307) !== redirect) throw new Error(`${server.label}: blob GET answered ${answer.status}, expected ${redirect ? 307 : 206}`);
    await discardAll([{ url: blobUrl, size }], { followRedirects: redirect });
    for (const clients of [1, sizes.pullClients]) {
      results[`${scenario}-pull-discard-${clients}`] = await measure(server, () =>
        discardAll(Array.from({ length: clients }, () => ({ url: blobUrl, size })), { followRedirects: redirect }),
      );
    }
    for (const result of Object.values(results)) result.MiBps = (result.bytes ?? size) / MiB / result.seconds;
    return results;
  } finally {
    client.close();
  }
}

// ---- nginx in front: pulls of one blob through deploy/nginx.conf ------------------------------------

/**
 * `front` is nginx in front of `server`. The blob is pushed to the server directly; then pulled through
 * nginx by 1 and N discarding clients. `scenario` names the figures: nginx-pull-… (our server sends the
 * bytes, nginx passes them on) or nginx-accel-pull-… (our server names the file, nginx sends it). The
 * reference is the same nginx in front of distribution either way.
 */
export async function nginxGroup(server, { sizes, front, accel, scenario }) {
  const client = new RegistryClient(server.url, { maxSockets: 4 });
  const name = 'bench/nginx';
  const blob = { seed: 5, size: sizes.blob, digest: blobDigest(5, sizes.blob) };
  const path = `/v2/${name}/blobs/${blob.digest}`;
  try {
    await client.pushMonolithic(name, blob);
    // Not measured: that the server answers as this group says (ours names the file with accel on), and a warm-up.
    const direct = await client.send(path, { method: 'GET', headers: { Range: 'bytes=0-0' } });
    const named = direct.headers['x-accel-redirect'];
    if (Boolean(named) !== Boolean(accel && server.kind === 'ours')) {
      throw new Error(`${server.label}: X-Accel-Redirect ${named ?? 'absent'}, expected it ${accel && server.kind === 'ours' ? 'set' : 'absent'}`);
    }
    await discardAll([{ url: `${front.url}${path}`, size: blob.size }]);

    const results = {};
    for (const clients of [1, sizes.pullClients]) {
      const figures = await measure(
        server,
        () => discardAll(Array.from({ length: clients }, () => ({ url: `${front.url}${path}`, size: blob.size }))),
        front,
      );
      results[`${scenario}-${clients}`] = { ...figures, MiBps: figures.bytes / MiB / figures.seconds };
    }
    const errors = front.errorLog().split('\n').filter((line) => /\[(error|crit|alert|emerg)\]/.test(line));
    if (errors.length > 0) throw new Error(`nginx logged errors:\n${errors.slice(0, 5).join('\n')}`);
    return results;
  } finally {
    client.close();
  }
}

// ---- metadata: manifests by tag, tags/list, _catalog ------------------------------------------------

/** A small OCI image manifest; `index` makes each one distinct. */
function imageManifest(config, layer, index) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.data.length },
      layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: layer.data.length }],
      annotations: { 'org.example.bench.index': String(index) },
    }),
  );
}

const tagOf = (index) => `t${String(index).padStart(5, '0')}`;

export async function metadataGroup(server, { sizes }) {
  const client = new RegistryClient(server.url, { maxSockets: sizes.concurrency });
  const name = 'bench/manifests';
  const configData = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const config = { data: configData, digest: sha256(configData) };
  const layerData = randomBytes(4096);
  const layer = { data: layerData, digest: sha256(layerData) };
  const count = sizes.manifests;
  try {
    await client.pushSmallBlob(name, config.data, config.digest);
    await client.pushSmallBlob(name, layer.data, layer.digest);
    const manifests = Array.from({ length: count }, (_, index) => imageManifest(config, layer, index));
    const digests = manifests.map((manifest) => sha256(manifest));
    const put = (repository, index) => async () =>
      expectStatus(await client.putManifest(repository, tagOf(index), manifests[index], OCI_MANIFEST), 201, `PUT ${repository}:${tagOf(index)}`);
    const get = (repository, index) => async () => {
      const response = expectStatus(await client.getManifest(repository, tagOf(index)), 200, `GET ${repository}:${tagOf(index)}`);
      if (!response.body.equals(manifests[index])) throw new Error(`GET ${repository}:${tagOf(index)}: other bytes than pushed`);
    };
    const head = (repository, index) => async () => {
      const response = expectStatus(await client.getManifest(repository, tagOf(index), 'HEAD'), 200, `HEAD ${repository}:${tagOf(index)}`);
      if (response.headers['docker-content-digest'] !== digests[index]) throw new Error(`HEAD ${repository}:${tagOf(index)}: wrong digest`);
    };
    const listTags = (repository, expected) => async () => {
      const { items, pages } = await client.listAll(`/v2/${repository}/tags/list?n=100`, 'tags');
      if (items.length !== expected) throw new Error(`tags/list: ${items.length} tags, expected ${expected}`);
      return pages;
    };

    // Warm-up, not measured, in a repository of its own.
    const warmUpCount = Math.min(Math.ceil(count / 2), 200);
    await client.mountBlob('bench/warmup', config.digest, name);
    await client.mountBlob('bench/warmup', layer.digest, name);
    for (const operation of [put, get, head]) {
      await timedFanOut(warmUpCount, sizes.concurrency, (index) => operation('bench/warmup', index)());
    }
    await listTags('bench/warmup', warmUpCount)();

    const results = {};
    for (const [scenario, operation] of [['manifest-put', put], ['manifest-get', get], ['manifest-head', head]]) {
      results[scenario] = await measure(server, async () =>
        latencyFigures(await timedFanOut(count, sizes.concurrency, (index) => operation(name, index)())),
      );
    }
    results['tags-list'] = await measure(server, () => repeatListing(sizes.listings, listTags(name, count)));

    // Repositories for the catalog: blobs mounted from the first one, one manifest each (not timed).
    const repositories = Array.from({ length: sizes.repositories }, (_, index) => `bench/catalog/r${String(index).padStart(4, '0')}`);
    await timedFanOut(repositories.length, sizes.concurrency, async (index) => {
      const repository = repositories[index];
      await client.mountBlob(repository, config.digest, name);
      await client.mountBlob(repository, layer.digest, name);
      expectStatus(await client.putManifest(repository, 'latest', manifests[0], OCI_MANIFEST), 201, `PUT ${repository}:latest`);
    });
    const expected = repositories.length + 2; // and bench/manifests, bench/warmup
    results.catalog = await measure(server, () =>
      repeatListing(sizes.listings, async () => {
        const { items, pages } = await client.listAll('/v2/_catalog?n=100', 'repositories');
        if (items.length !== expected) throw new Error(`_catalog: ${items.length} repositories, expected ${expected}`);
        return pages;
      }),
    );
    return results;
  } finally {
    client.close();
  }
}

/** Lists `times` times one after the other: the median time of one full listing and its page count. */
async function repeatListing(times, list) {
  const durations = [];
  let pages = 0;
  for (let run = 0; run < times; run++) {
    const started = process.hrtime.bigint();
    pages = await list();
    durations.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return { ms: percentile(durations, 50), pages };
}

// ---- pull-through cache ---------------------------------------------------------------------------

/** Pushes an image of the given layers, a config and a Docker schema 2 manifest under `tag`. */
async function pushImage(client, name, tag, layers) {
  for (const layer of layers) await client.pushMonolithic(name, layer);
  const configData = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }));
  const config = { size: configData.length, digest: sha256(configData) };
  await client.pushSmallBlob(name, configData, config.digest);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: { mediaType: DOCKER_CONFIG, size: config.size, digest: config.digest },
      layers: layers.map((layer) => ({ mediaType: DOCKER_LAYER, size: layer.size, digest: layer.digest })),
    }),
  );
  expectStatus(await client.putManifest(name, tag, manifest, DOCKER_MANIFEST), 201, `PUT upstream ${name}:${tag}`);
  return { name, tag, manifestDigest: sha256(manifest), blobs: [config, ...layers] };
}

const blob = (seed, size) => ({ seed, size, digest: blobDigest(seed, size) });

/** Pushes the proxy scenarios' content to the upstream: a small warm-up image, the image, one big blob. */
export async function populateUpstream(upstream, { sizes }) {
  const client = new RegistryClient(upstream.url, { maxSockets: 4 });
  try {
    const warmUp = await pushImage(client, 'bench/warmup', 'v1', [blob(100, MiB)]);
    const layers = Array.from({ length: sizes.imageLayers }, (_, index) => blob(101 + index, sizes.layer));
    const image = await pushImage(client, 'bench/image', 'v1', layers);
    const big = { name: 'bench/big', ...blob(200, sizes.bigBlob) };
    await client.pushMonolithic(big.name, big);
    return { warmUp, image, big };
  } finally {
    client.close();
  }
}

/** Pulls an image by tag: the manifest, then all its blobs at once (as containerd and docker do), digests checked. */
async function pullImage(server, client, workers, image) {
  const name = server.proxied(image.name);
  const response = expectStatus(await client.getManifest(name, image.tag), 200, `GET ${name}:${image.tag}`);
  if (sha256(response.body) !== image.manifestDigest) throw new Error(`GET ${name}:${image.tag}: manifest digest differs`);
  return workers.pullAll(image.blobs.map((blob) => ({ url: `${server.url}/v2/${name}/blobs/${blob.digest}`, digest: blob.digest })));
}

/** Warm-up, not measured: a small image pulled through the cache, and the cache settled afterwards. */
async function warmUpCache(server, client, { workers, upstream, content, sizes }) {
  const mark = await upstream.accessLogMark();
  await pullImage(server, client, workers, content.warmUp);
  await upstreamTraffic(server, upstream, mark, content.warmUp.blobs.map((blob) => blob.digest), sizes.quietMs);
}

/**
 * Cold pull of the image through a fresh cache, then the same pull warm, then the same pull straight from
 * the upstream with no cache between (`proxy-direct`): what a cold pull cannot beat on this machine, since
 * the upstream, the cache and the clients share its cores.
 */
export async function proxyImageGroup(server, context) {
  const { workers, upstream, content, sizes } = context;
  const client = new RegistryClient(server.url, { maxSockets: 4 });
  const direct = new RegistryClient(upstream.url, { maxSockets: 4 });
  try {
    await warmUpCache(server, client, context);
    const results = {};
    for (const phase of ['proxy-cold', 'proxy-warm']) {
      const mark = await upstream.accessLogMark();
      const result = await measure(server, () => pullImage(server, client, workers, content.image));
      const digests = content.image.blobs.map((blob) => blob.digest);
      results[phase] = { ...result, ...(await upstreamTraffic(server, upstream, mark, digests, sizes.quietMs)) };
    }
    const { seconds } = await measure(upstream, () => pullImage({ url: upstream.url, proxied: (name) => name }, direct, workers, content.image));
    results['proxy-direct'] = { seconds };
    return results;
  } finally {
    client.close();
    direct.close();
  }
}

/** N clients at once on one blob the cache does not have. */
export async function proxyDedupeGroup(server, context) {
  const { workers, upstream, content, sizes } = context;
  const client = new RegistryClient(server.url, { maxSockets: 4 });
  try {
    await warmUpCache(server, client, context);
    const { big } = content;
    const url = `${server.url}/v2/${server.proxied(big.name)}/blobs/${big.digest}`;
    const mark = await upstream.accessLogMark();
    const pullAll = () => workers.pullAll(Array.from({ length: sizes.dedupeClients }, () => ({ url, digest: big.digest })));
    const result = await measure(server, pullAll);
    const cold = { ...result, ...(await upstreamTraffic(server, upstream, mark, [big.digest], sizes.quietMs)) };
    // The same clients again, the blob cached: the time the cache needs to send them the bytes they verify.
    return { 'proxy-dedupe': cold, 'proxy-dedupe-warm': await measure(server, pullAll) };
  } finally {
    client.close();
  }
}

/**
 * What the upstream served since `mark`, counted once the cache has settled: every blob is in its
 * store and the upstream's access log has been quiet for `quietMs` (distribution fills its cache
 * with a second download that may end after the client's).
 */
async function upstreamTraffic(server, upstream, mark, digests, quietMs) {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  let settled = false;
  let size = upstream.accessLogSize();
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(50);
    const now = upstream.accessLogSize();
    if (now !== size) {
      size = now;
      quietSince = Date.now();
    }
    if (Date.now() - quietSince >= quietMs && digests.every((digest) => server.hasCachedBlob(digest))) {
      settled = true;
      break;
    }
  }
  await upstream.accessLogMark();
  const entries = await upstream.accessLogSince(mark);
  const blobGets = entries.filter((entry) => entry.method === 'GET' && /\/blobs\/sha256:/.test(entry.uri));
  const transfersPerBlob = digests.map((digest) => blobGets.filter((entry) => entry.uri.endsWith(digest) && entry.status === 200).length);
  return {
    upstreamMiB: entries.reduce((sum, entry) => sum + entry.bytes, 0) / MiB,
    upstreamRequests: entries.length,
    upstreamBlobGets: blobGets.length,
    maxTransfersPerBlob: Math.max(...transfersPerBlob),
    settled,
  };
}

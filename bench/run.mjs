// `npm run bench [-- --quick] [--reps N] [--only blobs,metadata,proxy-image,proxy-dedupe,nginx,nginx-accel,s3,s3-redirect,metadata-postgres]
//                 [--cpu-prof] [--server path/to/main.js] [--out dir]`
//
// Our registry against the reference (Debian's docker-registry, CNCF distribution 2.8.2) on
// 127.0.0.1: the same scenarios against both, alternating which goes first, several repetitions,
// medians; the nginx groups put the same nginx (deploy/) in front of either. Every scenario group
// gets a fresh server process; the peak RSS of each scenario is the kernel's high-water mark
// (VmHWM), reset just before it, and each process's peak over its whole life is read before every
// reset and before it is stopped. Prints a table and writes bench-results/bench-<time>.json. Servers
// and temp dirs are cleaned up however the run ends.
//
// --cpu-prof runs our server under `node --cpu-prof` (profiles next to the results; read them with
// bench/profile-summary.mjs); --server benchmarks another build of it, e.g. a patched copy of dist/.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GiB, MiB } from './content.mjs';
import { diskWriteThroughput, loopbackHttpThroughput, sha256Throughput } from './limits.mjs';
import { ensureBenchTools } from './prerequisites.mjs';
import { PullWorkers } from './pull-workers.mjs';
import { cpuPerGiBRows, cpuRows, evaluate, medians, renderLimits, renderTable, rssRows, tableRows, wholeRunRows } from './report.mjs';
import { blobGroup, metadataGroup, nginxGroup, populateUpstream, proxyDedupeGroup, proxyImageGroup, s3Group } from './scenarios.mjs';
import { ACCEL_PREFIX, killAllChildren, startNginx, startOurs, startReference } from './servers.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const { startRadosgw } = require('../scripts/radosgw.cjs');
// An empty database of its own per server process on the bench's PostgreSQL.
const { startPostgres, createDatabase } = require('../scripts/postgres.cjs');


/** A bucket of its own per server process: neither sees the other's objects, nor an earlier run's. */
async function createBucket(gateway, bucket) {
  const { S3Client, CreateBucketCommand } = require('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: gateway.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: gateway.accessKeyId, secretAccessKey: gateway.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

const FULL = {
  blob: 1 * GiB,
  chunk: 8 * MiB,
  pullClients: 8,
  manifests: 2000,
  concurrency: 16,
  repositories: 300,
  listings: 10,
  imageLayers: 4,
  layer: 64 * MiB,
  bigBlob: 256 * MiB,
  dedupeClients: 16,
  reps: 3,
  quietMs: 1500,
  sha256Bytes: 1 * GiB,
  diskBytes: 1 * GiB,
  loopbackBytes: 2 * GiB,
  warmUpBytes: 64 * MiB,
  timeLimitMs: 45 * 60_000,
};

const QUICK = {
  ...FULL,
  blob: 32 * MiB,
  manifests: 200,
  repositories: 30,
  listings: 3,
  layer: 4 * MiB,
  bigBlob: 16 * MiB,
  reps: 2,
  quietMs: 300,
  sha256Bytes: 64 * MiB,
  diskBytes: 32 * MiB,
  loopbackBytes: 128 * MiB,
  warmUpBytes: 4 * MiB,
  timeLimitMs: 5 * 60_000,
};

const GROUPS = {
  blobs: { run: blobGroup },
  metadata: { run: metadataGroup },
  'proxy-image': { run: proxyImageGroup, proxy: true },
  'proxy-dedupe': { run: proxyDedupeGroup, proxy: true },
  // nginx in front of each; ours sends the bytes itself (nginx) or names the file for nginx (nginx-accel).
  nginx: { run: nginxGroup, nginx: true, scenario: 'nginx-pull' },
  'nginx-accel': { run: nginxGroup, nginx: true, accel: true, scenario: 'nginx-accel-pull' },
  // Each server on a bucket of its own on one radosgw (scripts/radosgw.cjs), streaming or redirecting.
  s3: { run: s3Group, s3: true, redirect: false },
  's3-redirect': { run: s3Group, s3: true, redirect: true },
  // The manifest operations again with our index in PostgreSQL (scripts/postgres.cjs, fsync on), beside the
  // same reference: its scenarios are named pg-… so that both rows stand in the table.
  'metadata-postgres': { run: metadataGroup, postgres: true, prefix: 'pg-' },
};

function parseArguments(argv) {
  const options = { quick: false, reps: undefined, only: Object.keys(GROUPS), out: path.join(ROOT, 'bench-results'), cpuProf: false, server: path.join(ROOT, 'dist/main.js') };
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index];
    const value = () => {
      const next = argv[++index];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      return next;
    };
    if (argument === '--quick') options.quick = true;
    else if (argument === '--reps') options.reps = Number(value());
    else if (argument === '--only') options.only = value().split(',');
    else if (argument === '--out') options.out = path.resolve(value());
    else if (argument === '--cpu-prof') options.cpuProf = true;
    else if (argument === '--server') options.server = path.resolve(value());
    else throw new Error(`unknown argument ${argument}\nusage: npm run bench [-- --quick] [--reps N] [--only ${Object.keys(GROUPS).join(',')}] [--out dir] [--cpu-prof] [--server path/to/main.js]`);
  }
  for (const group of options.only) if (!GROUPS[group]) throw new Error(`unknown group ${group}`);
  if (options.reps !== undefined && !(Number.isInteger(options.reps) && options.reps > 0)) throw new Error('--reps needs a positive integer');
  return options;
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: os.availableParallelism(),
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown',
    node: process.version,
    kernel: os.release(),
    memoryGiB: Math.round((os.totalmem() / GiB) * 10) / 10,
    referenceRegistry: 'docker-registry (CNCF distribution 2.8.2, Debian)',
  };
}

/** Share of CPU time idle over `ms`, from /proc/stat: how much else is running on the machine. */
async function idleShare(ms) {
  const sample = () => fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const before = sample();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = sample();
  const delta = after.map((value, index) => value - before[index]);
  const total = delta.reduce((sum, value) => sum + value, 0);
  return total > 0 ? (delta[3] + delta[4]) / total : 1;
}

/** Busy CPU time of the whole machine and of this process with its reaped children (servers), in clock ticks. */
function cpuTimes() {
  const machine = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const own = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ').map(Number);
  // /proc/stat: user nice system idle iowait irq softirq steal …; /proc/self/stat after the name: utime is field 14.
  const total = machine.slice(0, 8).reduce((sum, value) => sum + value, 0);
  return { total, busy: total - machine[3] - machine[4], own: own[11] + own[12] + own[13] + own[14] };
}

/** Share of the machine's CPU capacity used by processes other than the bench and its servers. */
function otherProcessesCpuShare(before, after) {
  const total = after.total - before.total;
  return total > 0 ? Math.max(0, after.busy - before.busy - (after.own - before.own)) / total : 0;
}

const startedAt = Date.now();
const log = (message) => process.stderr.write(`bench [${((Date.now() - startedAt) / 1000).toFixed(0).padStart(3)} s] ${message}\n`);

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const sizes = { ...(options.quick ? QUICK : FULL) };
  if (options.reps) sizes.reps = options.reps;
  ensureBenchTools();
  if (!fs.existsSync(options.server)) throw new Error(`${options.server} is missing: run \`npm run bench\`, which builds first`);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'oci-bench-'));
  let cleaned = false;
  const cleanUp = () => {
    if (cleaned) return;
    cleaned = true;
    killAllChildren();
    fs.rmSync(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  };
  process.on('exit', cleanUp);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      log(`${signal}: stopping servers, removing ${work}`);
      process.exit(130);
    });
  }
  // --cpu-prof: our server runs under `node --cpu-prof`; one profile per group and repetition.
  const profiles = path.join(options.out, `profiles-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const profileOptions = (groupName, rep) =>
    options.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', profiles, '--cpu-prof-name', `${groupName}-${rep + 1}.cpuprofile`] : [];
  if (options.cpuProf) log(`CPU profiles of our server go to ${path.relative(process.cwd(), profiles)}/`);

  const watchdog = setTimeout(() => {
    log(`time limit of ${sizes.timeLimitMs / 60_000} min exceeded; stopping`);
    process.exit(1);
  }, sizes.timeLimitMs);

  const started = new Date();
  const record = {
    date: started.toISOString(),
    quick: options.quick,
    server: path.relative(ROOT, options.server),
    machine: machine(),
    sizes,
    peakRss:
      'fresh server process per scenario group; per scenario, VmHWM after resetting it (/proc/<pid>/clear_refs = 5) just before; ' +
      'per process (processPeakRss), the largest VmHWM read before each reset and just before the stop: its peak over its whole life',
    processPeakRss: [],
    load: { before: os.loadavg(), idleBefore: await idleShare(1000) },
    limits: {},
    results: {},
  };
  log(`${options.quick ? 'quick run' : 'full run'}, ${sizes.reps} repetitions; load ${record.load.before.map((l) => l.toFixed(2)).join(' ')}, ${Math.round(record.load.idleBefore * 100)}% idle`);

  const cpuBefore = cpuTimes();
  const workers = new PullWorkers(Math.max(sizes.pullClients, sizes.dedupeClients, sizes.imageLayers + 1));
  let upstream;
  let gateway;
  let buckets = 0;
  let postgres;
  let databases = 0;
  try {
    log('machine limits, warm-up of the clients');
    record.limits = {
      sha256MiBps: sha256Throughput(sizes.sha256Bytes),
      diskFsyncMiBps: diskWriteThroughput(work, sizes.diskBytes),
      diskBytes: sizes.diskBytes,
      loopbackMiBps: await loopbackHttpThroughput(sizes.loopbackBytes, workers, sizes.warmUpBytes),
    };
    let content;
    for (const groupName of options.only) {
      const group = GROUPS[groupName];
      if (group.proxy && !upstream) {
        upstream = await startReference(work, { accessLog: true, label: 'upstream' });
        log(`upstream docker-registry at ${upstream.url}: pushing the proxy scenarios' content`);
        content = await populateUpstream(upstream, { sizes });
      }
      if (group.s3 && !gateway) {
        log('radosgw (scripts/radosgw.cjs) for the s3 groups');
        gateway = await startRadosgw();
      }
      if (group.postgres && !postgres) {
        log('PostgreSQL (scripts/postgres.cjs) for the metadata-postgres group');
        postgres = await startPostgres({ durable: true });
      }
      for (let rep = 0; rep < sizes.reps; rep++) {
        const order = rep % 2 === 0 ? ['ours', 'reference'] : ['reference', 'ours'];
        for (const kind of order) {
          const s3 = group.s3 ? { ...gateway, bucket: await createBucket(gateway, `bench-${++buckets}`), redirect: group.redirect } : undefined;
          const server =
            kind === 'ours'
              ? await startOurs(work, {
                  upstream: group.proxy ? upstream.url : undefined,
                  nodeOptions: profileOptions(groupName, rep),
                  main: options.server,
                  accelRedirect: group.accel ? ACCEL_PREFIX : '',
                  s3,
                  database: group.postgres ? await createDatabase(postgres.url, `bench_${++databases}`) : undefined,
                })
              : await startReference(work, { remoteUrl: group.proxy ? upstream.url : undefined, s3 });
          let front;
          try {
            front = group.nginx ? await startNginx(work, server) : undefined;
            const results = await group.run(server, { sizes, workers, upstream, content, front, accel: group.accel, scenario: group.scenario, redirect: group.redirect });
            const summary = [];
            for (const [name, metrics] of Object.entries(results)) {
              const scenario = `${group.prefix ?? ''}${name}`;
              ((record.results[scenario] ??= { ours: [], reference: [] })[kind]).push(metrics);
              summary.push(`${scenario} ${describe(metrics)}`);
            }
            log(`${groupName} ${rep + 1}/${sizes.reps} ${kind}: ${summary.join('; ')}`);
          } catch (error) {
            // What the server said about it, before its directory goes.
            const said = await fsp.readFile(path.join(server.dir, 'stderr.log'), 'utf8').catch(() => '');
            log(`${groupName} ${rep + 1}/${sizes.reps} ${kind} failed; the server's last words:\n${said.split('\n').slice(-20).join('\n')}`);
            throw error;
          } finally {
            await front?.close();
            await server.close();
            record.processPeakRss.push({ group: groupName, rep: rep + 1, kind, MiB: server.lifetimePeakRss() / MiB });
          }
        }
      }
    }
  } finally {
    await upstream?.close();
    await gateway?.stop();
    await postgres?.stop();
    await workers.close();
  }

  record.load.after = os.loadavg();
  record.load.otherProcessesCpuShare = otherProcessesCpuShare(cpuBefore, cpuTimes());
  record.seconds = (Date.now() - started.getTime()) / 1000;
  record.summary = medians(record.results);
  const scenarios = Object.keys(record.summary);
  // Not a median: the largest peak of any server process of each kind over the run, and which process it was.
  const largestPeak = (kind) =>
    record.processPeakRss.filter((entry) => entry.kind === kind).reduce((largest, entry) => (largest && largest.MiB >= entry.MiB ? largest : entry), undefined);
  const worst = { ours: largestPeak('ours'), reference: largestPeak('reference') };
  record.summary['whole-run'] = { ours: { peakRssMiB: worst.ours?.MiB }, reference: { peakRssMiB: worst.reference?.MiB } };
  record.table = evaluate(
    [...tableRows(sizes), ...wholeRunRows(worst, sizes.reps), ...rssRows(scenarios), ...cpuPerGiBRows(scenarios, record.summary), ...cpuRows(scenarios)],
    record.summary,
    record.limits,
  );
  const unsettled = Object.entries(record.results).filter(([, byServer]) => Object.values(byServer).flat().some((rep) => rep.settled === false));

  const machineLine = `${record.machine.nproc} × ${record.machine.cpu}, Node ${record.machine.node}, Linux ${record.machine.kernel}`;
  const text =
    `\n${options.quick ? 'QUICK run (small sizes; figures not comparable with a full run)\n' : ''}` +
    `${record.date} · ${machineLine} · medians of ${sizes.reps}\n` +
    `other processes used ${Math.round(record.load.otherProcessesCpuShare * 100)}% of the machine's CPU time during the run (${Math.round((1 - record.load.idleBefore) * 100)}% in the second before it)\n\n` +
    `${renderLimits(record.limits)}\n\n${renderTable(record.table)}\n` +
    (unsettled.length ? `\nnot settled within the timeout (upstream figures may be short): ${unsettled.map(([name]) => name).join(', ')}\n` : '');
  process.stdout.write(text);

  fs.mkdirSync(options.out, { recursive: true });
  const file = path.join(options.out, `bench-${record.date.replace(/[:.]/g, '-')}${options.quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  process.stdout.write(`\n${path.relative(process.cwd(), file)} · ${Math.round(record.seconds)} s\n`);
  clearTimeout(watchdog);
}

function describe(metrics) {
  const parts = [];
  if (metrics.MiBps !== undefined) parts.push(`${metrics.MiBps.toFixed(0)} MiB/s`);
  else if (metrics.opsPerSecond !== undefined) parts.push(`${metrics.opsPerSecond.toFixed(0)} ops/s`);
  else if (metrics.ms !== undefined) parts.push(`${metrics.ms.toFixed(1)} ms`);
  else parts.push(`${metrics.seconds.toFixed(2)} s`);
  if (metrics.upstreamMiB !== undefined) parts.push(`upstream ${metrics.upstreamMiB.toFixed(0)} MiB/${metrics.upstreamRequests} req`);
  if (metrics.rssMiB !== undefined) parts.push(`${metrics.rssMiB.toFixed(0)} MiB RSS`);
  return parts.join(', ');
}

main().then(
  () => process.exit(0),
  (error) => {
    log(`failed: ${error.stack ?? error}`);
    process.exit(1);
  },
);

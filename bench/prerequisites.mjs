// What the bench drives must be on PATH; installed with apt-get as root, as for the tests. Debian
// installs nginx in /usr/sbin, which an ordinary user's PATH lacks: found there without it.
import fs from 'node:fs';
import { ensureTools } from '../scripts/ensure-tools.mjs';

export function ensureBenchTools() {
  const radosgw = { radosgw: 'radosgw', 'ceph-mon': 'ceph-mon', 'ceph-osd': 'ceph-osd', monmaptool: 'ceph-base', 'ceph-authtool': 'ceph-common', 'radosgw-admin': 'ceph-common', ceph: 'ceph-common' };
  ensureTools({ 'docker-registry': 'docker-registry', curl: 'curl', ...radosgw, ...(fs.existsSync('/usr/sbin/nginx') ? {} : { nginx: 'nginx' }) }, 'bench');
}

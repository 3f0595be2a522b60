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
};

try {
  ensureTools(REQUIRED, 'test-prerequisites');
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
console.log(`test-prerequisites: ${Object.keys(REQUIRED).join(', ')} found`);

// Usage: node scripts/complete-lockfile.mjs package-lock.json   (after an npm install here changed the lock)
// Adds lock entries for optional platform packages that the registry reachable here does not serve
// (npm ci then reports them "Missing from lock file"). os/cpu/libc from the package name, so npm skips them
// on other platforms without fetching; no integrity (unknown here): npm fetches them by version where needed.
import { readFileSync, writeFileSync } from 'node:fs';
const file = process.argv[2];
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;
const CPU = { x64: 'x64', arm64: 'arm64', arm: 'arm', ia32: 'ia32', ppc64: 'ppc64', s390x: 's390x', loong64: 'loong64', riscv64: 'riscv64', wasm32: 'wasm32' };
let added = [];
for (const [key, entry] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const at = `node_modules/${name}`;
    if (packages[at]) continue;
    const parts = name.split('/').pop().split('-');
    const os = parts.find((p) => ['darwin', 'linux', 'win32', 'freebsd', 'android', 'openharmony', 'sunos', 'netbsd', 'openbsd', 'aix'].includes(p));
    const cpu = parts.find((p) => CPU[p]);
    if (!os || !cpu) { console.error(`cannot tell the platform of ${name}`); process.exit(1); }
    const libc = parts.some((p) => p.startsWith('musl')) ? ['musl'] : parts.includes('gnu') || parts.includes('gnueabihf') ? ['glibc'] : undefined;
    packages[at] = { version, cpu: [cpu], ...(entry.dev ? { dev: true } : {}), ...(libc ? { libc } : {}), optional: true, os: [os] };
    added.push(`${name}@${version}`);
  }
}
const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
lock.packages = sorted;
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added.length}: ${added.join(', ')}`);

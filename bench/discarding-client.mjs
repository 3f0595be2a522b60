// The cheap client beside the verifying one (pull-workers.mjs): curl writing to /dev/null.
import { spawn } from 'node:child_process';
import { children } from './servers.mjs';

/**
 * The cheap client: `curl -o /dev/null` per job, all at once, each its own process. Nothing is hashed,
 * so what limits the figure is the server, not the client (the verifying pulls hash every byte). Throws
 * unless every response is a 200 of `size` bytes (after redirects, with `followRedirects`). Returns the
 * wall-clock seconds and total bytes.
 */
export async function discardAll(jobs, { followRedirects = false } = {}) {
  const started = process.hrtime.bigint();
  const results = await Promise.all(
    jobs.map(
      ({ url }) =>
        new Promise((resolve, reject) => {
          const follow = followRedirects ? ['--location'] : [];
          const child = spawn('curl', ['--silent', '--show-error', ...follow, '--output', '/dev/null', '--write-out', '%{http_code} %{size_download}', url], {
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          children.add(child);
          let out = '';
          let err = '';
          child.stdout.on('data', (chunk) => (out += chunk));
          child.stderr.on('data', (chunk) => (err += chunk));
          child.once('error', reject);
          child.once('close', (code) => {
            children.delete(child);
            if (code !== 0) return reject(new Error(`curl ${url}: exit ${code} ${err.trim()}`));
            const [status, bytes] = out.trim().split(' ').map(Number);
            resolve({ status, bytes });
          });
        }),
    ),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  results.forEach((result, index) => {
    const { url, size } = jobs[index];
    if (result.status !== 200) throw new Error(`GET ${url}: status ${result.status}`);
    if (result.bytes !== size) throw new Error(`GET ${url}: ${result.bytes} bytes, expected ${size}`);
  });
  return { seconds, bytes: results.reduce((sum, result) => sum + result.bytes, 0) };
}

// Pulling clients on worker threads, so that verifying digests (sha256 of every byte received) is
// spread over the cores as separate client processes would be, not serialized on the bench's thread.
import { createHash } from 'node:crypto';
import http from 'node:http';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

const TIMEOUT_MS = 300_000;

if (!isMainThread) {
  parentPort.on('message', async ({ id, url, headers }) => {
    const started = process.hrtime.bigint();
    try {
      const result = await pull(url, headers);
      parentPort.postMessage({ id, ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    } catch (error) {
      parentPort.postMessage({ id, error: error.message });
    }
  });
}

/** GET url and hash the body as it arrives: the response's status, byte count and sha256 digest. */
function pull(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      const hash = createHash('sha256');
      let bytes = 0;
      response.on('data', (chunk) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      response.on('end', () => {
        if (!response.complete) return reject(new Error(`GET ${url}: response cut after ${bytes} bytes`));
        resolve({ status: response.statusCode, bytes, digest: `sha256:${hash.digest('hex')}` });
      });
      response.on('error', reject);
    });
    request.setTimeout(TIMEOUT_MS, () => request.destroy(new Error(`GET ${url}: no progress for ${TIMEOUT_MS} ms`)));
    request.on('error', reject);
  });
}

/** A fixed set of pulling threads; `pullAll` hands one URL to each and waits for every digest to check out. */
export class PullWorkers {
  constructor(count) {
    this.workers = [];
    this.pending = new Map();
    this.nextId = 0;
    for (let index = 0; index < count; index++) {
      const worker = new Worker(new URL(import.meta.url));
      worker.on('message', (message) => {
        const settle = this.pending.get(message.id);
        this.pending.delete(message.id);
        settle?.(message);
      });
      worker.on('error', (error) => {
        for (const settle of this.pending.values()) settle({ error: `pull worker failed: ${error.message}` });
        this.pending.clear();
      });
      this.workers.push(worker);
    }
  }

  /**
   * Pulls jobs[i] = {url, digest, headers?} on worker i, all at once. Throws unless every response
   * is a 200 whose bytes hash to its digest. Returns the wall-clock seconds and total bytes.
   */
  async pullAll(jobs) {
    if (jobs.length > this.workers.length) throw new Error(`${jobs.length} pulls for ${this.workers.length} workers`);
    const started = process.hrtime.bigint();
    const results = await Promise.all(
      jobs.map(
        (job, index) =>
          new Promise((resolve) => {
            const id = this.nextId++;
            this.pending.set(id, resolve);
            this.workers[index].postMessage({ id, url: job.url, headers: job.headers ?? {} });
          }),
      ),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    results.forEach((result, index) => {
      const { url, digest } = jobs[index];
      if (result.error) throw new Error(result.error);
      if (result.status !== 200) throw new Error(`GET ${url}: status ${result.status}`);
      if (result.digest !== digest) throw new Error(`GET ${url}: got ${result.bytes} bytes hashing to ${result.digest}, expected ${digest}`);
    });
    return { seconds, bytes: results.reduce((sum, result) => sum + result.bytes, 0) };
  }

  async close() {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}

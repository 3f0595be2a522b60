// What the machine allows: sha256 on one core, sequential disk writes ending with fsync (in the
// directory the servers store into), and HTTP over loopback between two Node processes. The
// loopback server also warms up the bench's own clients before anything is measured.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { children } from './servers.mjs';
import { send } from './client.mjs';
import { MiB, pieces } from './content.mjs';

function seconds(since) {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

export function sha256Throughput(size) {
  const hash = createHash('sha256');
  const generated = [...pieces(1, 64 * MiB)]; // hash only: generation kept out of the timing
  const started = process.hrtime.bigint();
  for (let done = 0; done < size; ) {
    for (const piece of generated) {
      hash.update(piece);
      done += piece.length;
    }
  }
  hash.digest();
  return size / MiB / seconds(started);
}

export function diskWriteThroughput(directory, size) {
  const file = path.join(directory, 'disk-limit.bin');
  const piece = [...pieces(2, MiB)][0];
  const fd = fs.openSync(file, 'w');
  try {
    const started = process.hrtime.bigint();
    for (let done = 0; done < size; done += piece.length) fs.writeSync(fd, piece);
    fs.fsyncSync(fd);
    return size / MiB / seconds(started);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

// A process of its own that answers GET ?size=N with N bytes of 0x07 (from one 1 MiB buffer), and
// any other method by reading the body to the end and answering 201.
const LOOPBACK_SERVER = `
const http = require('node:http');
const piece = Buffer.alloc(1024 * 1024, 7);
const server = http.createServer((request, response) => {
  if (request.method !== 'GET') {
    request.resume();
    request.on('end', () => { response.writeHead(201, { 'Content-Length': '0' }); response.end(); });
    return;
  }
  const size = Number(new URL(request.url, 'http://x').searchParams.get('size'));
  response.writeHead(200, { 'Content-Length': String(size) });
  let left = size;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, piece.length);
      left -= n;
      if (!response.write(n === piece.length ? piece : piece.subarray(0, n))) return response.once('drain', more);
    }
    response.end();
  };
  more();
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/** sha256 of N MiB of 0x07, what the loopback server sends for ?size=N MiB. */
function filledDigest(size) {
  const piece = Buffer.alloc(MiB, 7);
  const hash = createHash('sha256');
  for (let done = 0; done < size; done += MiB) hash.update(piece);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Loopback HTTP throughput, one stream, client discarding (after a warm-up request). Then warms up
 * the bench's clients (the pulling threads and the streaming uploader): a cold JIT would otherwise
 * slow whichever server is measured first.
 */
export async function loopbackHttpThroughput(size, workers, warmUpSize) {
  const child = spawn(process.execPath, ['-e', LOOPBACK_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  try {
    const port = await new Promise((resolve, reject) => {
      child.stdout.once('data', (data) => resolve(Number(String(data).trim())));
      child.once('exit', (code) => reject(new Error(`loopback server exited with ${code}`)));
    });
    const url = (bytes) => `http://127.0.0.1:${port}/?size=${bytes}`;
    const get = () =>
      new Promise((resolve, reject) => {
        const started = process.hrtime.bigint();
        http
          .get(url(size), (response) => {
            let received = 0;
            response.on('data', (chunk) => (received += chunk.length));
            response.on('end', () => (received === size ? resolve(size / MiB / seconds(started)) : reject(new Error('loopback cut'))));
            response.on('error', reject);
          })
          .on('error', reject);
      });
    await get();
    const throughput = await get();

    const digest = filledDigest(warmUpSize);
    for (let round = 0; round < 3; round++) {
      await workers.pullAll(workers.workers.map(() => ({ url: url(warmUpSize), digest })));
      await send(url(0), { method: 'PUT', headers: { 'Content-Length': String(warmUpSize) }, body: pieces(9, warmUpSize) });
    }
    return throughput;
  } finally {
    child.kill('SIGKILL');
  }
}

// `node bench/profile-summary.mjs <file.cpuprofile> [top] [--from s] [--to s]`: where a V8 CPU profile
// (node --cpu-prof, e.g. from `npm run bench -- --cpu-prof`) spent its samples: self time by function
// and by file, optionally only between two moments (seconds after the profile started).
// The profiler samples wall-clock time of the main thread: on a busy machine, time the thread was
// descheduled inside a native call (fs, sockets) is counted to that call.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const [, value] = args.splice(at, 2);
  return Number(value);
};
const from = (option('--from') ?? 0) * 1e6;
const to = (option('--to') ?? Infinity) * 1e6;
const [file, topArgument] = args;
if (!file) {
  console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [top] [--from s] [--to s]');
  process.exit(2);
}
const top = Number(topArgument ?? 25);
const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));

// Sample i lasted timeDeltas[i + 1]; attribute it to the sampled node's own frame.
const selfMicros = new Map();
let at = 0;
profile.samples.forEach((id, index) => {
  at += profile.timeDeltas[index];
  if (at < from || at > to) return;
  const delta = profile.timeDeltas[index + 1] ?? 0;
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + delta);
});
const total = [...selfMicros.values()].reduce((sum, value) => sum + value, 0);

const byFunction = new Map();
const byFile = new Map();
for (const [id, micros] of selfMicros) {
  const { functionName, url, lineNumber } = nodes.get(id).callFrame;
  const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
  const name = `${functionName || '(anonymous)'} ${where}`.trim();
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  const fileKey = url ? shorten(url) : functionName;
  byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + micros);
}

function shorten(url) {
  const plain = url.replace(/^file:\/\//, '');
  const modules = plain.lastIndexOf('node_modules/');
  if (modules >= 0) return plain.slice(modules);
  if (plain.startsWith('node:')) return plain;
  const dist = plain.indexOf('/dist/');
  return dist >= 0 ? plain.slice(dist + 1) : path.basename(plain);
}

const print = (title, entries) => {
  console.log(`\n${title}`);
  for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((micros / total) * 100).toFixed(1).padStart(6)}%  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};
console.log(`${path.basename(file)}: ${(total / 1e6).toFixed(2)} s sampled`);
print('self time by function', byFunction);
print('self time by file', byFile);

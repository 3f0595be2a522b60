import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RegistryIndex } from '../../../src/storage/registry-index';
import { MAX_GC_RUNS, MAX_SAMPLES, SAMPLE_RETENTION_MS, StorageHistory } from '../../../src/storage/storage-history';

const HOUR = 3_600_000;
const sizes = (hosted: number, proxy = 0) => ({ hosted: { bytes: hosted, blobs: 1 }, proxy: { bytes: proxy, blobs: proxy > 0 ? 1 : 0 } });
const report = (bytesFreed: number) => ({
  dryRun: false,
  manifests: [],
  blobs: [{ store: 'hosted' as const, digest: 'sha256:x', size: bytesFreed }],
  bytesFreed,
  uploadsExpired: 0,
  durationMs: 5,
});

describe('StorageHistory (storage_samples and gc_runs in the index)', () => {
  let dir: string;
  let index: RegistryIndex;
  let history: StorageHistory;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'storage-history-'));
    index = await RegistryIndex.open(path.join(dir, 'index.db'));
    history = new StorageHistory(index.sql);
  });
  afterEach(async () => {
    await index.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('samples come back oldest first, both stores at each time', async () => {
    await history.sample(sizes(100, 5), 2 * HOUR);
    await history.sample(sizes(50), HOUR);
    expect(await history.samples()).toEqual([
      { at: HOUR, stores: sizes(50) },
      { at: 2 * HOUR, stores: sizes(100, 5) },
    ]);
    expect((await history.samples(2 * HOUR)).map((sample) => sample.at)).toEqual([2 * HOUR]);
  });

  test(`samples older than the retention (${SAMPLE_RETENTION_MS / (24 * HOUR)} days) go at the next sample`, async () => {
    await history.sample(sizes(1), 0);
    await history.sample(sizes(2), SAMPLE_RETENTION_MS - 1);
    await history.sample(sizes(3), SAMPLE_RETENTION_MS + 1);
    expect((await history.samples()).map((sample) => sample.stores.hosted.bytes)).toEqual([2, 3]);
  });

  test(`at most ${MAX_SAMPLES} samples per store, however often they are taken; the newest stay`, async () => {
    for (let i = 1; i <= MAX_SAMPLES + 3; i++) await history.sample(sizes(i), i);
    const kept = await history.samples();
    expect(kept).toHaveLength(MAX_SAMPLES);
    expect(kept[0].at).toBe(4);
    expect(kept[kept.length - 1].stores.hosted.bytes).toBe(MAX_SAMPLES + 3);
  });

  test(`the last ${MAX_GC_RUNS} collections, newest first, with what each freed`, async () => {
    for (let i = 1; i <= MAX_GC_RUNS + 2; i++) await history.recordGcRun(report(i), i * HOUR);
    const runs = await history.gcRuns();
    expect(runs).toHaveLength(MAX_GC_RUNS);
    expect(runs[0]).toEqual({ finishedAt: (MAX_GC_RUNS + 2) * HOUR, durationMs: 5, bytesFreed: MAX_GC_RUNS + 2, blobs: 1, manifests: 0, uploadsExpired: 0 });
    expect(runs[runs.length - 1].bytesFreed).toBe(3);
    expect((await history.gcRuns(2)).map((run) => run.bytesFreed)).toEqual([MAX_GC_RUNS + 2, MAX_GC_RUNS + 1]);
  });
});

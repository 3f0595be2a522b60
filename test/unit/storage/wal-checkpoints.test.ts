import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WalCheckpoints } from '../../../src/storage/wal-checkpoints';

const waitFor = async (condition: () => boolean, what: string) => {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('WalCheckpoints (the index WAL checkpointed from a worker thread)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wal-checkpoints-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // The main connection stops checkpointing (auto-checkpoint 0) once the worker is up, and what it commits
  // still reaches the database file: the worker copied it there.
  test('the main connection commits, the worker moves the WAL into the database file', async () => {
    const file = path.join(dir, 'index.db');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)');
    const checkpoints = new WalCheckpoints(file, 50, (enabled) => db.open && db.pragma(`wal_autocheckpoint = ${enabled ? 1000 : 0}`), (error) => {
      throw error;
    });
    try {
      await waitFor(() => db.pragma('wal_autocheckpoint', { simple: true }) === 0, 'auto-checkpoint off');
      const before = fs.statSync(file).size;
      const insert = db.prepare('INSERT INTO t (data) VALUES (?)');
      // 8 MiB in many commits: past the default 1,000-page auto-checkpoint, which is off now.
      for (let i = 0; i < 256; i++) insert.run(Buffer.alloc(32 * 1024, i));
      await waitFor(() => fs.statSync(file).size >= before + 8 * 1024 * 1024, 'the rows in the database file');
    } finally {
      checkpoints.stop();
      db.close();
    }
  });

  test('auto-checkpoint comes back on when the worker fails', async () => {
    const db = new Database(path.join(dir, 'index.db'));
    db.pragma('journal_mode = WAL');
    const failures: Error[] = [];
    // A directory is no database: the worker's connection fails and the worker exits with the error.
    new WalCheckpoints(dir, 50, (enabled) => db.open && db.pragma(`wal_autocheckpoint = ${enabled ? 1000 : 0}`), (error) => failures.push(error));
    try {
      await waitFor(() => failures.length === 1, 'the failure reported');
      expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    } finally {
      db.close();
    }
  });
});

import { Worker } from 'node:worker_threads';

/**
 * Moves SQLite's WAL checkpoints off the event loop. With the default auto-checkpoint, the commit that
 * takes the WAL past 1,000 pages copies them into the database file and fsyncs it, on the main thread,
 * inside whichever request made that commit: about a fifth of a manifest PUT's cost under load. Here a
 * worker thread with its own connection runs a PASSIVE checkpoint (it never blocks writers or readers)
 * every `intervalMs`; the server's connection turns auto-checkpointing off only once the worker is up,
 * and back on if the worker stops, so the WAL never grows without bound.
 */
export class WalCheckpoints {
  private readonly worker: Worker;
  private stopping = false;

  constructor(
    file: string,
    intervalMs: number,
    /** Turns the main connection's auto-checkpoint off (false) or back on (true). */
    autoCheckpoint: (enabled: boolean) => void,
    onFailure: (error: Error) => void,
  ) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file, intervalMs, sqlite: require.resolve('better-sqlite3') },
    });
    // The worker holds no request: it must not keep a process that is otherwise done alive.
    this.worker.unref();
    this.worker.once('online', () => {
      if (!this.stopping) autoCheckpoint(false);
    });
    this.worker.once('error', (error) => {
      autoCheckpoint(true);
      onFailure(error);
    });
    this.worker.once('exit', () => {
      if (!this.stopping) autoCheckpoint(true);
    });
  }

  /** Stops the worker; its connection closes without a checkpoint (the closing main connection makes one). */
  stop(): void {
    this.stopping = true;
    this.worker.postMessage('stop');
  }
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 1000');
const timer = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

import { Server } from 'node:http';
import { Server as NetServer } from 'node:net';
import type { ServerLifecycle } from '../lifecycle';
import type { Listener } from './listeners';
import type { Logger } from '../log';
import type { GarbageCollectionSchedule } from '../storage/gc-runs';
import type { Registry } from '../registry';

/** How long handlers get to settle after their connections were cut, and downloads to be dropped. */
const SETTLE_MS = 5_000;


export interface ShutdownOptions {
  listeners: Listener[];
  registry: Pick<Registry, 'abortDownloads' | 'close'>;
  gc: GarbageCollectionSchedule;
  lifecycle: ServerLifecycle;
  /** `shutdown_timeout`: how long in-flight requests get to finish. */
  timeoutMs: number;
  log: Logger;
  /** What started it, for the log (`SIGTERM`). */
  reason?: string;
  /** How long cut requests, downloads and a running collection get to settle after the drain; 5 s. */
  settleMs?: number;
}

export interface ShutdownReport {
  /** Requests cut at the timeout (0: all finished). */
  cut: number;
  durationMs: number;
}

/**
 * The shutdown sequence: mark the server draining (readiness answers 503), stop accepting connections,
 * let in-flight requests finish for up to `timeoutMs`, cut what is left and let its handlers settle (an
 * upload cut midway keeps the bytes it received, so the client resumes after the restart), abort the
 * cache's upstream transfers (nothing half-downloaded is kept), wait for a running garbage collection,
 * then close the index. It does not exit the process; `exitOnSignals` does.
 */
export async function gracefulShutdown(options: ShutdownOptions): Promise<ShutdownReport> {
  const { listeners, lifecycle, timeoutMs, log } = options;
  const settleMs = options.settleMs ?? SETTLE_MS;
  const started = Date.now();
  const inFlight = () => listeners.reduce((sum, listener) => sum + listener.connections.inFlight, 0);

  lifecycle.draining = true;
  log.info(`draining, ${inFlight()} requests in flight, up to ${timeoutMs / 1000}s`, {
    reason: options.reason,
    inFlight: inFlight(),
    timeoutMs,
  });
  for (const { server, connections } of listeners) {
    stopAccepting(server);
    connections.endIdleConnections();
  }
  const gcStopped = options.gc.stop();

  const drained = await within(Promise.all(listeners.map(({ connections }) => connections.settled())), timeoutMs);
  const cut = drained ? 0 : inFlight();
  if (!drained) log.warn(`shutdown_timeout reached: cutting ${cut} requests still in flight`, { cut, timeoutMs });
  // Connections still open are idle ones whose clients did not hang up, or those of cut requests.
  for (const { connections } of listeners) connections.destroyAll();
  if (!drained && !(await within(Promise.all(listeners.map(({ connections }) => connections.settled())), settleMs))) {
    log.warn('handlers still running after their connections were cut; closing the index anyway', { inFlight: inFlight() });
  }

  if (!(await within(options.registry.abortDownloads(), settleMs))) {
    log.warn('upstream transfers did not stop in time; closing the index anyway');
  }
  if (!(await within(gcStopped, Math.max(started + timeoutMs - Date.now(), 0) + settleMs))) {
    // Like a kill mid-run: its index work is transactional, a file it had moved aside may stay in .trash.
    log.warn('garbage collection still running at shutdown_timeout; closing the index under it');
  }

  await options.registry.close();
  const report = { cut, durationMs: Date.now() - started };
  log.info('stopped', report);
  return report;
}

/**
 * SIGTERM and SIGINT start a graceful shutdown and exit 0 once it is done (1 if it failed); a second
 * signal during the drain exits at once with 1.
 */
export function exitOnSignals(options: Omit<ShutdownOptions, 'reason'>, signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      options.log.warn(`${signal} during the shutdown: exiting now, without waiting for requests in flight`);
      process.exit(1);
    }
    stopping = true;
    gracefulShutdown({ ...options, reason: signal }).then(
      () => process.exit(0),
      (error: Error) => {
        options.log.error('shutdown failed', { error: error.stack ?? error.message });
        process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, onSignal);
}

/**
 * Stops accepting connections, and only that. Node 20's http `server.close()` also destroys the
 * connections it thinks idle, among them one whose response has ended but is still being flushed to a
 * slow reader: that pull would be cut short (measured). Connections are ended by ServerConnections instead.
 */
function stopAccepting(server: Server): void {
  NetServer.prototype.close.call(server);
}

/** Whether `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

import { Logger } from '../log';
import { RegistryError } from '../oci/errors';
import { GcReport, VerifyReport } from './gc';
import { formatBytes } from '../format-bytes';

/** A running schedule; `stop` ends it and settles once a collection under way has finished. */
export interface GarbageCollectionSchedule {
  stop(): Promise<void>;
}

/** Runs garbage collection every `intervalMs` inside the server (0: never); runs never overlap. */
export function scheduleGarbageCollection(
  registry: { collectGarbage(): Promise<unknown> },
  intervalMs: number,
  log: Logger,
): GarbageCollectionSchedule {
  if (intervalMs <= 0) return { stop: async () => undefined };
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = registry
      .collectGarbage()
      .then(() => undefined)
      .catch((error: Error) => {
        // Another replica (or a `gc` command) is collecting: its sweep covers this one.
        if (error instanceof RegistryError && error.code === 'UNAVAILABLE') log.info('garbage collection skipped', { reason: error.message });
        else log.error('garbage collection failed', { error: error.stack ?? error.message });
      })
      .finally(() => (running = null));
  }, intervalMs);
  timer.unref();
  return {
    // A shutdown waits for a collection under way: the index must not close under it.
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}

/** The `gc` command's report: what went (or would go), and how much space it frees. */
export function describeGc(report: GcReport): string {
  const verb = report.dryRun ? 'would delete' : 'deleted';
  const lines = [
    ...report.manifests.map((m) => `${verb} manifest ${m.repository}@${m.digest} (${m.reason})`),
    ...report.blobs.map((b) => `${verb} ${b.store} blob ${b.digest} (${formatBytes(b.size)})`),
    `${report.dryRun ? 'dry run: ' : ''}${report.manifests.length} manifests, ${report.blobs.length} blobs, ` +
      `${formatBytes(report.bytesFreed)} ${report.dryRun ? 'to free' : 'freed'}, ${report.uploadsExpired} uploads expired, ` +
      `${report.durationMs} ms`,
  ];
  return `${lines.join('\n')}\n`;
}

export function describeVerify(report: VerifyReport): string {
  const lines = [
    ...report.missing.map((b) => `missing ${b.store} blob ${b.digest}`),
    ...report.corrupt.map((b) => `corrupt ${b.store} blob ${b.digest}: ${b.reason} (quarantined)`),
    ...report.unindexed.map((b) => `unindexed ${b.store} blob ${b.digest}`),
    `${report.missing.length} missing, ${report.corrupt.length} corrupt, ${report.unindexed.length} unindexed`,
  ];
  return `${lines.join('\n')}\n`;
}


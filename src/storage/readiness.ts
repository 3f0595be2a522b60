import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Config, isPostgresUrl } from '../config/config';
import { RegistryIndex } from './registry-index';
import type { BlobStore } from './blob-store';
import { formatBytes } from '../format-bytes';

/** Each check's outcome: "ok", or why it failed. */
export type ReadinessChecks = Record<string, string>;

export interface Readiness {
  ready: boolean;
  checks: ReadinessChecks;
}

/**
 * Can the registry take a push right now? Every storage directory must take a new file (a read-only
 * remount, a full disk or lost permissions show up here, not halfway through a client's upload), and
 * the index must be open and answer. The probe file is written, flushed and removed again; its name
 * starts with a dot, which no blob, upload or manifest path does.
 */
export async function checkReadiness(config: Config, index: RegistryIndex, stores?: Record<'hosted' | 'proxy', BlobStore>): Promise<Readiness> {
  const directories = {
    registry_storage: config.registry_storage,
    temporary_registry_storage: config.temporary_registry_storage,
    proxy_storage: config.proxy_storage,
    // A SQLite file's directory; PostgreSQL answers for itself (the database check).
    ...(isPostgresUrl(config.database) ? {} : { database_directory: path.dirname(config.database) }),
  };
  const outcomes = await Promise.all(
    Object.entries(directories).map(async ([name, directory]) => {
      const writable = await probeWritable(directory);
      return [name, writable === 'ok' ? await probeFreeSpace(directory, config.min_free_space) : writable] as const;
    }),
  );
  // An object store's bucket, once (both stores share it).
  const objectStore: ReadinessChecks = config.storage.backend === 's3' && stores ? { object_store: await stores.hosted.probe() } : {};
  // In a fixed order, whichever probe finished first.
  const checks: ReadinessChecks = { ...Object.fromEntries(outcomes), ...objectStore, database: await probeDatabase(index) };
  return { ready: Object.values(checks).every((outcome) => outcome === 'ok'), checks };
}

async function probeWritable(directory: string): Promise<string> {
  const probe = path.join(directory, `.readyz-${randomUUID()}`);
  try {
    const handle = await fsp.open(probe, 'wx');
    try {
      await handle.write('ready');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rm(probe);
    return 'ok';
  } catch (error) {
    await fsp.rm(probe, { force: true }).catch(() => undefined);
    return `not writable: ${(error as Error).message}`;
  }
}

/**
 * A store with less than `minimum` free is not ready: a load balancer sends pushes elsewhere, and an
 * operator sees which store it is before clients start getting 507s. Space reserved for root is not counted.
 */
async function probeFreeSpace(directory: string, minimum: number): Promise<string> {
  if (minimum === 0) return 'ok';
  try {
    const stats = await fsp.statfs(directory);
    const free = stats.bavail * stats.bsize;
    return free >= minimum ? 'ok' : `low on space: ${formatBytes(free)} free, below min_free_space (${formatBytes(minimum)})`;
  } catch (error) {
    return `cannot read free space: ${(error as Error).message}`;
  }
}

async function probeDatabase(index: RegistryIndex): Promise<string> {
  const problem = await index.database.probe();
  return problem === null ? 'ok' : problem === 'closed' || problem === 'open read-only' ? problem : `not answering: ${problem}`;
}

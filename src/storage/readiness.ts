import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Config } from '../config/config';
import { RegistryIndex } from './registry-index';

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
export async function checkReadiness(config: Config, index: RegistryIndex): Promise<Readiness> {
  const directories = {
    registry_storage: config.registry_storage,
    temporary_registry_storage: config.temporary_registry_storage,
    proxy_storage: config.proxy_storage,
    database_directory: path.dirname(config.database),
  };
  const outcomes = await Promise.all(
    Object.entries(directories).map(async ([name, directory]) => [name, await probeWritable(directory)] as const),
  );
  // In a fixed order, whichever probe finished first.
  const checks: ReadinessChecks = { ...Object.fromEntries(outcomes), database: probeDatabase(index) };
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

function probeDatabase(index: RegistryIndex): string {
  if (!index.db.open) return 'closed';
  if (index.db.readonly) return 'open read-only';
  try {
    index.db.prepare('SELECT 1').get();
    return 'ok';
  } catch (error) {
    return `not answering: ${(error as Error).message}`;
  }
}

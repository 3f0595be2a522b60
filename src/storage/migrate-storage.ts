import fs from 'node:fs';
import type { BlobStore } from './blob-store';
import type { FilesystemBlobStore } from './filesystem-blob-store';

export interface MigrationReport {
  /** Blobs put in the target store, and their bytes. */
  copied: number;
  bytes: number;
  /** Blobs the target store held already (same digest, same size). */
  present: number;
}

/**
 * Copies every blob of the filesystem stores into the other backend's stores (`npm run migrate-storage`):
 * each file is hashed again on its way, so a corrupt one stops the copy rather than reaching the bucket
 * under its digest. What the target holds already is skipped, so an interrupted run is simply run again.
 * The files stay where they are: removing them is the operator's step, once the registry runs on the target.
 */
export async function migrateStorage(
  from: Record<'hosted' | 'proxy', FilesystemBlobStore>,
  to: Record<'hosted' | 'proxy', BlobStore>,
  progress: (line: string) => void = () => undefined,
): Promise<MigrationReport> {
  const report: MigrationReport = { copied: 0, bytes: 0, present: 0 };
  for (const kind of ['hosted', 'proxy'] as const) {
    for await (const file of from[kind].list()) {
      if ((await to[kind].size(file.digest)) === file.size) {
        report.present++;
        continue;
      }
      await to[kind].write(fs.createReadStream(from[kind].path(file.digest)), { expectedDigest: file.digest, maxSize: file.size });
      report.copied++;
      report.bytes += file.size;
      if (report.copied % 100 === 0) progress(`${report.copied} blobs copied (${kind})`);
    }
  }
  return report;
}

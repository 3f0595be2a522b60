import fs from 'node:fs';
import path from 'node:path';
import { RegistryError } from '../oci/errors';

/** Where the server writes, by the name a client and an operator are told when it is full. */
export interface StoreLocation {
  name: string;
  /** A directory, or the index's database file (whose -wal and -shm files sit beside it). */
  path: string;
}

/** A write refused for lack of space: ENOSPC or EDQUOT from the file system, SQLITE_FULL from the index. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/**
 * Notes which file a failed write was for, when the error does not say (writes through a descriptor or a
 * stream name no path): the store it belongs to is told from the path. Returns the error, for `throw`.
 */
export function attributeTo<T>(error: T, file: string): T {
  if (isDiskFull(error) && typeof (error as { path?: unknown }).path !== 'string') Object.assign(error as object, { path: file });
  return error;
}

/** How often a full store is logged: a push retried by every client on a full disk is one line a minute. */
const LOG_EVERY_MS = 60_000;

/**
 * Turns a write refused for lack of space into the answer a client can act on: 507 in the spec's error
 * shape, naming the store that is full. Counted every time, logged once per store per minute.
 */
export class DiskFullReports {
  private readonly loggedAt = new Map<string, number>();

  constructor(
    private readonly stores: StoreLocation[],
    private readonly report: (store: string, first: boolean, error: Error) => void,
  ) {}

  /** The 507 for `error` if it is a full disk, else undefined. */
  toRegistryError(error: unknown, now = Date.now()): RegistryError | undefined {
    if (!isDiskFull(error)) return undefined;
    const store = this.storeOf(error);
    const last = this.loggedAt.get(store);
    const log = last === undefined || now - last >= LOG_EVERY_MS;
    if (log) this.loggedAt.set(store, now);
    this.report(store, log, error as Error);
    return new RegistryError('INSUFFICIENT_STORAGE', {
      message: `the registry's ${store} is full: free space on its file system, or ask the operator to`,
      detail: { store },
    });
  }

  /** SQLite's errors are the index's; a file system error by the path it names (the longest store that holds it). */
  private storeOf(error: unknown): string {
    if ((error as { code?: unknown }).code === 'SQLITE_FULL') return this.stores.find((store) => store.name === INDEX_STORE)?.name ?? INDEX_STORE;
    const failed = (error as { path?: unknown }).path;
    if (typeof failed !== 'string') return 'storage';
    const holding = this.stores
      .filter((store) => failed === store.path || failed.startsWith(store.path + path.sep) || failed.startsWith(store.path + '-'))
      .sort((a, b) => b.path.length - a.path.length);
    return holding[0]?.name ?? 'storage';
  }
}

export const INDEX_STORE = 'index database';

/**
 * Space set aside beside the index (`<database>-reserve`) for the one write that must work on a full disk:
 * a garbage collection only removes, but SQLite needs room in its journal to record the removal. When a
 * collection fails for lack of space, the reserve is given up and the collection run again; it is set
 * aside anew once there is room. Real bytes, not a sparse file, or it would reserve nothing.
 */
export class SpaceReserve {
  constructor(
    readonly path: string,
    private readonly bytes: number,
  ) {}

  /** Creates the reserve if it is missing; false when it cannot (the disk is full, the directory not writable). */
  restore(): boolean {
    try {
      if (fs.statSync(this.path).size === this.bytes) return true;
    } catch {
      // missing: written below
    }
    try {
      fs.writeFileSync(this.path, Buffer.alloc(this.bytes));
      return true;
    } catch {
      // No room, or a directory the registry may not write: then there is simply no reserve (SQLite itself
      // reports a database it cannot write), and nothing half-written stays.
      fs.rmSync(this.path, { force: true });
      return false;
    }
  }

  /** Frees the reserve; false when there was none to free. */
  release(): boolean {
    try {
      fs.unlinkSync(this.path);
      return true;
    } catch {
      return false;
    }
  }
}

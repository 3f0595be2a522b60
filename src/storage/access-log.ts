import { RegistryIndex } from './registry-index';

/**
 * Remembers pulls and blob reads in memory and writes them to the index in one transaction every few
 * seconds: GC needs "last pulled" times, the read path should not pay a SQLite write per request.
 */
export class AccessLog {
  private manifestPulls = new Map<string, [string, string, number]>();
  private blobReads = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly index: RegistryIndex,
    flushIntervalMs = 5000,
  ) {
    // Access times are a hint for eviction: a batch the index refuses (full, unreachable) is dropped.
    this.timer = setInterval(() => void this.flush().catch(() => undefined), flushIntervalMs);
    this.timer.unref();
  }

  manifestPulled(repository: string, digest: string, at = Date.now()): void {
    this.manifestPulls.set(`${repository}@${digest}`, [repository, digest, at]);
  }

  blobRead(digest: string, at = Date.now()): void {
    this.blobReads.set(digest, at);
  }

  async flush(): Promise<void> {
    if (this.manifestPulls.size === 0 && this.blobReads.size === 0) return;
    const pulls = this.manifestPulls.values();
    const reads = this.blobReads.entries();
    this.manifestPulls = new Map();
    this.blobReads = new Map();
    await this.index.recordAccess(pulls, reads);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

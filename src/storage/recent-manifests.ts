import { digestOf, parseDigest } from '../oci/digest';

/**
 * Recently served manifests' bytes by digest, least recently used out first, bounded in bytes.
 * Content-addressed, so an entry is never stale; whether a repository may see it is still decided by
 * the index before the cache is asked. The hot path of pulls (GET and HEAD by tag) then reads no file.
 */
export class RecentManifests {
  private readonly entries = new Map<string, Buffer>();
  /** Reads under way: requests that miss one manifest together share one read (and one entry). */
  private readonly reading = new Map<string, Promise<Buffer | undefined>>();
  private bytes = 0;

  constructor(private readonly maxBytes = 32 * 1024 * 1024) {}

  /**
   * The manifest's bytes, from memory or from `read`. What is read is checked against its digest first:
   * a file corrupted on disk is reported as missing (undefined), never served.
   */
  async get(digest: string, read: () => Promise<Buffer>): Promise<Buffer | undefined> {
    const cached = this.entries.get(digest);
    if (cached) {
      this.entries.delete(digest);
      this.entries.set(digest, cached);
      return cached;
    }
    const running = this.reading.get(digest);
    if (running) return running;
    const reading = read()
      .then((content) => {
        if (digestOf(content, parseDigest(digest)!.algorithm) !== digest) return undefined;
        this.add(digest, content);
        return content;
      })
      .finally(() => this.reading.delete(digest));
    this.reading.set(digest, reading);
    return reading;
  }

  /** Content just stored under `digest` (verified by the caller): the pull that follows a push reads no file. */
  remember(digest: string, content: Buffer): void {
    this.add(digest, content);
  }

  private add(digest: string, content: Buffer): void {
    if (content.length > this.maxBytes / 8 || this.entries.has(digest)) return;
    this.entries.set(digest, content);
    this.bytes += content.length;
    for (const [oldest, bytes] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= bytes.length;
    }
  }
}

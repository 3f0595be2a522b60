import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** How a file got where it is: a hard link into the store, a copy, new contents, or left as it was. */
export type Placement = 'linked' | 'copied' | 'written' | 'unchanged';

/**
 * Puts a store file at `target`: a hard link when both sit on one filesystem (no bytes copied, and the
 * store's later garbage collection cannot pull it away: the link keeps the inode), a copy otherwise.
 * A target that already is that file (same inode), or a copy with its bytes, is left untouched: a copy at
 * a path named by its digest (`digestNamed`) is trusted by its size; one at a tag's path is compared. Temp name then rename: a server reading the tree
 * never sees a half-written file.
 */
export async function placeStoreFile(source: string, target: string, digestNamed: boolean): Promise<Placement> {
  const [sourceStat, targetStat] = await Promise.all([fsp.stat(source), statOrNull(target)]);
  if (targetStat && targetStat.ino === sourceStat.ino && targetStat.dev === sourceStat.dev) return 'unchanged';
  if (targetStat && targetStat.isFile() && targetStat.size === sourceStat.size) {
    if (digestNamed || (await fsp.readFile(target)).equals(await fsp.readFile(source))) return 'unchanged';
  }
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const temporary = temporaryBeside(target);
  try {
    try {
      await fsp.link(source, temporary);
      await fsp.rename(temporary, target);
      return 'linked';
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw error;
    }
    await fsp.copyFile(source, temporary);
    await fsp.rename(temporary, target);
    return 'copied';
  } finally {
    await fsp.rm(temporary, { force: true });
  }
}

/** Writes small generated contents (a tag list, an nginx map) unless the file already holds exactly them. */
export async function placeContent(target: string, content: Buffer | string): Promise<Placement> {
  const bytes = Buffer.isBuffer(content) ? content : Buffer.from(content);
  const existing = await fsp.readFile(target).catch(() => null);
  if (existing && existing.equals(bytes)) return 'unchanged';
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const temporary = temporaryBeside(target);
  try {
    await fsp.writeFile(temporary, bytes);
    await fsp.rename(temporary, target);
  } finally {
    await fsp.rm(temporary, { force: true });
  }
  return 'written';
}

/**
 * Removes every file under `root` whose path (relative, with `/`) is not in `keep`, then the directories
 * left empty. Returns the paths removed.
 */
export async function removeOthers(root: string, keep: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  const visit = async (directory: string, relative: string): Promise<boolean> => {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(directory, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw error;
    }
    let empty = true;
    for (const entry of entries) {
      const entryPath = path.join(directory, entry.name);
      const entryRelative = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (await visit(entryPath, entryRelative)) await fsp.rmdir(entryPath);
        else empty = false;
      } else if (keep.has(entryRelative)) {
        empty = false;
      } else {
        await fsp.rm(entryPath, { force: true });
        removed.push(entryRelative);
      }
    }
    return empty;
  };
  await visit(root, '');
  return removed;
}

function temporaryBeside(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`);
}

async function statOrNull(file: string): Promise<fs.Stats | null> {
  try {
    return await fsp.stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

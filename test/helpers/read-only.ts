import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * Makes `directory` refuse writes, as a read-only remount or lost permissions would; returns the undo.
 * Root ignores permission bits, so as root the directory becomes a read-only bind mount of itself
 * (EROFS, exactly what a NAS volume remounted read-only after a disk error gives); otherwise the
 * directory's write bits go.
 */
export function makeReadOnly(directory: string): () => void {
  if (process.getuid?.() !== 0) {
    const { mode } = fs.statSync(directory);
    fs.chmodSync(directory, mode & ~0o222);
    return () => fs.chmodSync(directory, mode);
  }
  try {
    execFileSync('mount', ['--bind', directory, directory], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(
      `as root, a read-only directory needs a bind mount, which failed (run the tests as a non-root user, or with CAP_SYS_ADMIN): ${(error as Error).message}`,
    );
  }
  try {
    execFileSync('mount', ['-o', 'remount,bind,ro', directory], { stdio: 'pipe' });
  } catch (error) {
    execFileSync('umount', [directory]);
    throw error;
  }
  return () => execFileSync('umount', [directory], { stdio: 'pipe' });
}

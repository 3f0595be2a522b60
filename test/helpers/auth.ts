import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestApp, TestApp } from './test-app';

export const HTPASSWD_FILE = 'users.htpasswd';

/** `user:password` → the Authorization header a client sends for it. */
export function basic(credentials: string): Record<string, string> {
  return { Authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** What anonymous skopeo sends after a Basic challenge: empty user and password. */
export const EMPTY_BASIC = { Authorization: 'Basic Og==' };

/** Appends users to an htpasswd file with the real `htpasswd -Bbn` (bcrypt, `$2y$`). */
export function addUsers(file: string, users: Record<string, string>): void {
  for (const [user, password] of Object.entries(users)) {
    fs.appendFileSync(file, execFileSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' }).trim() + '\n');
  }
}

/**
 * A test server whose storage directory holds `users.htpasswd` with `users`, and a configuration.toml
 * of `configuration` (which names the file as `htpasswd = "users.htpasswd"`). Close removes it all.
 */
export async function createAuthApp(users: Record<string, string>, configuration: string): Promise<TestApp> {
  const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-auth-test-'));
  addUsers(path.join(storageDir, HTPASSWD_FILE), users);
  const app = await createTestApp({ storageDir, configuration });
  const close = app.close;
  app.close = async () => {
    await close();
    fs.rmSync(storageDir, { recursive: true, force: true });
  };
  return app;
}

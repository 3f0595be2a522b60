import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/log';
import { addUsers, basic, HTPASSWD_FILE } from '../helpers/auth';
import { RegistryClient } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

interface RequestLine {
  level: string;
  msg: string;
  method: string;
  route: string;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  ms: number;
  client: string;
  user?: string;
  aborted?: boolean;
}

/** A server whose log lines are kept, parsed. */
async function loggedApp(create: (log: ReturnType<typeof createLogger>) => Promise<TestApp>) {
  const lines: string[] = [];
  const app = await create(createLogger('info', { destination: (line) => lines.push(line) }));
  const requests = () =>
    lines.map((line) => JSON.parse(line) as RequestLine).filter((line) => line.msg === 'request');
  // The line is written on the response's 'close', which may come a moment after the client has read it.
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
  return { app, lines, requests, settle };
}

describe('the request log: one JSON line per request', () => {
  test('names the route template, path, status, bytes each way, duration and client', async () => {
    const { app, requests, settle } = await loggedApp((log) => createTestApp({ log }));
    try {
      const client = new RegistryClient(app);
      const blob = Buffer.alloc(100_000, 7);
      const { digest } = await client.pushBlob('team/app', blob);
      const { body } = await client.getBlob('team/app', digest);
      expect(body.length).toBe(blob.length);
      await client.fetch('/v2/team/app/manifests/missing');
      await settle();

      const push = requests().find((line) => line.method === 'POST' && line.route === '/v2/*name/blobs/uploads/')!;
      expect(push).toMatchObject({ level: 'info', status: 201, client: '127.0.0.1', path: '/v2/team/app/blobs/uploads/' });
      expect(push.bytesIn).toBe(blob.length);
      expect(push.bytesOut).toBe(0);

      const get = requests().find((line) => line.method === 'GET' && line.route === '/v2/*name/blobs/:digest')!;
      expect(get).toMatchObject({ status: 200, path: `/v2/team/app/blobs/${digest}` });
      expect(get.bytesOut).toBe(blob.length);
      expect(get.ms).toBeGreaterThan(0);
      expect(get.user).toBeUndefined(); // auth off: nobody to name

      const missing = requests().find((line) => line.path === '/v2/team/app/manifests/missing')!;
      expect(missing).toMatchObject({ status: 404, route: '/v2/*name/manifests/:reference' });
      // No query string: upload digests and token scopes stay out of the log.
      expect(requests().every((line) => !line.path.includes('?'))).toBe(true);
    } finally {
      await app.close();
    }
  });

  test('names the user, never the credentials; a path no route has is logged as unmatched', async () => {
    const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'request-log-test-'));
    addUsers(path.join(storageDir, HTPASSWD_FILE), { alice: 'wonderland-password' });
    const { app, lines, requests, settle } = await loggedApp((log) =>
      createTestApp({ storageDir, configuration: `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\n`, log }),
    );
    try {
      const client = new RegistryClient(app);
      const alice = basic('alice:wonderland-password');
      expect((await client.fetch('/v2/_catalog', { headers: alice })).status).toBe(200);
      expect((await client.fetch('/v2/_catalog', { headers: basic('alice:wrong-password') })).status).toBe(401);
      expect((await client.fetch('/v3/nothing', { headers: alice })).status).toBe(404);
      await settle();

      expect(requests().find((line) => line.status === 200)).toMatchObject({ route: '/v2/_catalog', user: 'alice' });
      expect(requests().find((line) => line.status === 401)!.user).toBeUndefined();
      const unknown = requests().find((line) => line.path === '/v3/nothing')!;
      expect(unknown.status).toBe(404);
      expect(unknown.route).toBe('unmatched');
      const everything = lines.join('');
      expect(everything).not.toContain('wonderland-password');
      expect(everything).not.toContain(alice.Authorization.slice('Basic '.length));
    } finally {
      await app.close();
      fs.rmSync(storageDir, { recursive: true, force: true });
    }
  });

  test('names the user of web UI and /api/ requests too: by session cookie or Authorization header; never the cookie', async () => {
    const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'request-log-test-'));
    addUsers(path.join(storageDir, HTPASSWD_FILE), { alice: 'wonderland-password' });
    const { app, lines, requests, settle } = await loggedApp((log) =>
      createTestApp({ storageDir, configuration: `[auth]\nhtpasswd = "${HTPASSWD_FILE}"\nanonymous = "pull"\n`, log }),
    );
    try {
      const client = new RegistryClient(app);
      const form = await client.fetch('/ui/login');
      const anonymousCookie = form.headers.get('Set-Cookie')!.split(';')[0];
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1];
      const login = await client.fetch('/ui/login', {
        method: 'POST',
        redirect: 'manual',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: anonymousCookie, Origin: app.url },
        body: new URLSearchParams({ csrf, username: 'alice', password: 'wonderland-password', next: '/ui/' }).toString(),
      });
      expect(login.status).toBe(302);
      const session = login.headers.get('Set-Cookie')!.split(';')[0];
      expect((await client.fetch('/ui/storage', { headers: { Cookie: session } })).status).toBe(200);
      expect((await client.fetch('/api/storage', { headers: basic('alice:wonderland-password') })).status).toBe(200);
      await settle();

      const logged = (path: string) => requests().filter((line) => line.path === path).map(({ method, status, user }) => ({ method, status, user }));
      expect(logged('/ui/login')).toEqual([
        { method: 'GET', status: 200, user: 'anonymous' },
        { method: 'POST', status: 302, user: 'alice' }, // the login: who logged in
      ]);
      expect(logged('/ui/storage')).toEqual([{ method: 'GET', status: 200, user: 'alice' }]);
      expect(logged('/api/storage')).toEqual([{ method: 'GET', status: 200, user: 'alice' }]);
      const everything = lines.join('');
      expect(everything).not.toContain(session.split('=')[1]);
      expect(everything).not.toContain('wonderland-password');
    } finally {
      await app.close();
      fs.rmSync(storageDir, { recursive: true, force: true });
    }
  });

  test('marks a response the client cut off as aborted', async () => {
    const { app, requests, settle } = await loggedApp((log) => createTestApp({ log }));
    try {
      const client = new RegistryClient(app);
      const { digest } = await client.pushBlob('team/big', Buffer.alloc(32 * 1024 * 1024, 1));
      const controller = new AbortController();
      const response = await client.fetch(`/v2/team/big/blobs/${digest}`, { signal: controller.signal });
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      await reader.cancel().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await settle();
      const cut = requests().find((line) => line.method === 'GET' && line.path === `/v2/team/big/blobs/${digest}`)!;
      expect(cut).toMatchObject({ status: 200, aborted: true });
      expect(cut.bytesOut).toBeLessThan(32 * 1024 * 1024);
    } finally {
      await app.close();
    }
  });

  test('with trust_proxy, the client is the address the reverse proxy appended last to X-Forwarded-For', async () => {
    const { app, requests, settle } = await loggedApp((log) => createTestApp({ log, overrides: { trust_proxy: 'true' } }));
    try {
      // A client may send its own X-Forwarded-For; nginx's $proxy_add_x_forwarded_for appends the real address.
      await new RegistryClient(app).fetch('/v2/', { headers: { 'X-Forwarded-For': '203.0.113.9, 192.168.1.20' } });
      await settle();
      expect(requests()[0].client).toBe('192.168.1.20');
    } finally {
      await app.close();
    }
  });
});

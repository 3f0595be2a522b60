import net from 'node:net';
import { createTestApp, TestApp } from '../helpers/test-app';

describe('client_idle_timeout', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ overrides: { client_idle_timeout: '300ms' } });
  });
  afterAll(() => app.close());

  /** Opens a raw connection to the registry and sends `text`; resolves with how long until the server closed it. */
  function stall(text: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const socket = net.connect(Number(app.host.split(':')[1]), '127.0.0.1', () => socket.write(text));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Date.now() - started));
      setTimeout(() => reject(new Error('the server kept a stalled connection open')), 5000).unref();
    });
  }

  test('a client that stops sending a blob upload midway is disconnected', async () => {
    const session = await fetch(`${app.url}/v2/timeouts/app/blobs/uploads/`, { method: 'POST' });
    const location = session.headers.get('location')!;
    const closedAfter = await stall(`PATCH ${location} HTTP/1.1\r\nHost: ${app.host}\r\nContent-Length: 1000\r\n\r\nonly a few bytes`);
    expect(closedAfter).toBeGreaterThanOrEqual(250);
    // dist-spec: a chunk is accepted as received (the 16 bytes of "only a few bytes"); the client asks for
    // the status and resumes from there. The handler records them just after the cut: poll briefly.
    let range: string | null = null;
    for (let tries = 0; tries < 50 && range !== '0-15'; tries++) {
      const status = await fetch(`${app.url}${location}`);
      expect(status.status).toBe(204);
      range = status.headers.get('range');
      if (range !== '0-15') await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(range).toBe('0-15');
  });

  test('a client that sends half a request line and waits is disconnected', async () => {
    expect(await stall('GET /v2/')).toBeGreaterThanOrEqual(250);
  });
});

import { Server, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { AppDependencies, createApp } from '../app';
import { AccessControl } from '../auth/access-control';
import { Config } from '../config/config';
import { parseListen } from '../config/mirrors';
import { Endpoint } from '../http/middleware/namespace';
import { ServerLifecycle } from '../lifecycle';
import { ServerConnections } from './connections';

/** Where a listener listens and what it serves. */
export interface ListenAddress {
  host: string;
  /** 0 picks a free port. */
  port: number;
  endpoint: Endpoint;
}

/** A started listener; `port` is the one it got. */
export interface Listener extends ListenAddress {
  server: Server;
  /** Its requests and connections, which a shutdown drains. */
  connections: ServerConnections;
  /** The one lifecycle every listener shares. */
  lifecycle: ServerLifecycle;
}

/** The main address, then one per `[[mirror]] listen`, in configuration order. Host mirrors need no listener. */
export function listenAddresses(config: Config): ListenAddress[] {
  const mirrors = config.mirror.flatMap((mirror): ListenAddress[] => {
    const address = mirror.listen ? parseListen(mirror.listen) : null;
    return address ? [{ ...address, endpoint: { kind: 'mirror', upstream: mirror.upstream } }] : [];
  });
  return [{ host: config.host, port: config.port, endpoint: { kind: 'main' } }, ...mirrors];
}

/**
 * Starts one listener per address, all over the one Registry: a mirror port is another view of the same
 * storage, cache and in-flight downloads, never a second registry (two would download a blob twice and
 * each hold the SQLite index). The main listener starts first, so mirrors know its port when refusing a push.
 * The server (main.ts) and the tests (createTestApp) both start here.
 */
export async function startListeners(
  dependencies: Omit<AppDependencies, 'endpoint'>,
  addresses: ListenAddress[] = listenAddresses(dependencies.config),
): Promise<Listener[]> {
  const listeners: Listener[] = [];
  // One AccessControl for all listeners: failed-login counts and upload owners are per server.
  const access =
    dependencies.access !== undefined ? dependencies.access : AccessControl.fromConfig(dependencies.config.auth, dependencies.log, dependencies.registry.uploadOwners);
  // One lifecycle too: a shutdown drains every listener at once.
  const lifecycle = dependencies.lifecycle ?? new ServerLifecycle();
  try {
    for (const address of addresses) {
      const mainPort = listeners[0]?.port;
      const endpoint: Endpoint = address.endpoint.kind === 'mirror' ? { ...address.endpoint, mainPort } : address.endpoint;
      // app.listen(), with each request counted in `connections`.
      const handle = createApp({ ...dependencies, access, lifecycle, endpoint }).callback();
      const server = createServer();
      const connections = new ServerConnections(server, lifecycle);
      server.on('request', (request, response) => connections.handle(request, response, () => handle(request, response)));
      server.listen(address.port, address.host);
      server.requestTimeout = 0; // large blob uploads take as long as they take…
      server.setTimeout(dependencies.config.client_idle_timeout); // …while data moves; a stalled socket is closed
      await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject)).catch((error: Error) => {
        const what = endpoint.kind === 'mirror' ? `the mirror of ${endpoint.upstream}` : 'the registry';
        throw new Error(`cannot listen on ${address.host}:${address.port} for ${what}: ${error.message}`);
      });
      listeners.push({ host: address.host, port: (server.address() as AddressInfo).port, endpoint, server, connections, lifecycle });
    }
  } catch (error) {
    await stopListeners(listeners, { force: true });
    throw error;
  }
  return listeners;
}

/**
 * Stops accepting connections; `force` also ends those in use (tests), otherwise only idle ones. A signal
 * goes through gracefulShutdown (src/shutdown.ts) instead, which waits for requests in flight.
 */
export async function stopListeners(listeners: Listener[], { force }: { force: boolean }): Promise<void> {
  await Promise.all(
    listeners.map(({ server }) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (force) server.closeAllConnections();
      else server.closeIdleConnections();
      return closed;
    }),
  );
}

import { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { ServerLifecycle } from '../lifecycle';

/**
 * One listener's requests and connections, so that a shutdown can let the requests finish and close
 * each connection once it is idle.
 *
 * A request counts until its handler has settled *and* its response has closed: a pull's body still
 * streams after the handler returned, and an upload's handler still records its chunk after the socket
 * was destroyed (the index must not close under it).
 */
export class ServerConnections {
  /** Each open connection, with the number of requests under way on it. */
  private readonly sockets = new Map<Socket, number>();
  private readonly unanswered = new Set<ServerResponse>();
  private pending = 0;
  /** Called when `pending` drops to 0 (settled() waits on it). */
  private onIdle: (() => void) | null = null;

  constructor(
    server: Server,
    private readonly lifecycle: ServerLifecycle,
  ) {
    server.on('connection', (socket: Socket) => {
      this.sockets.set(socket, 0);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Requests whose handler or response is not done yet. */
  get inFlight(): number {
    return this.pending;
  }

  /** Runs `handler` for one request (the server's request listener calls this). Counters, no promises: it runs per request. */
  handle(request: IncomingMessage, response: ServerResponse, handler: () => Promise<void>): void {
    const socket = request.socket;
    this.sockets.set(socket, (this.sockets.get(socket) ?? 0) + 1);
    if (this.lifecycle.draining) response.setHeader('Connection', 'close');
    this.unanswered.add(response);
    this.pending++;
    // Two things end a request: its handler settling and its response closing.
    let ends = 2;
    const end = () => {
      if (--ends === 0 && --this.pending === 0 && this.onIdle) this.onIdle();
    };
    response.once('close', () => {
      this.unanswered.delete(response);
      const open = (this.sockets.get(socket) ?? 1) - 1;
      if (this.sockets.has(socket)) this.sockets.set(socket, open);
      // 'close' comes after 'finish', when the last bytes are with the kernel: ending the socket loses nothing.
      if (this.lifecycle.draining && open === 0) socket.end();
      end();
    });
    handler().then(end, end);
  }

  /**
   * Stops keeping connections alive (the lifecycle is draining): responses not yet sent carry
   * `Connection: close`, idle connections end now, busy ones once their response is done.
   */
  endIdleConnections(): void {
    for (const response of this.unanswered) {
      if (!response.headersSent) response.setHeader('Connection', 'close');
    }
    for (const [socket, open] of this.sockets) if (open === 0) socket.end();
  }

  /** Cuts every connection left; the handlers of cut requests see their streams fail and settle. */
  destroyAll(): void {
    for (const socket of this.sockets.keys()) socket.destroy();
  }

  /** Settles once no request is in flight, new ones (on connections still open) included. */
  settled(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.onIdle;
      this.onIdle = () => {
        this.onIdle = null;
        previous?.();
        resolve();
      };
    });
  }
}

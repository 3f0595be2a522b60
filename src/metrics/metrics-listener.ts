import { createServer, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { Config } from '../config/config';
import { parseListen } from '../config/mirrors';
import { RegistryError } from '../http/errors';
import { API_VERSION, API_VERSION_HEADER } from '../http/middleware/errors';
import { METRICS_PATH } from '../http/routes/metrics';
import { Logger } from '../log';
import { RegistryMetrics } from './registry-metrics';

/** The `[metrics] listen` listener once started; `port` is the one it got. */
export interface MetricsListener {
  host: string;
  port: number;
  server: Server;
  /** Stops it, ending open connections (a scrape is short, and retried at the next interval). */
  close(): Promise<void>;
}

/**
 * Serves /metrics on `[metrics] listen`, a listener of its own like the reference registry's debug
 * address: plain node:http, open to whoever reaches it (bind it to a private address), no [auth].
 * Null when `[metrics]` is disabled or `listen` is "" (then the main listener serves /metrics).
 */
export async function startMetricsListener(config: Config, metrics: RegistryMetrics, log?: Logger): Promise<MetricsListener | null> {
  if (!config.metrics.enabled || config.metrics.listen === '') return null;
  const address = parseListen(config.metrics.listen);
  // load-config validates it; a Config built by hand may not be.
  if (!address) throw new Error(`metrics.listen: expected host:port, got ${JSON.stringify(config.metrics.listen)}`);

  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://metrics.invalid').pathname;
    if (path !== METRICS_PATH) {
      return sendError(response, new RegistryError('UNSUPPORTED', { status: 404, message: `no route for ${request.method} ${path}` }));
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const message = `${request.method} is not allowed on ${path}`;
      return sendError(response, new RegistryError('UNSUPPORTED', { message, headers: { Allow: 'HEAD, GET' } }));
    }
    metrics.metrics().then(
      (text) => {
        const headers = { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) };
        response.writeHead(200, headers);
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: Error) => {
        log?.error('metrics scrape failed', { error: error.stack ?? error.message });
        sendError(response, new RegistryError('UNKNOWN'));
      },
    );
  });
  const listening = new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  server.listen(address.port, address.host);
  await listening.catch((error: Error) => {
    throw new Error(`cannot listen on ${config.metrics.listen} for metrics: ${error.message}`);
  });
  return {
    host: address.host,
    port: (server.address() as AddressInfo).port,
    server,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      return closed;
    },
  };
}

/** The registry's error shape here too, so a client sees one vocabulary on every port. */
function sendError(response: ServerResponse, error: RegistryError): void {
  const body = JSON.stringify(error.toBody());
  response.writeHead(error.status, {
    ...error.headers,
    [API_VERSION_HEADER]: API_VERSION,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  response.end(body);
}

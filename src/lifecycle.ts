/**
 * What the whole server is doing, shared by every listener: readiness (`/readyz`) answers 503 once a
 * shutdown has begun, so a load balancer stops sending new work while in-flight requests finish.
 */
export class ServerLifecycle {
  draining = false;
}

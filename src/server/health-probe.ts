import { Config } from '../config/config';

/** Below the Dockerfile's `HEALTHCHECK --timeout=5s`: the probe reports unhealthy itself rather than being killed. */
export const HEALTHCHECK_TIMEOUT_MS = 4000;

/**
 * The `healthcheck` command (the Docker image's HEALTHCHECK): asks this machine's registry for `/readyz`
 * at the address and port the configuration gives — file, environment and flags alike, which a probe
 * with a port written into it could not know. Resolves to "" when ready, or what is wrong.
 */
export async function probeReadiness(config: Config): Promise<string> {
  // A server listening on every interface is reached on loopback; one bound to an address, there.
  const host = config.host === '0.0.0.0' || config.host === '' ? '127.0.0.1' : config.host === '::' ? '::1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.port}/readyz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(HEALTHCHECK_TIMEOUT_MS) });
    if (response.status === 200) return '';
    return `${url} answered ${response.status}: ${(await response.text()).slice(0, 2000)}`;
  } catch (error) {
    const cause = (error as Error & { cause?: Error }).cause;
    return `${url}: ${cause?.message ?? (error as Error).message}`;
  }
}

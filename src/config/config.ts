/**
 * The validated, frozen configuration. Field names are the keys of `configuration.toml`,
 * so the file, the environment (`REGISTRY_<KEY>`) and the code use one vocabulary.
 * Paths are absolute once loaded.
 */
export interface Config {
  host: string;
  port: number;
  registry_storage: string;
  temporary_registry_storage: string;
  proxy_storage: string;
  database: string;
  /** Largest manifest accepted on PUT, in bytes (dist-spec suggests at least 4 MiB). */
  max_manifest_size: number;
  /** Origin used in absolute Location headers; empty means Locations are relative paths. */
  public_url: string;
  log_level: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  proxy: ProxyConfig;
}

/** `[proxy]`: the pull-through cache under /v2/proxy/<upstream>/<name>. */
export interface ProxyConfig {
  enabled: boolean;
  /** Upstream hosts that may be reached by name beyond the configured ones; empty means any host over https. */
  allowed_upstreams: string[];
  /** How long a cached tag's digest is trusted before it is revalidated upstream, in ms. */
  tag_ttl: number;
  /** How long to wait for an upstream's response headers, in ms. */
  timeout: number;
  /** Requests in flight to one upstream at a time. */
  concurrency: number;
  upstreams: UpstreamConfig[];
}

/** `[[proxy.upstreams]]`: a registry reached under proxy/<host>/…, or under one of its aliases. */
export interface UpstreamConfig {
  /** The name used in the path, e.g. "docker.io" or "upstream.test". */
  host: string;
  /** Where it is reached, e.g. "https://registry-1.docker.io" or "http://127.0.0.1:5056". */
  url: string;
  aliases: string[];
  username: string;
  password: string;
}

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
}

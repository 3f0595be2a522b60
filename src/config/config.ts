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
  /** Upload sessions open at once, all users together; 0: no limit. Each holds a file and a running hash. */
  max_upload_sessions: number;
  proxy_storage: string;
  database: string;
  /**
   * URI prefix of nginx's internal locations for blob files, e.g. "/_blobs/": a blob GET whose blob is a
   * complete file answers with X-Accel-Redirect to <prefix><registry|proxy>/blobs/<algorithm>/<xx>/<hex>
   * and no body, and nginx sends the file. "": the registry sends every blob itself.
   */
  accel_redirect: string;
  /** Largest manifest accepted on PUT, in bytes (dist-spec suggests at least 4 MiB). */
  /** /readyz: a store's file system with less free space than this is not ready. */
  min_free_space: number;
  max_manifest_size: number;
  /** Origin used in absolute Location headers; empty means Locations are relative paths. */
  public_url: string;
  log_level: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** `json`: one JSON object per line; `pretty`: human-readable; `auto`: pretty when stderr is a terminal. */
  log_format: 'auto' | 'json' | 'pretty';
  /** A connection with no traffic either way for this long is closed (stalled clients), in ms; 0: never. */
  client_idle_timeout: number;
  /** Believe X-Forwarded-Host (matched by `[[mirror]] host`), -For and -Proto: a reverse proxy sets them. */
  trust_proxy: boolean;
  /** After SIGTERM, how long in-flight requests get to finish before their connections are cut, in ms. */
  shutdown_timeout: number;
  metrics: MetricsConfig;
  proxy: ProxyConfig;
  mirror: MirrorConfig[];
  storage: StorageConfig;
  gc: GcConfig;
  github: GithubConfig;
  auth: AuthConfig;
  ui: UiConfig;
}

/** `[metrics]`: Prometheus metrics. */
export interface MetricsConfig {
  enabled: boolean;
  /** `host:port` of a listener of its own (like the reference registry's debug address); "": /metrics on the main listener. */
  listen: string;
}

/**
 * `[[mirror]]`: an endpoint whose root namespace is one upstream's, read-only, for clients that take only a
 * host as a mirror (Docker Engine's registry-mirrors). Exactly one of `listen` and `host` is set.
 */
export interface MirrorConfig {
  /** An upstream name as in proxy/<upstream>/, e.g. "docker.io". */
  upstream: string;
  /** `host:port` of a listener of its own; "" when matched by `host`. */
  listen: string;
  /** Requests whose Host (or trusted X-Forwarded-Host) is this name; "" when it has a listener. */
  host: string;
}

/** `[proxy]`: the pull-through cache under /v2/proxy/<upstream>/<name>. */
export interface ProxyConfig {
  enabled: boolean;
  /** Upstream hosts that may be reached by name beyond the configured ones; empty means any host over https. */
  allowed_upstreams: string[];
  /** How long a cached tag's digest is trusted before it is revalidated upstream, in ms. */
  tag_ttl: number;
  /** How long an upstream's 404 for a manifest is remembered and answered without asking again, in ms; 0: never. */
  not_found_ttl: number;
  /** How long to wait for an upstream's response headers, in ms. */
  timeout: number;
  /** Requests in flight to one upstream at a time. */
  concurrency: number;
  /** Cold blob transfers from all upstreams at a time; more wait for a slot. */
  max_concurrent_downloads: number;
  /** Cached images not pulled for this long are evicted, in ms; 0: no limit. */
  max_age: number;
  /** The cache is kept under this many bytes, least recently pulled images evicted first; 0: no limit. */
  max_size: number;
  /** A size or "N%" (parseFreeSpace): kept free on the cache's file system by eviction before fills. */
  min_free: string;
  /** Manifests and blobs the sync fetches at a time, all entries together. */
  sync_concurrency: number;
  /** Bytes per second the sync fetches from one upstream, averaged over its blobs; 0: no limit. */
  sync_bandwidth: number;
  sync: SyncEntryConfig[];
  /**
   * What a tag or manifest we hold is served as when its upstream, reachable, says it no longer exists (404):
   * "pinned": pinned content only; "all": anything cached; "none": the 404 is passed on.
   */
  serve_deleted: 'pinned' | 'all' | 'none';
  /**
   * Docker Hub's rate limit: when an upstream's `ratelimit-remaining` falls below this, cached tags are served
   * without revalidation until its window resets; 0: only a 429 does that.
   */
  rate_limit_reserve: number;
  upstreams: UpstreamConfig[];
  /** Cached content that eviction never removes. */
  pin: PinConfig[];
}

/** `[[proxy.pin]]`: one image, or the tags matching a pattern under a name prefix (src/config/pins.ts). */
export interface PinConfig {
  /** A name with :tag or @digest, e.g. "docker.io/library/alpine:3.20"; "" with prefix. */
  image: string;
  /** A name prefix, whole components, e.g. "docker.io/library"; "" with image. */
  prefix: string;
  /** With prefix: a regular expression the whole tag matches; "": every tag. */
  tags: string;
}

/** `[[proxy.sync]]`: a cached repository whose tags are fetched ahead of any pull. */
export interface SyncEntryConfig {
  /** The repository as pulled, e.g. "proxy/docker.io/library/alpine" (any spelling the cache maps). */
  image: string;
  tags: string[];
  /** A regular expression over the upstream's tags; "" when `tags` lists them. */
  tag_pattern: string;
  /** With `tag_pattern`: at most this many tags per run, the last ones in sort order. */
  max_tags: number;
  /** `os/architecture[/variant]` of an index's children to fetch; empty: all. */
  platforms: string[];
  /** How often the server runs the entry, in ms; 0: only with the `sync` command. */
  interval: number;
  /** Pins the entry's tags (its list, or its pattern) as a `[[proxy.pin]]` would: eviction never removes them. */
  pin: boolean;
}

/** `[[proxy.upstreams]]`: a registry reached under proxy/<host>/…, or under one of its aliases. */
export interface UpstreamConfig {
  /** The name used in the path, e.g. "docker.io" or "upstream.test". */
  host: string;
  /** Where it is reached, e.g. "https://registry-1.docker.io" or "http://127.0.0.1:5056": the first of `urls`. */
  url: string;
  /**
   * Every URL it is reached at, tried in order for each request: a 404 or a failure moves on to the next, and
   * the last one's answer stands. Set from `url` when only that is configured.
   */
  urls: string[];
  aliases: string[];
  username: string;
  password: string;
}

/** `[gc]`: garbage collection of hosted content, cache eviction and upload expiry. */
/** `[storage]`: where blobs and manifests are kept. */
export interface StorageConfig {
  /**
   * `filesystem`: files under registry_storage and proxy_storage. `s3`: objects in `[storage.s3]`'s bucket;
   * the two directories then only stage content on its way into the bucket.
   */
  backend: 'filesystem' | 's3';
  s3: S3Config;
}

/** `[storage.s3]`: an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, Garage, R2). */
export interface S3Config {
  /** http(s) URL of the service; "": AWS S3's endpoint for `region`. */
  endpoint: string;
  region: string;
  bucket: string;
  /** Key prefix for everything the registry stores, "" or ending in "/". */
  prefix: string;
  /** Bucket in the path (http://host/bucket/key), as most non-AWS services need, rather than in the host name. */
  path_style: boolean;
  /** "" for both: the AWS SDK's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, profiles, instance roles). */
  access_key_id: string;
  secret_access_key: string;
  /** Blob GETs that passed authorization answer 307 to a presigned URL, and the bytes come from the bucket. */
  redirect: boolean;
  /** How long a presigned URL stays valid, in ms. */
  redirect_expiry: number;
}

export interface GcConfig {
  /** How often the server collects, in ms; 0: only on demand (`gc` command). */
  interval: number;
  /** A blob written or linked this recently is never collected, even if nothing references it yet, in ms. */
  grace: number;
  /** Upload sessions untouched this long are dropped, in ms. */
  upload_ttl: number;
  /** Also delete manifests that no tag, index or live subject keeps. */
  delete_untagged: boolean;
}

/**
 * `[github]`: GitHub's Packages REST API, which lists the container packages ghcr.io's registry API cannot
 * (it has no /v2/_catalog). The token is also the upstream credential for proxy/ghcr.io/….
 */
export interface GithubConfig {
  /** A classic token with read:packages; "" lists nothing and pulls from ghcr.io anonymously. */
  token: string;
  /** GitHub's REST API root, without trailing slash. */
  api_url: string;
  /** Users whose container packages are listed. */
  users: string[];
  /** Organisations whose container packages are listed. */
  orgs: string[];
  /** How long a REST answer (package list, version tags) is reused before it is asked again, in ms. */
  cache_ttl: number;
}

/**
 * `[auth]`: who may pull, push and delete. With `htpasswd` empty the registry is open to anyone who reaches it.
 * Rule lists name users, groups, "*" (any logged-in user) and "anonymous".
 */
export interface AuthConfig {
  /** An htpasswd file of bcrypt hashes (`htpasswd -Bbn`), reloaded when it changes; "" turns auth off. */
  htpasswd: string;
  /** What requests without credentials may do: nothing, or pull where the rules allow it. */
  anonymous: 'none' | 'pull';
  /** Shown in the Basic challenge, and the token service's name. */
  realm: string;
  /**
   * The scheme of the challenge on a 401: Basic, or Bearer pointing at the token endpoint /token (served only
   * then). auto: Bearer when anonymous may pull (Docker Engine pulls anonymously only after a Bearer
   * challenge), else Basic. Basic credentials are accepted on every request either way.
   */
  challenge: 'auto' | 'basic' | 'bearer';
  /** Older spelling of `challenge = "bearer"`. */
  token: boolean;
  /** How long an issued token is valid, in ms. */
  token_ttl: number;
  /** Open upload sessions one user may have at a time; 0: no limit. */
  max_uploads: number;
  groups: AuthGroupConfig[];
  rules: AuthRuleConfig[];
}

/** `[[auth.groups]]`: a name usable in rules, for a list of users. */
export interface AuthGroupConfig {
  name: string;
  members: string[];
}

/** `[[auth.rules]]`: who may do what under a repository prefix; the longest matching prefix decides. */
export interface AuthRuleConfig {
  prefix: string;
  pull: string[];
  push: string[];
  delete: string[];
}

/** `[ui]`: the web UI for people and its JSON API under /api/, on the main listener. */
export interface UiConfig {
  enabled: boolean;
  /** Where the pages are served, with a leading and a trailing slash; `/` redirects browsers there. */
  path: string;
}

/** Whether `database` names a PostgreSQL database (a postgres:// or postgresql:// URL) rather than a SQLite file. */
export function isPostgresUrl(database: string): boolean {
  return /^postgres(ql)?:\/\//i.test(database);
}

/** `database` fit to show: a PostgreSQL URL without its password. */
export function describeDatabase(database: string): string {
  if (!isPostgresUrl(database) || !URL.canParse(database)) return database;
  const url = new URL(database);
  if (url.password) url.password = '***';
  return url.toString();
}

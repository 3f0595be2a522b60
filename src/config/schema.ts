import type { Config } from './config';

/**
 * The configuration schema: every key of `configuration.toml` with its type, default and meaning.
 * The loader, the environment names (`REGISTRY_<SECTION>_<KEY>`) and the example file follow this table,
 * so a new key, a `[section]` or a `[[section.list]]` is one more entry here (and a field in `Config`).
 */

interface Described {
  description: string;
}

/** A single value. File values must have the TOML type; environment and command-line values are text. */
export type KeySpec = Described &
  (
    /** `pattern`, when given, is what a value must match, and `expected` says so in the error. */
    | { type: 'string'; default: string; required?: boolean; pattern?: RegExp; expected?: string }
    /** Milliseconds: an integer number of seconds, or a string such as "500ms", "30s", "5m", "1h". */
    | { type: 'duration'; default: string }
    /** A list of strings; in the environment, comma-separated. */
    | { type: 'strings'; default: readonly string[] }
    | { type: 'integer'; default: number; min: number; max: number }
    | { type: 'boolean'; default: boolean }
    /** Bytes: an integer, or a size string such as "4MiB" (see parseSize). */
    | { type: 'size'; default: number; min: number }
    /**
     * Resolved against the working directory; `is` tells ensureStorageDirectories what to create
     * (`input`: a file that is only read, never created, and may be "" for none).
     */
    | { type: 'path'; default: string; is: 'directory' | 'file' | 'input' | 'database' }
    /** An http(s) URL stored without trailing slash, or "" for none. */
    | { type: 'url'; default: string; required?: boolean }
    | { type: 'enum'; default: string; values: readonly string[] }
    /** `host:port` or `[v6]:port` of a listener (port 0 picks a free one), or "" for what `empty` names. */
    | { type: 'listen'; default: string; empty: string }
  );

/** A `[section]` of keys. */
export interface SectionSpec extends Described {
  type: 'section';
  keys: Schema;
}

/** An array of tables, `[[section.key]]`; defaults to empty and is set only in the file. */
export interface TableListSpec extends Described {
  type: 'tables';
  keys: Schema;
}

export type SchemaEntry = KeySpec | SectionSpec | TableListSpec;
export type Schema = Readonly<Record<string, SchemaEntry>>;

/** The entry kinds that can describe a field of type T, so the schema cannot drift from `Config`. */
type EntryFor<T> = T extends readonly string[]
  ? Extract<KeySpec, { type: 'strings' }>
  : T extends readonly object[]
  ? TableListSpec
  : T extends object
    ? SectionSpec
    : T extends string
      ? Extract<KeySpec, { type: 'string' | 'path' | 'url' | 'enum' | 'listen' }>
      : T extends number
        ? Extract<KeySpec, { type: 'integer' | 'size' | 'duration' }>
        : Extract<KeySpec, { type: 'boolean' }>;

export type SchemaOf<T> = { [K in keyof T]-?: EntryFor<T[K]> };

const MiB = 1024 * 1024;

export const CONFIG_SCHEMA = {
  host: { type: 'string', default: '127.0.0.1', description: 'Address to listen on' },
  port: { type: 'integer', default: 5000, min: 0, max: 65535, description: 'TCP port to listen on (0 picks a free port)' },
  registry_storage: {
    type: 'path',
    is: 'directory',
    default: 'storage/registry',
    description: 'Directory for pushed blobs and manifests',
  },
  temporary_registry_storage: {
    type: 'path',
    is: 'directory',
    default: 'storage/_tmp',
    description: 'Directory for uploads in progress (renamed into registry_storage when finished, copied if on another filesystem); unused with the s3 backend, whose uploads are in the bucket',
  },
  max_upload_sessions: {
    type: 'integer',
    default: 1000,
    min: 0,
    max: 1_000_000,
    description: 'Upload sessions open at once, all users together (429 past it); 0: no limit',
  },
  proxy_storage: {
    type: 'path',
    is: 'directory',
    default: 'storage/proxy',
    description: 'Directory for content cached from upstream registries',
  },
  database: {
    type: 'path',
    is: 'database',
    default: 'storage/index.db',
    description: 'The index: a SQLite file, or a postgres:// URL (PostgreSQL, shared by replicas)',
  },
  accel_redirect: {
    type: 'string',
    default: '',
    // Plain path segments (no "." or ".."), so prefix + "registry/blobs/…" is a path nginx matches as
    // written; not under /v2/, where nginx's internal location would hide a repository's routes.
    pattern: /^$|^\/(?!v2\/)(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*\/)+$/,
    expected: 'a path prefix such as "/_blobs/" (starting and ending with "/", not under /v2/), or "" for off',
    description: 'Behind nginx: answer blob GETs with X-Accel-Redirect to <prefix>registry/… or <prefix>proxy/… and let nginx send the file; "": off',
  },
  min_free_space: {
    type: 'size',
    default: 100 * MiB,
    min: 0,
    description: 'Free space below which a store makes /readyz answer not ready (each storage directory and the database directory); 0: not checked',
  },
  max_manifest_size: {
    type: 'size',
    default: 4 * MiB,
    min: 1,
    description: 'Largest manifest accepted, in bytes or as a size such as "4MiB"',
  },
  public_url: {
    type: 'url',
    default: '',
    description: 'Public http(s) origin for absolute Location headers; empty means relative Locations',
  },
  client_idle_timeout: {
    type: 'duration',
    default: '5m',
    description: 'A connection with no traffic either way for this long is closed; 0: never',
  },
  log_level: {
    type: 'enum',
    default: 'info',
    values: ['debug', 'info', 'warn', 'error', 'silent'],
    description: 'One of debug, info, warn, error, silent',
  },
  log_format: {
    type: 'enum',
    default: 'auto',
    values: ['auto', 'json', 'pretty'],
    description: 'json (one object per line), pretty (for people), or auto: pretty when stderr is a terminal',
  },
  trust_proxy: {
    type: 'boolean',
    default: false,
    description: 'Believe X-Forwarded-Host, -For and -Proto: only behind a reverse proxy that sets them',
  },
  shutdown_timeout: {
    type: 'duration',
    default: '30s',
    description: 'After SIGTERM, how long in-flight pulls and uploads may take to finish before they are cut',
  },
  metrics: {
    type: 'section',
    description: 'Prometheus metrics at /metrics',
    keys: {
      enabled: { type: 'boolean', default: true, description: 'Serve /metrics at all' },
      listen: {
        type: 'listen',
        default: '',
        empty: 'the main listener',
        description: 'host:port of a listener of its own for /metrics (open, no auth); "": on the main listener',
      },
    },
  },
  proxy: {
    type: 'section',
    description: 'The pull-through cache under /v2/proxy/<upstream>/<name>',
    keys: {
      enabled: { type: 'boolean', default: true, description: 'Serve /v2/proxy/… at all' },
      allowed_upstreams: {
        type: 'strings',
        default: [],
        description: 'Hosts reachable as proxy/<host>/… besides the configured upstreams; empty: any host, over https',
      },
      tag_ttl: {
        type: 'duration',
        default: '5m',
        description: 'How long a cached tag is served before it is revalidated upstream (with a HEAD)',
      },
      not_found_ttl: {
        type: 'duration',
        default: '30s',
        description: "How long an upstream's 404 for a manifest is remembered and answered without asking again; 0: never",
      },
      timeout: { type: 'duration', default: '30s', description: "How long to wait for an upstream's response headers" },
      concurrency: { type: 'integer', default: 8, min: 1, max: 1000, description: 'Requests in flight to one upstream at a time' },
      max_concurrent_downloads: {
        type: 'integer',
        default: 16,
        min: 1,
        max: 10000,
        description: 'Blob transfers from upstreams (cold pulls) at a time, all upstreams together; more wait',
      },
      max_age: {
        type: 'duration',
        default: '0',
        description: 'Cached images not pulled for this long are evicted; 0: no limit',
      },
      max_size: {
        type: 'size',
        default: 0,
        min: 0,
        description: 'Cache size limit, least recently pulled images evicted first (pinned ones never); 0: no limit',
      },
      min_free: {
        type: 'string',
        default: '100MiB',
        pattern: /^\s*(\d+(\.\d+)?\s*%|\d+(\.\d+)?\s*([KMGT]i?B|B)?)\s*$/i,
        expected: 'a size such as "5GiB" or a share of the file system such as "10%"',
        description:
          "Free space kept on the cache's file system: before a fill, least recently used cached content (pins excepted) is evicted to keep it; a blob that still does not fit is streamed to the client without being kept. \"0\": off",
      },
      serve_deleted: {
        type: 'enum',
        default: 'pinned',
        values: ['pinned', 'all', 'none'],
        description: 'When a reachable upstream answers 404 for a tag we hold: serve it if pinned, always (all), or pass the 404 on (none)',
      },
      rate_limit_reserve: {
        type: 'integer',
        default: 10,
        min: 0,
        max: 1_000_000,
        description: "Below this many pulls left in an upstream's ratelimit-remaining, cached tags are served without revalidation until the window resets; 0: only on 429",
      },
      sync_concurrency: {
        type: 'integer',
        default: 2,
        min: 1,
        max: 64,
        description: 'Manifests and blobs [[proxy.sync]] fetches at a time, all entries together',
      },
      sync_bandwidth: {
        type: 'size',
        default: 0,
        min: 0,
        description: 'Bytes per second [[proxy.sync]] fetches from one upstream, averaged over its blobs; 0: no limit',
      },
      sync: {
        type: 'tables',
        description: 'Images fetched into the cache ahead of any pull, on a schedule (pre-warming)',
        keys: {
          image: { type: 'string', default: '', required: true, description: 'The cached repository, as pulled: proxy/docker.io/library/alpine' },
          tags: { type: 'strings', default: [], description: 'Tags to fetch' },
          tag_pattern: { type: 'string', default: '', description: "Or: a regular expression the upstream's tags must match" },
          max_tags: { type: 'integer', default: 20, min: 1, max: 1000, description: 'At most this many tags of tag_pattern per run (the last ones in sort order)' },
          platforms: { type: 'strings', default: [], description: 'os/architecture[/variant] of an index to fetch; empty: every platform' },
          interval: { type: 'duration', default: '6h', description: 'How often the server runs this entry; 0: only with the sync command' },
          pin: { type: 'boolean', default: false, description: 'Pin what the entry names, so that eviction never removes it ([[proxy.pin]])' },
        },
      },
      upstreams: {
        type: 'tables',
        description: 'Upstream registries with their own URL, aliases or credentials',
        keys: {
          host: { type: 'string', default: '', required: true, description: 'Name used in the path: proxy/<host>/<image>' },
          url: { type: 'url', default: '', description: 'Where the upstream is reached (or urls)' },
          urls: {
            type: 'strings',
            default: [],
            description: 'Several URLs of the same content (mirrors first), tried in order: a 404 or an error moves on to the next',
          },
          aliases: { type: 'strings', default: [], description: 'Other names for the same upstream' },
          username: { type: 'string', default: '', description: 'Upstream user (token auth or Basic)' },
          password: { type: 'string', default: '', description: 'Upstream password or access token' },
        },
      },
      pin: {
        type: 'tables',
        description: 'Cached content eviction never removes: one image, or the tags matching a pattern under a name prefix',
        keys: {
          image: { type: 'string', default: '', description: 'A name with :tag or @digest, e.g. "docker.io/library/alpine:3.20"' },
          prefix: { type: 'string', default: '', description: 'Or: a name prefix (whole components), e.g. "docker.io/library"' },
          tags: { type: 'string', default: '', description: 'With prefix: a regular expression the whole tag matches; "": every tag' },
        },
      },
    },
  },
  mirror: {
    type: 'tables',
    description: "Read-only endpoints whose root namespace is one upstream's (Docker Engine registry-mirrors)",
    keys: {
      upstream: { type: 'string', default: '', required: true, description: 'The upstream mirrored, as in proxy/<upstream>/' },
      listen: { type: 'string', default: '', description: 'host:port of a listener of its own' },
      host: { type: 'string', default: '', description: 'Or: requests with this Host (X-Forwarded-Host with trust_proxy)' },
    },
  },
  storage: {
    type: 'section',
    description: 'Where blobs and manifests are kept',
    keys: {
      backend: {
        type: 'enum',
        default: 'filesystem',
        values: ['filesystem', 's3'],
        description: 'filesystem (files under the storage directories) or s3 (objects in [storage.s3]\'s bucket)',
      },
      s3: {
        type: 'section',
        description: 'An S3-compatible bucket, with backend = "s3"',
        keys: {
          endpoint: { type: 'url', default: '', description: 'URL of the S3 service; "": AWS S3 in region' },
          region: { type: 'string', default: 'us-east-1', description: "The bucket's region" },
          bucket: {
            type: 'string',
            default: '',
            // S3's bucket naming rules (3 to 63 of lowercase letters, digits, dots and hyphens).
            pattern: /^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
            expected: 'a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens',
            description: 'The bucket (it must exist)',
          },
          prefix: {
            type: 'string',
            default: '',
            pattern: /^$|^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)+$/,
            expected: 'a key prefix such as "registry/" (path segments, ending with "/"), or ""',
            description: 'Key prefix of everything the registry stores in the bucket',
          },
          path_style: { type: 'boolean', default: false, description: 'Bucket in the URL path (most non-AWS services) rather than the host name' },
          access_key_id: { type: 'string', default: '', description: 'Access key; "": the AWS SDK\'s chain (AWS_ACCESS_KEY_ID, profiles, roles)' },
          secret_access_key: { type: 'string', default: '', description: 'Secret key; "" with access_key_id ""' },
          redirect: { type: 'boolean', default: false, description: 'Blob GETs answer 307 to a presigned URL of the bucket' },
          redirect_expiry: { type: 'duration', default: '5m', description: 'How long a presigned URL is valid' },
        },
      },
    },
  },
  gc: {
    type: 'section',
    description: 'Garbage collection, cache eviction and upload expiry',
    keys: {
      interval: { type: 'duration', default: '1h', description: 'How often the server collects; 0: only with the gc command' },
      grace: {
        type: 'duration',
        default: '1h',
        description: 'A blob written or linked this recently is kept even if nothing references it yet',
      },
      upload_ttl: { type: 'duration', default: '24h', description: 'Upload sessions untouched this long are dropped' },
      delete_untagged: {
        type: 'boolean',
        default: false,
        description: 'Also delete manifests no tag, index or live subject keeps',
      },
    },
  },
  github: {
    type: 'section',
    description: "GitHub's Packages REST API: ghcr.io packages in /v2/_catalog, and the token for pulls from ghcr.io",
    keys: {
      token: { type: 'string', default: '', description: 'Classic token with read:packages (also from GITHUB_TOKEN)' },
      api_url: { type: 'url', default: 'https://api.github.com', description: "GitHub's REST API root" },
      users: { type: 'strings', default: [], description: 'Users whose container packages are listed' },
      orgs: { type: 'strings', default: [], description: 'Organisations whose container packages are listed' },
      cache_ttl: { type: 'duration', default: '10m', description: 'How long a REST answer is reused (GitHub rate-limits)' },
    },
  },
  auth: {
    type: 'section',
    description: 'Access control: users from an htpasswd file, rules per repository prefix',
    keys: {
      htpasswd: {
        type: 'path',
        is: 'input',
        default: '',
        description: 'htpasswd file with bcrypt hashes (htpasswd -Bbn); "" means no auth: open to anyone',
      },
      anonymous: {
        type: 'enum',
        default: 'none',
        values: ['none', 'pull'],
        description: 'Requests without credentials: refused (none), or may pull where the rules allow (pull)',
      },
      realm: { type: 'string', default: 'registry', description: 'Realm of the Basic challenge; service name of tokens' },
      challenge: {
        type: 'enum',
        default: 'auto',
        values: ['auto', 'basic', 'bearer'],
        description: 'What a 401 asks for: Basic, or Bearer from /token; auto: Bearer when anonymous = "pull", else Basic',
      },
      token: { type: 'boolean', default: false, description: 'Older spelling of challenge = "bearer"' },
      token_ttl: { type: 'duration', default: '5m', description: 'How long an issued token is valid' },
      max_uploads: {
        type: 'integer',
        default: 32,
        min: 0,
        max: 100000,
        description: 'Upload sessions one user may have open at a time; 0: no limit',
      },
      groups: {
        type: 'tables',
        description: 'Named lists of users, usable in rules',
        keys: {
          name: { type: 'string', default: '', required: true, description: 'Group name' },
          members: { type: 'strings', default: [], description: 'User names' },
        },
      },
      rules: {
        type: 'tables',
        description: 'Who may pull, push and delete under a repository prefix; the longest matching prefix decides',
        keys: {
          prefix: { type: 'string', default: '', description: 'Repository prefix, whole components ("team/" or "team")' },
          pull: { type: 'strings', default: [], description: 'Users, groups, "*" (any logged-in user), "anonymous"' },
          push: { type: 'strings', default: [], description: 'Users, groups, "*"' },
          delete: { type: 'strings', default: [], description: 'Users, groups, "*"' },
        },
      },
    },
  },
  ui: {
    type: 'section',
    description: 'The web UI (pages and the JSON API under /api/), on the main listener',
    keys: {
      enabled: { type: 'boolean', default: true, description: 'Serve the pages and /api/ at all' },
      path: { type: 'string', default: '/ui/', description: 'Where the pages are served ("/" redirects browsers there)' },
    },
  },
} as const satisfies SchemaOf<Config>;

/** A key that the environment and the command line can set: not inside an array of tables. */
export interface SettableKey {
  /** Dotted TOML name, e.g. `port` or `proxy.timeout`; also the command-line override name. */
  name: string;
  path: readonly string[];
  /** `REGISTRY_<SECTION>_<KEY>`, upper case. */
  env: string;
  spec: KeySpec;
}

/** Every settable key of a schema, depth first. Throws if two keys would share an environment variable. */
export function settableKeys(schema: Schema): SettableKey[] {
  const keys = collectKeys(schema, []);
  // `proxy_storage` and `[proxy] storage` would both be REGISTRY_PROXY_STORAGE: refuse such a schema.
  const seen = new Set<string>();
  for (const { env, name } of keys) {
    if (seen.has(env)) throw new Error(`config schema: ${name} shares the environment variable ${env} with another key`);
    seen.add(env);
  }
  return keys;
}

function collectKeys(schema: Schema, path: readonly string[]): SettableKey[] {
  return Object.entries(schema).flatMap(([key, entry]): SettableKey[] => {
    const at = [...path, key];
    if (entry.type === 'section') return collectKeys(entry.keys, at);
    if (entry.type === 'tables') return [];
    return [{ name: at.join('.'), path: at, env: `REGISTRY_${at.join('_').toUpperCase()}`, spec: entry }];
  });
}

import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { isPostgresUrl, type Config } from './config';
import { CONFIG_SCHEMA, KeySpec, Schema, settableKeys } from './schema';
import { accessRuleProblem } from './access-rules';
import { mirrorProblem, parseListen } from './mirrors';
import { syncEntryProblem } from './sync-entries';
import { settleUpstreamUrls } from './upstream-urls';
import { pinProblem } from './pins';

/** Stops the start. The message is one line: the key, what is wrong, and where the value came from. */
export class ConfigError extends Error {
  constructor(detail: string) {
    super(`configuration error: ${detail}`);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export interface LoadConfigOptions {
  /** Where configuration.toml is looked for and what relative paths resolve against. */
  cwd: string;
  /** The caller passes process.env; only REGISTRY_* variables that name a key are read. */
  env: Env;
  /** From --config. Unlike the default configuration.toml, this file must exist. */
  configPath?: string;
  /** From command-line flags, by dotted TOML name: `{ port: '5001', host: '0.0.0.0' }`. */
  overrides?: Readonly<Record<string, string>>;
}

// One or more path segments of unreserved characters, between slashes.
const UI_PATH = /^\/(?:[A-Za-z0-9._~-]+\/)+$/;

export const DEFAULT_CONFIG_FILE = 'configuration.toml';

/** Defaults < file < environment < command line, validated and deeply frozen. */
export function loadConfig(options: LoadConfigOptions): Config {
  const file = readConfigFile(options.cwd, options.configPath);
  const values = resolveSchema(CONFIG_SCHEMA, {
    cwd: options.cwd,
    file,
    env: withEnvAliases(options.env),
    overrides: options.overrides ?? {},
  });
  // [[proxy.upstreams]], [[mirror]], [[auth.rules]], [[proxy.sync]] and [[proxy.pin]] are set in the file only, so that is where a problem with them comes from.
  const problem =
    settleUpstreamUrls((values as unknown as Config).proxy.upstreams) ??
    mirrorProblem(values as unknown as Config) ??
    accessRuleProblem(values as unknown as Config) ??
    syncEntryProblem(values as unknown as Config) ??
    pinProblem(values as unknown as Config);
  if (problem) throw new ConfigError(`${problem} (from ${file?.origin ?? 'defaults'})`);
  const storage = storageProblem(values as unknown as Config);
  if (storage) throw new ConfigError(storage);
  const uiPath = (values.ui as { path: string }).path;
  if (!UI_PATH.test(uiPath) || /^\/(?:v2|api|token|metrics|healthz|readyz|v1)\//.test(uiPath)) {
    throw new ConfigError(`ui.path: expected a path such as "/ui/" (leading and trailing slash, not under /v2/ or /api/), got ${JSON.stringify(uiPath)}`);
  }
  return deepFreeze(values) as unknown as Config;
}

/** What `[storage]` cannot be: settings of the s3 backend that do not go together, or with other keys. */
export function storageProblem(config: Pick<Config, 'storage' | 'accel_redirect'>): string | undefined {
  const { backend, s3 } = config.storage;
  if (backend !== 's3') return undefined;
  if (s3.bucket === '') return 'storage.s3.bucket: required with storage.backend = "s3", but not set';
  if ((s3.access_key_id === '') !== (s3.secret_access_key === '')) {
    return 'storage.s3: access_key_id and secret_access_key go together (or both "" for the AWS SDK\'s own credentials)';
  }
  if (config.accel_redirect !== '') {
    return 'accel_redirect: nginx sends files, and with storage.backend = "s3" there are none; use storage.s3.redirect instead';
  }
  if (s3.redirect && s3.redirect_expiry < 1000) return 'storage.s3.redirect_expiry: at least 1s with redirect = true';
  return undefined;
}

/**
 * Conventional variables honoured as if they were REGISTRY_* ones, when those are not set. The one place
 * where a variable outside REGISTRY_* is read: GITHUB_TOKEN is how GitHub's tools, CI and container
 * setups (Synology's Container Manager) hand out a token, so it counts as REGISTRY_GITHUB_TOKEN.
 */
const ENV_ALIASES: Readonly<Record<string, string>> = { REGISTRY_GITHUB_TOKEN: 'GITHUB_TOKEN' };

function withEnvAliases(env: Env): Env {
  const aliased: Record<string, string | undefined> = { ...env };
  for (const [name, alias] of Object.entries(ENV_ALIASES)) {
    if (aliased[name] === undefined && env[alias] !== undefined) aliased[name] = env[alias];
  }
  return aliased;
}

export interface ConfigSources {
  cwd: string;
  file?: { table: Record<string, unknown>; origin: string };
  env: Env;
  overrides: Readonly<Record<string, string>>;
}

/** Applies the layers to any schema; every layer present is validated, so a bad file value is never masked. */
export function resolveSchema(schema: Schema, sources: ConfigSources): Record<string, unknown> {
  const keys = settableKeys(schema);
  for (const name of Object.keys(sources.overrides)) {
    if (!keys.some((key) => key.name === name)) {
      throw new ConfigError(`${name}: unknown key (from --${name} on the command line)`);
    }
  }
  const values = resolveTable(schema, sources.file?.table ?? {}, '', sources.file?.origin ?? 'defaults', sources.cwd);
  // Unknown REGISTRY_* variables are never looked at: users of the reference registry may have some set.
  for (const key of keys) {
    const fromEnv = sources.env[key.env];
    if (fromEnv !== undefined) {
      setAt(values, key.path, coerce(key.spec, fromEnv, { name: key.name, origin: key.env, text: true, cwd: sources.cwd }));
    }
    const fromFlag = Object.hasOwn(sources.overrides, key.name) ? sources.overrides[key.name] : undefined;
    if (fromFlag !== undefined) {
      const origin = `--${key.name} on the command line`;
      setAt(values, key.path, coerce(key.spec, fromFlag, { name: key.name, origin, text: true, cwd: sources.cwd }));
    }
  }
  return values;
}

/**
 * Bytes from an integer or a size string: "512", "512B", "512KB" (1000), "4MiB" (1024), up to TB/TiB,
 * case-insensitive, decimals allowed when the result is whole. Null when it is not a size.
 */
export function parseSize(value: string | number): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = SIZE_UNITS.get((match?.[2] || 'b').toLowerCase());
  if (!match || unit === undefined) return null;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/** What `[proxy] min_free` asks to keep free: bytes ("5GiB"), or a share of the file system ("10%"). */
export type FreeSpace = { bytes: number } | { fraction: number };

/** "10%" or a size as parseSize reads it; null for anything else. */
export function parseFreeSpace(value: string): FreeSpace | null {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value);
  if (percent) {
    const fraction = Number(percent[1]) / 100;
    return fraction <= 1 ? { fraction } : null;
  }
  const bytes = parseSize(value);
  return bytes === null ? null : { bytes };
}

const SIZE_UNITS = new Map<string, number>([
  ['b', 1],
  ['kb', 1e3],
  ['mb', 1e6],
  ['gb', 1e9],
  ['tb', 1e12],
  ['kib', 2 ** 10],
  ['mib', 2 ** 20],
  ['gib', 2 ** 30],
  ['tib', 2 ** 40],
]);

/**
 * Creates every directory the configuration names (and each file's parent directory) and checks it is
 * writable, so a bad path stops the start instead of failing the first push.
 */
export function ensureStorageDirectories(config: Config): void {
  for (const key of settableKeys(CONFIG_SCHEMA)) {
    if (key.spec.type !== 'path' || key.spec.is === 'input') continue;
    const target = getAt(config, key.path) as string;
    if (key.spec.is === 'database' && isPostgresUrl(target)) continue;
    const directory = key.spec.is === 'directory' ? target : path.dirname(target);
    try {
      fs.mkdirSync(directory, { recursive: true });
    } catch (err) {
      throw new ConfigError(`${key.name}: cannot create directory "${directory}": ${systemReason(err)}`);
    }
    try {
      fs.accessSync(directory, fs.constants.W_OK);
    } catch (err) {
      throw new ConfigError(`${key.name}: directory "${directory}" is not writable: ${systemReason(err)}`);
    }
    if (key.spec.is !== 'directory' && fs.statSync(target, { throwIfNoEntry: false })?.isDirectory()) {
      throw new ConfigError(`${key.name}: "${target}" is a directory, expected a file`);
    }
  }
}

/** Milliseconds from a number of seconds or a string such as "500ms", "30s", "5m", "1h", "1d"; null if not a duration. */
export function parseDuration(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!match) return null;
  const unit = DURATION_UNITS[(match[2] ?? 's').toLowerCase()];
  return Math.round(Number(match[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function readConfigFile(cwd: string, configPath: string | undefined): ConfigSources['file'] {
  const file = path.resolve(cwd, configPath ?? DEFAULT_CONFIG_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    // Only the default file may be absent: every key has a default.
    if (configPath === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const flag = configPath === undefined ? '' : ' (from --config)';
    throw new ConfigError(`cannot read configuration file "${file}": ${systemReason(err)}${flag}`);
  }
  try {
    return { table: parseToml(text), origin: file };
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // smol-toml's message continues with a multi-line code excerpt; keep the first line only.
    const reason = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
    throw new ConfigError(`${file}: invalid TOML at line ${err.line}, column ${err.column}: ${reason}`);
  }
}

/** File values and defaults for one table; an unknown key in the file is an error, not ignored. */
function resolveTable(
  schema: Schema,
  table: Record<string, unknown>,
  at: string,
  origin: string,
  cwd: string,
): Record<string, unknown> {
  const nameOf = (key: string) => (at ? `${at}.${key}` : key);
  for (const key of Object.keys(table)) {
    if (!Object.hasOwn(schema, key)) throw new ConfigError(`${nameOf(key)}: unknown key (from ${origin})`);
  }
  const values: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(schema)) {
    const name = nameOf(key);
    const value = table[key];
    if (entry.type === 'section') {
      if (value !== undefined && !isTable(value)) throw mismatch(name, `a table ([${name}])`, value, origin);
      values[key] = resolveTable(entry.keys, (value ?? {}) as Record<string, unknown>, name, origin, cwd);
    } else if (entry.type === 'tables') {
      if (value !== undefined && !(Array.isArray(value) && value.every(isTable))) {
        throw mismatch(name, `an array of tables ([[${name}]])`, value, origin);
      }
      const items = (value ?? []) as Record<string, unknown>[];
      values[key] = items.map((item, index) => resolveTable(entry.keys, item, `${name}[${index}]`, origin, cwd));
    } else if (value === undefined) {
      if ('required' in entry && entry.required) throw new ConfigError(`${name}: required, but not set (in ${origin})`);
      values[key] = coerce(entry, entry.default, { name, origin: 'defaults', text: false, cwd });
    } else {
      values[key] = coerce(entry, value, { name, origin, text: false, cwd });
    }
  }
  return values;
}

interface ValueSource {
  name: string;
  origin: string;
  /** Environment and command-line values are text to parse; file values must already have the right type. */
  text: boolean;
  cwd: string;
}

function coerce(spec: KeySpec, value: unknown, source: ValueSource): unknown {
  const fail = (expected: string) => mismatch(source.name, expected, value, source.origin);
  switch (spec.type) {
    case 'string':
      if (typeof value !== 'string') throw fail('a string');
      if (spec.pattern && !spec.pattern.test(value)) throw fail(spec.expected ?? `a string matching ${spec.pattern}`);
      return value;
    case 'integer': {
      const number = source.text && /^-?\d+$/.test(String(value)) ? Number(value) : value;
      if (typeof number !== 'number' || !Number.isInteger(number) || number < spec.min || number > spec.max) {
        throw fail(`an integer from ${spec.min} to ${spec.max}`);
      }
      return number;
    }
    case 'boolean': {
      const boolean = source.text ? BOOLEAN_TEXT.get(String(value).toLowerCase()) : value;
      if (typeof boolean !== 'boolean') throw fail(source.text ? 'true, false, 1 or 0' : 'true or false');
      return boolean;
    }
    case 'size': {
      const bytes = typeof value === 'string' || typeof value === 'number' ? parseSize(value) : null;
      if (bytes === null || bytes < spec.min) throw fail(`a size of at least ${spec.min} bytes, such as 4194304 or "4MiB"`);
      return bytes;
    }
    case 'path':
      if (spec.is === 'input' && value === '') return value;
      if (spec.is === 'database' && typeof value === 'string' && isPostgresUrl(value)) {
        if (!URL.canParse(value)) throw fail('a SQLite file, or a postgres://user:password@host:port/database URL');
        return value;
      }
      if (typeof value !== 'string' || value === '' || value.includes('\0')) throw fail('a non-empty path');
      return path.resolve(source.cwd, value);
    case 'url':
      if (typeof value !== 'string') throw fail('an http or https URL');
      if (value === '') return value;
      if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
        throw fail('an http or https URL, or "" for none');
      }
      return value.replace(/\/+$/, '');
    case 'duration': {
      const milliseconds = typeof value === 'string' || typeof value === 'number' ? parseDuration(value) : null;
      if (milliseconds === null) throw fail('a duration such as 30, "30s", "5m", "1h" or "500ms"');
      return milliseconds;
    }
    case 'strings': {
      const list = source.text && typeof value === 'string' ? value.split(',').map((item) => item.trim()).filter(Boolean) : value;
      if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) throw fail('a list of strings');
      return [...list];
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) throw fail(`one of ${spec.values.join(', ')}`);
      return value;
    case 'listen':
      if (typeof value !== 'string' || (value !== '' && !parseListen(value))) {
        throw fail(`host:port such as "127.0.0.1:5001", or "" for ${spec.empty}`);
      }
      return value;
  }
}

const BOOLEAN_TEXT = new Map([
  ['true', true],
  ['1', true],
  ['false', false],
  ['0', false],
]);

function mismatch(name: string, expected: string, value: unknown, origin: string): ConfigError {
  return new ConfigError(`${name}: expected ${expected}, got ${describe(value)} (from ${origin})`);
}

/** A value as the user wrote it, always on one line. */
function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (isTable(value)) return 'a table';
  return String(value);
}

function isTable(value: unknown): value is Record<string, unknown> {
  // smol-toml tables have a null prototype; dates are objects too.
  return Object.prototype.toString.call(value) === '[object Object]';
}

/** "ENOTDIR: not a directory" from Node's "ENOTDIR: not a directory, mkdir '/x'" (the path is said already). */
function systemReason(err: unknown): string {
  // Not `instanceof Error`: errors from Node's fs may come from another realm (as under jest).
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message.split(', ')[0] : String(err);
}

function setAt(target: Record<string, unknown>, keyPath: readonly string[], value: unknown): void {
  const parent = keyPath.slice(0, -1).reduce((table, key) => table[key] as Record<string, unknown>, target);
  parent[keyPath[keyPath.length - 1]] = value;
}

function getAt(source: object, keyPath: readonly string[]): unknown {
  return keyPath.reduce<unknown>((table, key) => (table as Record<string, unknown>)[key], source);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

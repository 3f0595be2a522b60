import pino, { DestinationStream } from 'pino';
import pinoPretty from 'pino-pretty';
import { Writable } from 'node:stream';
import { Config } from './config/config';

export type LogLevel = Config['log_level'];
export type LogFormat = Config['log_format'];

/** What the code logs through: a message and structured fields (pino underneath). */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Whether a line at `level` would be written: skip building fields nobody reads (the request log). */
  isLevelEnabled(level: 'debug' | 'info' | 'warn' | 'error'): boolean;
}

export interface LoggerOptions {
  /** `json` by default; `auto` is `pretty` when stderr is a terminal. */
  format?: LogFormat;
  /** Where lines go: stderr by default; a function receives each line (tests). */
  destination?: DestinationStream | ((line: string) => void);
}

/**
 * Field names whose values never reach a log, wherever a caller puts them: credentials of clients,
 * of upstreams and of GitHub. Censored by pino before the line is written.
 */
const SECRET_FIELDS = ['authorization', 'password', 'token', 'cookie', 'credentials'];
const REDACT_PATHS = SECRET_FIELDS.flatMap((name) => [name, `*.${name}`]);

/** One JSON object per line on stderr (`{"level":"info","time":…,"msg":…,…fields}`), or pretty lines for people. */
export function createLogger(level: LogLevel, options: LoggerOptions = {}): Logger {
  const pretty = options.format === 'pretty' || (options.format === 'auto' && process.stderr.isTTY === true);
  const write = typeof options.destination === 'function' ? options.destination : undefined;
  const custom = typeof options.destination === 'object' ? options.destination : undefined;
  const stream: DestinationStream = pretty
    ? pinoPretty({
        destination: write ? new Writable({ write: (chunk: Buffer, _encoding, done) => (write(chunk.toString()), done()) }) : 2,
        colorize: !write && !custom && process.stderr.isTTY === true,
        translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
        ignore: 'pid,hostname',
        singleLine: true,
        sync: true,
      })
    : write
      ? { write }
      : (custom ?? pino.destination({ dest: 2, sync: false }));
  const logger = pino(
    {
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names, not numbers: readable in `journalctl` and `docker logs` without a pino decoder.
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    stream,
  );
  const at =
    (name: 'debug' | 'info' | 'warn' | 'error') =>
    (message: string, fields: Record<string, unknown> = {}) =>
      logger[name](fields, message);
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    isLevelEnabled: (name) => logger.isLevelEnabled(name),
  };
}

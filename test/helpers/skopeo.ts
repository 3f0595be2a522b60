/**
 * Drives the real skopeo against test registries. Test registries are plain http on 127.0.0.1,
 * so every docker:// reference gets its `--*-tls-verify=false`.
 *
 * skopeo runs isolated from the machine's container configuration: its own signature policy
 * (no /etc/containers/policy.json needed), an empty registries.conf and registries.d, and no
 * stored credentials (a developer's ~/.docker/config.json would otherwise log in to 127.0.0.1
 * and turn anonymous tests into authenticated ones). Credentials go in explicitly, e.g.
 * `skopeoCopy(src, dest, ['--dest-creds', 'user:pass'])`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs, { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const SKOPEO_TIMEOUT_MS = 120_000;

export interface SkopeoOptions {
  /** Kill skopeo after this long. Defaults to SKOPEO_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Appended after the subcommand's own flags, before the references (e.g. `--creds`, `--override-arch`). */
  extraArgs?: string[];
}

export interface SkopeoInspectOptions extends SkopeoOptions {
  /** The manifest (or with `config`, the config) exactly as served, unparsed. */
  raw?: boolean;
  /** The image configuration instead of skopeo's summary. */
  config?: boolean;
}

/** What `skopeo inspect` prints without --raw or --config (the fields tests use). */
export interface SkopeoInspectOutput {
  Name?: string;
  Digest: string;
  RepoTags: string[];
  Created?: string;
  Architecture: string;
  Os: string;
  Variant?: string;
  Layers: string[];
  LayersData?: { MIMEType: string; Digest: string; Size: number; Annotations: Record<string, string> | null }[];
  Labels?: Record<string, string> | null;
  Env?: string[];
}

export interface SkopeoResult {
  stdout: string;
  stderr: string;
}

interface Sandbox {
  /** Global flags; skopeo wants them before the subcommand. */
  globalArgs: string[];
  env: NodeJS.ProcessEnv;
}

let sandbox: Sandbox | undefined;

// The configuration never changes, so every test process shares one directory per user, written
// atomically (jest runs test files in parallel workers) and never cleaned up: nothing leaks per run.
function getSandbox(): Sandbox {
  if (sandbox) return sandbox;
  const dir = path.join(os.tmpdir(), `skopeo-test-config-${os.userInfo().uid}`);
  const registriesD = path.join(dir, 'registries.d');
  const tmp = path.join(dir, 'tmp');
  mkdirSync(registriesD, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  const policy = writeAtomically(dir, 'policy.json', JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const registriesConf = writeAtomically(dir, 'registries.conf', 'unqualified-search-registries = []\n');
  sandbox = {
    globalArgs: ['--policy', policy, '--registries.d', registriesD, '--tmpdir', tmp],
    env: {
      ...process.env,
      CONTAINERS_REGISTRIES_CONF: registriesConf,
      REGISTRY_AUTH_FILE: path.join(dir, 'auth.json'),
      DOCKER_CONFIG: path.join(dir, 'docker'),
      XDG_CONFIG_HOME: path.join(dir, 'config'),
    },
  };
  return sandbox;
}

function writeAtomically(dir: string, name: string, content: string): string {
  const target = path.join(dir, name);
  const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(temp, content);
  renameSync(temp, target);
  return target;
}

/** Runs `skopeo <global flags> <args>`; rejects with the command line, stdout and stderr on failure or timeout. */
export async function skopeo(args: string[], options: { timeoutMs?: number } = {}): Promise<SkopeoResult> {
  const { globalArgs, env } = getSandbox();
  const timeout = options.timeoutMs ?? SKOPEO_TIMEOUT_MS;
  try {
    const { stdout, stderr } = await execFileAsync('skopeo', [...globalArgs, ...args], {
      env,
      timeout,
      killSignal: 'SIGKILL',
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    });
    return { stdout, stderr };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string; killed?: boolean; code?: unknown };
    const how = failure.killed ? `timed out after ${timeout} ms` : `failed (exit ${String(failure.code)})`;
    throw new Error(
      `skopeo ${args.join(' ')} ${how}\n--- stdout\n${failure.stdout ?? ''}\n--- stderr\n${failure.stderr ?? failure.message}`,
    );
  }
}

/** `skopeo copy src dest`; docker:// sides get `--src-tls-verify=false` / `--dest-tls-verify=false`. */
export function skopeoCopy(
  src: string,
  dest: string,
  extraArgs: string[] = [],
  options: { timeoutMs?: number } = {},
): Promise<SkopeoResult> {
  return skopeo(
    [
      'copy',
      ...(isDocker(src) ? ['--src-tls-verify=false'] : []),
      ...(isDocker(dest) ? ['--dest-tls-verify=false'] : []),
      ...extraArgs,
      src,
      dest,
    ],
    options,
  );
}

export function skopeoInspect(reference: string, options: SkopeoInspectOptions & { raw: true }): Promise<string>;
export function skopeoInspect(
  reference: string,
  options: SkopeoInspectOptions & { config: true; raw?: false },
): Promise<Record<string, unknown>>;
export function skopeoInspect(reference: string, options?: SkopeoInspectOptions): Promise<SkopeoInspectOutput>;
export async function skopeoInspect(
  reference: string,
  options: SkopeoInspectOptions = {},
): Promise<string | SkopeoInspectOutput | Record<string, unknown>> {
  const { stdout } = await skopeo(
    [
      'inspect',
      ...tlsArgs(reference),
      ...(options.raw ? ['--raw'] : []),
      ...(options.config ? ['--config'] : []),
      ...(options.extraArgs ?? []),
      reference,
    ],
    options,
  );
  return options.raw ? stdout : (JSON.parse(stdout) as SkopeoInspectOutput | Record<string, unknown>);
}

/** The tags `skopeo list-tags` reports for a repository (`docker://host/name`, no tag). */
export async function skopeoListTags(reference: string, options: SkopeoOptions = {}): Promise<string[]> {
  const { stdout } = await skopeo(['list-tags', ...tlsArgs(reference), ...(options.extraArgs ?? []), reference], options);
  return (JSON.parse(stdout) as { Tags: string[] | null }).Tags ?? [];
}

/** `skopeo delete`: deletes the manifest the reference resolves to (by tag, skopeo resolves then deletes by digest). */
export async function skopeoDelete(reference: string, options: SkopeoOptions = {}): Promise<void> {
  await skopeo(['delete', ...tlsArgs(reference), ...(options.extraArgs ?? []), reference], options);
}

function isDocker(reference: string): boolean {
  return reference.startsWith('docker://');
}

function tlsArgs(reference: string): string[] {
  return isDocker(reference) ? ['--tls-verify=false'] : [];
}

/** Every file skopeo's dir: transport wrote, by name, so two copies can be compared byte for byte. */
export function readDirTransport(dir: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const name of fs.readdirSync(dir).sort()) files[name] = fs.readFileSync(path.join(dir, name));
  return files;
}

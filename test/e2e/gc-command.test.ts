import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MediaType } from '../../src/oci/media-types';
import { OCI_CONFIG, OCI_LAYER, RegistryClient } from '../helpers/registry-client';
import { MAIN, ServerProcess, startServerProcess } from '../helpers/server-process';

const execFileAsync = promisify(execFile);

describe('the gc and verify commands, run beside a running server', () => {
  let work: string;
  let server: ServerProcess;
  let client: RegistryClient;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'gc-command-'));
    server = await startServerProcess(work, ['--gc.interval', '0']);
    client = new RegistryClient({ url: server.url });
  });
  afterAll(async () => {
    await server?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const command = (...args: string[]) => execFileAsync(process.execPath, [MAIN, ...args, '--gc.grace', '0', '--log_level', 'silent'], { cwd: work });

  test('gc --dry-run reports what gc then deletes, while the server keeps serving', async () => {
    const kept = await client.pushBlob('cli/app', randomBytes(1000), OCI_LAYER);
    const doomed = await client.pushBlob('cli/app', randomBytes(2048), OCI_LAYER);
    const config = await client.pushBlob('cli/app', Buffer.from('{}'), OCI_CONFIG);
    await client.putManifest('cli/app', 'v1', { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [kept] });
    expect((await client.fetch(`/v2/cli/app/blobs/${doomed.digest}`, { method: 'DELETE' })).status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 5));

    const dryRun = await command('gc', '--dry-run');
    expect(dryRun.stdout).toContain(`would delete hosted blob ${doomed.digest} (2.0 KiB)`);
    expect(dryRun.stdout).toMatch(/^dry run: 0 manifests, 1 blobs, 2\.0 KiB to free/m);
    const file = path.join(work, 'storage', 'registry', 'blobs', 'sha256', doomed.digest.slice(7, 9), doomed.digest.slice(7));
    expect(fs.existsSync(file)).toBe(true);

    const run = await command('gc');
    expect(run.stdout).toContain(`deleted hosted blob ${doomed.digest}`);
    expect(fs.existsSync(file)).toBe(false);
    expect((await client.getBlob('cli/app', kept.digest)).response.status).toBe(200);
    expect((await client.fetch('/v2/cli/app/manifests/v1', { method: 'HEAD' })).status).toBe(200);

    const verify = await command('verify');
    expect(verify.stdout.trim().split('\n').pop()).toBe('0 missing, 0 corrupt, 0 unindexed');
  });
});

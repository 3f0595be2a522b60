import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { createPodman, Podman } from '../helpers/podman';
import { skopeoCopy, skopeoDelete, skopeoInspect, skopeoListTags } from '../helpers/skopeo';
import { TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

const USERS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' };

// alice administers; bob pushes under team/; carol only pulls; proxy/ is pull-only for everyone logged in.
function configuration(upstream: UpstreamRegistry, extra = ''): string {
  return `
[proxy]
timeout = "5s"

[[proxy.upstreams]]
host = "upstream.test"
url = "${upstream.url}"

[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"
${extra}

[[auth.rules]]
prefix = "proxy/"
pull = ["*"]

[[auth.rules]]
prefix = "team/"
pull = ["*", "anonymous"]
push = ["bob", "alice"]
delete = ["alice"]

[[auth.rules]]
prefix = ""
pull = ["*"]
push = ["alice"]
delete = ["alice"]
`;
}

describe('skopeo and podman against a registry with Basic auth and rules', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let podman: Podman;
  let work: string;
  let image: BuiltImage;
  const docker = (name: string) => `docker://${app.host}/${name}`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'auth-e2e-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createAuthApp(USERS, configuration(upstream));
    podman = createPodman();
    image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 50_000, seed: 'auth' });
  });
  afterAll(async () => {
    await podman?.cleanup();
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('skopeo --dest-creds pushes for a user with the push right (credentials sent after the /v2/ challenge)', async () => {
    await skopeoCopy(image.reference, docker('team/app:v1'), ['--dest-creds', 'bob:bob-pw']);
    expect((await skopeoInspect(docker('team/app:v1'), { extraArgs: ['--creds', 'carol:carol-pw'] })).Digest).toBe(image.manifestDigest);
  });

  test('skopeo without credentials pulls where anonymous may, and cannot push', async () => {
    expect((await skopeoInspect(docker('team/app:v1'))).Digest).toBe(image.manifestDigest);
    expect(await skopeoListTags(docker('team/app'))).toEqual(['v1']);
    await expect(skopeoCopy(image.reference, docker('team/anonymous:v1'))).rejects.toThrow(/authentication required|unauthorized/i);
    // The "" rule does not list anonymous.
    await skopeoCopy(image.reference, docker('tools/app:v1'), ['--dest-creds', 'alice:alice-pw']);
    await expect(skopeoInspect(docker('tools/app:v1'))).rejects.toThrow(/authentication required|unauthorized/i);
  });

  test('a wrong password fails; a pull-only user can neither push nor delete', async () => {
    await expect(skopeoInspect(docker('team/app:v1'), { extraArgs: ['--creds', 'bob:wrong'] })).rejects.toThrow(
      /authentication required|unauthorized|invalid credentials/i,
    );
    await expect(skopeoCopy(image.reference, docker('team/carol:v1'), ['--dest-creds', 'carol:carol-pw'])).rejects.toThrow(
      /denied/i,
    );
    await expect(skopeoDelete(docker('team/app:v1'), { extraArgs: ['--creds', 'carol:carol-pw'] })).rejects.toThrow(/denied/i);
  });

  test('delete needs the delete right: bob may push but not delete, alice may', async () => {
    await skopeoCopy(image.reference, docker('team/doomed:v1'), ['--dest-creds', 'bob:bob-pw']);
    await expect(skopeoDelete(docker('team/doomed:v1'), { extraArgs: ['--creds', 'bob:bob-pw'] })).rejects.toThrow(/denied/i);
    await skopeoDelete(docker('team/doomed:v1'), { extraArgs: ['--creds', 'alice:alice-pw'] });
    await expect(skopeoInspect(docker('team/doomed:v1'), { extraArgs: ['--creds', 'alice:alice-pw'] })).rejects.toThrow(
      /manifest unknown/i,
    );
  });

  test('the proxy/ namespace: any logged-in user pulls through the cache; anonymous and pushes are refused', async () => {
    await skopeoCopy(image.reference, `docker://${upstream.host}/library/cached:v1`);
    const proxied = docker('proxy/upstream.test/library/cached:v1');
    expect((await skopeoInspect(proxied, { extraArgs: ['--creds', 'carol:carol-pw'] })).Digest).toBe(image.manifestDigest);
    await expect(skopeoInspect(proxied)).rejects.toThrow(/authentication required|unauthorized/i);
    await expect(skopeoCopy(image.reference, proxied, ['--dest-creds', 'alice:alice-pw'])).rejects.toThrow(/denied/i);
  });

  test('podman login, push, pull; a pull-only login cannot push', async () => {
    await podman.run(['login', '--tls-verify=false', '-u', 'bob', '-p', 'bob-pw', app.host]);
    await podman.run(['pull', `${app.host}/team/app:v1`]);
    const reference = `${app.host}/team/podman:v1`;
    await podman.run(['tag', `${app.host}/team/app:v1`, reference]);
    await podman.run(['push', reference]);
    expect((await skopeoInspect(docker('team/podman:v1'))).Digest).toMatch(/^sha256:/);
    await podman.run(['logout', app.host]);

    await expect(podman.run(['login', '--tls-verify=false', '-u', 'carol', '-p', 'wrong', app.host])).rejects.toThrow(
      /unauthorized|invalid/i,
    );
    await podman.run(['login', '--tls-verify=false', '-u', 'carol', '-p', 'carol-pw', app.host]);
    await podman.run(['tag', `${app.host}/team/app:v1`, `${app.host}/team/carol:v1`]);
    await expect(podman.run(['push', `${app.host}/team/carol:v1`])).rejects.toThrow(/denied/i);
    await podman.run(['rmi', '--all', '--force']);
    await podman.run(['pull', reference]);
    await podman.run(['logout', app.host]);
  });
});

describe('podman and skopeo with the built-in token service', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let podman: Podman;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'auth-token-e2e-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    app = await createAuthApp(USERS, configuration(upstream, 'token = true'));
    podman = createPodman();
  });
  afterAll(async () => {
    await podman?.cleanup();
    await app?.close();
    await upstream?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('Bearer login, push and pull; a pull-only user is denied a push', async () => {
    const image = await buildImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2, layerSize: 20_000, seed: 'token' });
    await skopeoCopy(image.reference, `docker://${app.host}/team/tokened:v1`, ['--dest-creds', 'bob:bob-pw']);
    expect((await skopeoInspect(`docker://${app.host}/team/tokened:v1`)).Digest).toBe(image.manifestDigest);
    await expect(
      skopeoCopy(image.reference, `docker://${app.host}/team/refused:v1`, ['--dest-creds', 'carol:carol-pw']),
    ).rejects.toThrow(/denied|unauthorized|authentication required/i);

    await podman.run(['login', '--tls-verify=false', '-u', 'alice', '-p', 'alice-pw', app.host]);
    await podman.run(['pull', `${app.host}/team/tokened:v1`]);
    await podman.run(['tag', `${app.host}/team/tokened:v1`, `${app.host}/tools/podman:v1`]);
    await podman.run(['push', `${app.host}/tools/podman:v1`]);
    await podman.run(['rmi', '--all', '--force']);
    await podman.run(['pull', `${app.host}/tools/podman:v1`]);
  });
});

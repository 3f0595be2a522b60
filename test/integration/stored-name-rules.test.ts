import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/log';
import { addUsers, basic, EMPTY_BASIC, HTPASSWD_FILE } from '../helpers/auth';
import { buildImageLayout, BuiltImage } from '../helpers/oci-image';
import { expectErrorCode, expectStatus } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * Rules apply to the name content is stored under, whatever spelling reaches it (issue 13, §2). A rule gives
 * proxy/docker.io/library/alpine to alice only; anonymous may pull the rest. Docker Hub is a local
 * docker-registry holding library/alpine, so a request wrongly let through would succeed.
 */

const ALICE = basic('alice:alice-pw');
const BOB = basic('bob:bob-pw');
const STORED = 'proxy/docker.io/library/alpine';

interface Spelling {
  on: 'main' | 'mirror';
  name: string;
  /** containerd's ?ns= */
  ns?: string;
}

const SPELLINGS: Spelling[] = [
  { on: 'main', name: STORED },
  { on: 'main', name: 'proxy/index.docker.io/library/alpine' },
  { on: 'main', name: 'proxy/registry-1.docker.io/library/alpine' },
  { on: 'main', name: 'proxy/docker.io/alpine' },
  { on: 'main', name: 'proxy/index.docker.io/alpine' },
  { on: 'main', name: 'proxy/hub/alpine' },
  { on: 'main', name: 'proxy/hub/library/alpine' },
  { on: 'main', name: 'library/alpine', ns: 'docker.io' },
  { on: 'main', name: 'alpine', ns: 'registry-1.docker.io' },
  { on: 'mirror', name: 'alpine' },
  { on: 'mirror', name: 'library/alpine' },
  { on: 'mirror', name: 'proxy/index.docker.io/alpine' },
];

/** Paths the router reads as a spelling of the same name: percent-encoding, case, a trailing slash. */
const PATH_TRICKS: Array<{ on: 'main' | 'mirror'; path: string }> = [
  { on: 'main', path: '/v2/proxy%2Findex.docker.io%2Flibrary%2Falpine/manifests/3' },
  { on: 'main', path: '/v2/proxy/docker.io/%61lpine/manifests/3' },
  { on: 'main', path: '/v2/proxy/docker.io/alpine/manifests/3/' },
  { on: 'main', path: '/v2/proxy/docker.io/alpine/TAGS/LIST' },
  { on: 'main', path: '/v2/library/alpine/Manifests/3?ns=docker.io' },
  { on: 'mirror', path: '/v2/alpine/MANIFESTS/3' },
  { on: 'mirror', path: '/v2/alpine/tags/list/' },
  { on: 'mirror', path: '/v2/library%2Falpine/manifests/3' },
];

const label = (spelling: Spelling) => `${spelling.on} ${spelling.name}${spelling.ns ? `?ns=${spelling.ns}` : ''}`;

function requestPath(spelling: Spelling, resource: string): string {
  return `/v2/${spelling.name}/${resource}${spelling.ns ? `?ns=${spelling.ns}` : ''}`;
}

interface TokenBody {
  token: string;
  access: Array<{ type: string; name: string; actions: string[] }>;
}

describe.each([
  ['Basic auth', false],
  ['token auth', true],
])('rules on the stored name, with %s', (_mode, tokenMode) => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let storageDir: string;
  let alpine: BuiltImage;
  let busybox: BuiltImage;
  const logLines: string[] = [];

  const base = (on: 'main' | 'mirror') => (on === 'main' ? app.url : app.mirrorUrl(0));
  const get = (on: 'main' | 'mirror', requestPathname: string, headers: Record<string, string> = {}) =>
    fetch(`${base(on)}${requestPathname}`, { headers });

  /** A token from the endpoint's /token for one scope, and the access it grants (the JWT's claims). */
  async function token(on: 'main' | 'mirror', scope: string, headers: Record<string, string> = {}): Promise<TokenBody> {
    const response = await get(on, `/token?service=registry&scope=${encodeURIComponent(scope)}`, headers);
    await expectStatus(response, 200);
    const { token: jwt } = (await response.json()) as { token: string };
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8')) as { access: TokenBody['access'] };
    return { token: jwt, access: claims.access };
  }
  const bearer = (jwt: string) => ({ Authorization: `Bearer ${jwt}` });

  beforeAll(async () => {
    storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stored-name-rules-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    alpine = await buildImageLayout(path.join(storageDir, 'alpine'), { tag: '3', layers: 1, layerSize: 1024, seed: 'rules-alpine' });
    busybox = await buildImageLayout(path.join(storageDir, 'busybox'), { tag: '1', layers: 1, layerSize: 1024, seed: 'rules-busybox' });
    await skopeoCopy(alpine.reference, `docker://${upstream.host}/library/alpine:3`);
    await skopeoCopy(busybox.reference, `docker://${upstream.host}/library/busybox:1`);

    addUsers(path.join(storageDir, HTPASSWD_FILE), { alice: 'alice-pw', bob: 'bob-pw' });
    const configuration = `
[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"
token = ${tokenMode}

[[auth.rules]]
prefix = "${STORED}"
pull = ["alice"]

[[proxy.upstreams]]
host = "docker.io"
url = "${upstream.url}"
aliases = ["hub"]

[[mirror]]
upstream = "docker.io"
listen = "127.0.0.1:0"
`;
    const log = createLogger('info', { destination: (line) => logLines.push(line) });
    app = await createTestApp({ storageDir, configuration, log });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    if (storageDir) fs.rmSync(storageDir, { recursive: true, force: true });
  });

  test('the control: anonymous pulls another image of the same upstream', async () => {
    const response = await get('main', '/v2/proxy/docker.io/busybox/manifests/1');
    await expectStatus(response, 200);
    expect(response.headers.get('Docker-Content-Digest')).toBe(busybox.manifestDigest);
  });

  test('anonymous: every spelling is refused like the stored name (401), and the upstream is never asked', async () => {
    const seeded = (await upstream.accessLog()).length; // the pushes of the images
    const statuses: string[] = [];
    const expected: string[] = [];
    for (const spelling of SPELLINGS) {
      for (const resource of ['manifests/3', 'tags/list', `blobs/${alpine.layerDigests[0]}`]) {
        for (const headers of tokenMode ? [{}] : [{}, EMPTY_BASIC]) {
          const refused = await get(spelling.on, requestPath(spelling, resource), headers);
          statuses.push(`${label(spelling)} ${resource}: ${refused.status}`);
          expected.push(`${label(spelling)} ${resource}: 401`);
          if (refused.status === 401) await expectErrorCode(refused, 401, 'UNAUTHORIZED');
        }
      }
    }
    for (const trick of PATH_TRICKS) {
      const refused = await get(trick.on, trick.path, tokenMode ? {} : EMPTY_BASIC);
      statuses.push(`${trick.on} ${trick.path}: ${refused.status}`);
      expected.push(`${trick.on} ${trick.path}: 401`);
      if (refused.status === 401) await expectErrorCode(refused, 401, 'UNAUTHORIZED');
    }
    expect(statuses).toEqual(expected);
    const asked = (await upstream.accessLog()).slice(seeded).filter((entry) => entry.uri.includes('alpine'));
    expect(asked).toEqual([]);
  });

  test('a logged-in user the rule does not name: 403 DENIED for every spelling', async () => {
    const statuses: string[] = [];
    for (const spelling of SPELLINGS) {
      const refused = await get(spelling.on, requestPath(spelling, 'manifests/3'), BOB);
      statuses.push(`${label(spelling)}: ${refused.status}`);
      if (refused.status === 403) await expectErrorCode(refused, 403, 'DENIED');
    }
    expect(statuses).toEqual(SPELLINGS.map((spelling) => `${label(spelling)}: 403`));
  });

  test('alice pulls every spelling: the same image, stored once under the stored name', async () => {
    for (const spelling of SPELLINGS) {
      const response = await get(spelling.on, requestPath(spelling, 'manifests/3'), ALICE);
      expect([label(spelling), response.status]).toEqual([label(spelling), 200]);
      expect(response.headers.get('Docker-Content-Digest')).toBe(alpine.manifestDigest);
    }
    const catalog = await get('main', '/v2/_catalog', ALICE);
    const names = ((await catalog.json()) as { repositories: string[] }).repositories;
    expect(names.filter((name) => name.includes('alpine'))).toEqual([STORED]);
  });

  test('_catalog, on the main endpoint and the mirror, hides the stored name from whom the rule refuses it', async () => {
    await expectStatus(await get('main', `/v2/${STORED}/manifests/3`, ALICE), 200);
    const listed = async (on: 'main' | 'mirror', headers: Record<string, string>) =>
      ((await (await get(on, '/v2/_catalog', headers)).json()) as { repositories: string[] }).repositories;
    expect(await listed('main', ALICE)).toContain(STORED);
    expect(await listed('mirror', ALICE)).toContain('library/alpine');
    for (const headers of [tokenMode ? {} : EMPTY_BASIC, BOB]) {
      expect(await listed('main', headers)).not.toContain(STORED);
      expect(await listed('mirror', headers)).not.toContain('library/alpine');
    }
    expect(await listed('main', BOB)).toContain('proxy/docker.io/library/busybox');
  });

  test('the request log names the stored repository, whatever path the client used', async () => {
    await get('main', '/v2/proxy/index.docker.io/alpine/manifests/3');
    await get('mirror', '/v2/alpine/tags/list');
    await new Promise((resolve) => setTimeout(resolve, 50)); // lines are written on the response's 'close'
    const requests = logLines
      .map((line) => JSON.parse(line) as { msg: string; path?: string; name?: string })
      .filter((line) => line.msg === 'request');
    expect(requests.find((line) => line.path === '/v2/proxy/index.docker.io/alpine/manifests/3')?.name).toBe(STORED);
    expect(requests.find((line) => line.path === '/v2/alpine/tags/list')?.name).toBe(STORED);
  });

  if (tokenMode) {
    test('/token: a scope in any spelling is granted as the stored name allows, under the name asked', async () => {
      for (const spelling of SPELLINGS) {
        const scope = `repository:${spelling.name}:pull`;
        const forAlice = await token(spelling.on, scope, ALICE);
        expect([label(spelling), forAlice.access]).toEqual([label(spelling), [{ type: 'repository', name: spelling.name, actions: ['pull'] }]]);
        const pulled = await get(spelling.on, requestPath(spelling, 'manifests/3'), bearer(forAlice.token));
        expect([label(spelling), pulled.status]).toEqual([label(spelling), 200]);

        const forBob = await token(spelling.on, scope, BOB);
        const forAnonymous = await token(spelling.on, scope);
        // ?ns= is a query parameter of the pull, not of the token request: there the scope names the hosted
        // library/alpine, which anonymous may pull. The pull itself is still ruled on the stored name.
        if (!spelling.ns) {
          expect([label(spelling), forBob.access, forAnonymous.access]).toEqual([label(spelling), [], []]);
        }
        await expectErrorCode(await get(spelling.on, requestPath(spelling, 'manifests/3'), bearer(forBob.token)), 403, 'DENIED');
        const refused = await get(spelling.on, requestPath(spelling, 'manifests/3'), bearer(forAnonymous.token));
        expect([label(spelling), refused.status]).toEqual([label(spelling), 401]);
        await expectErrorCode(refused, 401, 'UNAUTHORIZED');
      }
    });

    test('/token: a scope under proxy/ of an upstream the cache does not serve grants nothing', async () => {
      expect((await token('main', 'repository:proxy/nohost/alpine:pull', ALICE)).access).toEqual([]);
    });
  }
});

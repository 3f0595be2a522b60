import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GHCR_TOKEN_USERNAME } from '../../src/ghcr/ghcr-catalog';
import { BuiltImage, buildImageLayout } from '../helpers/oci-image';
import { FakeGithub, startFakeGithub } from '../helpers/fake-github';
import { expectErrorCode } from '../helpers/registry-client';
import { skopeoCopy } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/**
 * ghcr.io played by a Debian docker-registry that, like ghcr.io, takes the GitHub token as a password
 * (htpasswd), and GitHub's REST API by the fake: the catalog, tags and pulls of proxy/ghcr.io/….
 */
describe('proxy/ghcr.io with [github]: a docker-registry as ghcr.io, a fake GitHub REST API', () => {
  let github: FakeGithub;
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let work: string;
  let image: BuiltImage;
  let nested: BuiltImage;

  const configuration = (token: string) => `
[proxy]
timeout = "5s"

[[proxy.upstreams]]
host = "ghcr.io"
url = "${upstream.url}"

[github]
token = "${token}"
api_url = "${github.url}"
orgs = ["acme"]
`;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'ghcr-e2e-'));
    github = await startFakeGithub({
      orgs: [
        {
          login: 'acme',
          type: 'Organization',
          // The REST API's tags differ from the registry's, to tell which one answered.
          packages: { app: { versions: [['from-rest']] }, 'tools/cli': { versions: [['v1']] }, 'only-in-rest': { versions: [['r1']] } },
        },
      ],
    });
    upstream = await startUpstreamRegistry({ auth: 'htpasswd', credentials: { username: GHCR_TOKEN_USERNAME, password: github.token } });
    const creds = ['--dest-creds', `${GHCR_TOKEN_USERNAME}:${github.token}`];
    image = await buildImageLayout(path.join(work, 'app'), { tag: '1.0', layers: 2, layerSize: 50_000, seed: 'ghcr-app' });
    await skopeoCopy(image.reference, `docker://${upstream.host}/acme/app:1.0`, creds);
    await skopeoCopy(image.reference, `docker://${upstream.host}/acme/app:1.1`, creds);
    nested = await buildImageLayout(path.join(work, 'cli'), { tag: 'v1', layers: 1, layerSize: 10_000, seed: 'ghcr-cli' });
    await skopeoCopy(nested.reference, `docker://${upstream.host}/acme/tools/cli:v1`, creds);
    app = await createTestApp({ configuration: configuration(github.token) });
  });
  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    await github?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('GET /v2/_catalog lists the organisation\'s packages as proxy/ghcr.io/acme/…', async () => {
    const response = await fetch(`${app.url}/v2/_catalog`);
    expect(await response.json()).toEqual({
      repositories: ['proxy/ghcr.io/acme/app', 'proxy/ghcr.io/acme/only-in-rest', 'proxy/ghcr.io/acme/tools/cli'],
    });
  });

  test('tags/list is the upstream\'s own list, fetched with the token; the REST API only when the upstream has none', async () => {
    const response = await fetch(`${app.url}/v2/proxy/ghcr.io/acme/app/tags/list`);
    expect(await response.json()).toEqual({ name: 'proxy/ghcr.io/acme/app', tags: ['1.0', '1.1'] });
    const fallback = await fetch(`${app.url}/v2/proxy/ghcr.io/acme/only-in-rest/tags/list`);
    expect(await fallback.json()).toEqual({ name: 'proxy/ghcr.io/acme/only-in-rest', tags: ['r1'] });
  });

  test('skopeo pulls proxy/ghcr.io/acme/app:1.0 and a nested package, the token as upstream credential', async () => {
    const pulled = path.join(work, 'pulled');
    await skopeoCopy(`docker://${app.host}/proxy/ghcr.io/acme/app:1.0`, `dir:${pulled}`);
    expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
    const pulledNested = path.join(work, 'pulled-nested');
    await skopeoCopy(`docker://${app.host}/proxy/ghcr.io/acme/tools/cli:v1`, `dir:${pulledNested}`);
    expect(fs.readFileSync(path.join(pulledNested, 'manifest.json')).equals(nested.manifest)).toBe(true);
  });

  test('without the token the upstream refuses the pull: DENIED', async () => {
    const anonymous = await createTestApp({ configuration: configuration('') });
    try {
      const response = await fetch(`${anonymous.url}/v2/proxy/ghcr.io/acme/app/manifests/1.1`);
      await expectErrorCode(response, 403, 'DENIED');
    } finally {
      await anonymous.close();
    }
  });

  test('Synology DSM\'s sequence: GET /v2/, _catalog, tags/list, /v1/search, then a pull (anonymous)', async () => {
    const base = await fetch(`${app.url}/v2/`);
    expect(base.status).toBe(200);
    expect(base.headers.get('Docker-Distribution-API-Version')).toBe('registry/2.0');

    const catalog = (await (await fetch(`${app.url}/v2/_catalog?n=1000`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toContain('proxy/ghcr.io/acme/app');

    const tags = (await (await fetch(`${app.url}/v2/proxy/ghcr.io/acme/app/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toContain('1.1');

    const search = (await (await fetch(`${app.url}/v1/search?q=acme%2Fapp&n=50&page=1`)).json()) as {
      num_results: number;
      results: Array<{ name: string; description: string }>;
    };
    expect(search).toMatchObject({ num_results: 1, results: [{ name: 'proxy/ghcr.io/acme/app', description: '' }] });

    const pulled = path.join(work, 'dsm-pull');
    await skopeoCopy(`docker://${app.host}/${search.results[0].name}:1.1`, `dir:${pulled}`);
    expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
  });

  test('Synology DSM\'s sequence with Basic auth ([auth] htpasswd): listings show only what the user may pull', async () => {
    const htpasswd = path.join(work, 'htpasswd');
    const { stdout } = await promisify(execFile)('htpasswd', ['-Bbn', 'dsm', 'nas-password']);
    fs.writeFileSync(htpasswd, stdout);
    const guarded = await createTestApp({
      configuration: `${configuration(github.token)}
[auth]
htpasswd = "${htpasswd}"

[[auth.rules]]
prefix = "proxy/ghcr.io/acme/tools"
pull = ["someone-else"]
`,
    });
    const basic = { Authorization: `Basic ${Buffer.from('dsm:nas-password').toString('base64')}` };
    try {
      const challenge = await fetch(`${guarded.url}/v2/`);
      expect(challenge.status).toBe(401);
      expect(challenge.headers.get('WWW-Authenticate')).toMatch(/^Basic realm=/);
      expect((await fetch(`${guarded.url}/v2/`, { headers: basic })).status).toBe(200);
      expect((await fetch(`${guarded.url}/v2/_catalog`)).status).toBe(401);

      const catalog = (await (await fetch(`${guarded.url}/v2/_catalog?n=1000`, { headers: basic })).json()) as { repositories: string[] };
      expect(catalog.repositories).toEqual(['proxy/ghcr.io/acme/app', 'proxy/ghcr.io/acme/only-in-rest']);

      const tags = await fetch(`${guarded.url}/v2/proxy/ghcr.io/acme/app/tags/list`, { headers: basic });
      expect(await tags.json()).toEqual({ name: 'proxy/ghcr.io/acme/app', tags: ['1.0', '1.1'] });

      const search = (await (await fetch(`${guarded.url}/v1/search?q=acme&n=50&page=1`, { headers: basic })).json()) as {
        results: Array<{ name: string }>;
      };
      expect(search.results.map((result) => result.name)).toEqual(['proxy/ghcr.io/acme/app', 'proxy/ghcr.io/acme/only-in-rest']);

      const pulled = path.join(work, 'dsm-basic-pull');
      await skopeoCopy(`docker://${guarded.host}/proxy/ghcr.io/acme/app:1.1`, `dir:${pulled}`, ['--src-creds', 'dsm:nas-password']);
      expect(fs.readFileSync(path.join(pulled, 'manifest.json')).equals(image.manifest)).toBe(true);
    } finally {
      await guarded.close();
    }
  });
});

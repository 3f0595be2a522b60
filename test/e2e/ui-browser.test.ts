import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'puppeteer-core';
import { MediaType } from '../../src/oci/media-types';
import { addUsers, basic, createAuthApp, HTPASSWD_FILE } from '../helpers/auth';
import { buildImageLayout } from '../helpers/oci-image';
import { skopeoCopy } from '../helpers/skopeo';
import { inspectPage, launchChromium, seriousAccessibilityViolations } from '../helpers/browser';
import { RegistryClient, expectErrorCode, json, OCI_CONFIG, OCI_LAYER } from '../helpers/registry-client';
import { pushManyRepositories } from '../helpers/many-repositories';
import { createTestApp, TestApp } from '../helpers/test-app';
import { startUpstreamRegistry, UpstreamRegistry } from '../helpers/upstream-registry';

/** What the callbacks run in the page use of it (the project's TypeScript has no DOM library). */
interface BrowserGlobals {
  navigator: { clipboard: { readText(): Promise<string> } };
  document: { querySelector(selector: string): { value: string } | null; activeElement: { textContent: string | null } | null };
  location: { hash: string };
}

const USERS = { alice: 'alice-pw', carol: 'carol-pw' };

/** An image with what the pages show: created, labels, entrypoint, history, an annotation. */
async function pushDescribedImage(client: RegistryClient, name: string, tag: string, architecture: string) {
  const config = await client.pushBlob(
    name,
    json({
      created: '2026-01-02T03:04:05Z',
      architecture,
      os: 'linux',
      config: { Entrypoint: ['/bin/app'], Labels: { 'org.opencontainers.image.title': 'The app' } },
      rootfs: { type: 'layers', diff_ids: [] },
      history: [{ created: '2026-01-02T03:04:05Z', created_by: 'COPY app /bin/app' }],
      nonce: randomBytes(8).toString('hex'),
    }),
    OCI_CONFIG,
  );
  const layer = await client.pushBlob(name, randomBytes(5000), OCI_LAYER);
  const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer], annotations: { 'org.example.note': 'from the browser test' } };
  return client.putManifest(name, tag, manifest);
}

describe('the web UI in a real browser (Debian Chromium, puppeteer-core, axe-core)', () => {
  let upstream: UpstreamRegistry;
  let app: TestApp;
  let browser: Browser;
  let alice: RegistryClient;
  let carol: RegistryClient;
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'ui-browser-'));
    upstream = await startUpstreamRegistry({ auth: 'none' });
    const cached = await buildImageLayout(path.join(work, 'cached'), { tag: '1', layers: 1, layerSize: 1000 });
    await skopeoCopy(cached.reference, `docker://${upstream.host}/tools/cached:1`);
    app = await createAuthApp(
      USERS,
      `[auth]
htpasswd = "${HTPASSWD_FILE}"
anonymous = "pull"

[[auth.rules]]
prefix = "private"
pull = ["alice"]
push = ["alice"]
delete = ["alice"]

[[auth.rules]]
prefix = ""
pull = ["*", "anonymous"]
push = ["alice"]
delete = ["alice"]

[[proxy.upstreams]]
host = "upstream.test"
url = "${upstream.url}"
`,
    );
    alice = new RegistryClient(app, basic('alice:alice-pw'));
    carol = new RegistryClient(app, basic('carol:carol-pw'));
    const amd = await pushDescribedImage(alice, 'team/app', 'v1', 'amd64');
    const arm = await pushDescribedImage(alice, 'team/app', 'arm', 'arm64');
    await alice.putManifest('team/app', 'multi', {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd.descriptor, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm.descriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    });
    await alice.pushImage('team/app', { tag: 'old' });
    await alice.pushImage('private/secret', { tag: 'v1' });
    // Pulled through the cache: the manifest is stored under proxy/upstream.test/.
    expect((await alice.getManifest('proxy/upstream.test/tools/cached', '1')).response.status).toBe(200);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await upstream?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function newPage(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    // axe-core is injected by the test; the pages' own CSP allows only their script.
    await page.setBypassCSP(true);
    return page;
  }

  async function logIn(page: Page, user: string, password: string): Promise<void> {
    await page.goto(`${app.url}/ui/login`);
    await page.type('#username', user);
    await page.type('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('form.login button[type=submit]')]);
    expect(await page.$eval('.who', (element) => element.textContent)).toContain(`Signed in as ${user}`);
  }

  const visibleRowNames = (page: Page) =>
    page.$$eval('#repositories tbody tr', (rows) => rows.filter((row) => !row.hasAttribute('hidden')).map((row) => row.getAttribute('data-name')));

  test('alice logs in, lists, searches, opens a repository and an image, copies a pull command, deletes a tag, runs a GC dry run', async () => {
    const context = await browser.createBrowserContext();
    await context.overridePermissions(app.url, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
    const page = await newPage(context);
    try {
      // Anonymous browsing (anonymous = "pull"): only what anonymous may pull.
      await page.goto(`${app.url}/`);
      expect(new URL(page.url()).pathname).toBe('/ui/');
      expect(await visibleRowNames(page)).toEqual(['proxy/upstream.test/tools/cached', 'team/app']);
      expect(await inspectPage(page, 'login-anonymous-list')).toEqual({});

      await page.goto(`${app.url}/ui/login`);
      expect(await inspectPage(page, 'login')).toEqual({});
      await logIn(page, 'alice', 'alice-pw');
      expect(await visibleRowNames(page)).toEqual(['private/secret', 'proxy/upstream.test/tools/cached', 'team/app']);
      expect(await inspectPage(page, 'repositories')).toEqual({});

      // Search filters as one types (the script), and works as a plain GET form too.
      await page.type('#q', 'SEC');
      expect(await visibleRowNames(page)).toEqual(['private/secret']);
      expect(await page.$eval('#repository-count', (element) => element.textContent)).toBe('1 repository');
      await page.goto(`${app.url}/ui/?q=team`);
      expect(await page.$$eval('#repositories tbody tr', (rows) => rows.map((row) => row.getAttribute('data-name')))).toEqual(['team/app']);

      // The repository: tags with platforms, size, created date, labels.
      await Promise.all([page.waitForNavigation(), page.click('#repositories a[href="/ui/r/team/app"]')]);
      const tagRows = await page.$$eval('table tbody tr', (rows) => rows.map((row) => (row as unknown as { innerText: string }).innerText));
      expect(tagRows).toHaveLength(4);
      expect(tagRows.find((row) => row.startsWith('multi'))).toMatch(/linux\/amd64[\s\S]*linux\/arm64\/v8/);
      expect(tagRows.find((row) => row.startsWith('v1'))).toContain('2026-01-02 03:04 UTC');
      expect(await inspectPage(page, 'repository')).toEqual({});

      // Copy a pull command to the clipboard.
      await page.click('button[data-copy$="team/app:v1"]');
      await page.waitForSelector('button[data-copy$="team/app:v1"][data-copied]');
      expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).navigator.clipboard.readText())).toBe(`docker pull ${app.host}/team/app:v1`);

      // The image: layers, history, entrypoint, annotations.
      await Promise.all([page.waitForNavigation(), page.click('a[href="/ui/r/team/app/-/image/v1"]')]);
      const text = await page.$eval('main', (element) => (element as unknown as { innerText: string }).innerText);
      expect(text).toContain('["/bin/app"]');
      expect(text).toContain('COPY app /bin/app');
      expect(text).toContain('org.example.note');
      expect(text).toContain('4.9 KiB');
      expect(await inspectPage(page, 'image')).toEqual({});

      // Delete a tag, with a confirmation, and see it gone through the registry API.
      await page.goto(`${app.url}/ui/r/team/app`);
      await Promise.all([page.waitForNavigation(), page.click('a[aria-label="Delete tag old"]')]);
      expect(await inspectPage(page, 'delete-confirmation')).toEqual({});
      await Promise.all([page.waitForNavigation(), page.click('main form button[type=submit]')]);
      expect(await page.$eval('.notice', (element) => element.textContent)).toBe('Deleted old.');
      expect(await carol.listTags('team/app')).toEqual(['arm', 'multi', 'v1']);

      // The cache: per upstream, and evict.
      await page.goto(`${app.url}/ui/cache`);
      expect(await page.$eval('main', (element) => (element as unknown as { innerText: string }).innerText)).toContain('upstream.test');
      // Hits, misses and the upstream's health since the start: one manifest fetched, the upstream answering.
      const served = await page.$$eval('section[data-upstream="upstream.test"] table.served tbody tr', (rows) =>
        rows.map((row) => (row as unknown as { innerText: string }).innerText.split('\t')),
      );
      expect(served).toEqual([
        ['Manifests', '0', '1', '0'],
        ['Blobs', '0', '0', '0'],
      ]);
      expect(await page.$eval('section[data-upstream="upstream.test"] [data-health]', (element) => element.getAttribute('data-health'))).toBe('ok');
      expect(await inspectPage(page, 'cache')).toEqual({});
      await expectErrorCode(await carol.fetch('/api/cache/proxy/upstream.test/tools/cached', { method: 'DELETE' }), 403, 'DENIED');
      page.once('dialog', (dialog) => void dialog.accept());
      await Promise.all([page.waitForNavigation(), page.click('button[aria-label="Evict proxy/upstream.test/tools/cached"]')]);
      expect(await page.$eval('.notice', (element) => element.textContent)).toBe('Evicted 1 manifest of proxy/upstream.test/tools/cached.');
      // The configured upstream stays listed for alice (an administrator), with nothing cached.
      const afterEviction = ((await (await alice.fetch('/api/cache')).json()) as { upstreams: Array<{ upstream: string; repositories: unknown[] }> }).upstreams;
      expect(afterEviction.map(({ upstream, repositories }) => ({ upstream, repositories }))).toEqual([{ upstream: 'upstream.test', repositories: [] }]);

      // Storage and a GC dry run.
      await page.goto(`${app.url}/ui/storage`);
      expect(await inspectPage(page, 'storage')).toEqual({});
      await Promise.all([page.waitForNavigation(), page.click('#main form button[type=submit]')]);
      expect(await page.$eval('#gc-report', (element) => element.textContent)).toMatch(/^Dry run: /);
      expect(await seriousAccessibilityViolations(page)).toEqual([]);
      expect(await carol.listTags('team/app')).toEqual(['arm', 'multi', 'v1']);
    } finally {
      await context.close();
    }
    // Eight pages, each looked at in four variants with axe-core: minutes on a busy two-core machine.
  }, 240_000);

  test('alice runs a garbage collection from the storage page: a confirmation, the outcome, the run listed, the sizes drawn over time', async () => {
    // An older sample, as the hourly one would have left; the collection adds the next.
    await app.registry.sampleStorage(Date.now() - 3_600_000);
    const loose = randomBytes(4000);
    const { digest } = await alice.pushBlob('team/loose', loose);
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await logIn(page, 'alice', 'alice-pw');
      await page.goto(`${app.url}/ui/storage`);
      expect(await page.$$('#storage-chart-empty')).toHaveLength(1); // one sample: nothing to draw yet
      await Promise.all([page.waitForNavigation(), page.click('#gc-run')]);
      expect(new URL(page.url()).pathname).toBe('/ui/storage/gc');
      expect(await inspectPage(page, 'gc-confirmation')).toEqual({});
      await Promise.all([page.waitForNavigation(), page.click('main form button[type=submit]')]);
      expect(new URL(page.url()).pathname).toBe('/ui/storage');
      expect(await page.$eval('.notice', (element) => element.textContent)).toMatch(/^Garbage collection freed /);
      expect(await page.$$eval('#gc-runs tbody tr', (rows) => rows.length)).toBe(1);
      expect(await page.$eval('#gc-last', (element) => element.textContent)).toMatch(/^Last collection: /);
      // Two samples: a line per store, two points each.
      const lines = await page.$$eval('#storage-chart polyline', (elements) => elements.map((element) => [element.getAttribute('data-store'), element.getAttribute('points')!.split(' ').length]));
      expect(lines).toEqual([
        ['hosted', 2],
        ['proxy', 2],
      ]);
      expect(await inspectPage(page, 'storage-history')).toEqual({});
      // The default grace (1 h) keeps a blob pushed a moment ago: the collection ran, and spared it.
      expect((await alice.getBlob('team/loose', digest)).response.status).toBe(200);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("a session ends on the next page once its user is removed from the htpasswd file", async () => {
    const file = path.join(app.storageDir, HTPASSWD_FILE);
    const before = fs.readFileSync(file, 'utf8');
    addUsers(file, { dave: 'dave-pw' });
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await logIn(page, 'dave', 'dave-pw');
      fs.writeFileSync(file, before);
      await page.goto(`${app.url}/ui/`);
      expect(await page.$eval('.who', (element) => element.textContent)).toBe('Log in');
    } finally {
      fs.writeFileSync(file, before);
      await context.close();
    }
  });

  test('alice pins a cached tag from its repository page, sees it marked there and on the cache page, and unpins it there; carol may not', async () => {
    const cachedName = 'proxy/upstream.test/tools/cached';
    // Cached (again: the first test evicts it).
    expect((await alice.getManifest(cachedName, '1')).response.status).toBe(200);
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await logIn(page, 'alice', 'alice-pw');
      await page.goto(`${app.url}/ui/r/${cachedName}`);
      expect(await page.$$('.badge-pinned')).toEqual([]);
      await Promise.all([page.waitForNavigation(), page.click('button[aria-label="Pin tag 1"]')]);
      expect(await page.$eval('.notice', (element) => element.textContent)).toBe('Pinned 1: eviction never removes it.');
      expect(await page.$eval('.badge-pinned', (element) => element.getAttribute('title'))).toMatch(/^Pinned by alice on /);
      expect(await inspectPage(page, 'repository-pinned')).toEqual({});
      // The API sees the same pin.
      const pins = ((await (await alice.fetch('/api/pins')).json()) as { pins: Array<Record<string, unknown>> }).pins;
      expect(pins.map(({ source, repository, reference, createdBy }) => ({ source, repository, reference, createdBy }))).toEqual([
        { source: 'api', repository: cachedName, reference: '1', createdBy: 'alice' },
      ]);

      // The cache page lists it under its upstream.
      await page.goto(`${app.url}/ui/cache`);
      const rows = await page.$$eval('section[data-upstream="upstream.test"] table.pins tbody tr', (trs) =>
        trs.map((tr) => (tr as unknown as { innerText: string }).innerText.split('\t').slice(0, 2)),
      );
      expect(rows).toEqual([[`${cachedName}:1`, 'alice']]);
      expect(await inspectPage(page, 'cache-pins')).toEqual({});

      // carol may pull but not delete: no pin buttons, and the API refuses her.
      const carolContext = await browser.createBrowserContext();
      const carolPage = await newPage(carolContext);
      try {
        await logIn(carolPage, 'carol', 'carol-pw');
        await carolPage.goto(`${app.url}/ui/r/${cachedName}`);
        expect(await carolPage.$$('.badge-pinned')).toHaveLength(1);
        expect(await carolPage.$$('button[aria-label^="Pin"], button[aria-label^="Unpin"]')).toEqual([]);
        await carolPage.goto(`${app.url}/ui/cache`);
        expect(await carolPage.$$('button[aria-label^="Unpin"]')).toEqual([]);
      } finally {
        await carolContext.close();
      }
      await expectErrorCode(await carol.fetch(`/api/pins/upstream.test/tools/cached:1`, { method: 'DELETE' }), 403, 'DENIED');
      await expectErrorCode(await carol.fetch(`/api/pins/upstream.test/tools/cached:1`, { method: 'PUT' }), 403, 'DENIED');

      // alice unpins from the cache page.
      await Promise.all([page.waitForNavigation(), page.click(`button[aria-label="Unpin ${cachedName}:1"]`)]);
      expect(new URL(page.url()).pathname).toBe('/ui/cache');
      expect(await page.$eval('.notice', (element) => element.textContent)).toBe('Unpinned 1.');
      expect(((await (await alice.fetch('/api/pins')).json()) as { pins: unknown[] }).pins).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test('carol, who may only pull, sees no delete buttons and gets 403 from the API', async () => {
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await logIn(page, 'carol', 'carol-pw');
      expect(await visibleRowNames(page)).not.toContain('private/secret');
      await page.goto(`${app.url}/ui/r/team/app`);
      expect(await page.$$('a[aria-label^="Delete"]')).toEqual([]);
      await page.goto(`${app.url}/ui/storage`);
      expect(await page.$$('button[type=submit]:not(.link)')).toEqual([]);
      // Tried anyway, from her session with its CSRF token: refused.
      const status = await page.evaluate(async () => {
        const { document } = globalThis as unknown as BrowserGlobals;
        const csrf = document.querySelector('input[name=csrf]')!.value;
        const response = await fetch('/api/repositories/team/app/manifests/v1', { method: 'DELETE', headers: { 'X-CSRF-Token': csrf } });
        return response.status;
      });
      expect(status).toBe(403);
      await expectErrorCode(await carol.fetch('/api/repositories/team/app/manifests/v1', { method: 'DELETE' }), 403, 'DENIED');
      expect(await carol.listTags('team/app')).toContain('v1');
    } finally {
      await context.close();
    }
  });

  test('the accessibility check can fail: it finds an unlabelled input and an image without text', async () => {
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await page.setContent('<!doctype html><html lang="en"><title>t</title><main><img src="data:,"><input type="text"></main></html>');
      const ids = (await seriousAccessibilityViolations(page)).map((violation) => violation.id).sort();
      expect(ids).toEqual(['image-alt', 'label']);
    } finally {
      await context.close();
    }
  });

  test('keyboard: the first Tab reaches the skip link, which leads to the content', async () => {
    const context = await browser.createBrowserContext();
    const page = await newPage(context);
    try {
      await page.goto(`${app.url}/ui/`);
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).document.activeElement?.textContent)).toBe('Skip to content');
      await page.keyboard.press('Enter');
      // A fragment link moves within the page, and puppeteer's page.url() learns of it an event later
      // (a CI run read it before): the page itself is asked, until it is there (a timeout fails the test).
      await page.waitForFunction(() => (globalThis as unknown as BrowserGlobals).location.hash === '#main', { timeout: 5000 });
    } finally {
      await context.close();
    }
  });
});

describe('the repository list with 2,000 repositories, in a real browser', () => {
  let app: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    app = await createTestApp();
    await pushManyRepositories(new RegistryClient(app), 2000);
    browser = await launchChromium();
  }, 240_000);
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  // How fast it renders is measured by `npm run bench`, not asserted here.
  test('arrives gzip-compressed, lists every repository, and the search filters them as one types', async () => {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    try {
      const response = (await page.goto(`${app.url}/ui/`, { waitUntil: 'load' }))!;
      expect(response.status()).toBe(200);
      expect(response.headers()['content-encoding']).toBe('gzip');
      expect(await page.$$eval('#repositories tbody tr', (rows) => rows.length)).toBe(2000);
      expect(await page.$eval('#repository-count', (element) => element.textContent)).toBe('2000 repositories');
      await page.type('#q', 'repo-1999');
      expect(await page.$$eval('#repositories tbody tr:not([hidden])', (rows) => rows.map((row) => row.getAttribute('data-name')))).toEqual(['many/repo-1999']);
      expect(await page.$eval('#repository-count', (element) => element.textContent)).toBe('1 repository');
    } finally {
      await context.close();
    }
  });
});

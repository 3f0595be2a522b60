import { randomBytes } from 'node:crypto';
import { RegistryClient, digestOf, expectErrorCode, expectStatus, uniqueName } from '../helpers/registry-client';
import { createTestApp, TestApp } from '../helpers/test-app';

/** `Link: <url>; rel="next"` → url, or null. */
function nextLink(response: Response): string | null {
  const link = response.headers.get('Link');
  if (link === null) return null;
  const match = /^<([^>]+)>;\s*rel="next"$/.exec(link);
  if (!match) throw new Error(`malformed Link header: ${link}`);
  return match[1];
}

async function tagsOf(response: Response): Promise<string[]> {
  return ((await response.json()) as { tags: string[] }).tags;
}

describe('GET /v2/<name>/tags/list', () => {
  let app: TestApp;
  let client: RegistryClient;
  const name = 'tags/sorted';
  // Pushed out of order; byte order puts digits, then uppercase, then "_", then lowercase.
  const tags = ['v2', 'latest', 'v10', '1.0', 'Alpha', 'beta', '_private', 'v1.0.0-rc.1', 'a', 'ZZ'];
  const sorted = [...tags].sort();

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
    const image = await client.pushImage(name, { tag: tags[0] });
    for (const tag of tags.slice(1)) await client.putManifest(name, tag, image.content);
  });
  afterAll(() => app.close());

  test('200 with the name and every tag, sorted lexically, and no Link', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list`);
    expect(response.status).toBe(200);
    expect(response.headers.get('Content-Type')).toMatch(/^application\/json/);
    expect(response.headers.get('Link')).toBeNull();
    expect(await response.json()).toEqual({ name, tags: sorted });
  });

  test('n limits the page and Link points at the next one', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list?n=2`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name, tags: sorted.slice(0, 2) });
    expect(response.headers.get('Link')).toBe(`</v2/${name}/tags/list?n=2&last=${encodeURIComponent(sorted[1])}>; rel="next"`);
  });

  test('last starts after the given tag', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list?n=3&last=${sorted[2]}`);
    expect(await response.json()).toEqual({ name, tags: sorted.slice(3, 6) });
    expect(nextLink(response)).toBe(`/v2/${name}/tags/list?n=3&last=${encodeURIComponent(sorted[5])}`);
  });

  test('last alone returns everything after it, without Link', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list?last=${sorted[6]}`);
    expect(await response.json()).toEqual({ name, tags: sorted.slice(7) });
    expect(response.headers.get('Link')).toBeNull();
  });

  test('last need not be an existing tag', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list?last=b`);
    expect((await tagsOf(response))).toEqual(sorted.filter((tag) => tag > 'b'));
  });

  test('the last page has no Link, even when it is exactly full', async () => {
    const full = await client.fetch(`/v2/${name}/tags/list?n=${sorted.length}`);
    expect((await tagsOf(full))).toEqual(sorted);
    expect(full.headers.get('Link')).toBeNull();

    const tail = await client.fetch(`/v2/${name}/tags/list?n=4&last=${sorted[5]}`);
    expect((await tagsOf(tail))).toEqual(sorted.slice(6));
    expect(tail.headers.get('Link')).toBeNull();

    const larger = await client.fetch(`/v2/${name}/tags/list?n=1000`);
    expect((await tagsOf(larger))).toEqual(sorted);
    expect(larger.headers.get('Link')).toBeNull();
  });

  test.each([1, 3, 4])('following Link with n=%i walks every tag once, in order', async (n) => {
    const seen: string[] = [];
    let next: string | null = `/v2/${name}/tags/list?n=${n}`;
    let pages = 0;
    while (next !== null) {
      const response = await client.fetch(next);
      await expectStatus(response, 200);
      const page = (await response.json()) as { tags: string[] };
      expect(page.tags.length).toBeLessThanOrEqual(n);
      seen.push(...page.tags);
      next = nextLink(response);
      if (++pages > sorted.length + 1) throw new Error('pagination does not end');
    }
    expect(seen).toEqual(sorted);
    expect(pages).toBe(Math.ceil(sorted.length / n));
  });

  test('n=0 is 200 with an empty list', async () => {
    const response = await client.fetch(`/v2/${name}/tags/list?n=0`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name, tags: [] });
  });

  test.each(['-1', 'abc', '1.5', '', '1e3', '99999999999'])('n=%s is 400 PAGINATION_NUMBER_INVALID', async (n) => {
    await expectErrorCode(await client.fetch(`/v2/${name}/tags/list?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
  });

  test('a repository that does not exist is 404 NAME_UNKNOWN', async () => {
    await expectErrorCode(await client.fetch('/v2/tags/never-pushed/tags/list'), 404, 'NAME_UNKNOWN');
  });

  test('a repository with blobs but no tags lists none', async () => {
    const untagged = uniqueName('tags/untagged');
    await client.pushBlob(untagged, randomBytes(10));
    expect(await client.listTags(untagged)).toEqual([]);
  });

  test('a tag that is deleted leaves the list; re-pushing brings it back', async () => {
    const repository = uniqueName('tags/churn');
    const image = await client.pushImage(repository, { tag: 'keep' });
    await client.putManifest(repository, 'drop', image.content);
    expect(await client.listTags(repository)).toEqual(['drop', 'keep']);
    expect((await client.fetch(`/v2/${repository}/manifests/drop`, { method: 'DELETE' })).status).toBe(202);
    expect(await client.listTags(repository)).toEqual(['keep']);
    await client.putManifest(repository, 'drop', image.content);
    expect(await client.listTags(repository)).toEqual(['drop', 'keep']);
  });

  describe('repository names', () => {
    test.each([
      ['uppercase', 'UPPER/case'],
      ['an empty component', 'a//b'],
      ['a leading "-"', '-lead'],
      ['a component with a leading "-"', 'a/-b'],
      ['a trailing "-"', 'trail-'],
      ['a leading "."', '.dot'],
      ['"___" (three underscores)', 'a___b'],
      ['".." (two dots)', 'a..b'],
      ['a space (encoded)', 'a%20b'],
      ['more than 255 characters', 'a'.repeat(256)],
    ])('a name with %s is 400 NAME_INVALID', async (_, invalid) => {
      await expectErrorCode(await client.fetch(`/v2/${invalid}/tags/list`), 400, 'NAME_INVALID');
      await expectErrorCode(await client.fetch(`/v2/${invalid}/manifests/latest`), 400, 'NAME_INVALID');
      await expectErrorCode(await client.fetch(`/v2/${invalid}/blobs/uploads/`, { method: 'POST' }), 400, 'NAME_INVALID');
      await expectErrorCode(await client.fetch(`/v2/${invalid}/blobs/${digestOf('x')}`), 400, 'NAME_INVALID');
    });

    test.each([
      ['several path components', 'a/b/c'],
      ['"_"', 'under_score'],
      ['"__"', 'double__underscore'],
      ['"-" and "--"', 'dash-ed--name'],
      ['"."', 'dotted.name/v1.2'],
      ['digits only', '0/1/2'],
      ['a component named like a route', 'org/blobs/manifests/tags'],
      ['255 characters', `${'a'.repeat(127)}/${'b'.repeat(127)}`],
    ])('a name with %s works for push, pull and tags/list', async (_, valid) => {
      const image = await client.pushImage(valid, { tag: 'v1' });
      const { response, body } = await client.getManifest(valid, 'v1');
      expect(response.status).toBe(200);
      expect(body.equals(image.content)).toBe(true);
      const blob = await client.getBlob(valid, image.layers[0].digest);
      expect(blob.response.status).toBe(200);
      expect(await client.listTags(valid)).toEqual(['v1']);
    });
  });
});

describe('GET /v2/_catalog', () => {
  let app: TestApp;
  let client: RegistryClient;
  const repositories = ['zeta', 'alpha/one', 'alpha', 'alpha/two/deep', 'beta_2', 'beta-1', 'm.n', '0numeric'];
  const sorted = [...repositories].sort();

  beforeAll(async () => {
    app = await createTestApp();
    client = new RegistryClient(app);
    for (const name of repositories) await client.pushImage(name, { tag: 'latest' });
  });
  afterAll(() => app.close());

  test('200 with every repository, sorted lexically, and no Link', async () => {
    const response = await client.fetch('/v2/_catalog');
    expect(response.status).toBe(200);
    expect(response.headers.get('Content-Type')).toMatch(/^application\/json/);
    expect(response.headers.get('Link')).toBeNull();
    expect(await response.json()).toEqual({ repositories: sorted });
  });

  test('n and last paginate, with Link: </v2/_catalog?n=&last=>; rel="next"', async () => {
    const first = await client.fetch('/v2/_catalog?n=2');
    expect(await first.json()).toEqual({ repositories: sorted.slice(0, 2) });
    expect(first.headers.get('Link')).toBe(`</v2/_catalog?n=2&last=${encodeURIComponent(sorted[1])}>; rel="next"`);

    const second = await client.fetch(`/v2/_catalog?n=2&last=${encodeURIComponent(sorted[1])}`);
    expect(await second.json()).toEqual({ repositories: sorted.slice(2, 4) });
  });

  test('following Link walks every repository once, in order', async () => {
    const seen: string[] = [];
    let next: string | null = '/v2/_catalog?n=3';
    let pages = 0;
    while (next !== null) {
      const response = await client.fetch(next);
      await expectStatus(response, 200);
      seen.push(...((await response.json()) as { repositories: string[] }).repositories);
      next = nextLink(response);
      if (++pages > sorted.length + 1) throw new Error('pagination does not end');
    }
    expect(seen).toEqual(sorted);
    expect(pages).toBe(Math.ceil(sorted.length / 3));
  });

  test('n=0 is 200 with an empty list', async () => {
    const response = await client.fetch('/v2/_catalog?n=0');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ repositories: [] });
  });

  test('a bad n is 400 PAGINATION_NUMBER_INVALID', async () => {
    await expectErrorCode(await client.fetch('/v2/_catalog?n=-5'), 400, 'PAGINATION_NUMBER_INVALID');
    await expectErrorCode(await client.fetch('/v2/_catalog?n=many'), 400, 'PAGINATION_NUMBER_INVALID');
  });

  test('a repository appears once it has content', async () => {
    await client.pushImage('newcomer', { tag: 'v1' });
    const response = await client.fetch('/v2/_catalog');
    expect(((await response.json()) as { repositories: string[] }).repositories).toEqual([...sorted, 'newcomer'].sort());
  });
});

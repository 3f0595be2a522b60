import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../src/config/load-config';
import { parsePlatform, platformMatches } from '../../../src/oci/platform';

describe('[[proxy.sync]] entries are checked at the start', () => {
  let cwd: string;
  beforeEach(() => (cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'sync-entries-'))));
  afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));
  const load = (entry: string) => {
    fs.writeFileSync(path.join(cwd, 'configuration.toml'), `[[proxy.sync]]\n${entry}\n`);
    return () => loadConfig({ cwd, env: {} });
  };

  it.each([
    ['image = "team/app"\ntags = ["v1"]', /proxy\.sync\[0\]\.image: expected a cached repository as pulled/],
    ['image = "proxy/docker.io/alpine"', /set exactly one of tags .* and tag_pattern/],
    ['image = "proxy/docker.io/alpine"\ntags = ["v1"]\ntag_pattern = "^v"', /set exactly one of tags/],
    ['image = "proxy/docker.io/alpine"\ntags = ["-bad"]', /proxy\.sync\[0\]\.tags: "-bad" is not a tag/],
    ['image = "proxy/docker.io/alpine"\ntag_pattern = "(unclosed"', /proxy\.sync\[0\]\.tag_pattern: Invalid regular expression/],
    ['image = "proxy/docker.io/alpine"\ntags = ["3"]\nplatforms = ["amd64"]', /platforms: expected os\/architecture\[\/variant\]/],
  ])('refuses %j', (entry, problem) => {
    expect(load(entry)).toThrow(problem);
  });

  it('takes an entry in any spelling the cache maps, with defaults', () => {
    const config = load('image = "proxy/index.docker.io/alpine"\ntag_pattern = "^3\\\\."\nplatforms = ["linux/arm/v7"]')();
    expect(config.proxy.sync).toEqual([
      { image: 'proxy/index.docker.io/alpine', tags: [], tag_pattern: '^3\\.', max_tags: 20, platforms: ['linux/arm/v7'], interval: 6 * 3600_000 },
    ]);
  });
});

describe('platform filters', () => {
  const filters = ['linux/amd64', 'linux/arm/v7'].map((text) => parsePlatform(text)!);
  it.each([
    [{ os: 'linux', architecture: 'amd64' }, true],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, true],
    [{ os: 'linux', architecture: 'arm', variant: 'v6' }, false],
    [{ os: 'windows', architecture: 'amd64' }, false],
    [{ os: 'unknown', architecture: 'unknown' }, false],
    [undefined, false],
  ])('%j matches: %s', (platform, expected) => {
    expect(platformMatches(platform, filters)).toBe(expected);
  });
  it('without filters every platform matches', () => {
    expect(platformMatches(undefined, [])).toBe(true);
  });
});

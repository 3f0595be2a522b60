import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../src/config/load-config';
import { configuredPins, wholeTagPattern } from '../../../src/config/pins';
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
      { image: 'proxy/index.docker.io/alpine', tags: [], tag_pattern: '^3\\.', max_tags: 20, platforms: ['linux/arm/v7'], interval: 6 * 3600_000, pin: false },
    ]);
  });
});

describe('[[proxy.sync]] pin = true pins what the entry names', () => {
  let cwd: string;
  beforeEach(() => (cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'sync-pins-'))));
  afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('its tags as image pins, its pattern as a prefix pin on the repository; entries without pin add none', () => {
    fs.writeFileSync(
      path.join(cwd, 'configuration.toml'),
      '[[proxy.sync]]\nimage = "proxy/docker.io/alpine"\ntags = ["3.20", "latest"]\npin = true\n' +
        '[[proxy.sync]]\nimage = "proxy/docker.io/library/redis"\ntag_pattern = \'^7\\.\'\npin = true\n' +
        '[[proxy.sync]]\nimage = "proxy/docker.io/library/nginx"\ntags = ["1"]\n',
    );
    const pins = configuredPins(loadConfig({ cwd, env: {} }).proxy);
    expect(pins.images).toEqual([
      { repository: 'proxy/docker.io/library/alpine', reference: '3.20' },
      { repository: 'proxy/docker.io/library/alpine', reference: 'latest' },
    ]);
    expect(pins.prefixes).toHaveLength(1);
    expect(pins.prefixes[0].prefix).toBe('proxy/docker.io/library/redis');
    // The sync searches with its pattern (unanchored); the pin matches the same tags as whole tags.
    const pattern = wholeTagPattern(pins.prefixes[0].tagPattern!);
    expect(['7.2', '7.0-alpine', '6.2', 'x7.1'].filter((tag) => pattern.test(tag))).toEqual(['7.2', '7.0-alpine']);
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

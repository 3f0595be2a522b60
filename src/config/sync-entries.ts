import { RegistryError } from '../oci/errors';
import { isValidName, isValidTag } from '../oci/names';
import { parsePlatform } from '../oci/platform';
import { PROXY_PREFIX, storedName } from './stored-names';
import type { Config } from './config';

/**
 * What the schema cannot say about `[[proxy.sync]]`: an image the cache serves (proxy/<upstream>/<name>),
 * exactly one of `tags` and `tag_pattern`, valid tags, a pattern that compiles, platforms of the form
 * os/architecture[/variant]. The first problem as "<key>: <what is wrong>", or undefined.
 */
export function syncEntryProblem(config: Pick<Config, 'proxy'>): string | undefined {
  for (const [index, entry] of config.proxy.sync.entries()) {
    const key = `proxy.sync[${index}]`;
    if (!config.proxy.enabled) return `${key}: syncing fills the pull-through cache, which [proxy] enabled = false turns off`;
    if (!entry.image.startsWith(PROXY_PREFIX) || !isValidName(entry.image)) {
      return `${key}.image: expected a cached repository as pulled, such as "proxy/docker.io/library/alpine", got ${JSON.stringify(entry.image)}`;
    }
    try {
      storedName(config.proxy, entry.image);
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      return `${key}.image: ${error.message}`;
    }
    if ((entry.tags.length === 0) === (entry.tag_pattern === '')) {
      return `${key}: set exactly one of tags (a list) and tag_pattern (a regular expression over the upstream's tags)`;
    }
    const badTag = entry.tags.find((tag) => !isValidTag(tag));
    if (badTag !== undefined) return `${key}.tags: ${JSON.stringify(badTag)} is not a tag`;
    if (entry.tag_pattern !== '') {
      try {
        new RegExp(entry.tag_pattern);
      } catch (error) {
        return `${key}.tag_pattern: ${(error as Error).message}`;
      }
    }
    const badPlatform = entry.platforms.find((platform) => parsePlatform(platform) === null);
    if (badPlatform !== undefined) {
      return `${key}.platforms: expected os/architecture[/variant] such as "linux/arm64", got ${JSON.stringify(badPlatform)}`;
    }
  }
  return undefined;
}

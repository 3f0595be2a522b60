import { parseDigest } from '../oci/digest';
import { RegistryError } from '../oci/errors';
import { isValidName, isValidTag } from '../oci/names';
import type { Config, ProxyConfig } from './config';
import { lookUpUpstream, PROXY_PREFIX, storedName } from './stored-names';

/**
 * `[[proxy.pin]]`: cached content that eviction never removes (docs/cache.md). Either one image,
 * `image = "docker.io/library/alpine:3.20"` (or `…@sha256:…`), or the tags matching `tags` (a regular
 * expression matched against the whole tag; "" is every tag) of every repository under `prefix`.
 * Names are written as after /v2/proxy/ (`docker.io/library/alpine`) or with it (`proxy/docker.io/…`), in
 * any spelling the cache accepts: they are mapped to the stored name (docker.io's library/, aliases).
 */

/** `name:tag` or `name@digest`; null if it is neither. */
export function splitReference(text: string): { name: string; reference: string } | null {
  const at = text.lastIndexOf('@');
  if (at > 0) {
    const digest = text.slice(at + 1);
    return parseDigest(digest) ? { name: text.slice(0, at), reference: digest } : null;
  }
  const colon = text.lastIndexOf(':');
  // A colon before the last slash belongs to a host with a port, not to a tag.
  if (colon <= 0 || text.indexOf('/', colon) !== -1) return null;
  const tag = text.slice(colon + 1);
  return isValidTag(tag) ? { name: text.slice(0, colon), reference: tag } : null;
}

/** A `tags` pattern, matched against the whole tag. Throws SyntaxError when it is not a regular expression. */
export function wholeTagPattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

/** The stored name of a cached image as a pin names it; throws RegistryError when the cache would not serve it. */
export function pinnedName(config: ProxyConfig, name: string): string {
  const stored = storedName(config, name.startsWith(PROXY_PREFIX) ? name : `${PROXY_PREFIX}${name}`);
  if (!isValidName(stored)) throw new RegistryError('NAME_INVALID', { message: `${name} is not a repository name`, detail: { name } });
  return stored;
}

/** A prefix as stored names start with it: proxy/<canonical upstream>[/<components>], no trailing slash. */
function pinnedPrefix(config: ProxyConfig, prefix: string): string {
  const bare = (prefix.startsWith(PROXY_PREFIX) ? prefix.slice(PROXY_PREFIX.length) : prefix).replace(/\/+$/, '');
  const [host, ...rest] = bare.split('/');
  const upstream = lookUpUpstream(config, host).name;
  const stored = [`${PROXY_PREFIX}${upstream}`, ...rest].join('/');
  if (!isValidName(stored)) throw new RegistryError('NAME_INVALID', { message: `${prefix} is not a name prefix`, detail: { prefix } });
  return stored;
}

export interface ConfiguredPins {
  images: Array<{ repository: string; reference: string }>;
  prefixes: Array<{ prefix: string; tagPattern: string | null }>;
}

/** The configured pins with stored names; the configuration was validated (`pinProblem`) when loaded. */
export function configuredPins(config: ProxyConfig): ConfiguredPins {
  const pins: ConfiguredPins = { images: [], prefixes: [] };
  for (const pin of config.pin) {
    if (pin.image !== '') {
      const { name, reference } = splitReference(pin.image)!;
      pins.images.push({ repository: pinnedName(config, name), reference });
    } else {
      pins.prefixes.push({ prefix: pinnedPrefix(config, pin.prefix), tagPattern: pin.tags === '' ? null : pin.tags });
    }
  }
  // A [[proxy.sync]] entry with pin = true: its tags, or every tag its pattern finds (unanchored, as it searches).
  for (const entry of config.sync) {
    if (!entry.pin) continue;
    const repository = storedName(config, entry.image);
    if (entry.tag_pattern === '') for (const tag of entry.tags) pins.images.push({ repository, reference: tag });
    else pins.prefixes.push({ prefix: repository, tagPattern: `.*(?:${entry.tag_pattern}).*` });
  }
  return pins;
}

/** What the schema cannot say about `[[proxy.pin]]`: the first problem as "proxy.pin[<i>].<key>: …", or undefined. */
export function pinProblem(config: Pick<Config, 'proxy'>): string | undefined {
  for (const [index, pin] of config.proxy.pin.entries()) {
    const key = `proxy.pin[${index}]`;
    if ((pin.image === '') === (pin.prefix === '')) {
      return `${key}: set exactly one of image (a name with :tag or @digest) and prefix (with tags, a pattern)`;
    }
    try {
      if (pin.image !== '') {
        if (pin.tags !== '') return `${key}.tags: only with prefix; image names one tag or digest`;
        const parts = splitReference(pin.image);
        if (!parts) return `${key}.image: expected a name with :tag or @digest such as "docker.io/library/alpine:3.20", got ${JSON.stringify(pin.image)}`;
        pinnedName(config.proxy, parts.name);
      } else {
        pinnedPrefix(config.proxy, pin.prefix);
        wholeTagPattern(pin.tags);
      }
    } catch (error) {
      if (error instanceof SyntaxError) return `${key}.tags: not a regular expression: ${error.message}`;
      if (error instanceof RegistryError) return `${key}.${pin.image !== '' ? 'image' : 'prefix'}: ${error.message}`;
      throw error;
    }
  }
  return undefined;
}

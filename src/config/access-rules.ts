import { RegistryError } from '../oci/errors';
import { isValidName } from '../oci/names';
import { DOCKER_HUB, lookUpUpstream, PROXY_PREFIX } from './stored-names';
import type { Config } from './config';

/**
 * What the schema cannot say about `[[auth.rules]]`: rules are checked on the name content is stored under
 * (`storedName`), so a prefix that no stored name can start with protects nothing, silently. Such a prefix
 * is refused, naming the spelling that works: upper case or empty components (never in a name), an upstream
 * spelled as an alias or another of Docker Hub's host names (stored under its canonical name), an upstream
 * the cache does not serve. The first problem as "auth.rules[<i>].prefix: <what is wrong>", or undefined.
 */
export function accessRuleProblem(config: Pick<Config, 'auth' | 'proxy'>): string | undefined {
  for (const [index, { prefix }] of config.auth.rules.entries()) {
    const problem = prefixProblem(config, prefix);
    if (problem) return `auth.rules[${index}].prefix: ${JSON.stringify(prefix)} ${problem}`;
  }
  return undefined;
}

function prefixProblem(config: Pick<Config, 'proxy'>, prefix: string): string | undefined {
  if (prefix === '') return undefined; // every repository
  // One trailing slash is allowed: "team/" and "team" both mean team and what is under it.
  const components = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (!isValidName(components)) {
    return (
      'can never match a repository name: names are lower-case components of letters and digits, separated ' +
      'inside by ".", "_", "__" or "-", joined by single "/" (write "" for every repository)'
    );
  }
  const [first, host, ...image] = components.split('/');
  if (`${first}/` !== PROXY_PREFIX || host === undefined) return undefined;
  let upstream: string;
  try {
    upstream = lookUpUpstream(config.proxy, host).name;
  } catch (error) {
    if (!(error instanceof RegistryError)) throw error;
    return `can never match: nothing is cached under proxy/${host}/ (${error.message})`;
  }
  const rest = image.length > 0 ? `/${image.join('/')}` : '';
  if (upstream !== host) {
    return `can never match: ${host} is cached as ${upstream}; write ${JSON.stringify(`${PROXY_PREFIX}${upstream}${rest}${prefix.endsWith('/') ? '/' : ''}`)}`;
  }
  // Docker Hub's one-component image names are stored under library/: proxy/docker.io/alpine is
  // proxy/docker.io/library/alpine, and a prefix spelled so matches only the images of an account "alpine".
  if (upstream === DOCKER_HUB && image.length === 1 && image[0] !== 'library' && !prefix.endsWith('/')) {
    return (
      `does not match the image ${image[0]}, which is stored as ${JSON.stringify(`${PROXY_PREFIX}${DOCKER_HUB}/library/${image[0]}`)}; ` +
      `write that, or ${JSON.stringify(`${prefix}/`)} for the images of the Docker Hub account ${image[0]}`
    );
  }
  return undefined;
}

import { Config } from '../config/config';
import { RegistryError } from '../http/errors';
import { Logger } from '../log';
import { isValidName } from '../oci/names';
import { PROXY_PREFIX } from '../proxy/upstreams';
import { PullThroughCache } from '../proxy/pull-through-cache';
import { AccessLog } from './access-log';
import { BlobStore } from './blob-store';
import { HostedContent, HostedRepository, Pagination, Repository } from './repository';
import { Page, RegistryIndex } from './registry-index';
import { UploadSessions } from './uploads';

/** The registry's content: hands out repositories by name and lists them. */
export class Registry {
  private readonly hosted: HostedContent;
  private readonly cache: PullThroughCache | null;

  constructor(readonly index: RegistryIndex, config: Config, log: Logger) {
    const store = new BlobStore(config.registry_storage);
    this.hosted = {
      index,
      store,
      uploads: new UploadSessions(index, store, config.temporary_registry_storage),
      accessLog: new AccessLog(index),
    };
    this.cache = config.proxy.enabled ? new PullThroughCache(index, config, log) : null;
  }

  static open(config: Config, log: Logger): Registry {
    return new Registry(new RegistryIndex(config.database), config, log);
  }

  /**
   * The repository called `name`: cached from an upstream under proxy/, hosted otherwise. Routes use
   * either the same way. NAME_INVALID when the name breaks the dist-spec grammar.
   */
  repository(name: string): Repository {
    if (!isValidName(name)) throw new RegistryError('NAME_INVALID', { detail: { name } });
    if (name.startsWith(PROXY_PREFIX)) {
      if (!this.cache) throw new RegistryError('NAME_UNKNOWN', { message: 'the pull-through cache is disabled', detail: { name } });
      return this.cache.repository(name);
    }
    return new HostedRepository(name, this.hosted);
  }

  async listRepositories(page: Pagination): Promise<Page<string>> {
    return this.index.listRepositories(page.n, page.last);
  }

  close(): void {
    this.cache?.close();
    this.hosted.accessLog.close();
    this.index.close();
  }
}

import { Config } from '../config/config';
import { RegistryError } from '../http/errors';
import { isValidName } from '../oci/names';
import { AccessLog } from './access-log';
import { BlobStore } from './blob-store';
import { HostedContent, HostedRepository, Pagination, Repository } from './repository';
import { Page, RegistryIndex } from './registry-index';
import { UploadSessions } from './uploads';

/** The registry's content: hands out repositories by name and lists them. */
export class Registry {
  private readonly hosted: HostedContent;

  constructor(readonly index: RegistryIndex, config: Pick<Config, 'registry_storage' | 'temporary_registry_storage'>) {
    const store = new BlobStore(config.registry_storage);
    this.hosted = {
      index,
      store,
      uploads: new UploadSessions(index, store, config.temporary_registry_storage),
      accessLog: new AccessLog(index),
    };
  }

  static open(config: Config): Registry {
    return new Registry(new RegistryIndex(config.database), config);
  }

  /** The repository called `name`; NAME_INVALID when the name breaks the dist-spec grammar. */
  repository(name: string): Repository {
    if (!isValidName(name)) throw new RegistryError('NAME_INVALID', { detail: { name } });
    return new HostedRepository(name, this.hosted);
  }

  async listRepositories(page: Pagination): Promise<Page<string>> {
    return this.index.listRepositories(page.n, page.last);
  }

  close(): void {
    this.hosted.accessLog.close();
    this.index.close();
  }
}

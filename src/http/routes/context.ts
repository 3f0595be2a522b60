import Router from '@koa/router';
import { AccessControl } from '../../auth/access-control';
import { Config } from '../../config/config';
import type { Readiness } from '../../storage/readiness';
import type { Pin, PinTarget } from '../../storage/pins';
import type { Page } from '../../storage/registry-index';
import type { Pagination, Repository } from '../../storage/repository';

/**
 * The registry's content as routes see it. `src/registry.ts` assembles it (hosted storage, the
 * pull-through cache, GHCR's catalog) above this layer; routes know only this much of it.
 */
export interface RegistryContent {
  /** The repository called `name`, hosted or cached: routes use either the same way. */
  repository(name: string): Repository;
  /** Repository names, hosted, cached and GHCR's; under `prefix` (a mirror's proxy/<upstream>/) without it. */
  listRepositories(page: Pagination, prefix?: string): Promise<Page<string>>;
  /** Whether storage takes writes and the index answers (`/readyz`). */
  readiness(): Promise<Readiness>;
  /** Pins on cached content (`/api/pins`). */
  pins: PinRegistry;
}

/** Pins as the API manages them. */
export interface PinRegistry {
  /** Pins an image; `created` false when the API had pinned it already, `cached` whether it is cached now. */
  add(target: PinTarget, createdBy: string | null): Promise<{ created: boolean; cached: boolean }>;
  /** Removes a pin the API set; false when there is none. */
  remove(target: PinTarget): Promise<boolean>;
  list(): Promise<Pin[]>;
}

/** What every route module is given. */
export interface RouteDependencies {
  registry: RegistryContent;
  config: Config;
  /** null (or absent) when auth is off: everything is listed. */
  access?: AccessControl | null;
}

export type RegistryRouter = Router;

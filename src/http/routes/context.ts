import Router from '@koa/router';
import { AccessControl } from '../../auth/access-control';
import { Config } from '../../config/config';
import { Registry } from '../../storage/registry';

/** What every route module is given. */
export interface RouteDependencies {
  registry: Registry;
  config: Config;
  /** null (or absent) when auth is off: everything is listed. */
  access?: AccessControl | null;
}

export type RegistryRouter = Router;

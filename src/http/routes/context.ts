import Router from '@koa/router';
import { Config } from '../../config/config';
import { Registry } from '../../storage/registry';

/** What every route module is given. */
export interface RouteDependencies {
  registry: Registry;
  config: Config;
}

export type RegistryRouter = Router;

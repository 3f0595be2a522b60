import { AccessControl } from '../auth/access-control';
import { Config } from '../config/config';
import { Logger } from '../log';
import { Sessions } from './sessions';
import { UiCatalog } from './ui-catalog';

/** What the UI's route modules are given. */
export interface UiDependencies {
  catalog: UiCatalog;
  /** null when auth is off: everyone may do everything, as on /v2/. */
  access: AccessControl | null;
  sessions: Sessions;
  config: Config;
  log: Logger;
}

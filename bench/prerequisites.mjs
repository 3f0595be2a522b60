// The reference registry must be on PATH; installed with apt-get as root, as for the tests.
import { ensureTools } from '../scripts/ensure-tools.mjs';

export function ensureDockerRegistry() {
  ensureTools({ 'docker-registry': 'docker-registry' }, 'bench');
}

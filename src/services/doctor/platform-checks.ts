/** doctor's platform checks: is the logged-in platform reachable, and does it accept our token? */
import { ApiClient, ApiRequestError } from '../../core/api-client.js';
import { currentCredentials } from '../../core/credentials.js';
import { errorMessage } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import type { Check } from './doctor.js';

export async function platformChecks(env: NodeJS.ProcessEnv): Promise<Check[]> {
  let credentials;
  try {
    credentials = await currentCredentials(env);
  } catch (error) {
    return [{ name: 'Platform login', ok: false, required: true, detail: errorMessage(error), fix: 'Run `divio logout`, then `divio login`.' }];
  }
  if (!credentials) {
    return [
      {
        name: 'Platform login',
        ok: false,
        // The local environment works without a platform, so this alone does not fail doctor.
        required: false,
        detail: 'not logged in to a platform',
        fix: 'Run `divio login --endpoint URL` (or `divio platform start` to run one here).',
      },
    ];
  }
  const { endpoint, token } = credentials;
  const checks: Check[] = [];
  try {
    const health = await new ApiClient(endpoint, undefined).call(routes.getHealth);
    checks.push({ name: 'Platform reachable', ok: true, required: true, detail: `${endpoint} (version ${health.version})` });
  } catch (error) {
    const degraded = error instanceof ApiRequestError && error.status === 503;
    checks.push({
      name: 'Platform reachable',
      ok: false,
      required: true,
      detail: degraded ? `${endpoint} answers, but some of its components are down` : `${endpoint}: ${errorMessage(error)}`,
      fix: degraded
        ? 'The operator should run `divio platform status` on the platform host.'
        : 'Check the endpoint (`divio whoami`), your network, and that the platform runs (`divio platform start`).',
    });
    if (!degraded) return checks;
  }
  try {
    const me = await new ApiClient(endpoint, token).call(routes.getMe);
    checks.push({
      name: 'Platform login',
      ok: true,
      required: true,
      detail: `${me.user.name} (${me.token.scope} token${credentials.source === 'environment' ? ', from DIVIO_TOKEN' : ''})`,
    });
  } catch (error) {
    checks.push({
      name: 'Platform login',
      ok: false,
      required: true,
      detail: errorMessage(error),
      fix: `Log in again: \`divio login --endpoint ${endpoint}\`.`,
    });
  }
  return checks;
}

/** `project env-vars`: an environment's variables on the platform. */
import { ApiClient } from '../../core/api-client.js';
import { InvalidInputError } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import type { EnvVarsChanged, EnvironmentName } from '../../shared/api/schemas.js';

export async function listEnvVars(client: ApiClient, slug: string, env: EnvironmentName): Promise<Record<string, string>> {
  return (await client.call(routes.listEnvVars, { params: { slug, env } })).variables;
}

/** `NAME=VALUE` pairs from the command line; the value may contain "=". */
export function parseAssignments(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidInputError(`"${pair}" is not NAME=VALUE`, { hint: 'Example: divio project env-vars set DEBUG=false' });
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export async function changeEnvVars(
  client: ApiClient,
  slug: string,
  env: EnvironmentName,
  change: { set?: Record<string, string>; unset?: string[] },
): Promise<EnvVarsChanged> {
  return client.call(routes.changeEnvVars, { params: { slug, env }, body: change });
}

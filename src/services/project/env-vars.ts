/** `project env-vars`: an environment's variables on the platform. */
import { ApiClient } from '../../core/api-client.js';
import type { IO } from '../../core/io.js';
import { followDeployment } from './deploy.js';
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

/** Say when a change takes effect, and follow the redeployment that applies it. */
export async function reportEnvVarsChange(io: IO, json: boolean, client: ApiClient, slug: string, result: EnvVarsChanged): Promise<EnvVarsChanged> {
  // With --json, progress goes to stderr so stdout stays one JSON document.
  const out = (line: string) => (json ? io.stderr : io.stdout).write(`${line}\n`);
  if (!result.deployment) {
    out('Saved. Nothing runs in this environment yet: the variables apply at its first deploy.');
    return result;
  }
  out(`Saved. Takes effect now: redeploying (deployment ${result.deployment.id}) with the new variables.`);
  const final = await followDeployment(client, slug, result.deployment.id, out);
  out('In effect.');
  return { ...result, deployment: final };
}

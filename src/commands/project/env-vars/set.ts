import { Args } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { ApiClient } from '../../../core/api-client.js';
import type { EnvVarsChanged } from '../../../shared/api/schemas.js';
import { appSlug } from '../../../services/project/app-ref.js';
import { deploymentFailed, followLog } from '../../../services/project/deploy.js';
import { changeEnvVars, parseAssignments } from '../../../services/project/env-vars.js';
import { environmentFlag } from './list.js';
import * as routes from '../../../shared/api/routes.js';
import type { IO } from '../../../core/io.js';

export default class EnvVarsSet extends BaseCommand {
  static override summary = 'Set variables on test or live; a running environment is redeployed with them';
  static override aliases = ['app:env-vars:set'];
  static override enableJsonFlag = true;
  static override strict = false;
  static override args = { assignments: Args.string({ description: 'NAME=VALUE (several allowed)', required: true }) };
  static override flags = { ...projectFlags, environment: environmentFlag };

  async run(): Promise<EnvVarsChanged> {
    const { argv, flags } = await this.parse(EnvVarsSet);
    const slug = await appSlug({ app: flags.app });
    const client = await ApiClient.fromCredentials();
    const result = await changeEnvVars(client, slug, flags.environment as 'test' | 'live', { set: parseAssignments(argv as string[]) });
    return applied(this.io, this.jsonEnabled(), client, slug, result);
  }
}

/** Say when the change takes effect, and follow the redeployment that applies it. */
export async function applied(io: IO, json: boolean, client: ApiClient, slug: string, result: EnvVarsChanged): Promise<EnvVarsChanged> {
  // With --json, progress goes to stderr so stdout stays one JSON document.
  const out = (line: string) => (json ? io.stderr : io.stdout).write(`${line}\n`);
  if (!result.deployment) {
    out('Saved. Nothing runs in this environment yet: the variables apply at its first deploy.');
    return result;
  }
  out(`Saved. Takes effect now: redeploying (deployment ${result.deployment.id}) with the new variables.`);
  await followLog(client, slug, result.deployment.id, out);
  const final = await client.call(routes.getDeployment, { params: { slug, id: result.deployment.id } });
  if (final.state !== 'succeeded') throw deploymentFailed(final);
  out('In effect.');
  return { ...result, deployment: final };
}

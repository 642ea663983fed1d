import { Args } from '@oclif/core';
import { BaseCommand, environmentFlag, projectFlags } from '../../../base-command.js';
import type { EnvVarsChanged } from '../../../shared/api/schemas.js';
import { appClient } from '../../../services/project/app-ref.js';
import { changeEnvVars, reportEnvVarsChange } from '../../../services/project/env-vars.js';

export default class EnvVarsUnset extends BaseCommand {
  static override summary = 'Remove variables from test or live; a running environment is redeployed without them';
  static override aliases = ['app:env-vars:unset'];
  static override enableJsonFlag = true;
  static override strict = false;
  static override args = { names: Args.string({ description: 'NAME (several allowed)', required: true }) };
  static override flags = { ...projectFlags, environment: environmentFlag };

  async run(): Promise<EnvVarsChanged> {
    const { argv, flags } = await this.parse(EnvVarsUnset);
    const { slug, client } = await appClient({ app: flags.app });
    const result = await changeEnvVars(client, slug, flags.environment as 'test' | 'live', { unset: argv as string[] });
    return reportEnvVarsChange(this.io, this.jsonEnabled(), client, slug, result);
  }
}

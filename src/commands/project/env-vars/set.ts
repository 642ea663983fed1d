import { Args } from '@oclif/core';
import { BaseCommand, environmentFlag, projectFlags } from '../../../base-command.js';
import type { EnvVarsChanged } from '../../../shared/api/schemas.js';
import { appClient } from '../../../services/project/app-ref.js';
import { changeEnvVars, parseAssignments, reportEnvVarsChange } from '../../../services/project/env-vars.js';

export default class EnvVarsSet extends BaseCommand {
  static override summary = 'Set variables on test or live; a running environment is redeployed with them';
  static override aliases = ['app:env-vars:set'];
  static override enableJsonFlag = true;
  static override strict = false;
  static override args = { assignments: Args.string({ description: 'NAME=VALUE (several allowed)', required: true }) };
  static override flags = { ...projectFlags, environment: environmentFlag };

  async run(): Promise<EnvVarsChanged> {
    const { argv, flags } = await this.parse(EnvVarsSet);
    // Input first: a typo is reported as such, before any login or network matters.
    const set = parseAssignments(argv as string[]);
    const { slug, client } = await appClient({ app: flags.app });
    const result = await changeEnvVars(client, slug, flags.environment as 'test' | 'live', { set });
    return reportEnvVarsChange(this.io, this.jsonEnabled(), client, slug, result);
  }
}

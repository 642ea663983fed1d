import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import type { Environment } from '../../shared/api/schemas.js';
import { appClient } from '../../services/project/app-ref.js';

export default class ProjectConfigure extends BaseCommand {
  static override summary = "Set an environment's branch (used from its next deploy) or replicas (applied now)";
  static override aliases = ['app:configure'];
  static override enableJsonFlag = true;
  static override args = { environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }) };
  static override flags = {
    ...projectFlags,
    branch: Flags.string({ description: 'the branch `deploy` builds for this environment', helpValue: 'BRANCH' }),
    replicas: Flags.integer({ description: 'how many tasks serve it (1-20)', min: 1, max: 20 }),
  };

  async run(): Promise<Environment> {
    const { args, flags } = await this.parse(ProjectConfigure);
    if (flags.branch === undefined && flags.replicas === undefined) {
      throw new DivioError('Nothing to change', { exitCode: ExitCode.usage, hint: 'Pass --branch BRANCH and/or --replicas N.' });
    }
    const { slug, client } = await appClient({ app: flags.app });
    const env = await client.call(routes.changeEnvironment, {
      params: { slug, env: args.environment as 'test' | 'live' },
      body: { branch: flags.branch, replicas: flags.replicas },
    });
    if (flags.branch) this.log(`${slug} ${env.name} deploys the branch ${env.branch} from its next deploy.`);
    if (flags.replicas) this.log(`${slug} ${env.name} runs ${env.replicas} replica${env.replicas === 1 ? '' : 's'} (applied now if it is deployed).`);
    return env;
  }
}

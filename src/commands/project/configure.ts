import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import type { Environment } from '../../shared/api/schemas.js';
import { appClient } from '../../services/project/app-ref.js';

export default class ProjectConfigure extends BaseCommand {
  static override summary = "Set an environment's branch (used from its next deploy), replicas (applied now) or whether pushes may rewrite its branch";
  static override aliases = ['app:configure'];
  static override enableJsonFlag = true;
  static override args = { environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }) };
  static override flags = {
    ...projectFlags,
    branch: Flags.string({ description: 'the branch `deploy` builds for this environment', helpValue: 'BRANCH' }),
    replicas: Flags.integer({ description: 'how many tasks serve it (1-20)', min: 1, max: 20 }),
    'allow-force-push': Flags.boolean({
      description: "let pushes rewrite or delete the environment's branch (refused by default; deployed commits are kept either way)",
      allowNo: true,
    }),
  };

  async run(): Promise<Environment> {
    const { args, flags } = await this.parse(ProjectConfigure);
    const allowForcePush = flags['allow-force-push'];
    if (flags.branch === undefined && flags.replicas === undefined && allowForcePush === undefined) {
      throw new DivioError('Nothing to change', {
        exitCode: ExitCode.usage,
        hint: 'Pass --branch BRANCH, --replicas N and/or --[no-]allow-force-push.',
      });
    }
    const { slug, client } = await appClient({ app: flags.app });
    const env = await client.call(routes.changeEnvironment, {
      params: { slug, env: args.environment as 'test' | 'live' },
      body: { branch: flags.branch, replicas: flags.replicas, allowForcePush },
    });
    if (flags.branch) this.log(`${slug} ${env.name} deploys the branch ${env.branch} from its next deploy.`);
    if (flags.replicas) this.log(`${slug} ${env.name} runs ${env.replicas} replica${env.replicas === 1 ? '' : 's'} (applied now if it is deployed).`);
    if (allowForcePush !== undefined) {
      this.log(
        env.allowForcePush
          ? `${slug} ${env.name}: pushes may now rewrite or delete the branch ${env.branch} (deployed commits are kept).`
          : `${slug} ${env.name}: pushes that rewrite or delete the branch ${env.branch} are refused.`,
      );
    }
    return env;
  }
}

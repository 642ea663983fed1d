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
    'backup-before-release': Flags.boolean({
      description: 'back the database up before each release command runs (on for live by default); the deploy log names the backup',
      allowNo: true,
    }),
  };

  async run(): Promise<Environment> {
    const { args, flags } = await this.parse(ProjectConfigure);
    const allowForcePush = flags['allow-force-push'];
    const backupBeforeRelease = flags['backup-before-release'];
    if (flags.branch === undefined && flags.replicas === undefined && allowForcePush === undefined && backupBeforeRelease === undefined) {
      throw new DivioError('Nothing to change', {
        exitCode: ExitCode.usage,
        hint: 'Pass --branch BRANCH, --replicas N, --[no-]allow-force-push and/or --[no-]backup-before-release.',
      });
    }
    const { slug, client } = await appClient({ app: flags.app });
    const env = await client.call(routes.changeEnvironment, {
      params: { slug, env: args.environment as 'test' | 'live' },
      body: { branch: flags.branch, replicas: flags.replicas, allowForcePush, backupBeforeRelease },
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
    if (backupBeforeRelease !== undefined) {
      this.log(
        env.backupBeforeRelease
          ? `${slug} ${env.name}: the database is backed up before each release command.`
          : `${slug} ${env.name}: release commands run without a backup first.`,
      );
    }
    return env;
  }
}

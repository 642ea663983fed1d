import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import { appClient } from '../../services/project/app-ref.js';
import { followLog } from '../../services/project/deploy.js';

export default class ProjectDeployLog extends BaseCommand {
  static override summary = "A deployment's build and release log (default: the latest deployment)";
  static override aliases = ['app:deploy-log'];
  static override args = { id: Args.string({ description: 'deployment id (see `divio project deployments`)' }) };
  static override flags = {
    ...projectFlags,
    follow: Flags.boolean({ char: 'f', description: 'keep printing until the deployment ends' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProjectDeployLog);
    const { slug, client } = await appClient({ app: flags.app });
    let id = args.id;
    if (!id) {
      const { deployments } = await client.call(routes.listDeployments, { params: { slug } });
      id = deployments[0]?.id;
      if (!id) throw new DivioError(`${slug} has no deployments yet`, { exitCode: ExitCode.failure, hint: 'divio project deploy test' });
    }
    await followLog(client, slug, id, (line) => this.io.stdout.write(`${line}\n`), flags.follow);
  }
}

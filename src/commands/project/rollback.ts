import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { confirmOverwrite } from '../../core/confirm.js';
import * as routes from '../../shared/api/routes.js';
import type { Deployment } from '../../shared/api/schemas.js';
import { appClient } from '../../services/project/app-ref.js';
import { followDeployment } from '../../services/project/deploy.js';

export default class ProjectRollback extends BaseCommand {
  static override summary = "Serve an earlier successful deployment's image again (default: the one before the current)";
  static override description =
    'Goes through the same health-checked, start-first rollout as a deploy; the release command is not run again.';
  static override aliases = ['app:rollback'];
  static override enableJsonFlag = true;
  static override args = {
    environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }),
    deployment: Args.string({ description: 'deployment id to serve again (see `divio project deployments`)' }),
  };
  static override flags = { ...projectFlags, yes: Flags.boolean({ char: 'y', description: 'confirm rolling back live without asking' }) };

  async run(): Promise<Deployment> {
    const { args, flags } = await this.parse(ProjectRollback);
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    if (environment === 'live') {
      await confirmOverwrite(this.io, { yes: flags.yes, action: `Rolling ${slug} live back`, slug, typeSlug: true, platform: client.endpoint });
    }
    const started = await client.call(routes.rollback, {
      params: { slug, env: environment },
      body: args.deployment ? { deployment: args.deployment } : {},
    });
    const logStream = this.jsonEnabled() ? this.io.stderr : this.io.stdout;
    return followDeployment(client, slug, started.id, (line) => logStream.write(`${line}\n`));
  }
}

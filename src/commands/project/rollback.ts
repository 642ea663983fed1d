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
    'Goes through the same health-checked, start-first rollout as a deploy, with the variables that deployment ran with; ' +
    'the release command is not run again. With --with-database the database is put back from the backup taken before ' +
    'the release being undone (live takes one before every release). Live asks you to type the slug, or --yes.';
  static override aliases = ['app:rollback'];
  static override enableJsonFlag = true;
  static override args = {
    environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }),
    deployment: Args.string({ description: 'deployment id to serve again (see `divio project deployments`)' }),
  };
  static override flags = {
    ...projectFlags,
    yes: Flags.boolean({ char: 'y', description: 'confirm rolling back live (or the database) without asking' }),
    'with-database': Flags.boolean({
      description:
        'also put the database back as it was before the release being undone (the backup taken before it); the database it replaces is kept as a backup',
    }),
  };

  async run(): Promise<Deployment> {
    const { args, flags } = await this.parse(ProjectRollback);
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    const withDatabase = flags['with-database'];
    if (environment === 'live' || withDatabase) {
      await confirmOverwrite(this.io, {
        yes: flags.yes,
        action: `Rolling ${slug} ${environment} back${withDatabase ? `, its database too (changes since that release are replaced; the current database is kept as a backup)` : ''}`,
        slug,
        typeSlug: environment === 'live',
        platform: client.endpoint,
      });
    }
    const started = await client.call(routes.rollback, {
      params: { slug, env: environment },
      body: { ...(args.deployment ? { deployment: args.deployment } : {}), ...(withDatabase ? { withDatabase: true } : {}) },
    });
    const logStream = this.jsonEnabled() ? this.io.stderr : this.io.stdout;
    return followDeployment(client, slug, started.id, (line) => logStream.write(`${line}\n`));
  }
}

import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { ApiClient } from '../../core/api-client.js';
import { confirmOverwrite } from '../../core/confirm.js';
import { InvalidInputError } from '../../core/errors.js';
import { deleteApp, deletedLines } from '../../services/project/delete.js';
import type { DeletedApp } from '../../shared/api/schemas.js';
import { SLUG_PATTERN } from '../../shared/project-config.js';

export default class ProjectDelete extends BaseCommand {
  static override summary = 'Delete an app from the platform';
  static override description =
    'Its services and release jobs stop at once; its routes, images and repository go; its host answers "nothing deployed". ' +
    "Its databases and media are kept, closed to everyone, for the platform's grace period (7 days by default), then purged. " +
    "Asks you to type the slug, or --yes (needed without a terminal).";
  static override aliases = ['app:delete'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project delete shop', '<%= config.bin %> project delete shop --yes --json'];
  static override args = {
    slug: Args.string({ description: "the app's slug (see `divio project list`)", required: true }),
  };
  static override flags = {
    yes: Flags.boolean({ char: 'y', description: 'delete without asking' }),
  };

  async run(): Promise<DeletedApp> {
    const { args, flags } = await this.parse(ProjectDelete);
    if (!SLUG_PATTERN.test(args.slug)) {
      throw new InvalidInputError(`"${args.slug}" is not an app slug`, { hint: 'See `divio project list` for your apps.' });
    }
    const client = await ApiClient.fromCredentials();
    await confirmOverwrite(this.io, {
      yes: flags.yes,
      action: `Deleting the app ${args.slug} (test and live stop now; their data is kept for the grace period)`,
      slug: args.slug,
      typeSlug: true,
      platform: client.endpoint,
    });
    const deleted = await this.io.task(`Deleting ${args.slug}`, () => deleteApp(client, args.slug));
    for (const line of deletedLines(deleted)) this.log(line);
    return deleted;
  }
}

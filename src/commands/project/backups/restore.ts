import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { confirmOverwrite } from '../../../core/confirm.js';
import { InvalidInputError } from '../../../core/errors.js';
import { appClient } from '../../../services/project/app-ref.js';
import { prunedLines, restoreBackup } from '../../../services/project/data/backups.js';
import { dataId } from '../../../shared/api/schemas.js';

export default class BackupsRestore extends BaseCommand {
  static override summary = "Put a backup in place of an environment's database";
  static override description =
    "A copy of the backup replaces the environment's database; the database it replaces is kept as a backup in turn. " +
    'Asks for confirmation (live: type the slug), or --yes.';
  static override aliases = ['app:backups:restore'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project backups restore test 3f9c0a1b2c3d4e5f'];
  static override args = {
    environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }),
    id: Args.string({ description: 'the backup (see `divio project backups list`)', required: true }),
  };
  static override flags = {
    ...projectFlags,
    yes: Flags.boolean({ char: 'y', description: "confirm replacing the environment's database without asking" }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(BackupsRestore);
    if (!dataId.safeParse(args.id).success) {
      throw new InvalidInputError(`"${args.id}" is not a backup id`, { hint: 'Backup ids are 16 hex characters; see `divio project backups list`.' });
    }
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    await confirmOverwrite(this.io, {
      yes: flags.yes,
      action: `Replacing the ${environment} database of ${slug} with backup ${args.id} (the current one is kept as a backup)`,
      slug,
      typeSlug: environment === 'live',
      platform: client.endpoint,
    });
    const result = await this.io.task(`Restoring backup ${args.id} on ${environment}`, () => restoreBackup({ client, slug, environment }, args.id));
    this.log(`Restored backup ${args.id} into the ${environment} database of ${slug}.`);
    if (result.backup) this.log(`The database it replaced is kept as backup ${result.backup.id}.`);
    for (const line of prunedLines(result.prunedBackups)) this.log(line);
    return result;
  }
}

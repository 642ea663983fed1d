import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { formatBytes } from '../../../core/io.js';
import { appClient } from '../../../services/project/app-ref.js';
import { createBackup, prunedLines } from '../../../services/project/data/backups.js';

export default class BackupsCreate extends BaseCommand {
  static override summary = "Take a backup of an environment's database now";
  static override description =
    'The platform copies the database (one consistent snapshot; the app keeps running) and keeps the copy with the other backups, ' +
    'for `divio project backups restore` or `download`.';
  static override aliases = ['app:backups:create'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project backups create live'];
  static override args = { environment: environmentArg() };
  static override flags = { ...projectFlags };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(BackupsCreate);
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    const result = await this.io.task(`Backing up the ${environment} database of ${slug}`, () => createBackup({ client, slug, environment }));
    this.log(`Took backup ${result.backup.id} of the ${environment} database of ${slug} (${formatBytes(result.backup.sizeBytes)}).`);
    for (const line of prunedLines(result.prunedBackups)) this.log(line);
    return result;
  }
}

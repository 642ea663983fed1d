import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { appClient } from '../../../services/project/app-ref.js';
import { listBackups, renderBackupTable, type BackupListing } from '../../../services/project/data/backups.js';

export default class BackupsList extends BaseCommand {
  static override summary = 'The database copies the platform keeps for an environment, newest first: why each was taken, when, its size';
  static override description =
    'Every push db and backup restore keeps the database it replaces; live can also be backed up daily (`divio platform start --backup-schedule`), ' +
    'and `divio project backups create` takes one at any time. The platform keeps the newest few, the newest of each reason, and every backup ' +
    'younger than a number of days (3, and 7 days, unless the operator set otherwise); an operation that prunes a backup names it.';
  static override aliases = ['app:backups:list'];
  static override enableJsonFlag = true;
  static override args = { environment: environmentArg() };
  static override flags = { ...projectFlags };

  async run(): Promise<BackupListing> {
    const { args, flags } = await this.parse(BackupsList);
    const { slug, client } = await appClient({ app: flags.app });
    const listing = await listBackups({ client, slug, environment: args.environment as 'test' | 'live' });
    if (!this.jsonEnabled()) for (const line of renderBackupTable(listing)) this.io.out(line);
    return listing;
  }
}

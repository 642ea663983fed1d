import { BaseCommand, projectFlags } from '../../../base-command.js';
import { localSnapshots } from '../../../services/project/db/local-snapshots.js';
import { renderSnapshotTable, type Snapshot } from '../../../services/project/db/snapshots.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';

export default class SnapshotsList extends BaseCommand {
  static override summary = 'The local database snapshots of this project, newest first';
  static override description =
    'pull db, import db and snapshots restore keep the local database they replace as a snapshot; the last few are kept.';
  static override aliases = ['app:snapshots:list'];
  static override enableJsonFlag = true;
  static override flags = { ...projectFlags };

  async run(): Promise<{ app: string; snapshots: Snapshot[] }> {
    const { flags } = await this.parse(SnapshotsList);
    const local = await openLocalEnvironment({ app: flags.app });
    const listing = await localSnapshots(local, this.io);
    if (!this.jsonEnabled()) for (const line of renderSnapshotTable(listing.app, listing.snapshots)) this.io.out(line);
    return listing;
  }
}

import { Args } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { restoreLocalSnapshot } from '../../../services/project/db/local-snapshots.js';
import { snapshotKeptLine } from '../../../services/project/db/snapshots.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';

export default class SnapshotsRestore extends BaseCommand {
  static override summary = 'Put a local snapshot back in place of the local database';
  static override description =
    'Atomic, like an import: a copy of the snapshot replaces the database in one step, and the database it replaces is ' +
    'kept as a new snapshot, so a restore can itself be undone. The snapshot stays.';
  static override aliases = ['app:snapshots:restore'];
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ description: 'the snapshot (see `divio project snapshots list`)', required: true }) };
  static override flags = { ...projectFlags };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(SnapshotsRestore);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await restoreLocalSnapshot(local, this.io, args.id);
    this.log(`Restored local snapshot ${args.id} (${result.restored.reason}, ${result.restored.createdAt}) into the local database of ${result.app}.`);
    if (result.snapshot) this.log(snapshotKeptLine(result.snapshot));
    return result;
  }
}

import { Args } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { deleteLocalSnapshot } from '../../../services/project/db/local-snapshots.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';

export default class SnapshotsDelete extends BaseCommand {
  static override summary = 'Delete a local database snapshot';
  static override aliases = ['app:snapshots:delete'];
  static override enableJsonFlag = true;
  static override args = { id: Args.string({ description: 'the snapshot (see `divio project snapshots list`)', required: true }) };
  static override flags = { ...projectFlags };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(SnapshotsDelete);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await deleteLocalSnapshot(local, this.io, args.id);
    this.log(`Deleted local snapshot ${args.id} of ${result.app}.`);
    return result;
  }
}

import { Flags } from '@oclif/core';
import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { projectClient } from '../../../services/project/app-ref.js';
import { formatBytes, formatSeconds } from '../../../core/io.js';
import { pullDatabase, type DatabaseTransferResult } from '../../../services/project/data/database.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';
import { snapshotKeptLine, type Snapshot } from '../../../services/project/db/snapshots.js';

export default class PullDb extends BaseCommand {
  static override summary = "Replace the local database with a copy of an environment's";
  static override description =
    "The environment's database is dumped on the platform (pg_dump of the cluster's version) and streamed into a new " +
    'local database, which replaces the current one only when the restore succeeded and the digests of what was sent ' +
    'and what arrived agree. Any failure or interruption leaves the local database as it was. The database it ' +
    'replaces is kept as a local snapshot (`divio project snapshots`), unless --no-snapshot.';
  static override aliases = ['app:pull:db'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project pull db', '<%= config.bin %> project pull db live'];
  static override args = { environment: environmentArg() };
  static override flags = {
    ...projectFlags,
    snapshot: Flags.boolean({ description: 'keep the replaced local database as a snapshot', default: true, allowNo: true }),
  };

  async run(): Promise<DatabaseTransferResult & { snapshot: Snapshot | null }> {
    const { args, flags } = await this.parse(PullDb);
    const local = await openLocalEnvironment({ app: flags.app });
    const client = await projectClient(local.project.config.endpoint);
    const environment = args.environment as 'test' | 'live';
    const result = await pullDatabase(local, this.io, { client, slug: local.project.slug, environment }, { snapshot: flags.snapshot });
    this.log(
      `Pulled the ${environment} database of ${result.app} into the local database: ${formatBytes(result.bytes)} in ${formatSeconds(result.durationMs)}, sha256 ${result.sha256.slice(0, 12)}… verified on both sides.`,
    );
    if (result.snapshot) this.log(snapshotKeptLine(result.snapshot));
    return result;
  }
}

import { Flags } from '@oclif/core';
import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { projectClient } from '../../../services/project/app-ref.js';
import { confirmOverwrite } from '../../../core/confirm.js';
import { formatBytes, formatSeconds } from '../../../core/io.js';
import { pushDatabase, type DatabaseTransferResult } from '../../../services/project/data/database.js';
import { prunedLines } from '../../../services/project/data/backups.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';

export default class PushDb extends BaseCommand {
  static override summary = "Replace an environment's database with a copy of the local one";
  static override description =
    'The local database is dumped and streamed to the platform, which restores it into a new database and swaps it in ' +
    'only when the restore succeeded and both sides agree on the digest of the stream. The database it replaces is ' +
    'kept as a backup (`divio project backups list`). Asks for confirmation (live: type the slug), or --yes.';
  static override aliases = ['app:push:db'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project push db', '<%= config.bin %> project push db live --yes'];
  static override args = { environment: environmentArg() };
  static override flags = {
    ...projectFlags,
    yes: Flags.boolean({ char: 'y', description: "confirm replacing the environment's database without asking" }),
  };

  async run(): Promise<DatabaseTransferResult> {
    const { args, flags } = await this.parse(PushDb);
    const environment = args.environment as 'test' | 'live';
    const local = await openLocalEnvironment({ app: flags.app });
    const slug = local.project.slug;
    const client = await projectClient(local.project.config.endpoint);
    await confirmOverwrite(this.io, {
      yes: flags.yes,
      action: `Replacing the ${environment} database of ${slug} with the local database (the current one is kept as a backup)`,
      slug,
      typeSlug: environment === 'live',
      platform: client.endpoint,
    });
    const result = await pushDatabase(local, this.io, { client, slug, environment });
    this.log(
      `Pushed the local database to ${environment}: ${formatBytes(result.bytes)} in ${formatSeconds(result.durationMs)}, sha256 ${result.sha256.slice(0, 12)}… verified on both sides.`,
    );
    if (result.backup) this.log(`The database it replaced is kept as backup ${result.backup.id} (divio project backups restore ${environment} ${result.backup.id}).`);
    for (const line of prunedLines(result.prunedBackups)) this.log(line);
    return result;
  }
}

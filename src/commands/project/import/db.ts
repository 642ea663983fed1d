import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { importDatabase, type ImportResult } from '../../../services/project/db/import.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';
import { snapshotKeptLine } from '../../../services/project/db/snapshots.js';

export default class ImportDb extends BaseCommand {
  static override summary = 'Replace the local database with a dump';
  static override description =
    'Reads plain SQL, gzip-compressed SQL or a PostgreSQL custom-format dump (told apart by content, not by name). ' +
    'The dump is restored into a new database that replaces the current one only if the restore succeeded; ' +
    'on any error the local database stays exactly as it was. psql meta-commands in a dump never run. The database ' +
    'it replaces is kept as a local snapshot (`divio project snapshots`), unless --no-snapshot.';
  static override aliases = ['app:import:db'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project import db backup.dump', 'gunzip -c dump.sql.gz | <%= config.bin %> project import db -'];
  static override args = { file: Args.string({ description: 'the dump, or - for standard input', required: true }) };
  static override flags = {
    ...projectFlags,
    jobs: Flags.integer({ description: 'parallel restore jobs for custom-format dumps', default: 2, min: 1, max: 16 }),
    snapshot: Flags.boolean({ description: 'keep the replaced local database as a snapshot', default: true, allowNo: true }),
  };

  async run(): Promise<ImportResult> {
    const { args, flags } = await this.parse(ImportDb);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await importDatabase(local, this.io, { source: args.file, jobs: flags.jobs, snapshotReason: flags.snapshot ? 'import db' : null });
    this.log(`Imported ${args.file === '-' ? 'standard input' : args.file} into the local database of ${result.app}.`);
    if (result.snapshot) this.log(snapshotKeptLine(result.snapshot));
    return result;
  }
}

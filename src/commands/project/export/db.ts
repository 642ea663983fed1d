import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { exportDatabase, type ExportResult } from '../../../services/project/db/export.js';
import { openLocalEnvironment } from '../../../services/project/local-environment.js';

export default class ExportDb extends BaseCommand {
  static override summary = 'Write the local database to a dump file';
  static override description =
    'Custom format by default (restore it with `divio project import db` or pg_restore). The dump is read back fully before success is reported.';
  static override aliases = ['app:export:db'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project export db', '<%= config.bin %> project export db - > backup.dump'];
  static override args = { file: Args.string({ description: 'where to write it, or - for standard output (default: APP-DATE.dump)' }) };
  static override flags = {
    ...projectFlags,
    format: Flags.option({ options: ['custom', 'plain', 'gzip'] as const, default: 'custom', description: 'custom (pg_dump -Fc), plain SQL, or gzip-compressed SQL' })(),
  };

  async run(): Promise<ExportResult> {
    const { args, flags } = await this.parse(ExportDb);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await exportDatabase(local, this.io, { target: args.file, format: flags.format });
    if (result.file) this.logToStderr(`Exported the local database of ${result.app} to ${result.file} (${result.bytes} bytes, sha256 ${result.sha256.slice(0, 12)}…).`);
    return result;
  }
}

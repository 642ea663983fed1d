import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../../base-command.js';
import { formatBytes } from '../../../core/io.js';
import { appClient } from '../../../services/project/app-ref.js';
import { downloadBackup, type BackupDownload } from '../../../services/project/data/backups.js';

export default class BackupsDownload extends BaseCommand {
  static override summary = 'Save a backup as a PostgreSQL custom-format dump';
  static override description =
    'Streams the backup to FILE (default SLUG-ENV-ID.dump) as a custom-format dump, which `divio project import db FILE` and pg_restore take. ' +
    'FILE appears only once the whole dump arrived and matches what the platform sent; an existing FILE is kept unless --force.';
  static override aliases = ['app:backups:download'];
  static override enableJsonFlag = true;
  static override examples = [
    '<%= config.bin %> project backups download live 3f9c0a1b2c3d4e5f',
    '<%= config.bin %> project backups download test 3f9c0a1b2c3d4e5f before-migration.dump',
  ];
  static override args = {
    environment: Args.string({ description: 'test or live', options: ['test', 'live'], required: true }),
    id: Args.string({ description: 'the backup (see `divio project backups list`)', required: true }),
    file: Args.string({ description: 'where to write the dump (default SLUG-ENV-ID.dump)' }),
  };
  static override flags = {
    ...projectFlags,
    force: Flags.boolean({ description: 'replace FILE if it exists' }),
  };

  async run(): Promise<BackupDownload> {
    const { args, flags } = await this.parse(BackupsDownload);
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    const result = await this.io.task(`Downloading backup ${args.id} of ${environment}`, () =>
      downloadBackup({ client, slug, environment }, args.id, { file: args.file, force: flags.force }),
    );
    this.log(`Saved backup ${args.id} to ${result.file} (${formatBytes(result.bytes)}, sha256 ${result.sha256.slice(0, 12)}… verified); \`divio project import db ${result.file}\` loads it.`);
    return result;
  }
}

import { Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { startPlatform, type StartResult } from '../../services/platform/start.js';

export default class PlatformStart extends BaseCommand {
  static override summary = 'Run the platform on this host as Docker Swarm services, and log in to it as the operator';
  static override description =
    'Runs the API, git hosting, registry, router, PostgreSQL and media storage as Swarm services on this engine ' +
    '(initialising a single-node swarm when the engine is in none). Data lives in the data directory, so ' +
    '`divio platform stop` and a later start keep everything. Starting again changes nothing that is already running.';
  static override enableJsonFlag = true;
  static override examples = [
    '<%= config.bin %> platform start',
    '<%= config.bin %> platform start --port 8700 --domain apps.example.com',
  ];
  static override flags = {
    'data-dir': Flags.string({
      description: 'where the platform keeps its data (default: the one the last start used, else $XDG_DATA_HOME/divio/platform)',
      helpValue: 'DIR',
    }),
    port: Flags.integer({ description: "the router's public port (default 8600; kept for later starts)", min: 1, max: 65535 }),
    domain: Flags.string({ description: 'apps answer at ENV-SLUG.DOMAIN (default localhost; kept for later starts)', helpValue: 'DOMAIN' }),
    name: Flags.string({ description: 'prefix of the Swarm objects (default divio)', hidden: true }),
    'backups-keep': Flags.integer({
      description: 'database copies kept per environment by push db and backup restores (default 3; kept for later starts)',
      min: 1,
      max: 100,
      helpValue: 'N',
    }),
    'backups-keep-days': Flags.integer({
      description: 'backups younger than this many days are kept too, up to --backups-max (default 7; kept for later starts)',
      min: 0,
      max: 3650,
      helpValue: 'DAYS',
    }),
    'backups-max': Flags.integer({ description: 'most backups kept per environment by age (default 10; kept for later starts)', min: 1, max: 1000, helpValue: 'N' }),
    'deleted-apps-days': Flags.integer({
      description: "days a deleted app's databases and media are kept before they are purged (default 7; kept for later starts)",
      min: 0,
      max: 3650,
      helpValue: 'DAYS',
    }),
    'backup-schedule': Flags.string({
      description: 'back up every live database daily at this time, UTC (HH:MM); off stops it (kept for later starts)',
      helpValue: 'HH:MM',
    }),
    timeout: Flags.integer({ description: 'seconds to wait for every component to answer', default: 300, min: 1 }),
  };

  async run(): Promise<StartResult> {
    const { flags } = await this.parse(PlatformStart);
    const result = await startPlatform(this.io, {
      dataDir: flags['data-dir'],
      port: flags.port,
      domain: flags.domain,
      name: flags.name,
      backupsKeep: flags['backups-keep'],
      backupsKeepDays: flags['backups-keep-days'],
      backupsMax: flags['backups-max'],
      backupSchedule: flags['backup-schedule'],
      deletedAppsDays: flags['deleted-apps-days'],
      timeoutMs: flags.timeout * 1000,
    });
    const changed = result.components.filter((c) => c.action !== 'unchanged');
    this.log(
      changed.length === 0
        ? `The platform was already running at ${result.endpoint}`
        : `The platform is running at ${result.endpoint}`,
    );
    this.log(`  data: ${result.dataDir}`);
    this.log(`  apps: http://ENV-SLUG.${result.domain}:${result.port}`);
    this.log(result.login === 'new' ? 'Logged in as the operator.' : 'You are logged in as the operator.');
    return result;
  }
}

import { Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';
import { up, type UpResult } from '../../services/project/up.js';

export default class ProjectUp extends BaseCommand {
  static override summary = 'Start the local environment and wait until it answers';
  static override description =
    'Generates docker-compose.yml from divio.yaml when needed (never overwriting your edits), starts web and db, ' +
    "runs the release command, waits for the health check, and prints the URL. The host port is chosen once per checkout and kept.";
  static override aliases = ['app:up'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project up', '<%= config.bin %> project up --build --live-config'];
  static override flags = {
    ...projectFlags,
    build: Flags.boolean({ description: 'rebuild the web image first' }),
    'live-config': Flags.boolean({ description: 'run as live does: DEBUG=false and the production web command' }),
    'skip-release': Flags.boolean({ description: "don't run divio.yaml's release command" }),
    timeout: Flags.integer({ description: 'seconds to wait for the health check', default: 180, min: 1 }),
  };

  async run(): Promise<UpResult> {
    const { flags } = await this.parse(ProjectUp);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await up(local, this.io, {
      build: flags.build,
      liveConfig: flags['live-config'],
      release: !flags['skip-release'],
      timeoutMs: flags.timeout * 1000,
    });
    this.log(`${local.project.slug} is up at ${result.url}`);
    return result;
  }
}

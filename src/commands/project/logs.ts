import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';
import { showLogs } from '../../services/project/logs.js';

export default class ProjectLogs extends BaseCommand {
  static override summary = 'Show the logs of the local environment';
  static override aliases = ['app:logs'];
  static override args = { service: Args.string({ description: 'one service (web, db); default: all' }) };
  static override flags = {
    ...projectFlags,
    follow: Flags.boolean({ char: 'f', description: 'keep printing new lines' }),
    tail: Flags.integer({ description: 'lines from the end of each log', min: 0 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProjectLogs);
    const local = await openLocalEnvironment({ app: flags.app });
    const code = await showLogs(local, this.io, { follow: flags.follow, service: args.service, tail: flags.tail });
    if (code !== 0) this.exit(code);
  }
}

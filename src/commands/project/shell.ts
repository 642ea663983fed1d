import { Args } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { execInService, SHELL_COMMAND } from '../../services/project/exec.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';

export default class ProjectShell extends BaseCommand {
  static override summary = "Open a shell in a local service's container";
  static override aliases = ['app:shell'];
  static override args = { service: Args.string({ description: 'the service', default: 'web' }) };
  static override flags = { ...projectFlags };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProjectShell);
    const local = await openLocalEnvironment({ app: flags.app });
    const code = await execInService(local, this.io, { service: args.service, command: SHELL_COMMAND });
    if (code !== 0) this.exit(code);
  }
}

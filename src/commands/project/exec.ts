import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { execInService } from '../../services/project/exec.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';

export default class ProjectExec extends BaseCommand {
  static override summary = "Run a command in a local service's container";
  static override description = "The command's exit code becomes divio's; stdin is passed through, with a TTY when interactive.";
  static override aliases = ['app:exec'];
  static override strict = false;
  static override examples = ['<%= config.bin %> project exec web -- node migrate.js', '<%= config.bin %> project exec db -- psql -U postgres app'];
  static override args = { service: Args.string({ description: 'the service (web, db)', required: true }) };
  static override flags = {
    ...projectFlags,
    'no-tty': Flags.boolean({ description: 'never allocate a TTY' }),
  };

  async run(): Promise<void> {
    const { args, flags, argv } = await this.parse(ProjectExec);
    const command = (argv as string[]).slice(1);
    if (command.length === 0) {
      throw new DivioError('no command given', {
        exitCode: ExitCode.usage,
        hint: `Put it after --, e.g. \`divio project exec ${args.service} -- ls -la\`.`,
      });
    }
    const local = await openLocalEnvironment({ app: flags.app });
    const code = await execInService(local, this.io, {
      service: args.service,
      command,
      tty: flags['no-tty'] ? false : undefined,
    });
    if (code !== 0) this.exit(code);
  }
}

import { Args, Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { appClient } from '../../services/project/app-ref.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';
import { showLogs } from '../../services/project/logs.js';
import { streamRuntimeLogs } from '../../services/project/runtime-logs.js';

const PLATFORM_ENVIRONMENTS = ['test', 'live'];

export default class ProjectLogs extends BaseCommand {
  static override summary = 'Show logs: of test or live on the platform (all replicas), or of the local environment';
  static override description =
    '`divio project logs test` (or live) shows the environment\'s runtime output on the platform; ' +
    '`divio project logs [SERVICE]` shows the local environment\'s (web, db).';
  static override aliases = ['app:logs'];
  static override args = { target: Args.string({ description: 'test or live; or a local service (web, db); default: all local services' }) };
  static override flags = {
    ...projectFlags,
    follow: Flags.boolean({ char: 'f', description: 'keep printing new lines' }),
    tail: Flags.integer({ description: 'lines from the end of each log', min: 0 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProjectLogs);
    if (args.target && PLATFORM_ENVIRONMENTS.includes(args.target)) {
      const { slug, client } = await appClient({ app: flags.app });
      await streamRuntimeLogs(client, slug, args.target as 'test' | 'live', { follow: flags.follow, tail: flags.tail }, (chunk) =>
        this.io.stdout.write(chunk),
      );
      return;
    }
    const local = await openLocalEnvironment({ app: flags.app });
    const code = await showLogs(local, this.io, { follow: flags.follow, service: args.target, tail: flags.tail });
    if (code !== 0) this.exit(code);
  }
}

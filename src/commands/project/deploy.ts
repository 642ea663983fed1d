import { Flags } from '@oclif/core';
import { BaseCommand, environmentArg, projectFlags } from '../../base-command.js';
import { confirmOverwrite } from '../../core/confirm.js';
import type { Deployment } from '../../shared/api/schemas.js';
import { appClient } from '../../services/project/app-ref.js';
import { deploy } from '../../services/project/deploy.js';

export default class ProjectDeploy extends BaseCommand {
  static override summary = "Deploy an environment's branch head: build once, release, roll out";
  static override description =
    'Streams the build and release log; the exit code is the outcome. Deploying live asks for confirmation (type the slug), or --yes.';
  static override aliases = ['app:deploy'];
  static override enableJsonFlag = true;
  static override args = { environment: environmentArg() };
  static override flags = {
    ...projectFlags,
    commit: Flags.string({ description: 'deploy this commit (full id) instead of the branch head', helpValue: 'SHA' }),
    'no-wait': Flags.boolean({ description: 'return once the deployment is accepted' }),
    yes: Flags.boolean({ char: 'y', description: 'confirm deploying live without asking' }),
  };

  async run(): Promise<Deployment> {
    const { args, flags } = await this.parse(ProjectDeploy);
    const environment = args.environment as 'test' | 'live';
    const { slug, client } = await appClient({ app: flags.app });
    if (environment === 'live') {
      await confirmOverwrite(this.io, { yes: flags.yes, action: `Deploying ${slug} to live`, slug, typeSlug: true, platform: client.endpoint });
    }
    // With --json the log goes to stderr, so stdout stays one JSON document.
    const logStream = this.jsonEnabled() ? this.io.stderr : this.io.stdout;
    const result = await deploy(client, {
      slug,
      environment,
      commit: flags.commit,
      wait: !flags['no-wait'],
      onLog: (line) => logStream.write(`${line}\n`),
    });
    if (flags['no-wait']) {
      this.log(`Deployment ${result.id} of ${slug} to ${environment} started; follow it with: divio project deploy-log ${result.id} --app ${slug}`);
    }
    return result;
  }
}

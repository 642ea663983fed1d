import { Args } from '@oclif/core';
import { execa } from 'execa';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { resolveProject } from '../../core/project.js';
import { projectStatus } from '../../services/project/status.js';

export default class ProjectOpen extends BaseCommand {
  static override summary = "Open an environment's URL in the browser (prints it when there is no terminal)";
  static override aliases = ['app:open'];
  static override enableJsonFlag = true;
  static override args = { environment: Args.string({ description: 'local, test or live', options: ['local', 'test', 'live'], default: 'local' }) };
  static override flags = { ...projectFlags };

  async run(): Promise<{ environment: string; url: string }> {
    const { args, flags } = await this.parse(ProjectOpen);
    const project = await resolveProject({ app: flags.app });
    const status = await projectStatus(project);
    const env = status.environments.find((e) => e.name === args.environment);
    if (!env?.url) {
      const how = args.environment === 'local' ? 'divio project up' : `divio project deploy ${args.environment}`;
      throw new DivioError(`${project.slug} ${args.environment} does not answer anywhere yet (${env?.state ?? 'unknown'})`, {
        exitCode: ExitCode.environment,
        hint: `Start it first: ${how}`,
      });
    }
    this.log(env.url);
    if (this.io.interactive && !this.jsonEnabled()) {
      const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
      // Best effort: without a desktop, the printed URL is the answer.
      await execa(opener, [env.url], { reject: false, stdio: 'ignore', detached: true }).catch(() => undefined);
    }
    return { environment: args.environment, url: env.url };
  }
}

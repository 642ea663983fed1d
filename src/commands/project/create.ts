import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { createProject, type CreateResult } from '../../services/project/create.js';
import { DEFAULT_BOILERPLATE } from '../../services/project/scaffold.js';

export default class ProjectCreate extends BaseCommand {
  static override summary = 'Create a project from a boilerplate, register it on the platform and push it';
  static override description =
    'Scaffolds ./SLUG from a boilerplate (express, django), registers the app with its test and live environments ' +
    '(each with its own database and media bucket), makes the first commit and pushes it. ' +
    'Nothing is left half-made when a step fails. --local-only scaffolds without a platform.';
  static override aliases = ['app:create'];
  static override enableJsonFlag = true;
  static override args = { slug: Args.string({ description: 'the app slug, e.g. my-shop', required: true }) };
  static override flags = {
    boilerplate: Flags.string({ description: 'boilerplate to start from', default: DEFAULT_BOILERPLATE, helpValue: 'NAME' }),
    directory: Flags.string({ description: 'where to create it (default: ./SLUG)', helpValue: 'DIR' }),
    'local-only': Flags.boolean({ description: 'only scaffold the project here; do not register it on a platform' }),
  };

  async run(): Promise<CreateResult> {
    const { args, flags } = await this.parse(ProjectCreate);
    const result = await createProject(
      { slug: args.slug, boilerplate: flags.boilerplate, directory: flags.directory, localOnly: flags['local-only'] },
      this.io,
    );
    this.log(`Created ${result.directory}`);
    if (result.registered) {
      this.log(`Registered ${result.app} on ${result.endpoint} and pushed ${result.commit?.slice(0, 12)}`);
      for (const env of result.environments) this.log(`  ${env.name}: ${env.url}`);
    }
    this.log(`Next: cd ${flags.directory ?? args.slug} && divio project up`);
    return result;
  }
}

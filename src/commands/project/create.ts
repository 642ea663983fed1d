import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { DEFAULT_BOILERPLATE, scaffoldProject } from '../../services/project/scaffold.js';

interface CreateResult {
  app: string;
  directory: string;
  boilerplate: string;
  registered: boolean;
}

export default class ProjectCreate extends BaseCommand {
  static override summary = 'Create a project from a boilerplate';
  static override description =
    'Scaffolds ./SLUG from a boilerplate (express, django) with divio.yaml, a Dockerfile and a generated docker-compose.yml. ' +
    'Registering the app on a platform comes with `divio platform`; until then the project runs locally with `divio project up`.';
  static override aliases = ['app:create'];
  static override enableJsonFlag = true;
  static override args = { slug: Args.string({ description: 'the app slug, e.g. my-shop', required: true }) };
  static override flags = {
    boilerplate: Flags.string({ description: 'boilerplate to start from', default: DEFAULT_BOILERPLATE, helpValue: 'NAME' }),
    directory: Flags.string({ description: 'where to create it (default: ./SLUG)', helpValue: 'DIR' }),
  };

  async run(): Promise<CreateResult> {
    const { args, flags } = await this.parse(ProjectCreate);
    const project = await this.io.task(`Creating ${args.slug} from the ${flags.boilerplate} boilerplate`, () =>
      scaffoldProject({ slug: args.slug, boilerplate: flags.boilerplate, directory: flags.directory }),
    );
    this.log(`Created ${project.root}`);
    this.log(`Next: cd ${flags.directory ?? args.slug} && divio project up`);
    return { app: project.slug, directory: project.root, boilerplate: flags.boilerplate, registered: false };
  }
}

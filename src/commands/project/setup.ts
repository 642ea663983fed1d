import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { setupProject, type SetupResult } from '../../services/project/setup.js';

export default class ProjectSetup extends BaseCommand {
  static override summary = "Set up a local copy of an app: clone, build, pull the environment's database and media";
  static override description =
    'Clones the repository into DIR (default ./SLUG), writes the local project files, builds the image, and pulls ' +
    "the database and media of test (or --environment live). Run it again after a failure: it resumes where it stopped.";
  static override aliases = ['app:setup'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project setup shop', '<%= config.bin %> project setup shop ~/work/shop --skip-media'];
  static override args = {
    slug: Args.string({ description: 'the app', required: true }),
    dir: Args.string({ description: 'where to put it (default ./SLUG)' }),
  };
  static override flags = {
    environment: Flags.string({ char: 'e', description: 'pull data from this environment', options: ['test', 'live'], default: 'test' }),
    'skip-db': Flags.boolean({ description: 'do not pull the database' }),
    'skip-media': Flags.boolean({ description: 'do not pull media' }),
  };

  async run(): Promise<SetupResult> {
    const { args, flags } = await this.parse(ProjectSetup);
    const result = await setupProject(
      {
        slug: args.slug,
        directory: args.dir,
        environment: flags.environment as 'test' | 'live',
        skipDb: flags['skip-db'],
        skipMedia: flags['skip-media'],
      },
      this.io,
    );
    this.log(`${result.app} is set up in ${result.directory} with the data of ${result.environment}.`);
    this.log(`Next: ${result.next}`);
    return result;
  }
}

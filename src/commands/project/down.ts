import { Flags } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import { down, type DownResult } from '../../services/project/down.js';
import { openLocalEnvironment } from '../../services/project/local-environment.js';

export default class ProjectDown extends BaseCommand {
  static override summary = 'Stop the local environment';
  static override description = 'Stops and removes the local containers. The database is kept unless --volumes is given.';
  static override aliases = ['app:down'];
  static override enableJsonFlag = true;
  static override flags = {
    ...projectFlags,
    volumes: Flags.boolean({ description: 'also remove the volumes: this deletes the local database' }),
  };

  async run(): Promise<DownResult> {
    const { flags } = await this.parse(ProjectDown);
    const local = await openLocalEnvironment({ app: flags.app });
    const result = await down(local, this.io, { volumes: flags.volumes });
    this.log(`${result.app} is down${result.removedVolumes ? '; its volumes were removed' : ''}.`);
    return result;
  }
}

import { BaseCommand, environmentFlag, projectFlags } from '../../../base-command.js';
import { appClient } from '../../../services/project/app-ref.js';
import { listEnvVars } from '../../../services/project/env-vars.js';

export default class EnvVarsList extends BaseCommand {
  static override summary = "List an environment's variables (set with `env-vars set`)";
  static override aliases = ['app:env-vars:list'];
  static override enableJsonFlag = true;
  static override flags = { ...projectFlags, environment: environmentFlag };

  async run(): Promise<{ variables: Record<string, string> }> {
    const { flags } = await this.parse(EnvVarsList);
    const { slug, client } = await appClient({ app: flags.app });
    const variables = await listEnvVars(client, slug, flags.environment as 'test' | 'live');
    if (Object.keys(variables).length === 0) this.log(`No variables set on ${slug} ${flags.environment}.`);
    for (const [name, value] of Object.entries(variables)) this.log(`${name}=${value}`);
    return { variables };
  }
}

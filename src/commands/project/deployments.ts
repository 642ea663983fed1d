import { Args } from '@oclif/core';
import { BaseCommand, projectFlags } from '../../base-command.js';
import * as routes from '../../shared/api/routes.js';
import type { Deployment } from '../../shared/api/schemas.js';
import { appClient } from '../../services/project/app-ref.js';

export default class ProjectDeployments extends BaseCommand {
  static override summary = "An app's deployments, newest first";
  static override aliases = ['app:deployments'];
  static override enableJsonFlag = true;
  static override args = { environment: Args.string({ description: 'only test or only live', options: ['test', 'live'] }) };
  static override flags = { ...projectFlags };

  async run(): Promise<{ deployments: Deployment[] }> {
    const { args, flags } = await this.parse(ProjectDeployments);
    const { slug, client } = await appClient({ app: flags.app });
    const result = await client.call(routes.listDeployments, {
      params: { slug },
      query: args.environment ? { environment: args.environment } : {},
    });
    if (result.deployments.length === 0) this.log(`No deployments of ${slug} yet: divio project deploy test`);
    for (const d of result.deployments) {
      const commit = d.commit ? d.commit.slice(0, 12) : '-'.padEnd(12);
      this.log(`${d.id.padStart(5)}  ${d.environment.padEnd(4)}  ${d.kind.padEnd(8)}  ${d.state.padEnd(9)}  ${commit}  ${d.createdAt}${d.reason ? `  ${d.reason}` : ''}`);
    }
    return result;
  }
}

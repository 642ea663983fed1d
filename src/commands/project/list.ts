import { BaseCommand } from '../../base-command.js';
import { ApiClient } from '../../core/api-client.js';
import * as routes from '../../shared/api/routes.js';
import type { App } from '../../shared/api/schemas.js';

export default class ProjectList extends BaseCommand {
  static override summary = 'List the apps you can see on the platform';
  static override aliases = ['app:list'];
  static override enableJsonFlag = true;

  async run(): Promise<{ endpoint: string; apps: App[] }> {
    await this.parse(ProjectList);
    const client = await ApiClient.fromCredentials();
    const { apps } = await client.call(routes.listApps);
    if (apps.length === 0) this.log(`No apps on ${client.endpoint} yet. Create one: divio project create SLUG`);
    const width = Math.max(4, ...apps.map((a) => a.slug.length));
    for (const app of apps) {
      const urls = app.environments.map((e) => `${e.name} ${e.url}`).join('  ');
      this.log(`${app.slug.padEnd(width)}  ${(app.boilerplate ?? '-').padEnd(9)}  ${urls}`);
    }
    return { endpoint: client.endpoint, apps };
  }
}

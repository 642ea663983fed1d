import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../../base-command.js';
import { ApiClient } from '../../../core/api-client.js';
import * as routes from '../../../shared/api/routes.js';
import type { CreatedUser } from '../../../shared/api/schemas.js';

export default class PlatformUsersAdd extends BaseCommand {
  static override summary = 'Create a platform user and print its token (operator only)';
  static override description =
    'The token is printed once and cannot be shown again; hand it to the user, who runs `divio login --token TOKEN --endpoint URL`.';
  static override enableJsonFlag = true;
  static override args = { name: Args.string({ description: 'user name (like a slug: my-name)', required: true }) };
  static override flags = { operator: Flags.boolean({ description: 'make the user an operator too' }) };

  async run(): Promise<CreatedUser & { endpoint: string }> {
    const { args, flags } = await this.parse(PlatformUsersAdd);
    const client = await ApiClient.fromCredentials();
    const created = await client.call(routes.createUser, { body: { name: args.name, operator: flags.operator } });
    this.log(`Created user ${created.user.name}. Their token (shown only now):`);
    this.log(created.token);
    this.log(`They log in with: divio login --endpoint ${client.endpoint} --token TOKEN`);
    return { ...created, endpoint: client.endpoint };
  }
}
